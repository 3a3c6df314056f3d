"""Figures of chapter 06's instruction-tuning studies (`studies_sft.py`, `studies_knowledge.py`). Survey §5.1.

- `plot_diversity`: held-out and seen-phrasing accuracy over the grid of phrasings per task x conversations.
- `plot_mixing`: each task's accuracy under each SFT mixture (grouped bars).
- `plot_pretrain_mix`: forgetting (held-out story loss rise) and SFT accuracy against the share of pretraining rows.
- `plot_knowledge`: SFT on known vs unknown facts: accuracy on held-out known people, hallucination on unknown ones.
- `plot_tuned_vs_untuned`: a small tuned model vs a larger untuned one, per prompt format and phrasing split.

Each takes the rows a study returns and returns the matplotlib Figure (matplotlib imported inside).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from book.ch06_tuning.plots import _need

__all__ = ["plot_diversity", "plot_mixing", "plot_pretrain_mix", "plot_knowledge", "plot_tuned_vs_untuned"]


def plot_diversity(rows: Sequence[Mapping]):
    """Two heatmaps (rows: training phrasings per family; columns: conversations), cell = exact match."""
    import matplotlib.pyplot as plt
    import numpy as np

    _need(rows, ("n_templates", "n_examples", "heldout_accuracy", "seen_accuracy"), "studies_sft.diversity_vs_count")
    ts = sorted({r["n_templates"] for r in rows})
    ns = sorted({r["n_examples"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    for ax, key, title in zip(axes, ("heldout_accuracy", "seen_accuracy"),
                              ("held-out phrasings", "training phrasings, new problems")):
        grid = np.full((len(ts), len(ns)), np.nan)
        for r in rows:
            grid[ts.index(r["n_templates"]), ns.index(r["n_examples"])] = r[key]
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
        for i in range(len(ts)):
            for j in range(len(ns)):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="w" if grid[i, j] < 0.6 else "k")
        ax.set(xticks=range(len(ns)), xticklabels=ns, yticks=range(len(ts)), yticklabels=ts,
               xlabel="SFT conversations", ylabel="training phrasings per family", title=title)
    fig.colorbar(im, ax=axes, label="exact match", shrink=0.9)
    return fig


def plot_mixing(rows: Sequence[Mapping]):
    """Grouped bars: for each mixture (x), each task's exact match."""
    import matplotlib.pyplot as plt
    import numpy as np

    _need(rows, ("mix", "accuracy"), "studies_sft.mixing_study")
    tasks = sorted({t for r in rows for t in r["accuracy"]})
    x = np.arange(len(rows))
    w = 0.8 / len(tasks)
    fig, ax = plt.subplots(figsize=(8, 3.2), layout="constrained")
    for k, t in enumerate(tasks):
        ax.bar(x + (k - (len(tasks) - 1) / 2) * w, [r["accuracy"].get(t, np.nan) for r in rows], w, label=t)
    labels = ["\n".join(f"{t} {v / sum(r['mix'].values()):.0%}" for t, v in r["mix"].items() if v)
              for r in rows]
    ax.set(xticks=x, ylabel="exact match", ylim=(0, 1.05), title="one SFT budget, different task mixtures")
    ax.set_xticklabels(labels, fontsize=7)
    ax.legend(fontsize=7, title="evaluated on", title_fontsize=7)
    return fig


def plot_pretrain_mix(rows: Sequence[Mapping]):
    """Forgetting (left) and SFT accuracy (right) against the share of pretraining rows in the SFT data."""
    import matplotlib.pyplot as plt

    _need(rows, ("pretrain_share", "forgetting", "accuracy", "pretrain_loss_base"), "studies_sft.pretrain_mix_study")
    rs = sorted(rows, key=lambda r: r["pretrain_share"])
    share = [r["pretrain_share"] for r in rs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.4, 3.0), layout="constrained")
    a.plot(share, [r["forgetting"] for r in rs], "o-", color="tab:red")
    a.axhline(0, color="k", lw=0.6)
    a.set(xlabel="share of pretraining rows in SFT", ylabel="Δ held-out story loss (nats/token)",
          title=f"forgetting (base loss {rs[0]['pretrain_loss_base']:.2f})")
    b.plot(share, [r["accuracy"] for r in rs], "s-", color="tab:blue")
    b.set(xlabel="share of pretraining rows in SFT", ylabel="exact match", ylim=(-0.03, 1.03),
          title="instruction accuracy")
    return fig


def plot_knowledge(rows: Sequence[Mapping]):
    """One bar group per SFT arm (known / unknown facts): recall by the base, accuracy on held-out known people,
    hallucination on unknown people, and accuracy on the SFT questions themselves."""
    import matplotlib.pyplot as plt
    import numpy as np

    keys = ("base_recall", "heldout_known_accuracy", "unknown_hallucination_rate", "train_accuracy")
    _need(rows, ("sft_on", *keys), "studies_knowledge.knowledge_study")
    labels = ("base recall (plain text)", "held-out known people", "unknown people: hallucinated",
              "SFT questions (memorised)")
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(8, 3.2), layout="constrained")
    for k, r in enumerate(rows):
        ax.bar(x + (k - (len(rows) - 1) / 2) * 0.35, [r[key] for key in keys], 0.35, label=f"SFT on {r['sft_on']} facts")
    ax.set(xticks=x, ylabel="share of questions", ylim=(0, 1.05), title="does SFT teach facts or elicit them?")
    ax.set_xticklabels(labels, fontsize=8)
    ax.legend(fontsize=8)
    return fig


def plot_tuned_vs_untuned(rows: Sequence[Mapping]):
    """Bars per (model, tuned, prompt format), one colour per phrasing split, labelled with parameter counts."""
    import matplotlib.pyplot as plt
    import numpy as np

    _need(rows, ("model", "params", "tuned", "prompt_format", "split", "accuracy"), "studies_sft.tuned_vs_untuned")
    arms = list(dict.fromkeys((r["model"], r["params"], r["tuned"], r["prompt_format"]) for r in rows))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    acc = {(r["model"], r["params"], r["tuned"], r["prompt_format"], r["split"]): r["accuracy"] for r in rows}
    x = np.arange(len(arms))
    fig, ax = plt.subplots(figsize=(8, 3.2), layout="constrained")
    for k, s in enumerate(splits):
        ax.bar(x + (k - (len(splits) - 1) / 2) * 0.35, [acc.get((*a, s), np.nan) for a in arms], 0.35,
               label=f"{s} phrasings")
    ax.set(xticks=x, ylabel="exact match", ylim=(0, 1.05), title="small and tuned vs larger and untuned")
    ax.set_xticklabels([f"{m} ({p / 1e6:.2f}M)\n{'SFT' if t else 'base'}, {f} prompt" for m, p, t, f in arms],
                       fontsize=7)
    ax.legend(fontsize=8)
    return fig
