"""Sparse attention: what the Sparse Transformer's patterns cost at long context, and what they do to a small model.

Survey §4.2.2 (attention): GPT-3 alternates dense and locally banded sparse attention layers; the sparse
patterns are the Sparse Transformer's (Child et al. 2019), built in `minillm.model.sparse`. Two measurements:

- `sparse_cost_rows`: for T from 256 to 16k, the query-key pairs each pattern keeps (by formula), and up to 4k
  the tiles a tiled kernel would visit (`block_sparse_layout`, one row of tiles at a time), for dense causal, a
  sliding window, strided and fixed with a stride/block of √T.
- `sparse_study`: the book's small run (`book.runs`) trained with dense, strided and fixed attention, two seeds
  each, held-out loss; `sparse_verdict` compares each pattern's gap to dense with the spread between seeds, so a
  difference smaller than seed noise is called that.

Rows are plain dicts (JSON-ready). Figures: `plots_sparse.py`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from book.ch04_architectures.studies_attention import attention_pairs
from book.runs import ArchRun, check_run, study_data, train_config
from minillm.model.attention import causal_mask, sliding_window_mask
from minillm.model.sparse import block_sparse_layout, sparse_mask, sparse_pairs

PATTERNS = ("dense", "sliding", "strided", "fixed")


def _positive_int(name: str, v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}={v!r} must be a positive int")
    return v


def sqrt_block(T: int) -> int:
    """The stride / block length of about √T at which strided and fixed attention cost O(T√T)."""
    return max(1, round(math.sqrt(_positive_int("T", T))))


def pattern_mask(pattern: str, T: int, block: int, window: int, T_k: int | None = None, offset: int = 0):
    """(T, T_k) mask of one of PATTERNS: dense causal, sliding window of `window`, strided / fixed of `block`."""
    if pattern == "dense":
        return causal_mask(T, T_k, offset)
    if pattern == "sliding":
        return sliding_window_mask(T, window, T_k, offset)
    if pattern in ("strided", "fixed"):
        return sparse_mask(pattern, T, block, T_k, offset)
    raise ValueError(f"pattern {pattern!r} is unknown; choose one of {', '.join(PATTERNS)}")


def _pairs(pattern: str, T: int, block: int, window: int) -> int:
    if pattern in ("dense", "sliding"):
        return attention_pairs(T, window if pattern == "sliding" else None)
    return sparse_pairs(pattern, T, block)


def count_tiles(pattern: str, T: int, block: int, window: int, tile: int) -> int:
    """Tiles of tile × tile a block-sparse kernel visits over a T × T mask, counted one row of query tiles at a time
    (queries s..s+tile-1, `offset` = s) over the keys up to the row's last query (every pattern here is causal), so
    memory stays O(tile·T); time is O(T²), a few seconds at T = 4096 on a CPU."""
    total = 0
    for s in range(0, T, tile):
        t = min(tile, T - s)
        total += int(block_sparse_layout(pattern_mask(pattern, t, block, window, s + t, s), tile, tile).sum())
    return total


def sparse_cost_rows(seq_lens: Sequence[int] = (256, 512, 1024, 2048, 4096, 8192, 16384), window: int = 128,
                     tile: int = 32, tiles_up_to: int = 4096) -> list[dict]:
    """One row per (T, pattern): pattern, T, block (√T for strided/fixed), window, pairs (by formula), pairs_fraction
    (of dense causal), and for T <= tiles_up_to: tile, tiles, tile_fraction (tile × tile tiles visited, counted on
    the masks; None above it, where the T × T count would take minutes on a CPU)."""
    seq_lens = [_positive_int("seq_len", T) for T in seq_lens]
    _positive_int("window", window)
    _positive_int("tile", tile)
    _positive_int("tiles_up_to", tiles_up_to)
    rows = []
    for T in seq_lens:
        block = sqrt_block(T)
        dense_pairs = _pairs("dense", T, block, window)
        count = T <= tiles_up_to
        dense_tiles = count_tiles("dense", T, block, window, tile) if count else None
        for p in PATTERNS:
            pairs = _pairs(p, T, block, window)
            n = count_tiles(p, T, block, window, tile) if count else None
            rows.append({"pattern": p, "T": T, "block": block if p in ("strided", "fixed") else None,
                         "window": window if p == "sliding" else None, "pairs": pairs,
                         "pairs_fraction": pairs / dense_pairs, "tile": tile, "tiles": n,
                         "tile_fraction": None if n is None else n / dense_tiles})
    return rows


# ============================================================================================ the small-run study


def sparse_study(patterns: Sequence[str | None] = (None, "strided", "fixed"), seeds: int = 2, *,
                 run: ArchRun | None = None, block: int | None = None) -> list[dict]:
    """Train run's model with each pattern (None = dense) and `seeds` seeds (run.seed, run.seed + 1, ...);
    block defaults to √block_size. Rows: label, pattern, sparse_block, seed, val_loss, status, pairs_fraction
    (of dense causal at block_size), block_size, steps. The seeds change both the initialisation and the batches."""
    run = check_run(run)
    _positive_int("seeds", seeds)
    patterns = list(patterns)
    bad = [p for p in patterns if p not in (None, "strided", "fixed")]
    if not patterns or bad or len(set(patterns)) != len(patterns):
        raise ValueError(f"patterns={patterns} must be distinct values among None (dense), 'strided', 'fixed'")
    T = run.block_size
    block = sqrt_block(T) if block is None else _positive_int("block", block)
    _, vocab, _, _ = study_data(run)
    rows = []
    for p in patterns:
        fields = {} if p is None else {"sparse_attention": p, "sparse_block": block}
        for s in range(seeds):
            res = train_config(run.model_config(vocab, **fields), run.replace(seed=run.seed + s))
            pairs = attention_pairs(T) if p is None else sparse_pairs(p, T, block)
            rows.append({"label": "dense" if p is None else f"{p} (block {block})", "pattern": p,
                         "sparse_block": None if p is None else block, "seed": run.seed + s,
                         "val_loss": res["val_loss"], "status": res["status"],
                         "pairs_fraction": pairs / attention_pairs(T), "block_size": T, "steps": run.steps})
    return rows


def sparse_verdict(rows: Sequence[dict]) -> list[dict]:
    """Per pattern: mean held-out loss over seeds, gap to dense (mean - dense mean), and `noise`: the largest
    spread (max - min) between the seeds of any one pattern. within_noise = |gap| <= noise: with this many seeds
    the run cannot tell the pattern from dense. Needs a dense arm and at least two seeds."""
    by: dict[str | None, list[float]] = {}
    for r in rows:
        by.setdefault(r["pattern"], []).append(r["val_loss"])
    if None not in by:
        raise ValueError("rows have no dense arm (pattern None): run sparse_study with None among the patterns")
    if min(len(v) for v in by.values()) < 2 or any(x is None for v in by.values() for x in v):
        raise ValueError("every pattern needs at least two seeds with a held-out loss to estimate the noise")
    noise = max(max(v) - min(v) for v in by.values())
    dense = sum(by[None]) / len(by[None])
    out = []
    for p, v in by.items():
        mean = sum(v) / len(v)
        out.append({"pattern": p, "label": "dense" if p is None else p, "mean_val_loss": mean,
                    "gap": mean - dense, "noise": noise, "within_noise": abs(mean - dense) <= noise, "seeds": len(v)})
    return out
