"""Tests of book.ch01_scaling_laws.plots_studies: reading shipped study records, and the two figures of chapter 01 §7-8."""
import json

import matplotlib
import pytest

from book.ch01_scaling_laws import plots_studies as study_plots

matplotlib.use("Agg")


def _data_rows():
    rows = []
    for tpp, loss in ((5, 1.8), (20, 0.7), (80, 0.45)):
        rows.append({"schedule": "own_cosine", "tokens_per_param": tpp, "tokens": tpp * 100, "val_loss": loss,
                     "floor": 0.3, "n_params": 100})
    rows.append({"schedule": "mid_run", "tokens_per_param": 10, "tokens": 1000, "val_loss": 1.5, "floor": 0.3,
                 "n_params": 100})
    return rows


def _knowledge_rows():
    return [{"n_layer": 1, "n_embd": e, "n_params": n, "exposures": x, "bits_vs_prior": b, "total_bits_vs_prior": 500.0,
             "bits_per_param": b / n, "accuracy": 0.5, "val_loss": 1.0, "floor": 0.5, "n_people": 20}
            for e, n in ((16, 100), (32, 400)) for x, b in ((100.2, 10.0 * n / 100), (999.7, 50.0 * n / 100))]


def test_shipped_studies_reads_the_latest_record(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLM_RESULTS", str(tmp_path))
    p = tmp_path / "scaling_studies.jsonl"
    recs = [{"study": "data_scaling", "rows": [1]}, {"study": "knowledge_capacity", "rows": [2]},
            {"study": "data_scaling", "rows": [3]}]
    p.write_text("\n".join(json.dumps(r) for r in recs) + "\n\n", encoding="utf-8")
    got = study_plots.shipped_studies()
    assert got["data_scaling"]["rows"] == [3] and got["knowledge_capacity"]["rows"] == [2]


def test_shipped_studies_in_the_repo_have_both():
    got = study_plots.shipped_studies()
    assert {"data_scaling", "knowledge_capacity"} <= got.keys()
    for rec in got.values():
        assert rec["rows"] and rec["provenance"]["command"]


@pytest.mark.parametrize("text, match", [
    ('{"study": "x", "rows": []}\nnot json\n', r":2 is not valid JSON"),
    ('{"rows": []}\n', "no 'study'"),
])
def test_shipped_studies_bad_file(tmp_path, monkeypatch, text, match):
    monkeypatch.setenv("MINILLM_RESULTS", str(tmp_path))
    (tmp_path / "scaling_studies.jsonl").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        study_plots.shipped_studies()


def test_trained_model_ratios_are_computed():
    ratios = {m.name: m.tokens / m.n_params for m in study_plots.TRAINED_MODELS}
    assert ratios["Chinchilla 70B"] == pytest.approx(20)
    assert 280 < ratios["Llama 2 7B"] < 310


def test_plot_data_scaling_draws_both_panels():
    fig = study_plots.plot_data_scaling(_data_rows(), _data_rows())
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    annealed = [ln for ln in ax.lines if ln.get_label() == "separate runs, each annealed"][0]
    assert list(annealed.get_xdata()) == [5, 20, 80] and list(annealed.get_ydata()) == [1.8, 0.7, 0.45]
    assert any(ln.get_label().startswith("Llama 2 7B") for ln in ax.lines)
    assert len(study_plots.plot_data_scaling(_data_rows()).axes) == 1
    with pytest.raises(ValueError, match="no rows"):
        study_plots.plot_data_scaling([])


def test_knowledge_points_and_plot():
    pts = study_plots.knowledge_points(_knowledge_rows())
    assert sorted(pts) == [100, 1000]
    assert list(pts[1000]["n_params"]) == [100, 400] and list(pts[1000]["bits"]) == [50, 200]
    fig = study_plots.plot_knowledge(_knowledge_rows(), _knowledge_rows())
    labels = [ln.get_label() for ln in fig.axes[0].lines]
    assert "1000 exposures" in labels and "2 bit/param" in labels and any("whole world" in x for x in labels)
    table = study_plots.knowledge_table(_knowledge_rows())
    assert [r["n_params"] for r in table] == [100, 100, 400, 400]
    assert table[-1]["of_world"] == pytest.approx(200 / 500)
    with pytest.raises(ValueError, match="no rows"):
        study_plots.plot_knowledge([])
