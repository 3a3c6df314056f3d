"""Figures of the optimizer comparison and of weight decay and clipping (`studies_optim.py`). Survey §4.3.1.

- `plot_optimizers`: held-out loss against lr per optimizer, the training curves at each one's best lr, and the
  measured optimizer-state bytes per parameter byte.
- `plot_decay_clip`: per weight decay λ the norm of the decayed weights and of each update over training; per
  clipping threshold the gradient norm before clipping (thresholds dashed) and the clip rate.
- `optimizer_table`: one line per optimizer (best lr, best held-out loss, state / parameter bytes) to print.
- `decay_clip_table`: one line per decay_clip_study arm (held-out loss, final weight norm, clip rate).

Each plot returns the matplotlib Figure; matplotlib is imported inside the functions.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from book.viz import need_rows

PRODUCER = "book.ch05_training.studies_optim."


def _nan(v):
    return float("nan") if v is None else v  # None (non-finite) -> a gap in the line


def _smooth(xs: Sequence, k: int) -> list[float]:
    """Trailing mean over k steps (gaps stay gaps): per-step losses are too noisy to compare curves by eye."""
    vals = [_nan(v) for v in xs]
    return [sum(vals[max(0, i - k + 1): i + 1]) / len(vals[max(0, i - k + 1): i + 1]) for i in range(len(vals))]


def optimizer_table(rows: Sequence[Mapping]) -> list[str]:
    """'adamw: best lr 0.01 -> held-out 1.23; state 2.00x the parameters' for each optimizer's best row."""
    need_rows(rows, ("optimizer", "lr", "val_loss", "best", "state_ratio"), PRODUCER + "optimizer_study")
    out = []
    for name in dict.fromkeys(r["optimizer"] for r in rows):
        best = [r for r in rows if r["optimizer"] == name and r["best"]]
        ratio = next(r["state_ratio"] for r in rows if r["optimizer"] == name)
        loss = f"best lr {best[0]['lr']:g} -> held-out {best[0]['val_loss']:.3f}" if best else "every lr diverged"
        out.append(f"{name:>9}: {loss}; state {ratio:.2f}x the parameters' bytes")
    return out


def decay_clip_table(rows: Sequence[Mapping]) -> list[str]:
    """'weight_decay=0.1 at lr 0.003: held-out 1.54, |W| 10.4, clipped 5%' for each decay_clip_study row."""
    need_rows(rows, ("knob", "value", "lr", "val_loss", "weight_norm", "clip_rate"), PRODUCER + "decay_clip_study")
    out = []
    for r in rows:
        loss = "diverged" if r["val_loss"] is None else f"held-out {r['val_loss']:.2f}"
        norm = "" if r["weight_norm"] is None else f", |W| {r['weight_norm']:.1f}"
        rate = "" if r["clip_rate"] is None else f", clipped {r['clip_rate']:.0%}"
        out.append(f"{r['knob']}={r['value']} at lr {r['lr']:g}: {loss}{norm}{rate}")
    return out


def plot_optimizers(rows: Sequence[Mapping]):
    """Left: held-out loss vs peak lr, one line per optimizer (best lr ringed). Middle: training loss (smoothed)
    at each optimizer's best lr. Right: optimizer state / parameter bytes, measured."""
    import matplotlib.pyplot as plt

    need_rows(rows, ("optimizer", "lr", "val_loss", "best", "losses", "state_ratio"), PRODUCER + "optimizer_study")
    names = list(dict.fromkeys(r["optimizer"] for r in rows))
    colors = {n: plt.get_cmap("tab10")(i) for i, n in enumerate(names)}
    fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 3.8), layout="constrained")
    for n in names:
        arm = [r for r in rows if r["optimizer"] == n]
        ax.plot([r["lr"] for r in arm], [_nan(r["val_loss"]) for r in arm], "o-", color=colors[n], label=n)
        for r in arm:
            if r["best"]:
                ax.scatter(r["lr"], r["val_loss"], s=140, facecolors="none", edgecolors=colors[n], linewidths=2)
                k = max(1, len(r["losses"]) // 20)
                ax2.plot(range(1, len(r["losses"]) + 1), _smooth(r["losses"], k), color=colors[n],
                         label=f"{n} (lr {r['lr']:g})")
    ax.set(xscale="log", xlabel="peak learning rate", ylabel="held-out loss (nats/char)",
           title="each optimizer's own lr sweep (ring = best)")
    ax.legend(fontsize="small")
    ax2.set(xlabel="step", ylabel="training loss (smoothed)", title="at each optimizer's best lr")
    ax2.legend(fontsize="small")
    ratios = [next(r["state_ratio"] for r in rows if r["optimizer"] == n) for n in names]
    ax3.bar(names, ratios, color=[colors[n] for n in names])
    for i, v in enumerate(ratios):
        ax3.text(i, v, f"{v:.2f}x", ha="center", va="bottom")
    ax3.set(ylabel="state bytes / parameter bytes", title="optimizer state, measured after one step")
    ax3.tick_params(axis="x", rotation=30)
    return fig


def plot_decay_clip(rows: Sequence[Mapping]):
    """Top: per weight decay λ, the global norm of the decayed matrices and of each step's update. Bottom left:
    per clipping threshold, the gradient norm before clipping (each threshold dashed in its colour); bottom
    right: the share of steps clipped. Labels carry each arm's held-out loss."""
    import matplotlib.pyplot as plt

    need_rows(rows, ("knob", "value", "val_loss", "weight_norms", "update_norms", "grad_norms", "clip_rate"),
              PRODUCER + "decay_clip_study")
    wd = [r for r in rows if r["knob"] == "weight_decay"]
    clip = [r for r in rows if r["knob"] == "grad_clip"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), layout="constrained")

    def label(r):
        loss = "diverged" if r["val_loss"] is None else f"held-out {r['val_loss']:.2f}"
        return f"{'λ' if r['knob'] == 'weight_decay' else 'clip'}={r['value']} ({loss})"

    for r in wd:
        steps = range(1, len(r["weight_norms"]) + 1)
        axes[0, 0].plot(steps, [_nan(v) for v in r["weight_norms"]], label=label(r))
        axes[0, 1].plot(steps, _smooth(r["update_norms"], 5), label=label(r))
    axes[0, 0].set(xlabel="step", ylabel="‖decayed weights‖", title=f"weight decay at lr {wd[0]['lr']:g}" if wd
                   else "weight decay")
    axes[0, 1].set(xlabel="step", ylabel="‖θ_t − θ_(t−1)‖ (smoothed)", yscale="log", title="update size")
    for r in clip:
        line, = axes[1, 0].plot(range(1, len(r["grad_norms"]) + 1), [_nan(v) for v in r["grad_norms"]],
                                label=label(r), alpha=0.8)
        if r["value"] is not None:
            axes[1, 0].axhline(r["value"], color=line.get_color(), ls="--")
    axes[1, 0].set(xlabel="step", ylabel="gradient norm before clipping", yscale="log",
                   title=f"clipping at lr {clip[0]['lr']:g}" if clip else "clipping")
    with_clip = [r for r in clip if r["value"] is not None]
    axes[1, 1].bar([str(r["value"]) for r in with_clip], [r["clip_rate"] or 0.0 for r in with_clip])
    axes[1, 1].set(xlabel="max gradient norm", ylabel="share of steps clipped", ylim=(0, 1), title="clip rate")
    for ax in axes.flat[:3]:
        if ax.get_lines():
            ax.legend(fontsize="small")
    return fig
