"""The training loop (minillm/train/trainer.py, history.py): learning, accumulation, eval, hooks, NaN, resume."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from minillm.config import ModelConfig, TrainConfig
from minillm.data.loader import DataSplits, RandomLoader
from minillm.data.shards import write_shard
from minillm.model.transformer import GPT
from minillm.train.checkpoint import latest_checkpoint, list_checkpoints
from minillm.train.history import normalize_hooks, read_history
from minillm.train.trainer import Trainer

V = 50
TINY = dict(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=32)
# A learnable toy stream: the ids 0..49 repeated, so the next token is a deterministic function of the last.
TOKENS = np.tile(np.arange(V), 100)


def tiny_gpt(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(**{**TINY, **overrides}))


def train_cfg(**kw) -> TrainConfig:
    base = dict(batch_size=4, max_steps=10, warmup_steps=2, lr=3e-3, log_interval=1, eval_interval=0,
                eval_batches=2, progress=False, device="cpu")
    return TrainConfig(**{**base, **kw})


def test_loss_decreases_on_a_learnable_sequence():
    history = Trainer(tiny_gpt(), train_cfg(max_steps=40, log_interval=10, batch_size=8), TOKENS).fit()
    assert [r["step"] for r in history] == [10, 20, 30, 40]
    assert history[0]["loss"] < math.log(V) + 0.1  # starts near chance, ln(50) = 3.9
    assert history[-1]["loss"] < history[0]["loss"] - 1.0
    assert history[-1]["val_loss"] < math.log(V) - 1.0  # the last step always evaluates
    row = history[-1]
    assert row["tokens"] == 40 * 8 * 16 and row["skipped"] == 0
    assert row["tok_per_s"] > 0 and row["elapsed_s"] > 0 and row["grad_norm"] > 0
    assert "mfu" not in row  # MFU is reported on CUDA only
    assert row["lr"] == pytest.approx(3e-4)  # the last step of the cosine schedule is min_lr = lr / 10


def test_grad_accumulation_equals_one_big_batch():
    # RandomLoader draws its window starts one after another, so batch 8 = the two batches of 4 in a row.
    big, small = RandomLoader(TOKENS, 8, 16, seed=5), RandomLoader(TOKENS, 4, 16, seed=5)
    xb, _ = next(big)
    assert torch.equal(xb, torch.cat([next(small)[0], next(small)[0]])), "data path is not comparable"
    grads, rows = [], []
    for batch, accum in ((8, 1), (4, 2)):
        trainer = Trainer(tiny_gpt(), train_cfg(batch_size=batch, grad_accum_steps=accum, max_steps=1,
                                                seed=5, grad_clip=None), TOKENS)
        step = trainer.optimizer.step

        def recording_step(*args, step=step, **kwargs):  # the gradients the optimizer is about to use
            grads.append([p.grad.clone() for p in trainer.model.parameters()])
            return step(*args, **kwargs)

        trainer.optimizer.step = recording_step
        rows.append(trainer.fit()[0])
    # (We compare gradients, not weights after the step: Adam's first update is ~lr * sign(g), which
    # amplifies float rounding wherever |g| is near eps.)
    assert len(grads) == 2
    for g8, g4 in zip(*grads):
        torch.testing.assert_close(g8, g4, rtol=0, atol=1e-6)
    assert rows[0]["loss"] == pytest.approx(rows[1]["loss"], abs=1e-6)
    assert rows[0]["grad_norm"] == pytest.approx(rows[1]["grad_norm"], abs=1e-6)
    assert rows[0]["tokens"] == rows[1]["tokens"] == 8 * 16


def test_eval_rows_history_file_and_hooks(tmp_path):
    calls = {"step": [], "eval": []}

    class Watcher:
        def on_eval(self, trainer, row):
            calls["eval"].append((trainer.step, row["val_loss"]))

    cfg = train_cfg(max_steps=6, log_interval=2, eval_interval=3, out_dir=str(tmp_path / "run"))
    trainer = Trainer(tiny_gpt(), cfg, TOKENS, hooks=[Watcher()])
    trainer.hooks["on_step"].append(lambda tr, row: calls["step"].append(row["step"]))
    history = trainer.fit()
    # Rows at log steps (2, 4, 6) and at eval steps (3, 6).
    assert [r["step"] for r in history] == [2, 3, 4, 6]
    assert [r["step"] for r in history if "val_loss" in r] == [3, 6]
    assert calls["step"] == [2, 3, 4, 6] and [s for s, _ in calls["eval"]] == [3, 6]
    assert read_history(tmp_path / "run") == json.loads(json.dumps(history))
    # Evaluations use the same fixed batches each time: evaluating twice gives the same number.
    assert trainer.evaluate() == trainer.evaluate() == history[-1]["val_loss"]
    assert latest_checkpoint(tmp_path / "run").name == "step_00000006"


def test_hooks_validation():
    f = lambda tr, row: None  # noqa: E731
    assert normalize_hooks({"on_step": f})["on_step"] == [f]
    assert normalize_hooks({"on_eval": [f, f]})["on_eval"] == [f, f]
    with pytest.raises(ValueError, match="unknown hook name"):
        normalize_hooks({"on_epoch": f})
    with pytest.raises(ValueError, match="has none of the methods"):
        normalize_hooks([object()])


class NaNAfter(nn.Module):
    """A GPT whose loss becomes NaN from the `bad_from`-th forward call on (counting from 1)."""

    def __init__(self, bad_from: int, bad_until: int = 10**9):
        super().__init__()
        self.gpt = tiny_gpt()
        self.config = self.gpt.config
        self.calls, self.bad_from, self.bad_until = 0, bad_from, bad_until

    def forward(self, idx, targets=None):
        logits, loss = self.gpt(idx, targets)
        if self.training:
            self.calls += 1
            if self.bad_from <= self.calls <= self.bad_until:
                loss = loss * float("nan")
        return logits, loss


def test_nan_loss_raises_naming_the_step_and_writes_nothing_corrupt(tmp_path):
    model = NaNAfter(bad_from=3)
    cfg = train_cfg(max_steps=6, checkpoint_interval=1, out_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match=r"non-finite loss at step 3 .*lr.*grad_clip.*fp32"):
        Trainer(model, cfg, TOKENS).fit()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002"]
    assert [r["step"] for r in read_history(tmp_path)] == [1, 2]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_loss_skip_mode_drops_the_steps():
    model = NaNAfter(bad_from=3, bad_until=4)
    before = None

    def snapshot(trainer, row):
        nonlocal before
        if row["step"] == 2:
            before = [p.detach().clone() for p in trainer.model.parameters()]
        if row["step"] == 4:  # steps 3 and 4 were skipped: the weights did not move
            assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))

    history = Trainer(model, train_cfg(max_steps=6, on_nan="skip"), TOKENS, hooks={"on_step": snapshot}).fit()
    assert [r["skipped"] for r in history] == [0, 0, 1, 2, 2, 2]
    assert math.isnan(history[2]["loss"]) and math.isfinite(history[4]["loss"])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_vocab_mismatch_is_caught_before_training():
    bad = TOKENS.copy()
    bad[7] = 60
    with pytest.raises(ValueError, match=r"token id 60 .* vocabulary \[0, 50\).*vocab_size=61"):
        Trainer(tiny_gpt(), train_cfg(), bad)
    splits = DataSplits.from_tokens(TOKENS, 0.1, vocab_size=100)
    with pytest.raises(ValueError, match="tokenized with vocab_size=100 but the model has vocab_size=50"):
        Trainer(tiny_gpt(), train_cfg(), splits)


def test_data_from_a_prepared_directory(tmp_path):
    write_shard(tmp_path / "train.bin", TOKENS[:4000], vocab_size=V)
    write_shard(tmp_path / "val.bin", TOKENS[4000:], vocab_size=V)
    history = Trainer(tiny_gpt(), train_cfg(max_steps=2), str(tmp_path)).fit()
    assert len(history) == 2 and "val_loss" in history[-1]
    with pytest.raises(FileNotFoundError):
        Trainer(tiny_gpt(), train_cfg(), str(tmp_path / "missing"))


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    cfg = dict(max_steps=20, log_interval=1, eval_interval=5, checkpoint_interval=10)
    # Dropout on, so the restored torch RNG state matters too.
    full = Trainer(tiny_gpt(dropout=0.1), train_cfg(**cfg), TOKENS).fit()

    run = str(tmp_path / "run")
    first = Trainer(tiny_gpt(dropout=0.1), train_cfg(**cfg, out_dir=run), TOKENS)
    first.fit(stop_at=10)
    assert [p.name for p in list_checkpoints(run)] == ["step_00000010"]
    # A new process would build a fresh model (different init seed here) and resume from the checkpoint.
    resumed = Trainer(tiny_gpt(seed=123, dropout=0.1), train_cfg(**cfg, out_dir=run, resume=True), TOKENS)
    assert resumed.step == 10
    history = resumed.fit()
    assert [r["loss"] for r in history] == [r["loss"] for r in full]
    assert [r.get("val_loss") for r in history] == [r.get("val_loss") for r in full]
    assert [r["step"] for r in read_history(run)] == list(range(1, 21))


def test_resume_after_a_crash_between_checkpoints(tmp_path):
    cfg = dict(max_steps=8, checkpoint_interval=4)
    full = Trainer(tiny_gpt(), train_cfg(**cfg), TOKENS).fit()

    def crash(trainer, row):
        if row["step"] == 6:
            raise KeyboardInterrupt

    run = str(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_gpt(), train_cfg(**cfg, out_dir=run), TOKENS, hooks={"on_step": crash}).fit()
    assert latest_checkpoint(run).name == "step_00000004"
    history = Trainer(tiny_gpt(), train_cfg(**cfg, out_dir=run, resume=True), TOKENS).fit()
    assert [r["loss"] for r in history] == [r["loss"] for r in full]
    assert [r["step"] for r in read_history(run)] == list(range(1, 9))  # rows 5, 6 of the crash not doubled


def test_out_dir_guards(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(tiny_gpt(), train_cfg(out_dir=str(tmp_path), resume=True), TOKENS)
    Trainer(tiny_gpt(), train_cfg(max_steps=1, out_dir=str(tmp_path)), TOKENS).fit()
    with pytest.raises(ValueError, match="already holds checkpoints.*resume=True"):
        Trainer(tiny_gpt(), train_cfg(out_dir=str(tmp_path)), TOKENS)


def test_bad_arguments():
    with pytest.raises(ValueError, match="TrainConfig"):
        Trainer(tiny_gpt(), {"lr": 1e-3}, TOKENS)
    with pytest.raises(ValueError, match="data must be"):
        Trainer(tiny_gpt(), train_cfg(), {"train": TOKENS})
    with pytest.raises(ValueError, match="stop_at"):
        Trainer(tiny_gpt(), train_cfg(), TOKENS).fit(stop_at=11)
    with pytest.raises(ValueError, match="validation split has 10 tokens"):
        Trainer(tiny_gpt(), train_cfg(), DataSplits(TOKENS, TOKENS[:10]))


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision_trains_and_reports_mfu(precision):
    cfg = train_cfg(max_steps=30, log_interval=10, device="cuda", precision=precision, optimizer="torch_adamw")
    history = Trainer(tiny_gpt(), cfg, TOKENS).fit()
    assert history[-1]["loss"] < history[0]["loss"]
    assert "mfu" in history[-1]


def test_tf32_is_left_alone_on_cpu():
    matmul = torch.backends.cuda.matmul  # process-wide: a CPU run must not flip it (nor the CPU's oneDNN setting)
    before = matmul.allow_tf32
    try:
        matmul.allow_tf32 = False
        Trainer(tiny_gpt(), train_cfg(max_steps=1, tf32=True), TOKENS).fit()
        assert matmul.allow_tf32 is False and torch.backends.mkldnn.matmul.fp32_precision != "tf32"
    finally:
        matmul.allow_tf32 = before


def test_trainer_asks_for_tf32_as_configured(monkeypatch):
    import minillm.train.trainer as trainer_module

    calls = []
    monkeypatch.setattr(trainer_module, "set_tf32", lambda device, enabled: calls.append((device.type, enabled)))
    Trainer(tiny_gpt(), train_cfg(), TOKENS)
    Trainer(tiny_gpt(), train_cfg(tf32=False), TOKENS)
    assert calls == [("cpu", True), ("cpu", False)]  # set_tf32 itself ignores non-CUDA devices (test_config.py)


def test_a_padded_vocabulary_trains_like_the_plain_one():
    # pad_vocab_multiple=64 (the gpu profile's) with the same real weights: the same losses, step for step
    plain = tiny_gpt()
    padded = tiny_gpt(pad_vocab_multiple=64)
    with torch.no_grad():
        for name, p in padded.state_dict().items():
            src = plain.state_dict()[name]
            (p[:V] if p.shape != src.shape else p).copy_(src)
    cfg = train_cfg(max_steps=6, optimizer="torch_adamw")
    a, b = Trainer(plain, cfg, TOKENS).fit(), Trainer(padded, cfg, TOKENS).fit()
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=1e-5)
    assert not padded.tok_emb.weight[V:].any()  # padding rows: no gradient, so weight decay keeps them at 0


@pytest.mark.gpu
def test_cuda_turns_tf32_on_and_off_as_configured():
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    try:
        Trainer(tiny_gpt(), train_cfg(device="cuda"), TOKENS)
        assert matmul.allow_tf32 is True
        Trainer(tiny_gpt(), train_cfg(device="cuda", tf32=False), TOKENS)
        assert matmul.allow_tf32 is False
    finally:
        matmul.allow_tf32 = before


@pytest.mark.gpu
def test_gpu_profile_defaults_train_on_cuda():
    # The gpu profile's speedups together, as `MINILLM_SIZE=gpu` runs them: fused torch AdamW, torch.compile,
    # the vocabulary padded to 64 (V=50 -> 64 rows), TF32 and bf16 autocast; a short run must learn.
    from minillm import presets

    model = GPT(presets.model_preset("tiny", size="gpu", vocab_size=V, block_size=16))
    cfg = presets.train_preset("gpu", batch_size=8, max_steps=30, warmup_steps=2, eval_interval=0, eval_batches=2,
                               log_interval=10, progress=False, device="cuda", lr=3e-3)
    trainer = Trainer(model, cfg, TOKENS)
    assert trainer.optimizer.defaults.get("fused") is True and model.tok_emb.weight.shape[0] == 64
    history = trainer.fit()
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    assert math.isfinite(history[-1]["val_loss"])
