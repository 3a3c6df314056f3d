"""Tests of book.ch05_training.studies, studies_stability and study_plots (chapter 05 optimization/stability studies)."""
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from book.runs import ArchRun  # noqa: E402
from book.ch05_training.studies import (batch_size_study, estimate_noise_scale, gradient_noise_scale, lr_sweep, noise_scale_from_norms, schedule_study, warmup_study)
from book.ch05_training.studies_stability import clipping_study, loss_spike_study, weight_decay_study  # noqa: E402
from book.ch05_training.plots import plot_lr_sweep, plot_noise_scale, plot_schedules, plot_spike  # noqa: E402

TINY = ArchRun(n_layer=1, n_embd=16, n_head=2, block_size=16, batch_size=4, steps=8, warmup=1, eval_windows=4,
               n_docs=60)
CI = ArchRun.for_size("ci")  # 60 steps, ~0.2 s a run


def _json_ok(rows):
    json.dumps(rows, allow_nan=False)  # raises on NaN/inf: rows must be strict JSON


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------------------ lr sweep


@pytest.fixture(scope="module")
def sweep():
    return lr_sweep((1e-4, 3e-3, 30.0), CI)


def test_lr_sweep_marks_absurd_lr_diverged_and_sane_one_not(sweep):
    _json_ok(sweep)
    by_lr = {r["lr"]: r for r in sweep}
    assert by_lr[30.0]["diverged"] and by_lr[30.0]["verdict"] == "too high", by_lr[30.0]
    sane = by_lr[3e-3]
    assert not sane["diverged"] and sane["verdict"] == "right", sane
    assert sane["val_loss"] < sane["initial_loss"] - 0.5, sane  # it learned
    assert by_lr[1e-4]["verdict"] == "too low" and by_lr[1e-4]["val_loss"] > sane["val_loss"]
    assert len(sane["losses"]) == CI.steps
    assert isinstance(plot_lr_sweep(sweep), plt.Figure)


@pytest.mark.parametrize("kwargs", [dict(lrs=()), dict(lrs=(0.0,)), dict(lrs=(1e-3, 1e-3)), dict(tol=-1.0)])
def test_lr_sweep_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        lr_sweep(run=TINY, **kwargs)


def test_lr_sweep_rejects_a_non_run():
    with pytest.raises(TypeError, match="ArchRun"):
        lr_sweep((1e-3,), run="ci")


# ------------------------------------------------------------------------------------------ warmup, schedule


def test_warmup_and_schedule_rows_and_lr_curves():
    warm = warmup_study((0, 4), TINY, n_evals=4)
    sched = schedule_study(("cosine", "wsd", "constant"), TINY, n_evals=4)
    _json_ok(warm)
    _json_ok(sched)
    assert [r["warmup"] for r in warm] == [0, 4] and [r["schedule"] for r in sched] == ["cosine", "wsd", "constant"]
    for r in warm + sched:
        assert len(r["lrs"]) == len(r["losses"]) == TINY.steps
        assert r["val_steps"] == [2, 4, 6, 8] and len(r["val_losses"]) == 4
        assert all(v is not None for v in r["val_losses"])  # finite (None = NaN/inf)
    assert warm[1]["lrs"][:4] == pytest.approx([TINY.lr * s / 4 for s in (1, 2, 3, 4)])  # linear warmup
    cos, wsd, const = (r["lrs"] for r in sched)
    assert cos[-1] == pytest.approx(TINY.lr / 10) and wsd[-1] == pytest.approx(TINY.lr / 10)
    assert const[-1] == pytest.approx(TINY.lr) and wsd[3] == pytest.approx(TINY.lr)  # wsd: stable phase
    assert isinstance(plot_schedules(sched), plt.Figure) and isinstance(plot_schedules(warm), plt.Figure)
    with pytest.raises(ValueError, match="schedules"):
        schedule_study(("cosine", "nope"), TINY)
    with pytest.raises(ValueError, match="warmups"):
        warmup_study((TINY.steps + 1,), TINY)


# ------------------------------------------------------------------------------------------ noise scale


def test_noise_scale_from_norms_solves_the_two_equations():
    # E|G_B|^2 = |G|^2 + tr(S)/B with |G|^2 = 2, tr(S) = 12: B=4 -> 5, B=12 -> 3
    est = noise_scale_from_norms(5.0, 3.0, 4, 12)
    assert est["grad_sq"] == pytest.approx(2.0) and est["trace_sigma"] == pytest.approx(12.0)
    assert est["b_simple"] == pytest.approx(6.0)
    assert noise_scale_from_norms(3.0, 3.5, 4, 12)["b_simple"] is None  # noise-dominated: unresolved
    with pytest.raises(ValueError, match="b_small < b_big"):
        noise_scale_from_norms(1.0, 1.0, 8, 8)


def test_noise_scale_estimator_matches_linear_regression_analytics():
    """Loss ½(x·w − y)², x ~ N(0, I_d), y = x·w* + ε, ε ~ N(0, σ²). With Δ = w − w*, a per-example gradient is
    g = x xᵀΔ − xε, so G = E g = Δ and Σ = Cov g = ΔΔᵀ + (|Δ|² + σ²) I (Gaussian fourth moments), giving
    tr(Σ) = (d+1)|Δ|² + dσ² and B_simple = tr(Σ)/|Δ|²."""
    d, sigma = 8, 1.0
    gen = torch.Generator().manual_seed(0)
    w_star = torch.randn(d, generator=gen, dtype=torch.float64)
    w = (w_star + torch.randn(d, generator=gen, dtype=torch.float64)).requires_grad_(True)
    delta2 = float((w.detach() - w_star).pow(2).sum())
    trace_true = (d + 1) * delta2 + d * sigma ** 2

    def grad_sq_norm(b):
        x = torch.randn(b, d, generator=gen, dtype=torch.float64)  # (b, d)
        y = x @ w_star + sigma * torch.randn(b, generator=gen, dtype=torch.float64)  # (b,)
        loss = 0.5 * (x @ w - y).pow(2).mean()
        (g,) = torch.autograd.grad(loss, w)
        return float(g.pow(2).sum())

    est = estimate_noise_scale(grad_sq_norm, 4, 64, draws=3000)
    b_true = trace_true / delta2
    for key, true in (("grad_sq", delta2), ("trace_sigma", trace_true), ("b_simple", b_true)):
        assert abs(est[key] / true - 1) < 0.2, f"{key}: estimated {est[key]:.4g} vs analytic {true:.4g}"


def test_gradient_noise_scale_and_batch_size_rows():
    rows = gradient_noise_scale(TINY, (2, 8), at_steps=(0, 8), draws=2)
    _json_ok(rows)
    assert [r["step"] for r in rows] == [0, 8] and rows[0]["loss"] is None and rows[1]["loss"] is not None
    for r in rows:
        assert {"grad_sq", "trace_sigma", "b_simple", "b_simple_tokens", "g2_small", "g2_big"} <= set(r)
        if r["b_simple"] is not None:
            assert r["b_simple_tokens"] == pytest.approx(r["b_simple"] * TINY.block_size)
    bs = batch_size_study((2, 4, 8), TINY)
    _json_ok(bs)
    assert [r["steps"] for r in bs] == [16, 8, 4] and {r["tokens"] for r in bs} == {TINY.tokens}
    assert all(r["val_loss"] is not None for r in bs)
    assert isinstance(plot_noise_scale(rows, bs), plt.Figure) and isinstance(plot_noise_scale(rows), plt.Figure)
    with pytest.raises(ValueError, match="batch_sizes"):
        gradient_noise_scale(TINY, (8, 4))
    with pytest.raises(ValueError, match="at_steps"):
        gradient_noise_scale(TINY, at_steps=(TINY.steps + 1,))


# ------------------------------------------------------------------------------------------ stability


def test_weight_decay_and_clipping_rows():
    wd = weight_decay_study((0.0, 10.0), TINY)
    _json_ok(wd)
    assert [r["weight_decay"] for r in wd] == [0.0, 10.0]
    assert wd[1]["weight_norm"] < wd[0]["weight_norm"], wd  # decay shrinks the matrices
    clip = clipping_study((None, 0.01), TINY)
    _json_ok(clip)
    assert clip[0]["lr"] == pytest.approx(10 * TINY.lr) and clip[0]["clipped_frac"] is None
    for r in wd + clip:
        assert len(r["grad_norms"]) == len(r["losses"]) == TINY.steps
    norms = clip[1]["grad_norms"]
    assert clip[1]["clipped_frac"] == pytest.approx(sum(n > 0.01 for n in norms) / len(norms))
    with pytest.raises(ValueError, match="clips"):
        clipping_study((0.0,), TINY)


@pytest.fixture(scope="module")
def spike():
    return loss_spike_study(CI, spike_step=30)


def test_loss_spike_unprotected_spikes_and_skip_does_not(spike):
    _json_ok(spike)
    arms = {r["arm"]: r for r in spike}
    assert list(arms) == ["none", "skip", "rollback"]
    none, skip, roll = arms["none"], arms["skip"], arms["rollback"]
    assert none["spike_ratio"] is None or none["spike_ratio"] > 1.5, \
        f"no visible spike: max after {none['max_after']} vs before {none['loss_before']}"
    assert skip["spike_ratio"] < 1.5, f"skip arm spiked: {skip['max_after']} vs {skip['loss_before']}"
    assert skip["flagged_steps"] == [30] and skip["restored_to"] == [29], skip["flagged_steps"]
    assert roll["flagged_steps"] == [30] and roll["restored_to"] == [20] and roll["spike_ratio"] < 1.5
    assert none["flagged_steps"] == [] and skip["val_loss"] < none["val_loss"]
    # the three arms saw the same batches before the bad one
    assert none["losses"][:30] == skip["losses"][:30] == roll["losses"][:30]
    assert isinstance(plot_spike(spike), plt.Figure)


@pytest.mark.parametrize("kwargs, match", [
    (dict(spike_step=0), "spike_step"), (dict(spike_step=CI.steps), "spike_step"), (dict(k=1.0), "k="),
    (dict(scale=math.inf), "scale"), (dict(arms=("none", "nope")), "arms"), (dict(window=0), "window"),
])
def test_loss_spike_study_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        loss_spike_study(CI, **kwargs)


def test_plots_reject_empty_rows():
    with pytest.raises(ValueError, match="no rows"):
        plot_spike([])


def test_precision_study_fp32_vs_bf16():
    from book.runs import ArchRun
    from book.ch05_training.studies_stability import precision_study

    run = ArchRun.for_size("ci", steps=20)
    rows = precision_study(("fp32", "bf16"), run)
    assert [r["precision"] for r in rows] == ["fp32", "bf16"]
    fp32, bf16 = rows
    assert fp32["losses"] != bf16["losses"]  # bf16 autocast really ran: rounding differs
    assert abs(fp32["val_loss"] - bf16["val_loss"]) < 0.1  # and trains the same model to within rounding
    with pytest.raises(ValueError, match="precisions"):
        precision_study(("fp8",), run)


# ------------------------------------------------------------------------------------------ shipped records

# Recipe fields a shipped "run" may lack because the record predates the field, with the value every run had
# before the field existed: Run.model_fields came after the 2026-11-23 records, which trained with none.
PREDATES = {"model_fields": []}


def test_shipped_train_records_are_of_every_study_the_bench_script_runs_with_the_current_laptop_recipe():
    """bench/train_studies.py trains ArchRun.for_size("laptop") and stores it as each record's "run": a changed
    recipe or study table fails here until the records are made again (python bench/train_studies.py)."""
    import importlib.util
    import warnings
    from dataclasses import asdict
    from pathlib import Path

    from book import results

    script = Path(__file__).resolve().parents[3] / "bench" / "train_studies.py"
    spec = importlib.util.spec_from_file_location("train_studies", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    laptop = ArchRun.for_size("laptop")
    table = bench.studies(laptop)
    got = results.latest("train_studies.jsonl")
    missing = sorted(set(table) - set(got))
    assert not missing, f"no shipped record of {missing}: run python bench/train_studies.py --only ..."
    planned = json.loads(json.dumps(asdict(laptop)))  # tuples as the record's lists
    stale, older = {}, {}
    for name in table:
        recorded = got[name].get("run", {})
        for k in sorted(recorded.keys() | planned.keys()):
            if k not in recorded and k in PREDATES and planned[k] == PREDATES[k]:
                older.setdefault(name, []).append(k)
            elif recorded.get(k, "<absent>") != planned.get(k, "<absent>"):
                stale.setdefault(name, {})[k] = (recorded.get(k, "<absent>"), planned.get(k, "<absent>"))
    if older:
        warnings.warn(f"train_studies.jsonl records predate recipe fields (accepted: PREDATES says what ran before "
                      f"them): {older}")
    assert not stale, f"records made with another recipe than ArchRun.for_size('laptop') ({{field: (recorded, " \
                      f"now)}}); re-run python bench/train_studies.py --only ...: {stale}"
    # the grids the chapter reads: a changed sweep in the bench script changes the rows
    assert [r["lr"] for r in got["lr_sweep"]["rows"]] == [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 1.0]
    assert [r["batch_size"] for r in got["batch_size"]["rows"]] == [4, 8, 16, 32, 64]
