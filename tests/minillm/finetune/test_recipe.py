"""Fine-tuning for homework (issue #22 item 8): one conversation per row (sft.pack, PackedSFTDataset), the JSONL
shapes named in every error, and the recipe `finetune_run` (minillm/finetune/recipe.py) with its run folders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from minillm.data.tokenizer import CharTokenizer
from minillm.device import seed_everything
from minillm.finetune import loop
from minillm.finetune.chat import ASSISTANT, CHAT_TOKENS, END, USER, ChatTemplate, chat_tokenizer
from minillm.finetune.recipe import add_chat_tokens, finetune_run
from minillm.finetune.sft import IGNORE, JSONL_SHAPES, load_jsonl, pack, response_accuracy
from minillm.finetune.sft_loop import PackedSFTDataset
from minillm.model.transformer import GPT
from minillm.presets import model_preset, train_preset
from minillm.train.rundir import ADAPTER, load_run, save_run
from minillm.train.trainer import Trainer

PAIRS = [("france", "paris"), ("spain", "madrid"), ("italy", "rome"), ("japan", "tokyo"), ("egypt", "cairo"),
         ("peru", "lima"), ("chile", "santiago"), ("kenya", "nairobi"), ("india", "delhi"), ("china", "beijing"),
         ("cuba", "havana"), ("iran", "tehran"), ("iraq", "baghdad"), ("mali", "bamako"), ("oman", "muscat"),
         ("laos", "vientiane"), ("nepal", "kathmandu"), ("qatar", "doha"), ("syria", "damascus"), ("togo", "lome"),
         ("chad", "ndjamena"), ("fiji", "suva"), ("niger", "niamey"), ("benin", "porto"), ("ghana", "accra"),
         ("sudan", "khartoum"), ("yemen", "sanaa"), ("gabon", "libreville"), ("haiti", "port"),
         ("malta", "valletta"), ("tonga", "nukualofa"), ("samoa", "apia")]
TEXT = (" ".join(f"the capital of {c} is {k}." for c, k in PAIRS) + " what is the capital of ? ") * 30


# ---- one conversation per row: sft.pack ----------------------------------------------------------------------

def test_pack_one_per_row_rows_and_masks_exact():
    template = ChatTemplate(chat_tokenizer())  # tags are ids 0..3: SYSTEM, USER, ASSISTANT, END
    tok = template.tokenizer
    a, b, c = tok.encode("a"), tok.encode("b"), tok.encode("c")
    convs = [[{"role": "user", "content": "ab"}, {"role": "assistant", "content": "c"}],
             [{"role": "user", "content": "b"}, {"role": "assistant", "content": "a"}]]
    x, y = pack(convs, 8, template, one_per_row=True)  # 7 and 6 tokens: each alone in a row of 9
    end, user, asst = 3, 1, 2
    assert x.tolist() == [[user, *a, *b, end, asst, *c, end, end], [user, *b, end, asst, *a, end, end, end]]
    N = IGNORE  # prompt, tags before the answer and padding (END fills rows) are never targets
    assert y.tolist() == [[N, N, N, N, *c, end, N, N], [N, N, N, *a, end, N, N, N]]
    xp, yp = pack(convs, 16, template)  # packing puts both in one row: conversation 2 sees conversation 1
    assert xp.shape == (1, 16) and xp[0, 7:13].tolist() == x[1, :6].tolist()
    assert yp[0, :7].tolist() == y[0, :7].tolist() and yp[0, 6] == IGNORE  # a row's next conversation: no target
    assert yp[0, 7:13].tolist() == y[1, :6].tolist()


def test_packed_sft_dataset_one_document_per_window():
    eos = "<|endoftext|>"
    tok = CharTokenizer.from_text("ab=+0123456789", special_tokens=(eos,))  # EOS is id 0
    ids = tok.encode
    data = PackedSFTDataset([("1+1=", "2"), ("12+3=", "15")], tok, block_size=8, one_per_row=True)
    assert len(data) == 2 and data.n_dropped_tokens == 0
    first, second = data[0], data[1]
    assert first["input_ids"].tolist() == ids("1+1=2") + [0, 0, 0]  # doc, EOS, padding (EOS) to T + 1 = 9
    assert first["labels"].tolist() == ids("+1=2") + [0, 0, 0, 0]
    assert first["loss_mask"].tolist() == [True] * 5 + [False] * 3  # every in-document target, padding never
    assert second["loss_mask"].sum() == len(ids("12+3=15"))
    resp = PackedSFTDataset([("1+1=", "2"), ("12+3=", "15")], tok, block_size=8, one_per_row=True,
                            response_only=True)
    assert resp[0]["loss_mask"].tolist() == [False, False, False, True, True, False, False, False]  # "2", EOS
    assert resp[1]["loss_mask"].tolist() == [False] * 4 + [True] * 3 + [False]  # "1", "5", EOS
    with pytest.raises(ValueError, match="example 1 has 8 tokens .* block_size \\+ 1 = 7"):
        PackedSFTDataset([("1+1=", "2"), ("12+3=", "15")], tok, block_size=6, one_per_row=True)


# ---- JSONL shapes ----------------------------------------------------------------------------------------------

def test_load_jsonl_accepts_prompt_response_and_names_every_shape(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"prompt": "2+2?", "response": "4"}) + "\n", encoding="utf-8")
    assert load_jsonl(p)[0].messages == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    bad_lines = {"[1, 2]": "expected a JSON object", '{"question": "x"}': "no accepted shape",
                 '{"prompt": "x"}': r"missing key\(s\) \['response'\]", '{"instruction": "x", "output": 3}':
                 "'output' must be a string", '{"messages": []}': "messages is empty", "{oops": "invalid JSON",
                 '{"prompt": "x", "response": 1}': "'response' must be a string"}
    for line, what in bad_lines.items():
        p.write_text(line + "\n", encoding="utf-8")
        with pytest.raises(ValueError, match=what) as e:
            load_jsonl(p)
        assert all(shape in str(e.value) for shape in JSONL_SHAPES), str(e.value)
        assert str(e.value).startswith(f"{p}:1: ")


# ---- the recipe ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny character-level base run that has read the facts (loss ~0.6/char), without chat tokens, + 32 pairs."""
    root = tmp_path_factory.mktemp("recipe")
    tok = CharTokenizer.from_text(TEXT)
    seed_everything(0)
    model = GPT(model_preset("tiny", vocab_size=tok.vocab_size))
    cfg = train_preset("ci", max_steps=300, lr=3e-3, warmup_steps=20, out_dir=str(root / "base"), device="cpu")
    Trainer(model, cfg, np.array(tok.encode(TEXT)), tokenizer=tok).fit()
    lines = [{"instruction": f"capital of {c}?", "output": k} for c, k in PAIRS]
    (root / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    return root


def _run(base: Path, out: Path, **kw) -> dict:
    return finetune_run(base / "base", base / "pairs.jsonl", out, device="cpu", progress=False, **kw)


@pytest.fixture(scope="module")
def default_run(base) -> tuple[Path, dict]:
    """(run folder, summary) of finetune_run with every default (one conversation per row, adapter only)."""
    out = base / "chat"
    return out, _run(base, out)


def test_defaults_learn_32_pairs_and_the_adapter_run_loads(base, default_run):
    out, s = default_run
    assert s["train_exact_match"] >= 0.9, s  # measured: 1.0 (3-4 s of training on an idle 2-core CPU)
    assert s["added_tokens"] == list(CHAT_TOKENS) and s["n_train"] == 32 and s["rows"] == 32
    assert s["merged"] is False and s["steps"] == 300 and s["final_loss"] < 0.2
    assert (out / ADAPTER).is_file() and not (out / "ckpt").exists() and (out / "history.jsonl").is_file()
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert saved["adapter"]["base_run"] == str((base / "base").resolve())
    model, tok = load_run(out)  # base + grown vocabulary + new rows + LoRA merged in
    assert tok.special_tokens == CHAT_TOKENS and model.config.vocab_size == tok.vocab_size
    convs = load_jsonl(base / "pairs.jsonl")
    assert response_accuracy(model, ChatTemplate(tok), convs).mean() == s["train_exact_match"]
    base_model, base_tok = load_run(base / "base")  # the base run is unchanged
    assert CHAT_TOKENS[0] not in base_tok.special_tokens and base_model.config.vocab_size == base_tok.vocab_size
    with pytest.raises(ValueError, match="already holds a finished run"):
        _run(base, out)


def test_merged_run_equals_the_rebuilt_adapter_run(base, tmp_path):
    merged = _run(base, tmp_path / "m", steps=30, merge=True)
    _run(base, tmp_path / "a", steps=30)
    assert merged["merged"] and (tmp_path / "m" / "ckpt").is_dir() and not (tmp_path / "m" / ADAPTER).exists()
    m, tok_m = load_run(tmp_path / "m")
    a, tok_a = load_run(tmp_path / "a")
    assert tok_m.hash == tok_a.hash
    sm, sa = m.state_dict(), a.state_dict()
    assert sm.keys() == sa.keys() and not any(k.endswith(".lora_A") for k in sm)
    for k in sm:  # the same arithmetic (W + (alpha/r) B A) on the same trained factors
        assert torch.equal(sm[k], sa[k]), k


def test_one_per_row_beats_packing_on_short_pairs(base, default_run, tmp_path):
    one = default_run[1]
    packed = _run(base, tmp_path / "packed", one_per_row=False)
    assert packed["rows"] < one["rows"] == 32
    # measured 1.0 vs 0.5: packed rows teach answers that lean on the previous conversation in the row
    assert one["train_exact_match"] >= packed["train_exact_match"] + 0.25, (one, packed)


def test_holdout_reports_heldout_loss(base, tmp_path):
    s = _run(base, tmp_path / "h", steps=10, holdout=4)
    assert (s["n_train"], s["n_heldout"]) == (28, 4)
    assert np.isfinite(s["heldout_loss"]) and s["heldout_loss"] > 0 and 0 <= s["heldout_exact_match"] <= 1


def test_a_killed_run_resumes_exactly(base, tmp_path, monkeypatch):
    whole = _run(base, tmp_path / "whole", steps=20)
    real = loop.HistoryWriter.write

    def crash(self, row):
        if row["step"] == 12:  # checkpoints every 5 steps: step 10 is on disk
            raise KeyboardInterrupt
        real(self, row)

    monkeypatch.setattr(loop.HistoryWriter, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        _run(base, tmp_path / "resumed", steps=20)
    monkeypatch.setattr(loop.HistoryWriter, "write", real)
    assert not (tmp_path / "resumed" / "config.json").exists()
    resumed = _run(base, tmp_path / "resumed", steps=20)
    assert resumed["final_loss"] == whole["final_loss"]
    a, _ = load_run(tmp_path / "whole")
    b, _ = load_run(tmp_path / "resumed")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_errors_name_the_problem(base, tmp_path):
    data = base / "pairs.jsonl"
    with pytest.raises(ValueError, match="is the base run itself"):
        finetune_run(base / "base", data, base / "base", progress=False)
    weird = tmp_path / "weird.jsonl"
    weird.write_text(json.dumps({"prompt": "capital?", "response": "Zürich"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="weird.jsonl:1: the base run's tokenizer cannot encode"):
        finetune_run(base / "base", weird, tmp_path / "o1", progress=False)
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"prompt": "the cat " * 10, "response": "is"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="long.jsonl:1: the conversation is 86 tokens .* block_size \\+ 1 = 65"):
        finetune_run(base / "base", long, tmp_path / "o2", progress=False)
    with pytest.raises(ValueError, match="holdout=32 leaves no conversation"):
        _run(base, tmp_path / "o3", holdout=32)
    model, _ = load_run(base / "base")
    save_run(tmp_path / "notok", model)  # a run without tokenizer.json
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        finetune_run(tmp_path / "notok", data, tmp_path / "o4", progress=False)


def test_an_adapter_run_without_its_base_says_what_to_do(base, tmp_path):
    _run(base, tmp_path / "a", steps=2)
    cfg = json.loads((tmp_path / "a" / "config.json").read_text(encoding="utf-8"))
    cfg["adapter"]["base_run"] = str(tmp_path / "moved")
    (tmp_path / "a" / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="which is gone: .* merge=True"):
        load_run(tmp_path / "a")


def test_add_chat_tokens_only_when_missing():
    tok = chat_tokenizer()  # already has the tags
    model = GPT(model_preset("tiny", vocab_size=tok.vocab_size, n_layer=1))
    same, added, first = add_chat_tokens(model, tok)
    assert same is tok and added == [] and first == tok.vocab_size == model.config.vocab_size
    plain = CharTokenizer.from_text("abc")
    model = GPT(model_preset("tiny", vocab_size=3, n_layer=1))
    grown, added, first = add_chat_tokens(model, plain)
    assert added == list(CHAT_TOKENS) and first == 3 and model.config.vocab_size == 7
    assert grown.encode(USER + "ab" + END + ASSISTANT) == [4, 0, 1, 6, 5]
