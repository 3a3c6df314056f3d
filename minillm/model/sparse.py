"""Sparse attention patterns: the Sparse Transformer's strided and fixed factorised masks, and what they cost.

Survey §4.2.2 (attention): full attention compares every pair of tokens, O(T²) per sequence; *sparse attention*
lets each query see a structured subset, and GPT-3 alternates dense layers with "locally banded sparse" ones.
The patterns here are those of the Sparse Transformer (Child et al. 2019), which GPT-3 cites:

- strided, stride l: query i sees the l positions up to itself (a local band) and every position j with
  (i - j) % l == 0 (a "strided" head that jumps back l at a time). Suits data with a period (images, audio).
- fixed, block l with c summary positions: query i sees its own block of l positions and the last c positions
  of every block (the "summary" columns), so information flows between blocks through those columns. Suits text.

Each is the union of two "factorised" parts (`strided_sparse_parts`, `fixed_sparse_parts`), each part a head of
the paper. With l ≈ √T a query sees O(√T) keys, so attention costs O(T√T) instead of O(T²), and yet any position
reaches any earlier one in two hops (a key of the strided/summary part that itself attended to the target):
two stacked layers connect everything that dense attention does.

Conventions are those of `attention.causal_mask` / `sliding_window_mask`: boolean (T, T_k), True = may attend,
query i at absolute position offset + i (a KV cache holds T_k keys, the queries are the last T of them). Blocks
and strides are counted in absolute positions, so a cached decode step sees exactly what a full forward saw.

`block_sparse_layout` lists the (query tile, key tile) pairs that hold any True: what a block-sparse
FlashAttention kernel visits (the rest it skips). `attention_cost` counts pairs and tiles of a mask;
`sparse_pairs` counts a pattern's pairs by formula, for lengths whose T × T mask would not fit in memory.
Tiles are why a kernel gains nothing from these element-level patterns: a summary column or a stride touches
nearly every tile below the diagonal. The Sparse Transformer's own kernels define the pattern on whole blocks of S
positions instead: `strided_block_layout` and `fixed_block_layout` are the two patterns over blocks (a bool layout
(n_blocks, n_blocks), True = the block pair attends), which `minillm.kernels.ops.flash_attention(block_layout=...,
sparse_block=S)` runs visiting only True tiles; `expand_block_layout` is the element mask a layout means, for
attn_impl="math" / SDPA (with the causal mask) as its oracle.
`sparse_attention_fn` makes a custom attention core from a pattern, for per-layer patterns (GPT-3's alternation,
via `GPT.set_attention_fn(factory=...)`); `ModelConfig(sparse_attention=..., sparse_block=...)` applies one
pattern in every layer.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from minillm.config import SPARSE_PATTERNS
from minillm.kernels.flash_blocksparse import check_block_layout


def _int(name: str, v: Any, minimum: int = 1) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ValueError(f"{name}={v!r} must be an integer >= {minimum}")
    return v


def _positions(T: int, T_k: int | None, offset: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute query positions (T, 1) and key positions (1, T_k), checked."""
    _int("T", T)
    T_k = T if T_k is None else _int("T_k", T_k)
    _int("offset", offset, minimum=0)
    i = torch.arange(offset, offset + T, device=device)[:, None]  # (T, 1)
    j = torch.arange(T_k, device=device)[None, :]  # (1, T_k)
    return i, j


# ---------------------------------------------------------------------------------------------------------
# The two patterns and their factorised parts.


def strided_sparse_parts(T: int, stride: int, T_k: int | None = None, offset: int = 0,
                         device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The strided pattern's two heads, each (T, T_k), causal: (local, strided).

    local: the `stride` positions up to and including the query (i - stride < j <= i);
    strided: every j <= i with (i - j) % stride == 0 (the query itself, i - stride, i - 2·stride, ...)."""
    _int("stride", stride)
    i, j = _positions(T, T_k, offset, device)
    causal = j <= i  # (T, T_k)
    return causal & (j > i - stride), causal & ((i - j) % stride == 0)


def strided_sparse_mask(T: int, stride: int, T_k: int | None = None, offset: int = 0, device=None) -> torch.Tensor:
    """Sparse Transformer's strided pattern, (T, T_k): the local band of `stride` positions OR every stride-th
    position back. stride >= T is plain causal attention (the band already covers the past)."""
    local, strided = strided_sparse_parts(T, stride, T_k, offset, device)
    return local | strided


def fixed_sparse_parts(T: int, block: int, n_summary: int = 1, T_k: int | None = None, offset: int = 0,
                       device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed pattern's two heads, each (T, T_k), causal: (block, summary).

    block: the keys in the query's own block of `block` positions (j // block == i // block, j <= i);
    summary: the last n_summary positions of every block before the query's own (the columns through which
    blocks exchange information; inside its own block a query already sees them through the first part)."""
    _int("block", block)
    _int("n_summary", n_summary)
    if n_summary > block:
        raise ValueError(f"n_summary={n_summary} must not exceed block={block}: it is the number of positions at the "
                         "end of each block that later blocks may read")
    i, j = _positions(T, T_k, offset, device)
    causal = j <= i  # (T, T_k)
    same_block = (j // block) == (i // block)
    return causal & same_block, causal & ((j // block) < (i // block)) & (j % block >= block - n_summary)


def fixed_sparse_mask(T: int, block: int, n_summary: int = 1, T_k: int | None = None, offset: int = 0,
                      device=None) -> torch.Tensor:
    """Sparse Transformer's fixed pattern, (T, T_k): the query's own block OR the last n_summary positions of
    every earlier block. block >= T is plain causal attention (one block holds everything)."""
    own, summary = fixed_sparse_parts(T, block, n_summary, T_k, offset, device)
    return own | summary


def sparse_mask(pattern: str, T: int, block: int, T_k: int | None = None, offset: int = 0, n_summary: int = 1,
                device=None) -> torch.Tensor:
    """The mask of `pattern` ("strided": block is the stride; "fixed": block is the block length), (T, T_k)."""
    if pattern == "strided":
        return strided_sparse_mask(T, block, T_k, offset, device)
    if pattern == "fixed":
        return fixed_sparse_mask(T, block, n_summary, T_k, offset, device)
    raise ValueError(f"sparse pattern {pattern!r} is unknown; choose one of {', '.join(SPARSE_PATTERNS)}")


# ---------------------------------------------------------------------------------------------------------
# What a mask costs.


def block_sparse_layout(mask: torch.Tensor, block_m: int, block_n: int) -> torch.Tensor:
    """Which tiles of a (..., Tq, Tk) mask hold any True: (..., ceil(Tq / block_m), ceil(Tk / block_n)) bool.

    A tiled (FlashAttention) kernel computes a block_m × block_n tile of scores at a time; a block-sparse kernel
    visits only the True tiles of this layout and skips the rest, so its work is proportional to their count.
    Partial tiles at the edges count like full ones (the kernel pads them)."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() < 2:
        raise TypeError("mask must be a boolean tensor (..., Tq, Tk), True = may attend; got "
                        + (f"{mask.dtype} with shape {tuple(mask.shape)}" if isinstance(mask, torch.Tensor)
                           else type(mask).__name__))
    _int("block_m", block_m)
    _int("block_n", block_n)
    *lead, Tq, Tk = mask.shape
    nq, nk = -(-Tq // block_m), -(-Tk // block_n)
    padded = mask.new_zeros(*lead, nq * block_m, nk * block_n)
    padded[..., :Tq, :Tk] = mask
    tiles = padded.reshape(*lead, nq, block_m, nk, block_n)  # (..., nq, bm, nk, bn)
    return tiles.any(dim=-1).any(dim=-2)  # (..., nq, nk)


def attention_cost(mask: torch.Tensor, block_m: int = 64, block_n: int = 64) -> dict[str, float | int]:
    """Work of attention under a (Tq, Tk) mask, against dense causal attention of the same shape.

    pairs: query-key pairs attended (the mask's True entries); dense_pairs: those of the causal mask with the
    queries at the end of the keys (offset Tk - Tq); fraction: pairs / dense_pairs; tiles / dense_tiles /
    tile_fraction: the same for block_m × block_n tiles a block-sparse kernel visits (`block_sparse_layout`).
    Tiles are coarser than pairs: a pattern that touches every tile saves no kernel work however few its pairs."""
    if isinstance(mask, torch.Tensor) and mask.dim() != 2:
        raise ValueError(f"attention_cost takes one (Tq, Tk) mask, got shape {tuple(mask.shape)}: "
                         "pass the mask shared by every row, or one batch element's mask[b, 0]")
    layout = block_sparse_layout(mask, block_m, block_n)  # checks the mask and tile sizes
    Tq, Tk = mask.shape
    if Tq > Tk:
        raise ValueError(f"mask has {Tq} queries but only {Tk} keys: a causal query sees its own key, so Tq <= Tk")
    i = torch.arange(Tk - Tq, Tk)[:, None]
    dense = torch.arange(Tk)[None, :] <= i  # (Tq, Tk)
    dense_layout = block_sparse_layout(dense, block_m, block_n)
    pairs, dense_pairs = int(mask.sum()), int(dense.sum())
    tiles, dense_tiles = int(layout.sum()), int(dense_layout.sum())
    return {"pairs": pairs, "dense_pairs": dense_pairs, "fraction": pairs / dense_pairs,
            "tiles": tiles, "dense_tiles": dense_tiles, "tile_fraction": tiles / dense_tiles,
            "block_m": block_m, "block_n": block_n}


def _band_pairs(T: int, w: int) -> int:
    """Σ_i min(i + 1, w) for i < T: pairs of a causal band of width w."""
    return T * (T + 1) // 2 if w >= T else w * T - w * (w - 1) // 2


def sparse_pairs(pattern: str, T: int, block: int, n_summary: int = 1) -> int:
    """Query-key pairs of `pattern`'s mask over T positions, by formula (equals `sparse_mask(...).sum()`).

    strided, stride l: row i keeps min(i + 1, l) band keys plus floor(i / l) strided keys beyond the band,
      so Σ = band(T, l) + l·q(q-1)/2 + q·r with T = q·l + r; about T·l + T²/(2l), least (√2·T^1.5) at l ≈ √(T/2).
    fixed, block l, c summaries: row i keeps (i mod l) + 1 keys of its block plus c per earlier block,
      Σ = q·l(l+1)/2 + r(r+1)/2 + c·(l·q(q-1)/2 + q·r); about T·l/2 + c·T²/(2l).
    Either way, with l ~ √T the cost grows as T√T instead of dense attention's T(T+1)/2."""
    _int("T", T)
    _int("block", block)
    _int("n_summary", n_summary)
    q, r = divmod(T, block)
    earlier_blocks = block * q * (q - 1) // 2 + q * r  # Σ_i floor(i / l)
    if pattern == "strided":
        return _band_pairs(T, block) + earlier_blocks
    if pattern == "fixed":
        if n_summary > block:
            raise ValueError(f"n_summary={n_summary} must not exceed block={block}")
        return q * block * (block + 1) // 2 + r * (r + 1) // 2 + n_summary * earlier_blocks
    raise ValueError(f"sparse pattern {pattern!r} is unknown; choose one of {', '.join(SPARSE_PATTERNS)}")


# ---------------------------------------------------------------------------------------------------------
# Block-level patterns, for block-sparse kernels.


def strided_block_layout(n_blocks: int, stride: int, device=None) -> torch.Tensor:
    """The strided pattern over blocks: (n_blocks, n_blocks) bool, block r attends block c <= r when r - c < stride
    (a band of `stride` blocks, the diagonal block included) or (r - c) % stride == 0 (every stride-th block back).

    As a block_layout with sparse_block S, query i attends key j when their blocks do and j <= i (the kernel's
    causal mask cuts the diagonal blocks). It is strided_sparse_mask drawn on the block grid."""
    _int("n_blocks", n_blocks)
    return strided_sparse_mask(n_blocks, stride, device=device)


def fixed_block_layout(n_blocks: int, block: int, n_summary: int = 1, device=None) -> torch.Tensor:
    """The fixed pattern over blocks: (n_blocks, n_blocks) bool, block r attends the blocks c <= r of its own group
    of `block` blocks (c // block == r // block, the diagonal block included) and the last n_summary blocks of every
    earlier group (the summary blocks through which groups exchange information). fixed_sparse_mask on blocks."""
    _int("n_blocks", n_blocks)
    return fixed_sparse_mask(n_blocks, block, n_summary, device=device)


def expand_block_layout(layout: torch.Tensor, sparse_block: int, Tq: int, Tk: int) -> torch.Tensor:
    """The element mask a block layout means: (Tq, Tk) bool, or (H, Tq, Tk) for a per-head layout (H, rows, cols).

    Query i is position i + Tk - Tq (the queries are the last Tq keys, as with a KV cache), key j is position j, and
    position p lies in block p // S. The layout has ceil(Tk / S) columns and as many rows, or only the rows of the
    query blocks (from block (Tk - Tq) // S): flash_attention's convention. The causal mask is not included: the
    oracle of flash_attention(causal=True, block_layout=layout) is SDPA with this mask & the causal mask."""
    _int("Tk", Tk)
    _int("Tq", Tq, minimum=0)
    rows = check_block_layout(layout, sparse_block, Tq, Tk)  # (..., query blocks, key blocks), checked
    first = (Tk - Tq) // sparse_block
    q_block = torch.arange(Tk - Tq, Tk, device=layout.device) // sparse_block - first  # (Tq,) row of each query
    k_block = torch.arange(Tk, device=layout.device) // sparse_block  # (Tk,)
    return rows[..., q_block, :][..., k_block]  # (..., Tq, Tk)


# ---------------------------------------------------------------------------------------------------------
# A pattern as a custom attention core.


def sparse_attention_fn(pattern: str, block: int, n_summary: int = 1) -> Callable[..., torch.Tensor]:
    """fn(q, k, v, mask, *, bias=None) -> out: the explicit attention restricted to `pattern` AND the mask the
    model passes (causal, padding). For one layer's pattern, e.g. GPT-3's alternation of dense and sparse layers:

        model.set_attention_fn(factory=lambda i: sparse_attention_fn("fixed", 16) if i % 2
                               else minillm.scaled_dot_product_attention)

    The queries are taken to be the last T of the T_k keys (self-attention, with or without a KV cache).
    No attention dropout: a model with dropout > 0 refuses it while training (see set_attention_fn)."""
    sparse_mask(pattern, 1, block, n_summary=n_summary)  # checks the arguments now, not at the first forward
    from minillm.model.attention import scaled_dot_product_attention  # attention.py imports this module

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, *,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        T, T_k = q.size(-2), k.size(-2)
        pat = sparse_mask(pattern, T, block, T_k, offset=T_k - T, n_summary=n_summary, device=q.device)
        return scaled_dot_product_attention(q, k, v, mask & pat, bias=bias)  # (B, H, T, D)

    return attend
