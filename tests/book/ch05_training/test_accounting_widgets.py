"""Training accounting: compute against published runs, memory and communication per GPU by hand, the widgets. (chapter code)."""
import dataclasses

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # headless: tests must never open a window
from book.ch05_training.plots_accounting import ComputeExplorer, ParallelExplorer, underflow_demo
from minillm.accounting import ParallelPlan, plan_comm, plan_memory, training_compute


def seven_b(**kw) -> ParallelPlan:
    """A LLaMA-7B-shaped plan: 32 layers, h = 4096, 32 heads, 2048 tokens, one sequence per micro-batch."""
    base = dict(n_params=7_000_000_000, n_layer=32, hidden=4096, n_head=32, seq_len=2048, micro_batch=1,
                n_gpus=8, dp=8)
    return ParallelPlan(**{**base, **kw})


def test_compute_explorer_update_returns_training_compute():
    w = ComputeExplorer()
    res = w.update(log10_params=10.0, log10_tokens=12.0, gpu="H100", n_gpus=64, mfu=0.5)
    assert res == training_compute(1e10, 1e12, "H100", 64, 0.5) == w.result
    assert w.figure is not None and "days" in w.summary.value
    before = {k: c.value for k, c in w.controls.items()}
    for bad, match in ((dict(n_gpus=100), "one of"), (dict(mfu=0.0), "range"), (dict(gpu="TPU"), "one of"),
                       (dict(log10_params=20), "range"), (dict(dropout=0.1), "unknown control")):
        with pytest.raises(ValueError, match=match):
            w.update(**bad)
    assert {k: c.value for k, c in w.controls.items()} == before


def test_parallel_explorer_update_equals_plan_functions():
    w = ParallelExplorer()
    res = w.update(zero_stage=3, dp=4, tp=2, n_micro=4)
    plan = seven_b(zero_stage=3, dp=4, tp=2, n_micro=4)
    assert w.plan() == plan
    assert res["memory"] == plan_memory(plan) and res["comm"] == plan_comm(plan) == w.result["comm"]
    assert res["bubble_fraction"] == 0 and w.figure is not None and "per GPU" in w.summary.value
    res = w.update(activation_checkpointing=True, pp=4, dp=1)
    assert res["memory"] == plan_memory(dataclasses.replace(plan, activation_checkpointing=True, pp=4, dp=1))
    assert res["bubble_fraction"] == 3 / 7
    w.update(zero_stage=0, dp=1, tp=1, pp=1)
    assert "does <b>not</b> fit" in w.summary.value  # 112 GB of model state on one 80 GiB A100


def test_parallel_explorer_bad_inputs_raise_before_anything_moves():
    w = ParallelExplorer()
    before = w.plan()
    for bad, match in ((dict(tp=3), "one of"), (dict(tp=64), "tp=64 must divide n_head"),
                       (dict(zero_stage=5), "one of"), (dict(precision="int8"), "one of"),
                       (dict(activation_checkpointing=1), "one of"), (dict(n_gpus=8), "unknown control")):
        with pytest.raises(ValueError, match=match):
            w.update(**bad)
    assert w.plan() == before
    w.controls["pp"].value = 64  # a reader picks it: the summary explains instead of raising
    assert "must divide n_layer" in w.summary.value


def test_loss_scaling_rescues_underflowing_gradients():
    res = underflow_demo()
    exps = torch.linspace(-10, -2, 81, dtype=torch.float64)
    below = int((10**exps < 2.0**-25).sum())  # half the smallest fp16 subnormal rounds to 0
    assert (res["n"], res["zero_without"], res["zero_with"], res["inf_with"]) == (81, below, 0, 0)
    assert below == 25  # 1e-10 .. 10^-7.6
    huge = underflow_demo(scale=2.0**30)  # too large a scale: the biggest gradients overflow instead
    assert huge["zero_with"] == 0 and huge["inf_with"] > 0
    with pytest.raises(ValueError, match="scale"):
        underflow_demo(scale=0)
