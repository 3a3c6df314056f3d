"""Capstone section 2: the IsoFLOP sweep's plan and runs, the allocation fit, the prediction, the figure."""
import math
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch

from book.ch09_capstone.plots_pretrain import plot_isoflop
from book.ch09_capstone.studies_pretrain import pretrain_config
from book.ch09_capstone.studies_sizing import (SizingConfig, allocation, isoflop_sweep, pick_shape, plan_runs,
                                               prediction_vs_result, sizing_config)

matplotlib.use("Agg")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The test machine is shared: two threads per process on two busy cores spin and run ~10x slower than one.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _row(budget, n, loss):
    """A sweep row for a run of N parameters spending `budget` FLOPs as C = 6ND."""
    d = budget / (6 * n)
    return {"budget": budget, "n_layer": 1, "n_embd": 8, "n_head": 1, "n_params": n, "n_params_total": n,
            "flops_per_token": 6 * n, "steps": 1, "tokens": d, "flops": budget, "heldout_loss": loss,
            "seconds": 0.0}


def _valleys(budgets=(1e10, 1e11, 1e12)):
    """Exact parabolas in log N: optimum N* = 0.1 C^0.5, floor L* = 10 C^-0.05, curvature 0.3."""
    rows = []
    for c in budgets:
        n_star, l_star = 0.1 * c ** 0.5, 10 * c ** -0.05
        for dx in (-1.0, -0.4, 0.3, 1.1):
            rows.append(_row(c, n_star * math.exp(dx), l_star + 0.3 * dx * dx))
    return rows


def test_allocation_recovers_a_known_law():
    a = allocation(_valleys(), 1e13)
    assert a.method == "parabola" and a.note == ""
    assert a.a == pytest.approx(0.5, abs=1e-6) and a.b == pytest.approx(0.5, abs=1e-6)
    assert a.n_opt == pytest.approx(0.1 * 1e13 ** 0.5, rel=1e-5)
    assert a.d_opt == pytest.approx(1e13 / (6 * 0.1 * 1e13 ** 0.5), rel=1e-5)  # C = 6 N D at the optimum
    assert a.gamma == pytest.approx(0.05, rel=1e-6)
    assert a.l_opt == pytest.approx(10 * 1e13 ** -0.05, rel=1e-6)
    assert a.extrapolation == pytest.approx(10.0)
    assert [m["l_opt"] for m in a.minima] == pytest.approx([10 * c ** -0.05 for c in (1e10, 1e11, 1e12)])


def test_a_budget_without_a_valley_is_left_out_and_named():
    rows = _valleys()
    rows += [_row(1e9, n, 7.0 - 1e-3 * math.log(n)) for n in (100, 200, 400)]  # the loss falls to the largest N
    a = allocation(rows, 1e13)
    assert a.method == "parabola" and "1e+09" in a.note
    assert a.n_opt == pytest.approx(0.1 * 1e13 ** 0.5, rel=1e-5)  # the same fit as without that budget
    assert a.l_opt == pytest.approx(10 * 1e13 ** -0.05, rel=1e-6)
    first = a.minima[0]
    assert first == {"budget": 1e9, "n_opt": 400.0, "d_opt": 1e9 / 2400, "l_opt": rows[-1]["heldout_loss"],
                     "bracketed": False}
    assert all(m["bracketed"] for m in a.minima[1:])


def test_allocation_says_when_a_valley_is_not_bracketed():
    rows = [_row(c, n, 5 - 0.1 * math.log10(c) + 1e-6 * n) for c in (1e9, 1e10) for n in (10, 20, 40)]
    a = allocation(rows, 1e11)
    assert a.method == "lowest run" and "0 of 2 budgets" in a.note
    assert [m["n_opt"] for m in a.minima] == [10, 10]  # the lowest loss of each budget is the smallest model
    assert a.a == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="isoflop_sweep"):
        allocation([], 1e11)
    with pytest.raises(ValueError, match="budget"):
        allocation(rows, -1.0)


def test_prediction_vs_result_uses_the_runs_own_flops():
    rows = _valleys()
    res = SimpleNamespace(flops=3e12, heldout_loss=2.5, n_params_total=200_000, tokens=10**6)
    out = prediction_vs_result(rows, res)
    predicted = 10 * 3e12 ** -0.05
    assert out["predicted_loss"] == pytest.approx(predicted, rel=1e-6)
    assert out["error"] == pytest.approx(2.5 - predicted, rel=1e-6)
    assert out["extrapolation"] == pytest.approx(3.0)


def test_pick_shape_is_nearest_in_log():
    shapes = sizing_config("ci").shapes
    cfg = pretrain_config("ci")
    with torch.device("meta"):
        from minillm import GPT
        totals = [GPT(cfg.model_config("modern", s)).num_params(non_embedding=False) for s in shapes]
    for i, s in enumerate(shapes):
        assert pick_shape(SimpleNamespace(n_opt=totals[i] * 1.1), shapes, "ci") == s


def test_plan_spends_each_budget():
    cfg = pretrain_config("ci")
    runs = plan_runs("ci")
    for r in runs:
        assert r["steps"] == round(r["budget"] / (r["flops_per_token"] * cfg.tokens_per_step))
        assert 8 <= r["steps"] <= 90
    budgets = sorted({r["budget"] for r in runs})
    assert budgets == [3e9, 6e9] and all(sum(r["budget"] == b for r in runs) >= 3 for b in budgets)
    with pytest.raises(ValueError, match="fewer than 3 shapes"):
        plan_runs("ci", SizingConfig(shapes=((1, 16, 1), (1, 24, 1)), budgets=(3e9, 6e9), min_steps=1,
                                     max_steps=1000))
    with pytest.raises(ValueError, match="budgets"):
        SizingConfig(shapes=((1, 16, 1),), budgets=(3e9,), min_steps=1, max_steps=10)
    with pytest.raises(ValueError, match="shapes"):
        SizingConfig(shapes=((1, 30, 4),), budgets=(3e9, 6e9), min_steps=1, max_steps=10)
    for size in ("laptop", "gpu"):
        assert len(plan_runs(size)) >= 3 * len(sizing_config(size).budgets)


def test_sweep_at_ci_trains_every_planned_run():
    rows = isoflop_sweep("ci")
    plan = plan_runs("ci")
    assert [(r["budget"], (r["n_layer"], r["n_embd"], r["n_head"])) for r in rows] == \
        [(p["budget"], p["shape"]) for p in plan]
    for r in rows:
        assert r["flops"] == r["flops_per_token"] * r["tokens"]
        assert abs(r["flops"] - r["budget"]) / r["budget"] < 0.1  # whole steps: within rounding
        assert 0 < r["heldout_loss"] < math.log(512)
    smallest = [r["heldout_loss"] for r in rows if (r["n_layer"], r["n_embd"]) == (1, 16)]
    assert smallest == sorted(smallest, reverse=True)  # more compute, lower loss
    alloc = allocation(rows, pretrain_config("ci").flops_budget)
    assert alloc.extrapolation == pytest.approx(1e10 / 6e9) and np.isfinite(alloc.l_opt)
    fig = plot_isoflop(rows, alloc, SimpleNamespace(n_params_total=40_000, heldout_loss=4.5))
    ax = fig.axes[0]
    assert len(ax.lines) == 2 + 2 + 2  # two valleys, two optima, the prediction and the result
    assert alloc.method in ("parabola", "lowest run") and len(alloc.minima) == 2
    assert ax.get_xscale() == "log"
