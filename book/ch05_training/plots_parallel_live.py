"""The figure of the live ZeRO-1 / tensor / pipeline parallelism study (`studies_parallel_live.py`). Survey §4.3.2.

`plot_parallel_live(rows)`: left, the bytes each rank holds (parameters, gradients, optimizer state stacked) per
form and rank, one process first; right, the bytes each rank sent in one step, measured beside the formula.
Returns the matplotlib Figure; matplotlib is imported inside the function.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from book.viz import need_rows

PRODUCER = "book.ch05_training.studies_parallel_live.parallel_live"
_KEYS = ("form", "rank", "param_bytes", "grad_bytes", "state_bytes", "sent_bytes", "predicted_sent_bytes")


def plot_parallel_live(rows: Sequence[Mapping]):
    """Per (form, rank): held bytes stacked, and sent bytes measured vs predicted (MB = 1e6 bytes)."""
    import matplotlib.pyplot as plt

    need_rows(rows, _KEYS, PRODUCER)
    order = ("single", "zero1", "tp", "tp_torch", "pp")
    shown = sorted((r for r in rows if r["form"] != "single" or r["rank"] == 0),  # the reference once
                   key=lambda r: (order.index(r["form"]) if r["form"] in order else len(order), r["rank"]))
    labels = [r["form"] if r["form"] == "single" else f"{r['form']}\nrank {r['rank']}" for r in shown]
    xs = range(len(shown))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 3.8))
    bottom = [0.0] * len(shown)
    for key, name in (("param_bytes", "parameters"), ("grad_bytes", "gradients"), ("state_bytes", "Adam state")):
        vals = [r[key] / 1e6 for r in shown]  # (forms,)
        ax.bar(xs, vals, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set(ylabel="MB held by this rank", title="what each rank holds (measured)")
    ax.legend(fontsize=8)
    sent = [r for r in shown if r["form"] != "single"]
    width = 0.4
    bx.bar([i - width / 2 for i in range(len(sent))], [r["sent_bytes"] / 1e6 for r in sent], width, label="measured")
    bx.bar([i + width / 2 for i in range(len(sent))], [r["predicted_sent_bytes"] / 1e6 for r in sent], width,
           label="formula", alpha=0.6)
    bx.set_xticks(list(range(len(sent))), [f"{r['form']}\nrank {r['rank']}" for r in sent], fontsize=8)
    bx.set(ylabel="MB sent in one step", title="what each rank sends")
    bx.legend(fontsize=8)
    fig.tight_layout()
    return fig
