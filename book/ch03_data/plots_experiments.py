"""Figures and the mixture widget of chapter 03's training experiments (Survey §4.1.2-4.1.3).

- `shipped_experiments` reads the records measured for this book (bench/results/data_experiments.jsonl).
- `plot_duplication`: excess loss against the share of repeated data, yours beside the shipped run.
- `plot_raw_vs_clean`: held-out loss per evaluation set after training on the raw vs the cleaned crawl.
- `MixtureExplorer`: sliders for the share of each domain; bars show the data mixing law's predicted excess
  loss on every domain, dots the nearest mixture actually trained. ``w = MixtureExplorer(rows);
  w.update(english=0.6, chinese=0.2, arithmetic=0.2); display(w.widget)``.

matplotlib and ipywidgets are imported inside the functions: importing minillm stays cheap.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from book import results
from book.viz import SliderPanel
from minillm.data.mixture import MixingLaw, fit_mixing_law

def shipped_experiments() -> dict[str, dict]:
    """The latest shipped record of each experiment ("duplication", "mixture", "raw_vs_clean")."""
    return results.latest("data_experiments.jsonl", key="experiment")


def plot_duplication(live_rows: Sequence[Mapping], shipped_rows: Sequence[Mapping] = ()):
    """Excess loss (loss - floor) on fresh held-out text vs the share of the budget spent on repeated docs."""
    import matplotlib.pyplot as plt

    if not live_rows:
        raise ValueError("no rows to plot: run book.ch03_data.studies_experiments.duplication_study first")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for rows, label, style in ((live_rows, "your run", "o-"), (shipped_rows, "shipped (laptop)", "s--")):
        if rows:
            rows = sorted(rows, key=lambda r: r["dup_share"])
            ax.plot([r["dup_share"] for r in rows], [r["excess"] for r in rows], style,
                    label=f"{label}: {rows[0]['n_repeated']} docs repeated")
    ax.set(xlabel="share of the token budget spent on repeated documents",
           ylabel="excess loss on fresh text (nats/char)", title="Same tokens, less variety")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_raw_vs_clean(results: Sequence[tuple[str, Mapping]]):
    """Grouped bars: for each (label, raw_vs_clean result), held-out loss per evaluation set, raw vs clean."""
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("no results to plot: run book.ch03_data.studies_experiments.raw_vs_clean first")
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.6), squeeze=False)
    for ax, (label, res) in zip(axes[0], results):
        names = list(res["raw"])
        x = np.arange(len(names))
        ax.bar(x - 0.2, [res["raw"][k] for k in names], 0.4, label="raw crawl")
        ax.bar(x + 0.2, [res["clean"][k] for k in names], 0.4, label="cleaned")
        ax.set_xticks(x, names)
        ax.set(ylabel="held-out loss (nats/char)", title=label)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


class MixtureExplorer(SliderPanel):
    """Sliders for domain weights (normalised to sum 1); predicted excess loss per domain from mixing laws
    fitted to `rows` (a mixture sweep), next to the excess loss measured at the nearest trained mixture."""

    def __init__(self, rows: Sequence[Mapping], key: str = "excess"):
        import ipywidgets as widgets

        if not rows:
            raise ValueError("no rows: pass a mixture sweep (shipped_experiments()['mixture']['rows'])")
        self.rows = list(rows)
        self.domains = tuple(self.rows[0]["weights"])
        self.laws: dict[str, MixingLaw] = {d: fit_mixing_law(self.rows, d, key=key) for d in self.domains}
        self.key = key
        self._grid = np.array([[r["weights"][d] for d in self.domains] for r in self.rows])  # (M, n)
        common = dict(min=0.0, max=1.0, step=0.05, continuous_update=False, layout=widgets.Layout(width="320px"))
        self.controls = {d: widgets.FloatSlider(value=1 / len(self.domains), description=d, **common)
                         for d in self.domains}
        self._build(self.controls)

    def weights(self) -> np.ndarray:
        w = np.array([float(self.controls[d].value) for d in self.domains])
        if w.sum() <= 0:
            raise ValueError("every weight is 0: give at least one domain a positive share")
        return w / w.sum()

    def update(self, **weights: float) -> dict[str, Any]:
        """Set some domains' (unnormalised) weights, redraw, and return predicted and nearest-measured losses."""
        unknown = sorted(set(weights) - set(self.domains))
        if unknown:
            raise ValueError(f"unknown domain(s) {unknown}; choose from {', '.join(self.domains)}")
        bad = {k: v for k, v in weights.items() if not (isinstance(v, (int, float)) and 0 <= v <= 1)}
        if bad:
            raise ValueError(f"weights {bad} must be numbers in [0, 1]")
        self._set(weights)
        return self._render()

    def _render(self) -> dict[str, Any]:
        import matplotlib.pyplot as plt

        w = self.weights()
        predicted = {d: float(self.laws[d].predict(w)[0]) for d in self.domains}
        near = int(np.argmin(np.abs(self._grid - w).sum(axis=1)))
        measured = {d: float(self.rows[near][self.key][d]) for d in self.domains}
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        x = np.arange(len(self.domains))
        ax.bar(x, [predicted[d] for d in self.domains], 0.6, color="C0", label="mixing law")
        ax.plot(x, [measured[d] for d in self.domains], "ko", label="nearest trained mixture")
        ax.set_xticks(x, self.domains)
        ax.set(ylabel="excess loss (nats/char)",
               title="mixture " + " / ".join(f"{v:.2f}" for v in w))
        ax.legend(fontsize=8)
        fig.tight_layout()
        nearest = self.rows[near]["weights"]
        self.result = {"weights": dict(zip(self.domains, w.tolist())), "predicted": predicted, "measured": measured,
                       "nearest_weights": dict(nearest)}
        self.summary.value = ("predicted excess: " + ", ".join(f"{d} {v:.3f}" for d, v in predicted.items())
                              + "<br>nearest trained mixture: " + ", ".join(f"{d} {v:.2f}" for d, v in nearest.items()))
        self._show(fig)
        return self.result
