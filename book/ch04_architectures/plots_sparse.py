"""Figures of sparse attention (Survey §4.2.2): the patterns as images and their cost against context length.

- `plot_sparse_patterns`: dense causal, sliding window, strided and fixed masks side by side at T = 64, each
  factorised pattern's two heads in two colours, with the tile grid a block-sparse kernel works in.
- `plot_sparse_cost`: the rows of `studies_sparse.sparse_cost_rows`: attended pairs against T (log-log: T²/2,
  T·w, T√T), and the fraction of dense work left in pairs and in kernel tiles.

matplotlib is imported inside the functions, so importing the package stays cheap.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from book.ch04_architectures.studies_sparse import PATTERNS, pattern_mask, sqrt_block
from minillm.model.sparse import attention_cost, fixed_sparse_parts, strided_sparse_parts

_TITLES = {"dense": "dense causal", "sliding": "sliding window", "strided": "strided (Sparse Transformer)",
           "fixed": "fixed (Sparse Transformer)"}
_PART_NAMES = {"strided": ("local band", "every l-th back"), "fixed": ("own block", "summary columns")}
_WHITE, _C0, _C1 = np.array([1.0, 1.0, 1.0]), np.array([0.12, 0.47, 0.71]), np.array([1.0, 0.5, 0.05])


def _image(first: np.ndarray, second: np.ndarray | None) -> np.ndarray:
    """(T, T, 3) RGB: white where masked, C0 where the first part attends, C1 where only the second does."""
    img = np.where(first[..., None], _C0, _WHITE)
    if second is not None:
        img = np.where((second & ~first)[..., None], _C1, img)
    return img


def plot_sparse_patterns(T: int = 64, block: int | None = None, window: int | None = None, tile: int = 16):
    """Four T × T masks (query rows, key columns): dense causal, a sliding window of `window`, strided with
    stride `block` and fixed with block `block` (both default √T, window defaults to block). Gray lines: the
    tile × tile grid; each title gives the pairs kept (share of dense causal) and the tiles a block-sparse
    kernel would visit (`minillm.model.sparse.attention_cost`)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    block = sqrt_block(T) if block is None else block
    window = block if window is None else window
    parts = {"strided": strided_sparse_parts(T, block), "fixed": fixed_sparse_parts(T, block)}
    fig, axes = plt.subplots(1, 4, figsize=(15, 4.3))
    for ax, p in zip(axes, PATTERNS):
        mask = pattern_mask(p, T, block, window)
        first, second = (parts[p][0].numpy(), parts[p][1].numpy()) if p in parts else (mask.numpy(), None)
        ax.imshow(_image(first, second), interpolation="nearest")
        for x in np.arange(tile, T, tile) - 0.5:
            ax.axhline(x, color="gray", linewidth=0.5)
            ax.axvline(x, color="gray", linewidth=0.5)
        cost = attention_cost(mask, tile, tile)
        size = {"sliding": f", w = {window}", "strided": f", l = {block}", "fixed": f", l = {block}"}.get(p, "")
        ax.set_title(f"{_TITLES[p]}{size}\n{cost['pairs']} pairs ({cost['fraction']:.0%} of dense), "
                     f"{cost['tiles']}/{cost['dense_tiles']} tiles", fontsize=9)
        ax.set(xlabel="key position", ylabel="query position" if p == "dense" else None)
        ax.set_xticks([])
        ax.set_yticks([])
        if p in parts:
            names = _PART_NAMES[p]
            ax.legend(handles=[Patch(color=_C0, label=names[0]), Patch(color=_C1, label=names[1])], fontsize=7,
                      loc="upper right")
    fig.tight_layout()
    return fig


def plot_sparse_cost(rows: Sequence[Mapping]):
    """Left: attended query-key pairs per sequence against T (log-log; slope 2, 1 and 1.5). Right: the
    fraction of dense causal work each pattern leaves, counted in pairs (solid) and, when the rows have them, in
    tiles of a block-sparse kernel (dashed)."""
    import matplotlib.pyplot as plt

    rows = list(rows)
    if not rows or not {"pattern", "T", "pairs", "pairs_fraction"} <= set(rows[0]):
        raise ValueError("pass the rows sparse_cost_rows returns (pattern, T, pairs, pairs_fraction[, tiles])")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, p in enumerate(PATTERNS):
        rs = sorted((r for r in rows if r["pattern"] == p), key=lambda r: r["T"])
        if not rs:
            continue
        T = np.array([r["T"] for r in rs], dtype=float)
        label = {"sliding": f"sliding window, w = {rs[0]['window']} (∝ T)", "strided": "strided, l = √T (∝ T^1.5)",
                 "fixed": "fixed, l = √T (∝ T^1.5)"}.get(p, "dense causal (∝ T²)")
        axes[0].plot(T, [r["pairs"] for r in rs], "o-", color=f"C{i}", label=label)
        axes[1].plot(T, [r["pairs_fraction"] for r in rs], "o-", color=f"C{i}", label=f"{p}: pairs")
        counted = [r for r in rs if r.get("tile_fraction") is not None]
        if counted:
            axes[1].plot([r["T"] for r in counted], [r["tile_fraction"] for r in counted], "s--", color=f"C{i}",
                         alpha=0.7, label=f"{p}: {counted[0]['tile']}×{counted[0]['tile']} tiles")
    axes[0].set(xscale="log", yscale="log", xlabel="context length T", ylabel="query-key pairs per sequence",
                title="T²/2 (dense) vs T·w (window) vs T√T (strided, fixed)")
    axes[1].set(xscale="log", yscale="log", xlabel="context length T", ylabel="fraction of dense causal work",
                title="what a kernel can skip: pairs vs whole tiles")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig
