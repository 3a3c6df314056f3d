"""Chapter 00's figures and sampling widget (book.ch00_welcome.plots)."""


import matplotlib
import pytest

matplotlib.use("Agg")  # headless: tests must never open a window


from book.ch00_welcome import studies_landscape as landscape
from book import viz  # noqa: E402

from book.ch00_welcome import plots as welcome_plots


def test_plot_timeline_marks_every_model():
    rows = landscape.model_timeline()
    fig = welcome_plots.plot_timeline(rows)
    ax, ax_u = fig.axes
    assert ax.get_yscale() == "log"
    known = [r for r in rows if r["params"] is not None]
    assert sorted(t.get_text() for t in ax.texts) == sorted(r["name"] for r in known)
    assert sorted(t.get_text() for t in ax_u.texts) == ["ChatGPT", "GPT-4"]
    # scatter points: one per model of known size, plus one "active params" marker per MoE model
    n_points = sum(len(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets") and c.get_label()
                   in ("open weights", "closed (API only)"))
    assert n_points == len(known)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["open weights", "closed (API only)", "MoE: active per token"]
    ys = sorted(y for c in ax.collections if c.get_label() == "open weights" for _, y in c.get_offsets())
    assert ys[0] == pytest.approx(117e6) and ys[-1] == pytest.approx(671e9)

def test_plot_timeline_default_rows_and_errors():
    fig = welcome_plots.plot_timeline()
    assert "GPT-3" in [t.get_text() for t in fig.axes[0].texts]
    with pytest.raises(ValueError, match="no models to plot"):
        welcome_plots.plot_timeline([])

def test_plot_pipeline_boxes_and_highlight():
    fig = welcome_plots.plot_pipeline(highlight=4)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for stage in landscape.pipeline_stages():
        assert stage["name"] in texts
    for c in landscape.book_chapters():
        assert f"{c['number']:02d} {c['title']}" in texts
    gold = [p for p in fig.axes[0].patches if p.get_facecolor()[:3] == matplotlib.colors.to_rgb("gold")]
    assert len(gold) == 1  # chapter 04 sits under one stage only
    with pytest.raises(ValueError, match="highlight=9 is not a chapter"):
        welcome_plots.plot_pipeline(highlight=9)

def test_sampling_widget_controls(tiny_lm):
    model, tok = tiny_lm
    w = welcome_plots.sampling_widget(model, tok, "once", max_new_tokens=20)
    sliders = w.widget.children
    assert [getattr(c, "description", None) for c in sliders[:4]] == ["temperature", "top-k", "top-p", "prompt"]
    assert (w.temperature.min, w.temperature.max, w.temperature.value) == (0.0, 2.0, 1.0)
    assert (w.top_k.value, w.top_p.value) == (0, 1.0)
    assert viz.SAMPLE_CSS_CLASS in w.output._dom_classes
    assert w.output in sliders
    assert w.text.startswith("once") and len(w.text) == 4 + 20  # drawn once at construction
    assert w.text[4:] in w.output.value

def test_sampling_widget_update_is_deterministic_and_temperature_matters(tiny_lm):
    model, tok = tiny_lm
    w = welcome_plots.sampling_widget(model, tok, "once", max_new_tokens=40, seed=3)
    hot = w.update(temperature=1.8)
    assert w.temperature.value == 1.8  # update moves the slider too
    assert w.update(temperature=1.8) == hot  # same settings, same text
    cold = w.update(temperature=0.2)
    assert cold != hot
    assert w.update(temperature=0.0) == w.update(temperature=0.0, top_k=1)  # greedy == top-1
    other_seed = welcome_plots.sampling_widget(model, tok, "once", max_new_tokens=40, seed=4, temperature=1.8)
    assert other_seed.text != hot

def test_sampling_widget_observers_regenerate(tiny_lm):
    model, tok = tiny_lm
    w = welcome_plots.sampling_widget(model, tok, "once", max_new_tokens=40)
    expected = welcome_plots.sampling_widget(model, tok, "once", max_new_tokens=40, temperature=1.8).text
    before = w.output.value
    w.temperature.value = 1.8  # what dragging the slider in the browser does
    assert w.output.value != before and w.text == expected
    w.top_k.value = 1
    assert w.text == welcome_plots.sampling_widget(model, tok, "once", max_new_tokens=40, temperature=0.0).text
    w.prompt.value = "a time"
    assert w.text.startswith("a time")
    w.prompt.value = "xyz!"  # characters the tokenizer never saw: shown as an error, not raised in the UI
    assert "cannot sample" in w.output.value and "not in this CharTokenizer" in w.output.value

def test_sampling_widget_rejects_bad_settings(tiny_lm):
    model, tok = tiny_lm
    w = welcome_plots.sampling_widget(model, tok, "once", max_new_tokens=5)
    with pytest.raises(ValueError, match=r"temperature=-1 must be in \[0, 2.0\]"):
        w.update(temperature=-1)
    with pytest.raises(ValueError, match="top_k=1.5 must be an int"):
        w.update(top_k=1.5)
    with pytest.raises(ValueError, match=r"top_p=0 must be in \[0.05, 1\]"):
        w.update(top_p=0)
    with pytest.raises(ValueError, match="the prompt is empty"):
        w.update(prompt="")
    with pytest.raises(ValueError, match="max_new_tokens=0 must be a positive integer"):
        welcome_plots.sampling_widget(model, tok, "once", max_new_tokens=0)
