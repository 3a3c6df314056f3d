"""Figures of the architecture studies in `studies.py`. Survey §4.2.2 (detailed configuration).

- `plot_stability_map`: one panel per normalisation (columns) and bias setting (rows), depth × peak lr cells
  coloured by final training loss; cells that never got past character frequencies (stuck) are grey and
  diverged ones red, so the stable band of each norm is visible at a glance.
- `plot_activation`: held-out loss per activation at equal parameter count, the entropy floor dashed.
- `plot_extrapolation`: held-out loss against evaluation length per position encoding, overall and on the
  positions beyond the training length only.

Each returns the matplotlib Figure; matplotlib is imported inside the functions.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from book.viz import need_rows

STATUS_COLORS = {"stuck": "0.7", "diverged": "tab:red"}  # cells that are not "trained"


def _need(rows: Sequence[Mapping], keys: tuple[str, ...], study: str) -> None:
    need_rows(rows, keys, "book.ch04_architectures.studies." + study)


def plot_stability_map(rows: Sequence[Mapping]):
    """Grid per (bias, norm): rows of cells = depth, columns = lr. A trained cell shows its final loss on a
    shared colour scale; stuck (grey) and diverged (red) cells are labelled so. One text label per cell."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    _need(rows, ("norm", "n_layer", "lr", "bias", "final_loss", "status"), "stability_map")
    norms = list(dict.fromkeys(r["norm"] for r in rows))
    biases = list(dict.fromkeys(r["bias"] for r in rows))
    depths = sorted({r["n_layer"] for r in rows})
    lrs = sorted({r["lr"] for r in rows})
    trained = [r["final_loss"] for r in rows if r["status"] == "trained"]
    vmin, vmax = (min(trained), max(trained)) if trained else (0.0, 1.0)
    cmap = plt.get_cmap("viridis_r")
    fig, axes = plt.subplots(len(biases), len(norms), figsize=(2.4 * len(norms) + 1.2, 2.1 * len(biases) + 1.0),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    for i, b in enumerate(biases):
        for j, norm in enumerate(norms):
            ax = axes[i][j]
            grid = np.full((len(depths), len(lrs)), np.nan)  # (depth, lr) final loss of trained cells
            status = np.full((len(depths), len(lrs)), "", dtype=object)
            for r in rows:
                if r["norm"] == norm and r["bias"] == b:
                    d, k = depths.index(r["n_layer"]), lrs.index(r["lr"])
                    status[d, k] = r["status"]
                    if r["status"] == "trained":
                        grid[d, k] = r["final_loss"]
            # Non-trained cells first as a flat layer underneath, trained ones on top in the loss colours.
            code = np.vectorize(lambda s: {"stuck": 0.0, "diverged": 1.0}.get(s, np.nan))(status).astype(float)
            ax.imshow(code, cmap=ListedColormap([STATUS_COLORS["stuck"], STATUS_COLORS["diverged"]]), vmin=0,
                      vmax=1, aspect="auto", origin="lower")
            im = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin="lower")
            for r in rows:
                if r["norm"] == norm and r["bias"] == b:
                    d, k = depths.index(r["n_layer"]), lrs.index(r["lr"])
                    if r["status"] == "trained":  # light text on the dark (high-loss) end of the colour map
                        label = f"{r['final_loss']:.2f}"
                        dark = (r["final_loss"] - vmin) / max(vmax - vmin, 1e-12) > 0.6
                    else:
                        label, dark = r["status"], r["status"] == "diverged"
                    ax.text(k, d, label, ha="center", va="center", fontsize=7, color="white" if dark else "black")
            ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs], fontsize=7, rotation=45)
            ax.set_yticks(range(len(depths)), [str(d) for d in depths], fontsize=7)
            ax.set_title(f"{norm}, bias={b}", fontsize=9)
            if i == len(biases) - 1:
                ax.set_xlabel("peak lr")
            if j == 0:
                ax.set_ylabel("layers")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="final train loss (nats/char)")
    fig.suptitle("Stability: grey = stuck at character frequencies, red = diverged", fontsize=10)
    return fig


def plot_activation(rows: Sequence[Mapping]):
    """One bar per activation: held-out loss (labelled with its non-embedding parameter count)."""
    import matplotlib.pyplot as plt

    _need(rows, ("activation", "params", "val_loss"), "activation_study")
    fig, ax = plt.subplots(figsize=(4.8, 3.4), layout="constrained")
    names = [r["activation"] for r in rows]
    vals = [np.nan if r["val_loss"] is None else r["val_loss"] for r in rows]
    bars = ax.bar(names, vals, color=[f"C{i}" for i in range(len(rows))])
    for bar, r, v in zip(bars, rows, vals):
        ax.annotate(f"{v:.3f}\n{r['params']:,} params", (bar.get_x() + bar.get_width() / 2, v),
                    ha="center", va="bottom", fontsize=7)
    finite = [v for v in vals if np.isfinite(v)]
    if finite:  # zoom on the differences: they are small next to the loss itself (hence the axis label)
        span = max(max(finite) - min(finite), 0.02)
        ax.set_ylim(min(finite) - 0.5 * span, max(finite) + 0.6 * span)
    floor = f", floor {rows[0]['floor']:.2f}" if rows[0].get("floor") is not None else ""
    ax.set(ylabel="held-out loss (nats/char, zoomed)", title=f"MLP activation at equal parameters{floor}")
    return fig


def plot_extrapolation(rows: Sequence[Mapping]):
    """Two panels, one line per position encoding: loss over whole windows, and loss on positions beyond the
    training length only, against the evaluation length. A dotted line marks the training length."""
    import matplotlib.pyplot as plt

    _need(rows, ("position", "train_len", "eval_len", "loss", "loss_beyond_train"), "position_extrapolation")
    positions = list(dict.fromkeys(r["position"] for r in rows))
    train_len = rows[0]["train_len"]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), sharey=True, layout="constrained")
    panels = (("loss", "all positions"), ("loss_beyond_train", f"positions >= {train_len} (never trained)"))
    for ax, (key, title) in zip(axes, panels):
        for i, pos in enumerate(positions):
            pts = sorted((r["eval_len"], r[key]) for r in rows if r["position"] == pos and r[key] is not None)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{i}", label=pos)
        ax.axvline(train_len, color="black", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.minorticks_off()
        lens = sorted({r["eval_len"] for r in rows} | {train_len})
        ax.set_xticks(lens, [str(v) for v in lens])
        ax.set(xlabel="evaluation length (tokens)", title=title)
    axes[0].set_ylabel("held-out loss (nats/char)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Trained on {train_len}-token windows (dotted)", fontsize=10)
    return fig
