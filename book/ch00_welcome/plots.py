"""Figures and the sampling widget of chapter 00 (Survey §1–§4 overview, §4.2.4 decoding).

- `plot_timeline`: landmark models, parameters against date, open vs closed weights.
- `plot_pipeline`: the LLM pipeline (data -> pretraining -> adaptation -> utilization -> evaluation), one stage lit.
- `sampling_widget`: temperature / top-k / top-p sliders regenerating a sample from a trained model.
matplotlib and ipywidgets are imported inside the functions.
"""
from __future__ import annotations

import html
from typing import Any, Sequence

import torch

from book.ch00_welcome.studies_landscape import book_chapters, model_timeline, pipeline_stages
from book.viz import SAMPLE_CSS_CLASS


def plot_timeline(rows: Sequence[dict] | None = None):
    """Landmark models: parameters (log scale) against date; returns the Figure.

    Open-weight models are filled circles, closed (API-only) ones hollow squares; mixture-of-experts models
    also show the parameters active per token. Models whose size was never disclosed sit on a separate strip
    below, since there is no honest y value for them. rows default to ``landscape.model_timeline()``.
    """
    import matplotlib.pyplot as plt

    if rows is None:
        rows = model_timeline()
    if not rows:
        raise ValueError("no models to plot: pass rows from book.ch00_welcome.studies_landscape.model_timeline()")
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
