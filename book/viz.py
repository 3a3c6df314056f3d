"""Plots and interactive widgets shared by the chapters.

Survey §2 (the timeline of landmark models), §4.3 (watching the training loss fall towards its floor) and
§4.2 (decoding strategy: temperature, top-k and top-p change what a trained model writes). Chapters call these
so that their cells stay a few lines long; every builder returns its Figure or widget so that tests (and
readers) can inspect what was drawn.

matplotlib and ipywidgets are imported inside the functions: importing minillm stays cheap, and the
backend is whatever the reader (or CI, with MPLBACKEND=Agg) chose.
"""
from __future__ import annotations

import html
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

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


def plot_timeline(rows: Sequence[dict] | None = None):
    """Landmark models: parameters (log scale) against date; returns the Figure.

    Open-weight models are filled circles, closed (API-only) ones hollow squares; mixture-of-experts models
    also show the parameters active per token. Models whose size was never disclosed sit on a separate strip
    below, since there is no honest y value for them. rows default to ``landscape.model_timeline()``.
    """
    import matplotlib.pyplot as plt

    if rows is None:
        from book.ch00_welcome.landscape import model_timeline
        rows = model_timeline()
    if not rows:
        raise ValueError("no models to plot: pass rows from book.ch00_welcome.landscape.model_timeline()")
    rows = [{**r, "date": r.get("date", r["year"] + (r["month"] - 1) / 12)} for r in rows]
    known = [r for r in rows if r["params"] is not None]
    unknown = [r for r in rows if r["params"] is None]

    fig, (ax, ax_u) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), gridspec_kw={"height_ratios": [6, 1]})
    styles = {True: dict(marker="o", color="tab:blue", label="open weights"),
              False: dict(marker="s", facecolors="none", edgecolors="tab:red", label="closed (API only)")}
    for is_open, style in styles.items():
        group = [r for r in known if r["open_weights"] == is_open]
        if group:
            ax.scatter([r["date"] for r in group], [r["params"] for r in group], s=45, zorder=3, **style)
    moe = [r for r in known if r.get("active_params")]
    if moe:
        ax.vlines([r["date"] for r in moe], [r["active_params"] for r in moe], [r["params"] for r in moe],
                  colors="tab:blue", linestyles=":", zorder=2)
        ax.scatter([r["date"] for r in moe], [r["active_params"] for r in moe], marker="v", color="tab:blue",
                   s=30, zorder=3, label="MoE: active per token")
    for i, r in enumerate(known):
        # alternate the label side: models a month apart would otherwise print over each other
        dy = 6 if i % 2 == 0 else -11
        ax.annotate(r["name"], (r["date"], r["params"]), textcoords="offset points", xytext=(5, dy), fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("parameters")
    ax.set_title("Landmark language models (Survey §2.2, Table 1)")
    ax.grid(alpha=0.3, which="major")
    ax.legend(loc="upper left", fontsize=8)

    for is_open, style in styles.items():
        group = [r for r in unknown if r["open_weights"] == is_open]
        if group:
            ax_u.scatter([r["date"] for r in group], [0] * len(group), s=45, zorder=3,
                         **{k: v for k, v in style.items() if k != "label"})
    for i, r in enumerate(unknown):
        ax_u.annotate(r["name"], (r["date"], 0), textcoords="offset points", xytext=(5, 5 if i % 2 == 0 else -12),
                      fontsize=8)
    ax_u.set_ylim(-1, 1)
    ax_u.set_yticks([])
    ax_u.set_ylabel("size\nundisclosed", rotation=0, ha="right", va="center", fontsize=8)
    ax_u.set_xlabel("year")
    years = range(int(min(r["date"] for r in rows)), int(max(r["date"] for r in rows)) + 2)
    ax_u.set_xticks(list(years))
    ax_u.set_xlim(years[0], max(r["date"] for r in rows) + 0.75)  # room for the last model's name
    fig.tight_layout()
    return fig


def plot_pipeline(highlight: int | None = None):
    """The LLM pipeline (pre-train -> instruction-tune -> align -> utilize & evaluate) with this book's
    chapters under the stage each teaches; `highlight` colours one chapter ("you are here"). Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    from book.ch00_welcome.landscape import book_chapters, pipeline_stages

    stages, chapters = pipeline_stages(), {c["number"]: c for c in book_chapters()}
    if highlight is not None and highlight not in chapters:
        raise ValueError(f"highlight={highlight!r} is not a chapter; choose one of {sorted(chapters)}")
    fig, ax = plt.subplots(figsize=(11, 5.6))
    ax.set_xlim(0, len(stages))
    ax.set_ylim(0.5, 6.6)
    ax.axis("off")

    def box(x, y, w, h, text, color, bold=False):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", facecolor=color, edgecolor="0.3"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8.5,
                fontweight="bold" if bold else "normal", wrap=True)

    def chapter_color(n):
        return "gold" if n == highlight else "white"

    welcome = chapters[0]
    box(0.05, 5.9, len(stages) - 0.1, 0.55, f"{welcome['number']:02d} {welcome['title']}  "
        f"({', '.join(welcome['survey_sections'])}): every stage at toy scale", chapter_color(0))
    for i, stage in enumerate(stages):
        box(i + 0.08, 4.6, 0.84, 0.95, f"{stage['name']}\n{', '.join(stage['survey_sections'])}", "#dbe9f6",
            bold=True)
        if i + 1 < len(stages):  # arrow to the next stage
            ax.annotate("", xy=(i + 1.08, 5.07), xytext=(i + 0.92, 5.07),
                        arrowprops=dict(arrowstyle="-|>", color="0.2", lw=1.5))
        for j, n in enumerate(stage["chapters"]):
            c = chapters[n]
            box(i + 0.12, 3.8 - j * 0.8, 0.76, 0.62, f"{n:02d} {c['title']}\n{', '.join(c['survey_sections'])}",
                chapter_color(n))
    ax.set_title("The LLM pipeline and where each chapter of this book fits")
    return fig


# --------------------------------------------------------------------------------------------- sampling widget


class SamplingWidget:
    """Sliders for temperature, top-k and top-p over a trained model, showing one sample (Survey §4.2, decoding).

    ``w = sampling_widget(model, tok, "Once"); w.update(temperature=1.3); display(w.widget)``.
    Each sample is drawn with a generator seeded with `seed`, so the same settings always give the same text
    and any change in the text comes from the settings alone.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int = 200,
                 seed: int = 0, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0):
        import ipywidgets as widgets

        if not isinstance(max_new_tokens, int) or max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens={max_new_tokens!r} must be a positive integer")
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.seed = max_new_tokens, seed
        self.text = ""  # the latest sample (prompt + continuation)
        # continuous_update=False: regenerate when the slider is released, not on every pixel of a drag
        common = dict(continuous_update=False, style={"description_width": "90px"},
                      layout=widgets.Layout(width="420px"))
        self.temperature = widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, description="temperature",
                                               readout_format=".2f", **common)
        self.top_k = widgets.IntSlider(value=0, min=0, max=int(model.config.vocab_size), step=1,
                                       description="top-k", **common)
        self.top_p = widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top-p",
                                         readout_format=".2f", **common)
        self.prompt = widgets.Text(value=prompt, description="prompt", **common)
        self.output = widgets.HTML(description="sample")
        self.output.add_class(SAMPLE_CSS_CLASS)
        help_text = widgets.HTML("<small>temperature 0 = greedy; top-k 0 = off; top-p 1 = off</small>")
        self.widget = widgets.VBox([self.temperature, self.top_k, self.top_p, self.prompt, help_text, self.output])
        self._syncing = False  # True while update() moves the sliders itself
        for control in (self.temperature, self.top_k, self.top_p, self.prompt):
            control.observe(self._on_change, names="value")
        self.update(temperature=temperature, top_k=top_k, top_p=top_p)

    def update(self, temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
               prompt: str | None = None) -> str:
        """Set any of the controls, regenerate, show and return the sample text."""
        if temperature is not None and not 0.0 <= temperature <= self.temperature.max:
            raise ValueError(f"temperature={temperature} must be in [0, {self.temperature.max}] (0 = greedy)")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                                  or not 0 <= top_k <= self.top_k.max):
            raise ValueError(f"top_k={top_k!r} must be an int in [0, {self.top_k.max}] (0 = no top-k limit)")
        if top_p is not None and not self.top_p.min <= top_p <= 1.0:
            raise ValueError(f"top_p={top_p} must be in [{self.top_p.min}, 1] (1 = no nucleus limit)")
        self._syncing = True  # the observers must not regenerate once per moved slider
        try:
            for control, value in ((self.temperature, temperature), (self.top_k, top_k), (self.top_p, top_p),
                                   (self.prompt, prompt)):
                if value is not None:
                    control.value = value
        finally:
            self._syncing = False
        return self._render()

    def sample(self) -> str:
        """Generate one sample with the current settings (does not touch the display)."""
        from minillm.generate import generate

        prompt = self.prompt.value
        if not prompt:
            raise ValueError("the prompt is empty: type at least one character for the model to continue")
        ids = self.tokenizer.encode(prompt)  # raises ValueError for characters outside the vocabulary
        device = next(self.model.parameters()).device
        idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
        gen = torch.Generator(device=device).manual_seed(self.seed)  # same settings -> same text
        out = generate(self.model, idx, self.max_new_tokens, temperature=self.temperature.value,
                       top_k=self.top_k.value or None, top_p=self.top_p.value if self.top_p.value < 1.0 else None,
                       generator=gen)
        return self.tokenizer.decode(out[0].tolist())

    def _render(self) -> str:
        self.text = self.sample()
        prompt = self.prompt.value
        cont = self.text[len(prompt):] if self.text.startswith(prompt) else self.text
        self.output.value = (f'<pre style="white-space: pre-wrap; font-size: 12px"><b>{html.escape(prompt)}</b>'
                             f"{html.escape(cont)}</pre>")
        return self.text

    def _on_change(self, change: dict) -> None:
        if self._syncing:
            return
        try:
            self._render()
        except ValueError as e:  # a bad prompt typed in the box: say so where the sample would be
            self.output.value = f'<pre style="color: #b00">cannot sample: {html.escape(str(e))}</pre>'


def sampling_widget(model: torch.nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int = 200,
                    seed: int = 0, **initial) -> SamplingWidget:
    """Build a SamplingWidget (see its docstring); `initial` may set temperature, top_k, top_p."""
    return SamplingWidget(model, tokenizer, prompt, max_new_tokens=max_new_tokens, seed=seed, **initial)

