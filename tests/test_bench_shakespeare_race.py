"""bench/shakespeare_race.py (issue #24 goal 1): the ci smoke run writes one well-formed record to the --out it is
given (never to bench/results), the recipes are nanoGPT's configs and ours, and the time-budgeted schedule plans
its step count from the measured step time (a fake clock makes that exact here) so the lr decay ends at the
budget, re-planning when the machine slows down without ever dropping the lr in a jump."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "shakespeare_race.jsonl"


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: tiny models gain nothing from more, and lose a lot on a busy machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def race(monkeypatch):
    spec = importlib.util.spec_from_file_location("shakespeare_race", ROOT / "bench" / "shakespeare_race.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "shakespeare_race", mod)
    spec.loader.exec_module(mod)
    return mod


def test_race_ci_smoke_writes_one_record_to_out(tmp_path):
    before = RESULTS.stat().st_mtime_ns if RESULTS.exists() else None
    out = tmp_path / "race.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINILLM_SIZE": "ci"}
    proc = subprocess.run([sys.executable, "bench/shakespeare_race.py", "--size", "ci", "--threads", "1", "--out",
                           str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (RESULTS.stat().st_mtime_ns if RESULTS.exists() else None) == before  # bench/results untouched
    assert rec["bench"] == "shakespeare_race" and rec["size"] == "ci" and rec["threads"] == 1
    assert "shakespeare_race.py --size ci" in rec["provenance"]["command"] and rec["provenance"]["date"]
    assert rec["data"]["vocab_size"] == 65 and rec["data"]["val_tokens"] == 111_540  # nanoGPT's 90/10 split
    b, o = rec["recipes"]["nanogpt"], rec["recipes"]["ours"]
    assert b["steps"] == 30 and b["tokens"] == 30 * 8 * 32 and o["tokens"] == o["steps"] * 8 * 32
    assert b["config"]["model"]["position"] == "learned" and o["config"]["model"]["position"] == "rope"
    assert rec["time_ratio"] == pytest.approx(o["seconds"] / b["seconds"], rel=1e-3)
    assert rec["goal"] == 1.60 and rec["goal_met"] is False  # 30 steps of a tiny model: nowhere near
    assert o["budget_s"] == pytest.approx(b["seconds"], abs=1e-3) and o["plans"][-1][2] == o["steps"]
    for r in (b, o):
        steps = [c[1] for c in r["curve"]]
        secs = [c[0] for c in r["curve"]]
        assert steps == sorted(steps) and steps[-1] == r["steps"] and secs == sorted(secs)
        assert secs[-1] == pytest.approx(r["seconds"], abs=0.05)  # the clock leaves the val points out
        assert 1 <= len(r["val_curve"]) <= 2 and 1.0 < r["val_loss"] < 4.5  # ln 65 = 4.17 at the start
    assert "val_loss_short" not in o  # same context as the baseline at ci
    assert "nanogpt: val" in proc.stdout and "time ratio" in proc.stdout


def test_race_recipes_are_nanogpts_configs_and_ours(race):
    base, ours = race.recipes("laptop", 65)
    m, t = base.model, base.train
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout, m.bias) == (4, 4, 128, 64, 0.0, False)
    assert (m.norm, m.activation, m.position, m.tie_embeddings) == ("layernorm", "gelu", "learned", True)
    assert (t.batch_size, t.max_steps, t.lr, t.min_lr, t.warmup_steps, t.beta2, t.schedule) == (
        12, 2000, 1e-3, 1e-4, 100, 0.99, "cosine")
    assert (t.weight_decay, t.grad_clip, base.budgeted) == (0.1, 1.0, False)
    assert ours.budgeted and ours.probe < ours.train.warmup_steps
    gb, go = race.recipes("gpu", 65)  # unmeasured here: the configs must at least validate
    assert (gb.model.n_layer, gb.model.n_embd, gb.model.block_size, gb.model.dropout) == (6, 384, 256, 0.2)
    assert (gb.train.batch_size, gb.train.max_steps, gb.train.device) == (64, 5000, "cuda")
    assert go.model.kernels == "triton" and go.train.precision == "bf16" and go.budgeted
    with pytest.raises(ValueError, match="size='tiny' is not valid"):
        race.recipes("tiny", 65)
    with pytest.raises(ValueError, match="probe=100 must be below warmup_steps=50"):
        race.Recipe("x", ours.model, ours.train, budgeted=True, probe=100)


class _FakeClock:
    """perf_counter for the Trainer and the bench: advances only when a training step runs."""

    def __init__(self):
        self.t = 0.0

    def perf_counter(self) -> float:
        return self.t


@pytest.mark.parametrize("slow_from", [None, 40])
def test_race_budget_is_met_and_the_decay_ends_there(race, monkeypatch, slow_from):
    import minillm.train.trainer as trainer_mod

    clock = _FakeClock()
    monkeypatch.setattr(trainer_mod, "time", clock)
    monkeypatch.setattr(race, "time", clock)
    lrs = []
    step_fn = trainer_mod.Trainer._train_step

    def timed_step(self):  # 10 ms a step, 20 ms from step `slow_from` on (the machine got busy)
        step_fn(self)
        lrs.append(self._last_lr)
        clock.t += 0.02 if slow_from is not None and self.step > slow_from else 0.01

    monkeypatch.setattr(trainer_mod.Trainer, "_train_step", timed_step)
    settings = race.race_settings("ci")
    tok, train, val = race.load_shakespeare(settings.train_chars)
    _, ours = race.recipes("ci", tok.vocab_size)
    r = race.train_recipe(ours, train, val, settings, budget_s=1.005)  # 100.5 steps of 10 ms
    if slow_from is None:  # the probe's rate holds: exactly the budget
        assert r["steps"] == 100 and r["seconds"] == pytest.approx(1.0)
        assert [p[2] for p in r["plans"]] == [100] * len(r["plans"])
    else:  # re-planned down while the lr was flat; the last chunk before the decay is not re-planned
        assert r["plans"][0][2] == 100 and r["plans"][-1][2] < 100
        assert r["seconds"] == pytest.approx(1.0, abs=0.05)
    cfg = ours.train
    assert len(lrs) == r["steps"] and lrs[cfg.warmup_steps - 1] == pytest.approx(cfg.lr)
    after = lrs[cfg.warmup_steps - 1:]
    assert all(a >= b for a, b in zip(after, after[1:]))  # flat, then down: never up, never a jump back
    assert max(a - b for a, b in zip(after, after[1:])) < cfg.lr / 10  # a decay, not a drop
    assert lrs[-1] == pytest.approx(cfg.min_lr)  # the decay ends at the last step
    # val points at half the budget's seconds and at the end, whatever the steps turned out to be
    assert [round(c[0], 1) for c in r["val_curve"]] == [0.5, 1.0] and r["val_curve"][-1][1] == r["steps"]


def test_race_gpu_recipes_run_on_cpu_when_shrunk(race):
    """The gpu profile cannot be measured here; its recipes (nanoGPT's with dropout, ours with Triton kernels
    through the interpreter) train a few steps when shrunk to a toy size on the CPU, budgeted planning included."""
    pytest.importorskip("triton", reason="ours at gpu size fuses its ops with Triton kernels")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs TRITON_INTERPRET=1 (tests/conftest.py sets it when there is no GPU)")
    settings = race.RaceSettings(eval_windows=2, val_points=1, val_point_windows=2, train_chars=20_000)
    tok, train, val = race.load_shakespeare(settings.train_chars)
    shrink = dict(n_layer=1, n_head=2, n_kv_head=2, n_embd=32, block_size=16)
    cpu = dict(batch_size=2, max_steps=4, warmup_steps=3, device="cpu", precision="fp32", compile=False)
    base, ours = race.recipes("gpu", tok.vocab_size)
    base = race.Recipe(base.name, base.model.replace(**shrink), base.train.replace(**cpu))
    ours = race.Recipe(ours.name, ours.model.replace(**shrink), ours.train.replace(**cpu), budgeted=True, probe=2,
                       replan=1)
    b = race.train_recipe(base, train, val, settings)
    o = race.train_recipe(ours, train, val, settings, budget_s=b["seconds"], short_context=8)
    assert b["steps"] == 4 and o["steps"] >= 2 and o["config"]["model"]["kernels"] == "triton"
    assert o["config"]["model"]["dropout"] > 0 and b["config"]["model"]["dropout"] == 0.2
    assert 3.0 < b["val_loss"] < 5.0 and 3.0 < o["val_loss"] < 5.0 and 3.0 < o["val_loss_short"] < 5.0
