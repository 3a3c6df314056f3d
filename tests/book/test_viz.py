"""book.viz: each builder draws what it claims (checked on the returned Figure/widgets, Agg backend)."""
from types import SimpleNamespace

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # headless: tests must never open a window

import matplotlib.pyplot as plt  # noqa: E402

from minillm import GPT, ModelConfig, TrainConfig
from book.ch00_welcome import landscape
from book import viz  # noqa: E402
from minillm.data.tokenizer import CharTokenizer  # noqa: E402
from minillm.train.trainer import Trainer  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


HISTORY = [{"step": s, "tokens": 512 * s, "loss": 3.0 / s, **({"val_loss": 3.2 / s} if s % 2 == 0 else {})}
           for s in range(1, 7)]


# ------------------------------------------------------------------------------------------------ plot_loss


def test_plot_loss_draws_train_val_and_floor():
    fig = viz.plot_loss(HISTORY, floor=0.29)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"train", "val", viz.FLOOR_LABEL}
    assert list(lines["train"].get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(lines["train"].get_ydata()) == [r["loss"] for r in HISTORY]
    assert list(lines["val"].get_xdata()) == [2, 4, 6]
    assert list(lines["val"].get_ydata()) == pytest.approx([1.6, 0.8, 3.2 / 6])
    assert list(lines[viz.FLOOR_LABEL].get_ydata()) == [0.29, 0.29]
    assert lines[viz.FLOOR_LABEL].get_linestyle() == "--"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "val", viz.FLOOR_LABEL]


def test_plot_loss_tokens_axis_labels_and_shared_axes():
    fig, ax = plt.subplots()
    out = viz.plot_loss(HISTORY[:3], ax=ax, label="tiny", x="tokens")
    assert out is fig
    assert [line.get_label() for line in ax.get_lines()] == ["tiny train", "tiny val"]  # no floor asked for
    assert list(ax.get_lines()[0].get_xdata()) == [512, 1024, 1536]
    assert ax.get_xlabel() == "training tokens"
    viz.plot_loss(HISTORY, ax=ax, label="second")  # a second run on the same axes
    assert len(ax.get_lines()) == 4


def test_plot_loss_bad_input():
    with pytest.raises(ValueError, match="history has no rows with a 'loss'"):
        viz.plot_loss([])
    with pytest.raises(ValueError, match="x='epoch' is not valid"):
        viz.plot_loss(HISTORY, x="epoch")
    with pytest.raises(ValueError, match="no 'tokens' key"):
        viz.plot_loss([{"step": 1, "loss": 1.0}], x="tokens")


# ------------------------------------------------------------------------------------------------ the map


def test_plot_timeline_marks_every_model():
    rows = landscape.model_timeline()
    fig = viz.plot_timeline(rows)
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
    fig = viz.plot_timeline()
    assert "GPT-3" in [t.get_text() for t in fig.axes[0].texts]
    with pytest.raises(ValueError, match="no models to plot"):
        viz.plot_timeline([])


def test_plot_pipeline_boxes_and_highlight():
    fig = viz.plot_pipeline(highlight=4)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    for stage in landscape.pipeline_stages():
        assert stage["name"] in texts
    for c in landscape.book_chapters():
        assert f"{c['number']:02d} {c['title']}" in texts
    gold = [p for p in fig.axes[0].patches if p.get_facecolor()[:3] == matplotlib.colors.to_rgb("gold")]
    assert len(gold) == 1  # chapter 04 sits under one stage only
    with pytest.raises(ValueError, match="highlight=9 is not a chapter"):
        viz.plot_pipeline(highlight=9)


def test_markdown_table_and_format_count():
    assert [viz.format_count(n) for n in (117e6, 1.5e9, 671e9, 2e12, None)] == \
        ["117M", "1.5B", "671B", "2T", "undisclosed"]
    md = viz.markdown_table([{"a": "x|y", "b": None}, {"a": 1, "b": 2e9}], ["a", "b"], {"b": viz.format_count})
    assert md.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | undisclosed |", "| 1 | 2B |"]
    with pytest.raises(ValueError, match=r"column\(s\) \['c'\] are not keys of every row"):
        viz.markdown_table([{"a": 1}], ["a", "c"])


# ------------------------------------------------------------------------------------------------ widgets


@pytest.fixture(scope="module")
def tiny_lm():
    tok = CharTokenizer.from_text("abcdefgh once upon a time")
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16,
                            tie_embeddings=False))
    with torch.no_grad():
        model.lm_head.weight.mul_(25)  # logits with std ~2 (not ~0.1): the temperature visibly matters
    return model, tok


def test_sampling_widget_controls(tiny_lm):
    model, tok = tiny_lm
    w = viz.sampling_widget(model, tok, "once", max_new_tokens=20)
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
    w = viz.sampling_widget(model, tok, "once", max_new_tokens=40, seed=3)
    hot = w.update(temperature=1.8)
    assert w.temperature.value == 1.8  # update moves the slider too
    assert w.update(temperature=1.8) == hot  # same settings, same text
    cold = w.update(temperature=0.2)
    assert cold != hot
    assert w.update(temperature=0.0) == w.update(temperature=0.0, top_k=1)  # greedy == top-1
    other_seed = viz.sampling_widget(model, tok, "once", max_new_tokens=40, seed=4, temperature=1.8)
    assert other_seed.text != hot


def test_sampling_widget_observers_regenerate(tiny_lm):
    model, tok = tiny_lm
    w = viz.sampling_widget(model, tok, "once", max_new_tokens=40)
    expected = viz.sampling_widget(model, tok, "once", max_new_tokens=40, temperature=1.8).text
    before = w.output.value
    w.temperature.value = 1.8  # what dragging the slider in the browser does
    assert w.output.value != before and w.text == expected
    w.top_k.value = 1
    assert w.text == viz.sampling_widget(model, tok, "once", max_new_tokens=40, temperature=0.0).text
    w.prompt.value = "a time"
    assert w.text.startswith("a time")
    w.prompt.value = "xyz!"  # characters the tokenizer never saw: shown as an error, not raised in the UI
    assert "cannot sample" in w.output.value and "not in this CharTokenizer" in w.output.value


def test_sampling_widget_rejects_bad_settings(tiny_lm):
    model, tok = tiny_lm
    w = viz.sampling_widget(model, tok, "once", max_new_tokens=5)
    with pytest.raises(ValueError, match=r"temperature=-1 must be in \[0, 2.0\]"):
        w.update(temperature=-1)
    with pytest.raises(ValueError, match="top_k=1.5 must be an int"):
        w.update(top_k=1.5)
    with pytest.raises(ValueError, match=r"top_p=0 must be in \[0.05, 1\]"):
        w.update(top_p=0)
    with pytest.raises(ValueError, match="the prompt is empty"):
        w.update(prompt="")
    with pytest.raises(ValueError, match="max_new_tokens=0 must be a positive integer"):
        viz.sampling_widget(model, tok, "once", max_new_tokens=0)


def test_live_loss_plot_as_trainer_hook(tiny_lm):
    _, tok = tiny_lm
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    tokens = torch.tensor(tok.encode("once upon a time abcdefgh " * 40))
    cfg = TrainConfig(batch_size=2, max_steps=5, warmup_steps=1, eval_interval=2, eval_batches=1, log_interval=1,
                      progress=False, device="cpu")
    live = viz.LiveLossPlot(every=100, floor=0.5)
    drawn = []
    original = live.draw
    live.draw = lambda: drawn.append(original())  # count redraws without changing them
    history = Trainer(model, cfg, tokens, hooks=[live]).fit()
    assert [r["step"] for r in live.rows] == [r["step"] for r in history] == [1, 2, 3, 4, 5]
    assert len(drawn) == 3  # at the evaluations (steps 2, 4) and at the last step; never every step
    labels = [line.get_label() for line in live.figure.axes[0].get_lines()]
    assert labels == ["train", "val", viz.FLOOR_LABEL]
    with pytest.raises(ValueError, match="every=0 must be a positive integer"):
        viz.LiveLossPlot(every=0)


def test_live_loss_plot_needs_rows():
    live = viz.LiveLossPlot()
    with pytest.raises(ValueError, match="nothing to draw yet"):
        live.draw()
    live.on_step(SimpleNamespace(step=1, cfg=SimpleNamespace(max_steps=1)), {"step": 1, "loss": 2.0})
    assert live.figure is not None
