"""Run folders (minillm/train/rundir.py): the CLI and the Trainer write one format; load_run reads any of them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from minillm.__main__ import main
from minillm.config import ModelConfig, TrainConfig
from minillm.data.tokenizer import CharTokenizer, load_tokenizer
from minillm.finetune.peft import LoRAConfig, apply_lora, merge_lora
from minillm.model.transformer import GPT
from minillm.presets import model_preset, train_preset
from minillm.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from minillm.train.rundir import load_run, save_run, write_run_config
from minillm.train.trainer import Trainer

TEXT = "the cat sat on the mat. a dog ran to the cat. " * 40
STEPS = 4
SMALL = dict(n_layer=1, block_size=32)


def _cfg(out_dir: Path | None, **kw) -> TrainConfig:
    base = dict(max_steps=STEPS, batch_size=4, eval_interval=2, eval_batches=2, progress=False, device="cpu",
                out_dir=str(out_dir) if out_dir is not None else None)
    return train_preset("ci", **{**base, **kw})


def _tiny(vocab_size: int, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(model_preset("tiny", vocab_size=vocab_size, **SMALL))


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(ids)[0]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> tuple[Path, Path]:
    """(prepared data folder, run folder) written by `python -m minillm prepare` and `train` at a tiny size."""
    root = tmp_path_factory.mktemp("cli")
    data, run = root / "data", root / "run"
    assert main(["prepare", "--source", "arithmetic", "--n_docs", "300", "--out", str(data)]) == 0
    assert main(["train", "--data", str(data), "--preset", "tiny", "--size", "ci", "--out", str(run),
                 "--max_steps", str(STEPS), "--n_layer", "1", "--block_size", "32", "--progress", "false",
                 "--eval_interval", "2", "--batch_size", "4", "--eval_batches", "2"]) == 0
    return data, run


def test_api_run_folder_matches_the_cli_and_loads_back(cli_run, tmp_path, capsys):
    data, cli = cli_run
    tok = load_tokenizer(data / "tokenizer.json")
    model = _tiny(tok.vocab_size)
    api = tmp_path / "api"
    trainer = Trainer(model, _cfg(api), str(data), tokenizer=tok)
    assert (api / "config.json").is_file() and (api / "tokenizer.json").is_file()  # written when the Trainer is built
    trainer.fit()

    cli_cfg = json.loads((cli / "config.json").read_text())
    api_cfg = json.loads((api / "config.json").read_text())
    assert set(api_cfg) == set(cli_cfg) == {"model", "train", "data"}
    assert Path(cli_cfg["data"]).resolve() == data.resolve()  # the CLI's DataSplits.from_dir still names its folder
    assert set(api_cfg["model"]) == set(cli_cfg["model"]) and set(api_cfg["train"]) == set(cli_cfg["train"])
    assert api_cfg["model"] == model.config.to_dict() and api_cfg["train"]["max_steps"] == STEPS
    assert api_cfg["data"] == str(data)

    loaded, loaded_tok = load_run(api)
    assert isinstance(loaded, GPT) and not loaded.training
    assert loaded_tok.encode("12+3=15") == tok.encode("12+3=15") and loaded_tok.vocab_size == tok.vocab_size
    ids = torch.tensor([tok.encode("12+30=42")])
    assert torch.equal(_logits(loaded, ids), _logits(trainer.model, ids))  # the last checkpoint is the trained model

    # the command line reads the API's folder as one of its own
    capsys.readouterr()
    assert main(["generate", "--run", str(api), "--prompt", "12+", "--max_new_tokens", "4", "--temperature", "0",
                 "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("12+")


def test_load_run_reads_a_cli_folder(cli_run):
    data, cli = cli_run
    model, tok = load_run(cli)
    assert isinstance(tok, CharTokenizer) and tok.vocab_size == model.config.vocab_size
    assert model.config.n_layer == 1 and model.config.block_size == 32
    # the same weights as building the saved config by hand and loading the newest checkpoint into it
    saved = json.loads((cli / "config.json").read_text())
    by_hand = GPT(ModelConfig.from_dict(saved["model"]))
    assert load_checkpoint(latest_checkpoint(cli), by_hand) == STEPS
    ids = torch.tensor([tok.encode("3+4=7")])
    assert torch.equal(_logits(model, ids), _logits(by_hand, ids))
    # a trained model is not a fresh one: the weights came from the checkpoint
    assert not torch.equal(_logits(model, ids), _logits(GPT(model.config), ids))


def test_further_training_after_load_run(cli_run, tmp_path):
    data, cli = cli_run
    model, tok = load_run(cli)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = tmp_path / "more"
    history = Trainer(model, _cfg(out, max_steps=3, lr=1e-2), str(data), tokenizer=tok).fit()
    assert history[-1]["step"] == 3 and np.isfinite(history[-1]["loss"])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items()), "training changed nothing"
    again, _ = load_run(out)
    ids = torch.tensor([tok.encode("1+1=2")])
    assert torch.equal(_logits(again, ids), _logits(model, ids))


def test_in_memory_tokens_without_tokenizer_give_none(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    tokens = np.asarray(tok.encode(TEXT))
    model = _tiny(tok.vocab_size)
    Trainer(model, _cfg(tmp_path / "run"), tokens).fit()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"] is None  # in-memory tokens have no folder to name
    assert not (tmp_path / "run" / "tokenizer.json").exists()
    loaded, loaded_tok = load_run(tmp_path / "run")
    assert loaded_tok is None
    ids = torch.tensor([tok.encode("the cat")])
    assert torch.equal(_logits(loaded, ids), _logits(model, ids))


def test_checkpoint_by_step_and_by_path(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    tokens = np.asarray(tok.encode(TEXT))
    model = _tiny(tok.vocab_size)
    run = tmp_path / "run"
    trainer = Trainer(model, _cfg(run), tokens, tokenizer=tok)
    trainer.fit(stop_at=2)
    ids = torch.tensor([tok.encode("a dog")])
    at_two = _logits(model, ids)
    early = trainer.save(tmp_path / "early")  # a checkpoint outside the run's ckpt/ folder
    trainer.fit()
    assert [p.name for p in list_checkpoints(run)] == [f"step_{STEPS:08d}"]  # the Trainer keeps the newest only
    newest, _ = load_run(run)
    assert torch.equal(_logits(newest, ids), _logits(model, ids))
    assert torch.equal(_logits(load_run(run, checkpoint=early)[0], ids), at_two)
    assert torch.equal(_logits(load_run(run, checkpoint=STEPS)[0], ids), _logits(model, ids))
    with pytest.raises(FileNotFoundError, match="no checkpoint of step 3"):
        load_run(run, checkpoint=3)


def test_lora_merged_model_saves_and_loads_as_a_run(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    model = _tiny(tok.vocab_size)
    apply_lora(model, LoRAConfig(rank=2))
    torch.manual_seed(1)
    with torch.no_grad():  # B starts at zero; make the adapters change the model so the merge is visible
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0, 0.5)
    ids = torch.tensor([tok.encode("the mat")])
    tuned = _logits(model, ids)
    assert not torch.allclose(tuned, _logits(_tiny(tok.vocab_size), ids))
    assert merge_lora(model)
    ckpt = save_run(tmp_path / "merged", model, tok, step=7, note="lora r=2 merged")
    assert ckpt == tmp_path / "merged" / "ckpt" / "step_00000007"
    saved = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert saved["train"] is None and saved["note"] == "lora r=2 merged"
    loaded, loaded_tok = load_run(tmp_path / "merged")
    assert loaded_tok.vocab_size == tok.vocab_size
    torch.testing.assert_close(_logits(loaded, ids), tuned, rtol=1e-5, atol=1e-5)


def test_checkpoint_config_wins_over_a_stale_config_json(tmp_path):
    # A model grown after config.json was written (e.g. chat tokens added): the checkpoint's own config fits.
    small, big = _tiny(20), _tiny(24)
    write_run_config(tmp_path, small.config, None)
    save_run(tmp_path / "tmp", big)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "tmp" / "ckpt" / "step_00000000").rename(tmp_path / "ckpt" / "step_00000000")
    loaded, _ = load_run(tmp_path)
    assert loaded.config.vocab_size == 24


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        load_run(tmp_path)
    model = _tiny(8)
    write_run_config(tmp_path, model.config, _cfg(tmp_path))
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid UTF-8 JSON"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"train": {}}))
    with pytest.raises(ValueError, match='no "model" object'):
        load_run(tmp_path)
    with pytest.raises(TypeError, match="must be a ModelConfig"):
        write_run_config(tmp_path, model.config.to_dict())
    with pytest.raises(ValueError, match="would overwrite"):
        write_run_config(tmp_path, model.config, model=1)
    with pytest.raises(TypeError, match="JSON-serializable"):
        write_run_config(tmp_path, model.config, note=object())
    tok = CharTokenizer.from_text(TEXT)  # more tokens than this 8-token model can embed
    assert tok.vocab_size > 8
    with pytest.raises(ValueError, match="vocab_size=14, .*or pass the data's own tokenizer"):
        Trainer(model, _cfg(None), np.tile(np.arange(8), 50), tokenizer=tok)
    with pytest.raises(TypeError, match="minillm tokenizer"):
        write_run_config(tmp_path, model.config, tokenizer="chars")
    # a tokenizer.json that does not belong to the checkpoint's model
    save_run(tmp_path / "r", model)
    tok.save(tmp_path / "r" / "tokenizer.json")
    with pytest.raises(ValueError, match="belongs to another model"):
        load_run(tmp_path / "r")


def test_a_model_without_a_model_config_gets_a_warning_not_a_config(tmp_path):
    class Bigram(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("Cfg", (), {"block_size": 8, "vocab_size": 8})()
            self.emb = torch.nn.Embedding(8, 8)

        def forward(self, x, y=None):
            logits = self.emb(x)  # (B, T, V)
            loss = None if y is None else torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
            return logits, loss

    with pytest.warns(UserWarning, match="no config.json, so load_run cannot open it"):
        Trainer(Bigram(), _cfg(tmp_path / "run"), np.tile(np.arange(8), 50))
    assert not (tmp_path / "run" / "config.json").exists()
