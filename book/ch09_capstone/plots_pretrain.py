"""Figures of the capstone's sections 2-3 (`studies_sizing.py`, `studies_pretrain.py`). Survey §2.1, §4.3, §7.1.1.

- `plot_isoflop`: the IsoFLOP valleys (held-out loss against parameters, one line per budget), each budget's fitted
  optimum, and the predicted compute-optimal point at the pretrain's budget (with the run's result beside it).
- `plot_loss_vs_time`: both recipes' training and held-out loss against wall-clock seconds, with the law's
  predicted final loss as a marker at the end of the modern run.
- `plot_bits_per_byte`: held-out bits per byte per language, one bar per recipe.

Each takes the rows (or objects) a study returns and returns the matplotlib Figure (matplotlib imported inside).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from book.viz import need_rows

__all__ = ["plot_isoflop", "plot_loss_vs_time", "plot_bits_per_byte"]

LANGUAGE_NAMES = {"en": "English (Shakespeare)", "zh": "Chinese (Tang poems)"}


def plot_isoflop(rows: Sequence[Mapping], alloc: Any = None, result: Any = None):
    """Held-out loss against total parameters (log x) per budget. `alloc` (studies_sizing.Allocation) adds each
    budget's optimum (x; an open circle around the lowest run where the valley was not bracketed) and the
    predicted point at alloc.budget (star); `result` (a PretrainResult or its summary with n_params_total and
    heldout_loss) adds what the pretrain measured (filled circle)."""
    import matplotlib.pyplot as plt

    need_rows(rows, ("budget", "n_params_total", "heldout_loss"), "book.ch09_capstone.studies_sizing.isoflop_sweep")
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for budget in sorted({r["budget"] for r in rows}):
        pts = sorted((r["n_params_total"], r["heldout_loss"]) for r in rows if r["budget"] == budget)
        line, = ax.plot(*zip(*pts), "o-", label=f"C = {budget:.1e} FLOPs")
        if alloc is not None:
            for m in alloc.minima:  # x: the parabola's vertex; open circle: a valley the ladder did not bracket
                if m["budget"] == budget:
                    ax.plot(m["n_opt"], m["l_opt"], "x" if m["bracketed"] else "o", color=line.get_color(),
                            markersize=10 if m["bracketed"] else 14, mew=2, mfc="none")
    if alloc is not None:
        ax.plot(alloc.n_opt, alloc.l_opt, "*", color="black", markersize=14,
                label=f"predicted at C = {alloc.budget:.1e} ({alloc.extrapolation:.0f}x past the sweep)")
    if result is not None:
        n, loss = _get(result, "n_params_total"), _get(result, "heldout_loss")
        ax.plot(n, loss, "o", color="crimson", markersize=9, label="the pretrain, measured")
    method = f" (optimum per budget: {alloc.method})" if alloc is not None else ""
    ax.set(xscale="log", xlabel="parameters N (all, tied embedding included)", ylabel="held-out loss (nats/token)",
           title=f"IsoFLOP profiles on the capstone corpus{method}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig


def _get(obj: Any, key: str) -> Any:
    return obj[key] if isinstance(obj, Mapping) else getattr(obj, key)


def plot_loss_vs_time(rows: Sequence[Mapping], predicted_loss: float | None = None):
    """One line per recipe (rows of compare_recipes: "recipe", "curve", "seconds", "heldout_loss"): training
    loss (thin) and the Trainer's held-out loss (circles) against seconds; the final held-out loss as a square at
    the run's end; `predicted_loss` as a star at the end of the modern run."""
    import matplotlib.pyplot as plt

    need_rows(rows, ("recipe", "curve", "seconds", "heldout_loss"),
              "book.ch09_capstone.studies_pretrain.compare_recipes")
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for r in rows:
        curve = r["curve"]
        line, = ax.plot([c["seconds"] for c in curve], [c["loss"] for c in curve], linewidth=1, alpha=0.7,
                        label=f"{r['recipe']} train")
        val = [c for c in curve if c.get("val_loss") is not None]
        ax.plot([c["seconds"] for c in val], [c["val_loss"] for c in val], "o--", color=line.get_color(),
                markersize=4, label=f"{r['recipe']} held-out")
        ax.plot(r["seconds"], r["heldout_loss"], "s", color=line.get_color(), markersize=8)
    if predicted_loss is not None:
        modern = [r for r in rows if r["recipe"] == "modern"]
        at = modern[0]["seconds"] if modern else max(r["seconds"] for r in rows)
        ax.plot(at, predicted_loss, "*", color="black", markersize=14, label="predicted by the IsoFLOP law")
    ax.set(xlabel="wall-clock seconds", ylabel="loss (nats/token)",
           title="same wall-clock time: modern recipe vs GPT-2 recipe")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_bits_per_byte(rows: Sequence[Mapping]):
    """Grouped bars: for each language, each recipe's held-out bits per byte (lower is better)."""
    import matplotlib.pyplot as plt
    import numpy as np

    need_rows(rows, ("recipe", "bpb_en", "bpb_zh"), "book.ch09_capstone.studies_pretrain.compare_recipes")
    langs = ("en", "zh")
    x = np.arange(len(langs))
    w = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    for k, r in enumerate(rows):
        vals = [r[f"bpb_{lang}"] for lang in langs]
        bars = ax.bar(x + (k - (len(rows) - 1) / 2) * w, vals, w, label=r["recipe"])
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set(xticks=x, ylabel="held-out bits per byte (lower is better)", title="bits per UTF-8 byte, per language")
    ax.set_xticklabels([LANGUAGE_NAMES[lang] for lang in langs])
    ax.set_ylim(top=1.2 * max(r[f"bpb_{lang}"] for r in rows for lang in langs))  # room for the legend
    ax.legend(fontsize=8, ncols=len(rows))
    return fig
