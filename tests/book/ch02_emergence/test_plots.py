"""Figures and widget of book.ch02_emergence.plots on small fake rows; the shipped-records reader."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from book.ch02_emergence import plots as P  # noqa: E402

SIZES = [("L1-C16", 3312), ("L2-C32", 25472), ("L3-C64", 150000)]
M = {"exact_match": 0.2, "token_accuracy": 0.5, "logprob_mean": -1.0, "brier": 0.6}


def _sweep():
    return [{"size": s, "params": p, "task": t, "heldout_loss": 2.0 - i / 3, **{k: v + i / 10 for k, v in M.items()},
             **{k + "_se": 0.01 for k in M}} for i, (s, p) in enumerate(SIZES) for t in ("addition", "kv_map")]


def test_every_plot_returns_a_figure():
    sweep = _sweep()
    icl = [{"size": s, "params": p, "task": t, "shots": k, "exact_match": 0.1 * k, "chance": 0.1, "bayes": 0.5}
           for s, p in SIZES for t in ("kv_map", "linear") for k in (0, 2, 8)]
    cot = [{"size": s, "params": p, "arm": a, "digits": d, "prompt": pr, "exact_match": 0.3, "exact_match_se": 0.1,
            "in_distribution": d <= 3} for s, p in SIZES for a in ("base", "no_cot") for d in (2, 4)
           for pr in ("cot", "direct")]
    ins = [{"size": s, "params": p, "arm": a, "templates": t, "exact_match": 0.4} for s, p in SIZES
           for a in ("base", "no_instructions") for t in ("heldout", "train")]
    inv = [{"size": s, "params": p, "correct": 0.3, "imitation": 0.5, "correct_logprob": -2.0,
            "imitation_logprob": -1.5} for s, p in SIZES]
    figs = [P.plot_metric_vs_size(sweep, "addition", live_rows=sweep), P.plot_icl_shots(icl), P.plot_cot(cot),
            P.plot_instructions(ins), P.plot_predictability(sweep), P.plot_inverse_scaling(inv)]
    assert len(figs[0].axes) == 4  # one panel per metric
    for f in figs:
        assert isinstance(f, matplotlib.figure.Figure)
        plt.close(f)


def test_plots_reject_bad_rows():
    with pytest.raises(ValueError, match="no rows"):
        P.plot_cot([])
    with pytest.raises(ValueError, match="not in the rows"):
        P.plot_metric_vs_size(_sweep(), "nope")


def test_widget_redraws_on_change():
    w = P.EmergenceWidget(_sweep())
    assert w.result["metric"] == "exact_match" and w.result["values"] == [0.2, 0.3, 0.4]
    w.controls["metric"].value = "logprob_mean"
    assert w.result["values"] == [-1.0, -0.9, -0.8]
    w.controls["task"].value = "kv_map"
    assert w.result["task"] == "kv_map" and w.figure is not None
    plt.close("all")


def test_shipped_reader_keeps_the_latest_record(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLM_RESULTS", str(tmp_path))
    (tmp_path / "emergence_studies.jsonl").write_text('{"study": "cot", "rows": [1]}\n{"study": "cot", "rows": [2]}\n')
    assert P.shipped_emergence_studies()["cot"]["rows"] == [2]  # the latest record wins
