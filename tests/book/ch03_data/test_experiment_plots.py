"""Tests of book.ch03_data.plots_experiments: shipped records, the figures, and the mixture widget's callback."""
import json

import matplotlib
import pytest

from book.ch03_data import plots_experiments as ep
from minillm.data.mixture import MixingLaw, simplex_grid

matplotlib.use("Agg")
NAMES = ("english", "chinese", "arithmetic")
LAWS = {d: MixingLaw(d, NAMES, c=0.2, k=1.0, t=tuple(-3.0 if j == i else 0.3 for j in range(3)), rmse=0.0)
        for i, d in enumerate(NAMES)}


def _mixture_rows():
    rows = []
    for w in simplex_grid(3, 5):
        rows.append({"weights": dict(zip(NAMES, w)),
                     "excess": {d: float(LAWS[d].predict(w)[0]) for d in NAMES}})
    return rows


def test_shipped_experiments_latest_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLM_RESULTS", str(tmp_path))
    p = tmp_path / "data_experiments.jsonl"
    p.write_text('{"experiment": "mixture", "rows": [1]}\n{"experiment": "mixture", "rows": [2]}\n', encoding="utf-8")
    assert ep.shipped_experiments()["mixture"]["rows"] == [2]
    p.write_text('{"rows": []}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="no 'experiment'"):
        ep.shipped_experiments()
    p.write_text("{oops\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":1 is not valid JSON"):
        ep.shipped_experiments()


def test_shipped_experiments_in_repo():
    got = ep.shipped_experiments()
    assert {"duplication", "mixture"} <= got.keys()
    assert len(got["mixture"]["rows"]) >= 10 and got["mixture"]["provenance"]["command"]


def test_mixture_explorer_predicts_and_reports_the_nearest_run():
    w = ep.MixtureExplorer(_mixture_rows())
    res = w.update(english=1.0, chinese=0.5, arithmetic=0.5)
    assert res["weights"] == pytest.approx({"english": 0.5, "chinese": 0.25, "arithmetic": 0.25})
    for d in NAMES:  # the rows follow a mixing law exactly, so the fitted law predicts it
        assert res["predicted"][d] == pytest.approx(float(LAWS[d].predict([0.5, 0.25, 0.25])[0]), rel=1e-4)
    assert res["nearest_weights"] == pytest.approx({"english": 0.6, "chinese": 0.2, "arithmetic": 0.2})
    assert w.figure is not None and "predicted excess" in w.summary.value
    with pytest.raises(ValueError, match="unknown domain"):
        w.update(french=0.3)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        w.update(english=2.0)


def test_plots():
    dup = [{"dup_share": s, "excess": 0.3 + s, "n_repeated": 20} for s in (0.0, 0.5)]
    fig = ep.plot_duplication(dup, dup)
    assert len(fig.axes[0].lines) == 2
    res = {"raw": {"en": 1.0, "zh": 2.0}, "clean": {"en": 0.8, "zh": 1.9}}
    fig = ep.plot_raw_vs_clean([("yours", res), ("shipped", res)])
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 4
    with pytest.raises(ValueError, match="no rows"):
        ep.plot_duplication([])
    with pytest.raises(ValueError, match="no results"):
        ep.plot_raw_vs_clean([])
    json.dumps(res)  # results are plain JSON (they are shipped as records)
