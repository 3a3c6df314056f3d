"""The figure of the pre-training objectives study (Survey §4.2.3): what each objective learned, probe by probe.

`plot_objectives(rows)` takes the rows of `studies_objectives.objectives_study` (the reader's or a shipped
record's): left, each probe's held-out loss (nats/char) for each arm side by side, with the corpus's
entropy as the floor no model can go below; right, how many tokens each run put a loss on (the same input
tokens give the causal LM about five times T5's training signal). matplotlib is imported inside the function,
so importing the package stays cheap.
"""
from __future__ import annotations

from collections.abc import Sequence

from book.ch04_architectures.studies_objectives import PROBES, arm_label

__all__ = ["PROBE_LABELS", "plot_objectives"]

PROBE_LABELS = {"next_token": "next token\n(the decoder's task)", "span_fill": "fill a masked span\n(T5's task)",
                "suffix": "suffix given prefix\n(conditional)"}


def plot_objectives(rows: Sequence[dict]):
    """Grouped bars: one group per probe (PROBES order), one bar per row (objective); a second panel with each
    arm's supervised targets over its whole run. Returns the figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    rows = list(rows)
    missing = [k for k in ("objective", "targets", *PROBES) if rows and k not in rows[0]]
    if not rows or missing:
        raise ValueError(f"need the rows of objectives_study (objective, targets and the probes "
                         f"{', '.join(PROBES)}); got {len(rows)} rows, missing {missing}")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw=dict(width_ratios=(3, 1)))
    x = np.arange(len(PROBES))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        vals = [r[p] for p in PROBES]
        bars = ax.bar(x + (i - (len(rows) - 1) / 2) * width, vals, width, label=f"{arm_label(r)} ({r['arch']})"
                      if "arch" in r else arm_label(r), color=f"C{i}")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    if "floor" in rows[0]:
        ax.axhline(rows[0]["floor"], color="gray", linestyle=":", label="corpus entropy (floor)")
    ax.set_xticks(x, [PROBE_LABELS[p] for p in PROBES], fontsize=8)
    ax.set(ylabel="held-out loss (nats/char)", title="the same held-out characters, each model as its kind can")
    ax.set_ylim(0, 1.45 * max(r[p] for r in rows for p in PROBES))  # room for the legend above the bars
    ax.legend(fontsize=8, loc="upper left", ncols=2)
    names = [arm_label(r).replace(", ", ",\n") for r in rows]
    ax2.bar(names, [r["targets"] for r in rows], color=[f"C{i}" for i in range(len(rows))])
    ax2.set(ylabel="tokens with a loss, whole run", title="training signal")
    ax2.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.tight_layout()
    return fig
