"""Resuming a killed run (issue #22, item 10): checkpoints by default, and a resumed run says what it resumes.

- TrainConfig.checkpoint_interval defaults to None = every eval_interval steps (nanoGPT's habit), so a run killed
  between evaluations loses at most eval_interval steps; 0 still means "only at the end".
- A resumed Trainer prints "resuming from step N of M (checkpoint PATH)" and warns once, naming each TrainConfig
  field that differs from the saved run's (`name: saved -> now`), leaving out fields that change only what is
  shown, recorded or saved.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from minillm.config import ModelConfig, TrainConfig
from minillm.model.transformer import GPT
from minillm.presets import train_preset
from minillm.train.checkpoint import config_changes, latest_checkpoint, list_checkpoints
from minillm.train.trainer import Trainer

V = 50
TOKENS = np.tile(np.arange(V), 60)


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=V, block_size=16, n_layer=1, n_head=2, n_embd=32))


def cfg(**kw) -> TrainConfig:
    base = dict(batch_size=4, max_steps=7, warmup_steps=1, lr=3e-3, log_interval=1, eval_interval=3,
                eval_batches=1, progress=False, device="cpu")
    return TrainConfig(**{**base, **kw})


def crash_at(step: int):
    def hook(trainer, row):
        if row["step"] == step:
            raise KeyboardInterrupt  # what Ctrl-C or a killed job does mid-run
    return {"on_step": hook}


def test_checkpoint_interval_defaults_to_the_eval_interval():
    assert TrainConfig().checkpoint_interval is None
    assert TrainConfig(eval_interval=25).checkpoint_every == 25
    assert TrainConfig(eval_interval=25, checkpoint_interval=0).checkpoint_every == 0  # 0: only at the end
    assert TrainConfig(eval_interval=25, checkpoint_interval=10).checkpoint_every == 10
    # Kept as None (not filled in), so a changed eval_interval moves the checkpoints too.
    assert TrainConfig(eval_interval=25).replace(eval_interval=40).checkpoint_every == 40
    assert train_preset("laptop").checkpoint_every == train_preset("laptop").eval_interval == 100
    assert train_preset("ci").checkpoint_every == 0  # ci evaluates only at the end, so it saves only there
    with pytest.raises(ValueError, match="checkpoint_interval=-1 must be a non-negative integer or None"):
        TrainConfig(checkpoint_interval=-1)


def test_a_killed_run_resumes_from_the_last_evaluation(tmp_path, capsys):
    full = Trainer(tiny_gpt(), cfg(), TOKENS).fit()
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_gpt(), cfg(out_dir=str(run)), TOKENS, hooks=crash_at(5)).fit()
    assert [p.name for p in list_checkpoints(run)] == ["step_00000003"]  # saved at the eval of step 3
    capsys.readouterr()
    resumed = Trainer(tiny_gpt(), cfg(out_dir=str(run), resume=True), TOKENS)
    out = capsys.readouterr().out
    assert f"resuming from step 3 of 7 (checkpoint {run / 'ckpt' / 'step_00000003'})" in out
    assert [r["loss"] for r in resumed.fit()] == [r["loss"] for r in full]
    assert latest_checkpoint(run).name == "step_00000007"


def test_resume_warns_naming_each_changed_field(tmp_path):
    run = str(tmp_path / "run")
    Trainer(tiny_gpt(), cfg(out_dir=run), TOKENS).fit(stop_at=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same settings (resume, progress and log_interval aside): no warning
        Trainer(tiny_gpt(), cfg(out_dir=run, resume=True, progress=True, log_interval=2), TOKENS)
    with pytest.warns(UserWarning) as record:
        Trainer(tiny_gpt(), cfg(out_dir=run, resume=True, lr=1e-3, max_steps=9), TOKENS)
    messages = [str(w.message) for w in record if "differs from the saved run" in str(w.message)]
    assert len(messages) == 1, messages
    listed = messages[0].split("differs from the saved run's: ")[1].split(". ")[0]
    # min_lr is derived from lr (lr / 10): it changed too, and the schedule decays to it.
    assert listed == "lr: 0.003 -> 0.001, max_steps: 7 -> 9, min_lr: 0.0003 -> 0.0001"


def test_config_changes():
    saved = {"lr": 0.001, "seed": 1, "resume": False, "old_field": 3}
    now = {"lr": 0.002, "seed": 1, "resume": True, "new_field": "x"}
    assert config_changes(saved, now, ignore=("resume",)) == [
        "lr: 0.001 -> 0.002", "new_field: '<absent>' -> 'x'", "old_field: 3 -> '<absent>'"]
    assert config_changes(None, now) == []
