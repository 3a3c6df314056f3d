"""book.viz: each builder draws what it claims (checked on the returned Figure/widgets, Agg backend)."""
from types import SimpleNamespace

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # headless: tests must never open a window

import matplotlib.pyplot as plt  # noqa: E402

from minillm import GPT, ModelConfig, TrainConfig
from book import viz  # noqa: E402
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


def test_markdown_table_and_format_count():
    assert [viz.format_count(n) for n in (117e6, 1.5e9, 671e9, 2e12, None)] == \
        ["117M", "1.5B", "671B", "2T", "undisclosed"]
    md = viz.markdown_table([{"a": "x|y", "b": None}, {"a": 1, "b": 2e9}], ["a", "b"], {"b": viz.format_count})
    assert md.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | undisclosed |", "| 1 | 2B |"]
    with pytest.raises(ValueError, match=r"column\(s\) \['c'\] are not keys of every row"):
        viz.markdown_table([{"a": 1}], ["a", "c"])


# ------------------------------------------------------------------------------------------------ widgets


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
