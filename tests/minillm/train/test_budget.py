"""fit_for_seconds: a Trainer spends its wall-clock budget, and its schedule ends where the budget does.

A fake clock makes every training step cost exactly 10 ms (20 ms once the "machine gets busy"), so the plans are
exact and the tests are independent of this machine's speed.
"""
import numpy as np
import pytest
import torch

import minillm.train.trainer as trainer_mod
from minillm import GPT, ModelConfig, TrainConfig, Trainer
from minillm.data.loader import DataSplits
from minillm.train.budget import decay_start, fit_for_seconds, plan_steps


class _Clock:
    def __init__(self):
        self.t = 0.0

    def perf_counter(self) -> float:
        return self.t


@pytest.fixture
def timed(monkeypatch):
    """Make Trainer steps cost 10 ms of a fake clock (20 ms after step `slow_from`); record each step's lr."""
    clock, lrs, state = _Clock(), [], {"slow_from": None}
    monkeypatch.setattr(trainer_mod, "time", clock)
    step_fn = trainer_mod.Trainer._train_step

    def timed_step(self):
        step_fn(self)
        lrs.append(self._last_lr)
        slow = state["slow_from"] is not None and self.step > state["slow_from"]
        clock.t += 0.02 if slow else 0.01

    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", timed_step)
    return lrs, state


def _trainer(**train) -> Trainer:
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=16))
    data = DataSplits(np.random.default_rng(0).integers(0, 16, 4000).astype(np.uint16), None)
    cfg = TrainConfig(**{**dict(batch_size=2, max_steps=10**6, lr=1e-2, min_lr=1e-3, warmup_steps=20,
                                eval_interval=0, device="cpu", progress=False), **train})
    with pytest.warns(UserWarning, match="no validation split"):
        return Trainer(model, cfg, data)


def test_plan_arithmetic():
    assert plan_steps(10, 2.0, 0.1, 5.0) == 40  # 10 done + 3 s left / 0.1 s
    assert plan_steps(10, 6.0, 0.1, 5.0) == 11  # over budget already: one more step, the schedule's end
    assert decay_start(100, 0.2) == 80 and decay_start(101, 0.2) == 80  # ceil: the decay gets the odd step


@pytest.mark.parametrize("slow_from", [None, 40])
def test_wsd_budget_met_and_decay_ends_there(timed, slow_from):
    lrs, state = timed
    state["slow_from"] = slow_from
    tr = _trainer(schedule="wsd", decay_frac=0.2)
    plans = fit_for_seconds(tr, 1.005, probe=10, replan=10)  # 100.5 steps of 10 ms
    if slow_from is None:
        assert tr.step == 100 and tr.elapsed_s == pytest.approx(1.0) and {p[2] for p in plans} == {100}
    else:  # re-planned down while the lr was flat
        assert plans[0][2] == 100 and plans[-1][2] < 100 and tr.elapsed_s == pytest.approx(1.0, abs=0.05)
    assert len(plans) > 1 and tr.cfg.max_steps == tr.step == len(lrs)
    after = lrs[19:]
    assert all(a >= b for a, b in zip(after, after[1:]))  # flat, then down: never up
    assert lrs[-1] == pytest.approx(1e-3)  # the decay ends at the last step


def test_cosine_is_planned_once_after_the_probe(timed):
    lrs, _ = timed
    tr = _trainer(schedule="cosine")
    plans = fit_for_seconds(tr, 0.605, probe=10, replan=5)
    assert plans == [[10, pytest.approx(0.1), 60]] and tr.step == 60  # 10 + 0.505 s left / 10 ms
    assert lrs[-1] == pytest.approx(1e-3, rel=0.01)


def test_constant_is_replanned_to_the_end(timed):
    _, state = timed
    state["slow_from"] = 30
    tr = _trainer(schedule="constant", warmup_steps=0)
    plans = fit_for_seconds(tr, 1.005, probe=10, replan=10)
    assert plans[0][2] == 100 and plans[-1][2] < 70 and tr.elapsed_s == pytest.approx(1.0, abs=0.03)


def test_bad_arguments_are_refused():
    tr = _trainer(schedule="cosine", warmup_steps=5)
    with pytest.raises(ValueError, match="must be below warmup_steps=5"):
        fit_for_seconds(tr, 1.0, probe=10)
    with pytest.raises(ValueError, match="positive number of seconds"):
        fit_for_seconds(tr, float("nan"), probe=3)
    with pytest.raises(ValueError, match="probe=1 must be >= 2"):
        fit_for_seconds(tr, 1.0, probe=1)
    tr.fit(stop_at=1)
    with pytest.raises(ValueError, match="fresh Trainer"):
        fit_for_seconds(tr, 1.0, probe=3)
