"""book.ch01_scaling_laws.plots (Survey §2.1): the chapter-01 figures draw what they claim, the sweep helpers pick the
right runs, and the law explorer's numbers match the allocation formulas."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from minillm.scaling import chinchilla_allocation, km_allocation, published_fit
from book import results
from book.ch01_scaling_laws import plots


def _sweep(law=(0.5, 30.0, 200.0, 0.4, 0.35), budgets=(1e10, 1e11, 1e12)):
    """Rows shaped like a sweep's, whose losses follow a known law (6 sizes per budget around the optimum)."""
    E, A, B, al, be = law
    rows = []
    for C in budgets:
        n_opt = chinchilla_allocation(C, plots.ChinchillaLaw(*law))[0]
        for N in n_opt * np.geomspace(0.1, 10, 6):
            D = C / (6 * N)
            rows.append({"budget": C, "flops": C, "n_params": float(N), "tokens": float(D), "floor": 0.45,
                         "val_loss": E + A / N**al + B / D**be,
                         "curve": [[D * f, E + A / N**al + B / (D * f) ** be + 0.01] for f in (0.25, 0.5, 1.0)]})
    return rows


def test_the_shipped_sweep_is_found_or_says_how_to_get_it():
    path = results.path("sweeps/laptop_isoflop.jsonl")
    assert path.is_file() and path.parent.parts[-3:] == ("bench", "results", "sweeps")
    assert len(plots.bracketed_budgets(results.sweep())) >= 3 * 3  # the chapter fits approach 2 on it
    with pytest.raises(FileNotFoundError, match="no shipped sweep at .*python -m minillm sweep"):
        results.sweep("no_such_sweep.jsonl")


def test_bracketed_budgets_drops_unfinished_and_unbracketed_profiles():
    rows = _sweep()
    partial = rows[:12] + rows[12:14]  # the third budget has 2 runs only
    assert {r["budget"] for r in plots.bracketed_budgets(partial)} == {1e10, 1e11}
    one_sided = [r for r in rows if not (r["budget"] == 1e10 and r["n_params"] > rows[2]["n_params"])]
    assert 1e10 not in {r["budget"] for r in plots.bracketed_budgets(one_sided)}  # best run = the largest
    with pytest.raises(ValueError, match="no 'budget' field"):
        plots.bracketed_budgets([{"n_params": 1, "val_loss": 1}])


def test_run_columns_and_envelope_curves():
    rows = _sweep()
    cols = plots.run_columns(rows)
    assert set(cols) == {"n_params", "tokens", "flops", "budget", "val_loss"} and cols["tokens"].shape == (18,)
    curves = plots.envelope_curves(rows)
    np.testing.assert_allclose(curves[0]["flops"][-1], rows[0]["flops"])  # the last point spends the budget
    with pytest.raises(ValueError, match="the sweep has no rows"):
        plots.run_columns([])


def test_prediction_recovers_a_noise_free_law():
    pred = plots.predict_from_smaller_budgets(_sweep())
    assert pred.budget == 1e12 and pred.compute_ratio == pytest.approx(10.0)
    assert np.abs(pred.rel_error).max() < 1e-3
    with pytest.raises(ValueError, match="2 or more budgets"):
        plots.predict_from_smaller_budgets(_sweep(budgets=(1e10,)))


def test_figures_draw_the_data():
    rows = _sweep()
    fig = plots.plot_isoflop(rows)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and any(np.allclose(l.get_ydata(), 0.45) for l in ax.lines)  # the floor
    assert sum(1 for l in ax.lines if l.get_marker() == "*") == 3  # one vertex per bracketed budget
    assert len(plots.plot_sweeps(rows[:6], rows).axes) == 2
    assert plots.plot_prediction(plots.predict_from_smaller_budgets(rows), rows).axes


def test_published_laws_are_compared_by_allocation_and_each_relative_to_itself():
    """KM and Chinchilla were fitted on different corpora and tokenizers and count N differently, so no panel
    draws both laws' absolute losses: the middle one compares allocations, the right one each law's loss
    divided by its own value at the reference compute."""
    fig = plots.plot_published_laws(c_ref=1e21)
    ax1, ax2, ax3 = fig.axes
    assert not any("KM" in l.get_label() for l in ax1.lines)  # Chinchilla alone in absolute loss
    C = 1e23
    n_km, d_km = km_allocation(C)
    n_ch, d_ch = chinchilla_allocation(C, published_fit("hoffmann2022_approach3").law())
    drawn = {l.get_label(): np.interp(np.log(C), np.log(l.get_xdata()), l.get_ydata()) for l in ax2.lines
             if len(l.get_xdata()) > 2}
    assert drawn["KM (N: non-embedding): $N_{opt}$"] == pytest.approx(float(n_km), rel=1e-2)
    assert drawn["Chinchilla, hoffmann2022_approach3 (N: total): $N_{opt}$"] == pytest.approx(float(n_ch), rel=1e-2)
    curves = [l for l in ax3.lines if len(l.get_xdata()) > 2]
    assert len(curves) == 3
    for line in curves:  # every curve is 1 at the reference compute
        assert np.interp(np.log(1e21), np.log(line.get_xdata()), np.log(line.get_ydata())) == pytest.approx(0, abs=1e-2)
    km = next(l for l in curves if l.get_label().startswith("KM"))
    slope = np.polyfit(np.log(km.get_xdata()), np.log(km.get_ydata()), 1)[0]
    assert slope == pytest.approx(-published_fit("kaplan2020_Cmin").params["alpha_C"])  # a pure power law


def test_law_explorer_numbers_follow_the_formulas():
    w = plots.law_explorer()
    law = published_fit("hoffmann2022_approach3").law()
    n, d = chinchilla_allocation(10**23.76, law)
    assert w.result["n_opt"] == pytest.approx(float(n)) and w.figure is not None
    out = w.update(log10_C=22.0, allocation="KM")
    n_km, d_km = km_allocation(1e22)
    assert out["n_opt"] == pytest.approx(float(n_km)) and out["d_opt"] == pytest.approx(float(d_km))
    out = w.update(allocation="Chinchilla", beta=0.6)  # a faster-falling data term favours the model
    assert out["n_opt"] > chinchilla_allocation(1e22, law)[0]
    w.controls["E"].value = 1.0  # a slider move (the observer) redraws too
    assert w.result["loss"] < out["loss"]
    with pytest.raises(ValueError, match="unknown control"):
        w.update(gamma=1.0)
    with pytest.raises(ValueError, match="outside the slider's range"):
        w.update(alpha=3.0)
    with pytest.raises(ValueError, match="'Chinchilla' or 'KM'"):
        w.update(allocation="Kaplan")
