"""Plots and interactive widgets shared by the chapters.

Survey §2 (the timeline of landmark models), §4.3 (watching the training loss fall towards its floor) and
§4.2 (decoding strategy: temperature, top-k and top-p change what a trained model writes). Chapters call these
so that their cells stay a few lines long; every builder returns its Figure or widget so that tests (and
readers) can inspect what was drawn.

matplotlib and ipywidgets are imported inside the functions: importing minillm stays cheap, and the
backend is whatever the reader (or CI, with MPLBACKEND=Agg) chose.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

FLOOR_LABEL = "entropy floor (irreducible loss)"
SAMPLE_CSS_CLASS = "minillm-sample"  # browser tests find the sample text by this class


# --------------------------------------------------------------------------------------------- small helpers


def format_count(n: float | None) -> str:
    """117e6 -> '117M', 1.5e9 -> '1.5B', None -> 'undisclosed'. For tables of parameter counts."""
    if n is None:
        return "undisclosed"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.3g}"


def markdown_table(rows: Sequence[dict], columns: Sequence[str],
                   formats: dict[str, Callable[[Any], str]] | None = None) -> str:
    """A Markdown table of `columns` from a list of dicts; `formats` maps a column to a value -> str function.

    Display it in a notebook with ``IPython.display.Markdown(markdown_table(...))``.
    """
    if not columns:
        raise ValueError("markdown_table needs at least one column name")
    missing = sorted({c for r in rows for c in columns if c not in r})
    if missing:
        raise ValueError(f"column(s) {missing} are not keys of every row; the rows have {sorted(rows[0])}")
    formats = formats or {}

    def cell(col: str, value: Any) -> str:
        text = formats[col](value) if col in formats else ("" if value is None else str(value))
        return text.replace("|", "\\|").replace("\n", " ")  # a raw '|' would split the cell

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- loss curves


def show_figure(output: Any, fig: Any) -> None:
    """Draw `fig` inside an ipywidgets Output, replacing what it showed, then close it so that the notebook does
    not show it a second time below the cell. Every slider widget of the chapters redraws through this."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    output.clear_output(wait=True)  # wait: replace the old plot without flicker
    with output:
        display(fig)
    plt.close(fig)


def need_rows(rows: Sequence[Mapping], keys: Sequence[str], producer: str) -> None:
    """The check every study figure starts with: rows exist and carry `keys`; `producer` names the function whose
    rows the figure expects (e.g. "book.ch06_tuning.studies_align.kl_sweep"), so the error says what to run."""
    if not rows:
        raise ValueError(f"no rows to plot: run {producer} first")
    missing = [k for k in keys if k not in rows[0]]
    if missing:
        raise ValueError(f"rows lack {', '.join(missing)}: pass the rows {producer} returns")


class SliderPanel:
    """Base of the chapters' slider widgets: the controls and a summary line on the left, the figure on the
    right. Moving one control redraws; `_set` moves several at once and the subclass redraws once.

    A subclass calls `_build(controls)` at the end of its __init__ and implements `_render() -> dict`, which
    draws a figure, hands it to `_show`, sets `self.summary.value` and returns the numbers (`self.result`).
    """

    def _build(self, controls: dict) -> None:
        import ipywidgets as widgets

        self.controls = controls
        self.output, self.summary = widgets.Output(), widgets.HTML()
        self.widget = widgets.HBox([widgets.VBox([*controls.values(), self.summary]), self.output])
        self.result: dict = {}
        self.figure = None
        self._syncing = False  # True while _set moves controls: observers must not redraw once per control
        for control in controls.values():
            control.observe(self._on_change, names="value")
        self._render()

    def _set(self, values: dict) -> None:
        self._syncing = True
        try:
            for name, value in values.items():
                self.controls[name].value = value
        finally:
            self._syncing = False

    def _show(self, fig: Any) -> None:
        show_figure(self.output, fig)
        self.figure = fig

    def _on_change(self, change: dict) -> None:
        if not self._syncing:
            self._render()

    def _render(self) -> dict:  # pragma: no cover - every subclass draws its own figure
        raise NotImplementedError


def plot_loss(history: Sequence[dict], floor: float | None = None, ax: Any = None, label: str | None = None,
              x: str = "step"):
    """Training loss (and validation loss where present) against steps or tokens; returns the Figure.

    history: rows as returned by ``Trainer.fit()`` (each with step, tokens, loss; some with val_loss).
    floor: the irreducible loss, in the same units as the loss (nats per token); drawn as a dashed line,
        since no model can beat the entropy of the data.
    ax: draw into an existing Axes (e.g. to compare runs); label prefixes the legend entries.
    """
    import matplotlib.pyplot as plt

    if x not in ("step", "tokens"):
        raise ValueError(f"x={x!r} is not valid; choose 'step' or 'tokens'")
    rows = [r for r in history if r.get("loss") is not None]
    if not rows:
        raise ValueError("history has no rows with a 'loss': pass the list returned by Trainer.fit()")
    if any(x not in r for r in rows):
        raise ValueError(f"some history rows have no {x!r} key; plot against x='step' instead")
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    prefix = f"{label} " if label else ""
    line, = ax.plot([r[x] for r in rows], [r["loss"] for r in rows], label=f"{prefix}train")
    val = [r for r in history if r.get("val_loss") is not None]
    if val:
        # same colour, dashed markers: train and val of one run read as a pair when runs are compared
        ax.plot([r[x] for r in val], [r["val_loss"] for r in val], "o--", color=line.get_color(),
                label=f"{prefix}val")
    if floor is not None:
        ax.axhline(floor, color="black", linestyle="--", linewidth=1, label=FLOOR_LABEL)
        ax.set_ylim(bottom=0)  # cross-entropy is >= 0: from zero, the gap to the floor reads at its true size
    ax.set_xlabel("optimizer step" if x == "step" else "training tokens")
    ax.set_ylabel("loss (nats per token)")
    ax.legend()
    ax.grid(alpha=0.3)
    return ax.figure


class LiveLossPlot:
    """A Trainer hook that redraws the loss curve in an ipywidgets Output while training runs.

    ``live = LiveLossPlot(every=50, floor=f); display(live.widget); Trainer(..., hooks=[live]).fit()``.
    It redraws at most every `every` steps (drawing is slow next to a tiny model's step), whenever a
    validation loss arrives, and at the last step. Without a notebook it simply keeps the rows.
    """

    def __init__(self, every: int = 50, floor: float | None = None, x: str = "step"):
        import ipywidgets as widgets

        if not isinstance(every, int) or every <= 0:
            raise ValueError(f"every={every!r} must be a positive integer (steps between redraws)")
        self.every, self.floor, self.x = every, floor, x
        self.rows: list[dict] = []
        self.widget = widgets.Output()
        self.figure = None  # the latest drawing
        self._drawn_at = 0

    def on_step(self, trainer: Any, row: dict) -> None:
        self.rows.append(dict(row))
        last = trainer.step >= trainer.cfg.max_steps
        if last or "val_loss" in row or row["step"] - self._drawn_at >= self.every:
            self.draw()

    def draw(self):
        """Redraw now; returns the Figure."""
        import matplotlib.pyplot as plt
        from IPython.display import display

        if not self.rows:
            raise ValueError("nothing to draw yet: no history row has arrived")
        fig = plot_loss(self.rows, floor=self.floor, x=self.x)
        with self.widget:
            self.widget.clear_output(wait=True)  # wait: replace the old plot without flicker
            display(fig)
        plt.close(fig)  # displayed as an image already; closing stops a second copy and frees memory
        self.figure, self._drawn_at = fig, self.rows[-1]["step"]
        return fig


# --------------------------------------------------------------------------------------------- the map


# --------------------------------------------------------------------------------------------- sampling widget
