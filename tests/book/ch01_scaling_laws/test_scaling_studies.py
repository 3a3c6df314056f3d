"""Tests of book.ch01_scaling_laws.studies: the data-scaling study on a tiny run, and its per-decade summary."""

import pytest

from book.ch01_scaling_laws.studies import data_scaling_curve, improvement_per_decade
from minillm.scaling.sweep import default_sweep


def test_data_scaling_tiny():
    rows = data_scaling_curve(1, 16, 1, (2, 4), sweep=default_sweep("ci"))
    own = [r for r in rows if r["schedule"] == "own_cosine"]
    mid = [r for r in rows if r["schedule"] == "mid_run"]
    assert len(own) == 2 and mid
    toks = [r["tokens"] for r in own]
    assert toks == sorted(toks) and toks[0] < toks[1]
    assert [r["tokens"] for r in mid] == sorted(r["tokens"] for r in mid)
    assert max(r["tokens"] for r in mid) < toks[-1]
    for r in own:
        assert r["tokens_per_param"] == pytest.approx(r["tokens"] / r["n_params"])
        assert r["excess"] == pytest.approx(r["val_loss"] - r["floor"])
        assert {"tokens", "tokens_per_param", "val_loss", "floor"} <= set(r)
    dec = improvement_per_decade(rows)
    assert len(dec) == 1 and dec[0]["tokens_from"] == toks[0]


@pytest.mark.parametrize("args, match", [
    ((1, 16, 1, ()), "distinct positive"),
    ((1, 16, 1, (5, -1)), "distinct positive"),
    ((1, 16, 1, (5, 5)), "distinct positive"),
    ((0, 16, 1, (5,)), "n_layer"),
    ((1, 16, 1, (1e6,)), "corpus has"),
])
def test_data_scaling_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        data_scaling_curve(*args, sweep=default_sweep("ci"))


def test_improvement_per_decade_needs_two_rows():
    with pytest.raises(ValueError, match="at least two"):
        improvement_per_decade([{"schedule": "own_cosine", "tokens": 10, "val_loss": 1.0, "floor": 0.5}])


def test_sweep_allocation_exponents_match_the_chapters_fits():
    """The numbers the chapter quotes are the fits its cells draw, and counting total parameters (embeddings
    included) changes the N each run is credited with, so the fitted exponents too."""
    from book import results
    from book.ch01_scaling_laws import plots
    from book.ch01_scaling_laws.studies import sweep_allocation_exponents
    from minillm.scaling import fit_isoflop

    out = sweep_allocation_exponents()
    rows = results.sweep()
    assert out["isoflop"] == pytest.approx(fit_isoflop(plots.run_columns(plots.bracketed_budgets(rows))).a)
    assert out["n_budgets"] >= 3 and 0 < out["envelope"] < 2 and 0 < out["isoflop_total"] < 2
    assert out["isoflop_total"] != pytest.approx(out["isoflop"])
    assert 0 < out["isoflop_se"] < 1 and 0 < out["isoflop_total_se"] < 1
