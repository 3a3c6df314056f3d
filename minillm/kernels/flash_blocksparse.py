"""Block-sparse FlashAttention, host side: check a layout of S x S blocks and list the tiles each program visits.

Survey §4.2.2 (attention: sparse attention, FlashAttention). The Sparse Transformer (Child et al. 2019) ran its
strided and fixed patterns with block-sparse GPU kernels: the pattern is defined on whole blocks of S positions,
a boolean layout (query blocks, key blocks) says which block pairs attend, and the kernel visits only the tiles of
True blocks. A pattern defined on single positions saves a tiled kernel nothing (a summary column touches every
tile below the diagonal: `minillm.model.sparse.attention_cost`); one defined on blocks skips False tiles outright.

This file is shared by the PyTorch reference (flash_reference.py) and the Triton kernels (flash_attention.py):
`check_block_layout` validates a layout, `tile_layout` maps it to the kernels' tiles, and `lookup_table` lists
each tile row's visited tiles (a lookup table, as in OpenAI's blocksparse kernels), so a program loops over its
True tiles only, never testing and skipping the others.

Conventions:
- Positions: query i is position i + Tk - Tq (the queries are the last Tq of the Tk keys: a KV cache's decode step
  and the causal mask's alignment), key j is position j; block b holds positions [b*S, (b+1)*S). Hence Tq <= Tk.
- The layout has ceil(Tk / S) columns and either as many rows (every block: one layout for the whole sequence) or
  only the rows of the query blocks, from block (Tk - Tq) // S on (a decode step's last row); the two coincide
  when the first query lies in block 0. A 3-d layout (H, rows, cols) gives each query head its own.
- Tiles are aligned to positions: query tile p covers positions a0 + p*BM ... with a0 the multiple of BM at or
  below the first query, so with S a multiple of BM and BN each tile lies in one block and (p, j) reads one
  layout entry. The first tile's rows before query 0 (at most BM - 1, a KV cache only) are zeros, never stored.
- True blocks are still cut by the causal mask; a tile wholly above the diagonal is skipped as in dense attention.
- A query that sees no key (its layout row is False wherever it could look) gets output 0 and LSE -inf (the log of
  an empty sum), and passes no gradient: what SDPA gives a fully masked row, and never NaN.
"""
from __future__ import annotations

import math

import torch


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def check_block_layout(layout: torch.Tensor | None, sparse_block: int | None, Tq: int, Tk: int,
                       n_head: int | None = None) -> torch.Tensor | None:
    """None (dense attention) or the layout's rows for the query blocks: (rows, n_kb) or (H, rows, n_kb) bool,
    rows = ceil(Tk / S) - (Tk - Tq) // S. Raises on a layout without S (or S without a layout), a wrong dtype or
    shape, or more queries than keys."""
    if layout is None and sparse_block is None:
        return None
    if layout is None or sparse_block is None:
        raise ValueError("block_layout and sparse_block go together: pass a boolean layout of S x S blocks and its "
                         "block size S, or neither (dense attention)")
    if isinstance(sparse_block, bool) or not isinstance(sparse_block, int) or sparse_block < 1:
        raise ValueError(f"sparse_block={sparse_block!r} must be a positive int (the positions per layout block)")
    if not isinstance(layout, torch.Tensor) or layout.dtype != torch.bool or layout.dim() not in (2, 3):
        got = f"{layout.dtype} of shape {tuple(layout.shape)}" if isinstance(layout, torch.Tensor) else type(layout)
        raise TypeError(f"block_layout must be a bool tensor (query blocks, key blocks) or (heads, query blocks, "
                        f"key blocks), True = attend; got {got}")
    if Tq > Tk:
        raise ValueError(f"a block layout places the {Tq} queries at the end of the {Tk} keys (the KV-cache case), "
                         "so it needs Tq <= Tk; without a layout, non-causal attention takes any Tq")
    if layout.dim() == 3 and n_head is not None and layout.shape[0] != n_head:
        raise ValueError(f"a per-head block_layout needs one layout per query head: got {layout.shape[0]} for "
                         f"{n_head} heads; pass (n_head, rows, cols), or a 2-d layout shared by every head")
    S = sparse_block
    n_kb, first = _cdiv(Tk, S), (Tk - Tq) // S
    n_span = n_kb - first
    rows, cols = layout.shape[-2:]
    if cols != n_kb or rows not in (n_kb, n_span):
        want = f"({n_kb}, {n_kb})" + (f" or ({n_span}, {n_kb})" if n_span != n_kb else "")
        raise ValueError(f"block_layout has shape {tuple(layout.shape)}: {Tk} keys in blocks of sparse_block={S} "
                         f"need (rows, cols) = {want}, every block's row or only those of the query blocks (from "
                         f"block {first}); check S, or slice the layout to the sequence length")
    return layout[..., rows - n_span:, :]


def check_tiles(sparse_block: int, block_m: int, block_n: int, whose: str) -> None:
    """S must be a multiple of both tile sizes, so that every tile lies inside one layout block. `whose` names the
    tiles in the message ("reference", "'fwd' kernel's")."""
    if sparse_block % block_m or sparse_block % block_n:
        raise ValueError(f"sparse_block={sparse_block} must be a multiple of the {whose} tiles (BLOCK_M={block_m}, "
                         f"BLOCK_N={block_n}) so that each tile lies in one layout block; use a multiple of "
                         f"{math.lcm(block_m, block_n)}, or pass block_m/block_n that divide it")


def tile_layout(layout: torch.Tensor, sparse_block: int, Tq: int, Tk: int, block_m: int, block_n: int,
                causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(visit, masked), each (Hl, n_m, n_n) bool over the position-aligned tiles (Hl = 1 for a shared layout).

    visit: the tile's block is True and (causal) some query of the tile sees some key of it; masked: a visited
    tile that needs the element mask (it crosses the diagonal, or runs past the last key). `layout` is what
    check_block_layout returns; S a multiple of both tiles (check_tiles)."""
    S, offset = sparse_block, Tk - Tq
    a0 = offset - offset % block_m  # position of query tile 0's first row
    n_m, n_n = _cdiv(Tq + offset % block_m, block_m) if Tq else 0, _cdiv(Tk, block_n)
    dev = layout.device
    q0 = a0 + torch.arange(n_m, device=dev) * block_m  # (n_m,) first position of each query tile
    first_q = q0.clamp_min(offset)  # its first real query
    last_q = (q0 + block_m).clamp_max(Tk) - 1  # and last
    k0 = torch.arange(n_n, device=dev) * block_n  # (n_n,) first key of each key tile
    lay = layout if layout.dim() == 3 else layout[None]  # (Hl, rows, n_kb)
    visit = lay[:, q0 // S - offset // S][:, :, k0 // S]  # (Hl, n_m, n_n): the block of each tile
    tail = (k0 + block_n > Tk)[None, :]  # (1, n_n) the last key tile, if partial
    if causal:
        visit = visit & (k0[None, :] <= last_q[:, None])  # wholly above the diagonal: skipped
        masked = tail | ((k0 + block_n).clamp_max(Tk)[None, :] - 1 > first_q[:, None])  # a key after a query
    else:
        masked = tail.expand(n_m, n_n)
    return visit, visit & masked


def lookup_table(visit: torch.Tensor, masked: torch.Tensor, by_key: bool = False) -> torch.Tensor:
    """(Hl, R, 2 + C) int32: per row of tiles (query tiles; key tiles when by_key), [n_unmasked, n_visited, the
    visited tiles' column indices, unmasked ones first, then masked ones; the rest unused]."""
    if by_key:  # the dK/dV programs walk a key tile's column of query tiles
        visit, masked = visit.transpose(1, 2), masked.transpose(1, 2)
    C = visit.shape[-1]
    col = torch.arange(C, device=visit.device)
    order = torch.where(visit, masked.long() * C + col, 2 * C + col).argsort(dim=-1)  # unmasked, masked, unvisited
    counts = torch.stack([(visit & ~masked).sum(-1), visit.sum(-1)], dim=-1)  # (Hl, R, 2)
    return torch.cat([counts, order], dim=-1).to(torch.int32).contiguous()


def kernel_tables(layout: torch.Tensor | None, sparse_block: int | None, Tq: int, Tk: int, causal: bool,
                  block_m: int, block_n: int, kernel: str, lead: tuple[int, int], device: torch.device,
                  visits: dict | None = None) -> dict:
    """The block-sparse arguments of one launch of kernel "fwd", "dq" (a program per query tile) or "dkdv" (per key
    tile): `programs` (the grid's first dimension), the lookup table LUT with its head and row strides lut_h, lut_r,
    SHIFT (rows of query tile 0 before query 0) and SPARSE; placeholders (a dense launch) when layout is None.
    visits (tests): a dict that receives visits[kernel], the tiles each program visited, (*lead, programs) int32
    with lead (B, H) or (B, Hkv); VISITS is that buffer, written when COUNT."""
    by_key = kernel == "dkdv"  # the dK/dV programs walk a key tile's column of query tiles
    args = dict(LUT=torch.zeros(2, dtype=torch.int32, device=device), lut_h=0, lut_r=0, SHIFT=0, SPARSE=False)
    if layout is not None:
        check_tiles(sparse_block, block_m, block_n, f"{kernel!r} kernel's")
        lut = lookup_table(*tile_layout(layout, sparse_block, Tq, Tk, block_m, block_n, causal), by_key).to(device)
        args.update(LUT=lut, lut_h=lut.stride(0) if lut.shape[0] > 1 else 0, lut_r=lut.stride(1),
                    SHIFT=(Tk - Tq) % block_m, SPARSE=True)
    programs = _cdiv(Tk, block_n) if by_key else _cdiv(Tq + args["SHIFT"], block_m)
    args.update(programs=programs, COUNT=visits is not None, VISITS=args["LUT"])  # VISITS unused unless COUNT
    if visits is not None:
        args["VISITS"] = visits[kernel] = torch.zeros(*lead, programs, dtype=torch.int32, device=device)
    return args
