"""Figures of the training studies in `studies.py` and `studies_stability.py`. Survey §4.3.1-§4.3.2.

- `plot_lr_sweep`: held-out loss against peak lr (log axis), each point coloured by its verdict, diverged runs
  marked at the top; beside it the training-loss curve of every lr.
- `plot_schedules`: the lr curves and the held-out loss curves of a schedule_study or warmup_study.
- `plot_noise_scale`: B_simple (and training loss) over the steps of a gradient_noise_scale run, optionally
  with the held-out loss per batch size of a batch_size_study.
- `plot_spike`: training-loss curves of the loss_spike_study arms, the bad step marked.
- `shipped_train_studies`: the latest shipped record of each study (bench/results/train_studies.jsonl).

Each returns the matplotlib Figure; matplotlib is imported inside the functions.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from book import results
from book.viz import need_rows

VERDICT_COLORS = {"too low": "tab:blue", "right": "tab:green", "too high": "tab:red"}


def _need(rows: Sequence[Mapping], keys: tuple[str, ...], study: str) -> None:
    need_rows(rows, keys, "book.ch05_training.studies." + study)


def _nan(v):
    return float("nan") if v is None else v  # None (non-finite) -> a gap in the line


def plot_lr_sweep(rows: Sequence[Mapping]):
    """Left: val loss vs peak lr (diverged runs as red x at the top). Right: training loss per step per lr."""
    import matplotlib.pyplot as plt

    _need(rows, ("lr", "val_loss", "diverged", "verdict", "losses"), "lr_sweep")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    ok = [r for r in rows if not r["diverged"] and r["val_loss"] is not None]
    top = max((r["val_loss"] for r in ok), default=1.0) * 1.1
    ax.plot([r["lr"] for r in ok], [r["val_loss"] for r in ok], color="0.6", zorder=1)
    for r in rows:
        bad = r["diverged"] or r["val_loss"] is None
        ax.scatter(r["lr"], top if bad else r["val_loss"], marker="x" if bad else "o",
                   color=VERDICT_COLORS[r["verdict"]], zorder=2)
    for verdict, color in VERDICT_COLORS.items():
        ax.scatter([], [], color=color, label=verdict)
    ax.set(xscale="log", xlabel="peak learning rate", ylabel="held-out loss (nats/char)",
           title="learning-rate sweep (x = diverged)")
    ax.legend()
    for r in rows:
        ax2.plot(range(1, len(r["losses"]) + 1), [_nan(v) for v in r["losses"]], label=f"lr={r['lr']:g}")
    ax2.set(xlabel="step", ylabel="training loss", title="training curves")
    ax2.legend(fontsize="small")
    return fig


def plot_schedules(rows: Sequence[Mapping]):
    """Top: the lr of every step per arm. Bottom: held-out loss during training per arm (schedule_study or
    warmup_study rows: the arm is named by `schedule` or `warmup`)."""
    import matplotlib.pyplot as plt

    _need(rows, ("lrs", "val_steps", "val_losses"), "schedule_study")
    key = "schedule" if "schedule" in rows[0] else "warmup"
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, layout="constrained")
    for r in rows:
        label = f"{key}={r[key]}"
        (line,) = ax.plot(range(len(r["lrs"])), r["lrs"], label=label)
        ax2.plot(r["val_steps"], [_nan(v) for v in r["val_losses"]], marker="o", ms=3, color=line.get_color(),
                 label=label)
    ax.set(ylabel="learning rate", title=f"{key} study")
    ax.legend()
    ax2.set(xlabel="step", ylabel="held-out loss (nats/char)")
    return fig


def plot_noise_scale(rows: Sequence[Mapping], batch_rows: Sequence[Mapping] | None = None):
    """B_simple (sequences, log axis) over training, with the training loss on a twin axis; with
    batch_size_study rows, a second panel of held-out loss per batch size at equal tokens with the last
    measured B_simple as a dashed line (the critical batch size it predicts)."""
    import matplotlib.pyplot as plt

    _need(rows, ("step", "b_simple", "loss"), "gradient_noise_scale")
    panels = 2 if batch_rows else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.8), squeeze=False, layout="constrained")
    ax = axes[0][0]
    pts = [(r["step"], r["b_simple"]) for r in rows if r["b_simple"] is not None]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:purple", label="B_simple")
    ax.set(yscale="log", xlabel="step", ylabel="B_simple = tr(Σ)/|G|² (sequences)", title="gradient noise scale")
    twin = ax.twinx()
    with_loss = [r for r in rows if r["loss"] is not None]
    twin.plot([r["step"] for r in with_loss], [r["loss"] for r in with_loss], "s--", color="0.5", ms=3)
    twin.set_ylabel("training loss", color="0.5")
    if batch_rows:
        _need(batch_rows, ("batch_size", "val_loss"), "batch_size_study")
        ax2 = axes[0][1]
        ok = [r for r in batch_rows if r["val_loss"] is not None]
        ax2.plot([r["batch_size"] for r in ok], [r["val_loss"] for r in ok], "o-")
        if pts:
            ax2.axvline(pts[-1][1], ls="--", color="tab:purple", label=f"B_simple at end ≈ {pts[-1][1]:.3g}")
            ax2.legend()
        ax2.set(xscale="log", xlabel="batch size (sequences)", ylabel="held-out loss (nats/char)",
                title="equal tokens, varying batch")
    return fig


def plot_spike(rows: Sequence[Mapping]):
    """Training loss per step of each loss_spike_study arm; the bad step as a vertical line, steps where a
    guard fired as dots."""
    import matplotlib.pyplot as plt

    _need(rows, ("arm", "losses", "spike_step", "flagged_steps", "val_loss"), "loss_spike_study")
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    for r in rows:
        val = "n/a" if r["val_loss"] is None else f"{r['val_loss']:.2f}"
        (line,) = ax.plot(range(1, len(r["losses"]) + 1), [_nan(v) for v in r["losses"]],
                          label=f"{r['arm']} (val {val})")
        flagged = [s for s in r["flagged_steps"] if s <= len(r["losses"])]
        ax.scatter(flagged, [_nan(r["losses"][s - 1]) for s in flagged], color=line.get_color(), zorder=3)
    ax.axvline(rows[0]["spike_step"], ls=":", color="k", label="bad batch")
    ax.set(xlabel="step", ylabel="training loss", title="a loss spike: no protection, skip, rollback")
    ax.legend()
    return fig


def shipped_train_studies() -> dict[str, dict]:
    """The latest record of each training study shipped with the book, by study name."""
    return results.latest("train_studies.jsonl")
