"""FlashAttention-2 in Triton: forward, backward (D pre-pass, dK/dV kernel, dQ kernel), launchers, autograd.Function.

Survey §4.2.2 (attention; FlashAttention) and §4.3 (efficient training). The algorithm, its notation and why it
is exact are in flash_reference.py, the PyTorch version these kernels are tested against; this file maps it to
GPU programs:

    forward   one program per (query tile, batch * head): loops over the key tiles its queries see, keeps the
              running max m, sum l and accumulator in registers, writes O and LSE = m + log(l) (B, H, Tq) fp32
    D         one program per (query tile, batch * head): D = rowsum(dO * O), (B, H, Tq) fp32
    dK, dV    one program per (key tile, batch * K/V head): loops over the query tiles (of every query head of
              its GQA group) that see its keys, and owns its rows of dK, dV: no other program writes them
    dQ        one program per (query tile, batch * head): loops over key tiles like the forward, owns its dQ rows
Splitting backward in two (FlashAttention-2) costs a second computation of S and P, but no atomic adds.

Causal (queries aligned to the end of the keys, query i sees keys j <= i + Tk - Tq): key tiles wholly above the
diagonal are never visited; tiles wholly below it run without a mask; only the tiles the diagonal (or the end of
the sequence) crosses pay for one. The exponentials are exp2 of log2(e)-scaled scores (one multiply folded into
the scale), and LSE is stored in natural log like the reference's.

Block-sparse (`block_layout`, flash_blocksparse.py): a program walks its row of a lookup table of the True tiles
instead of a range of tile numbers, unmasked tiles first, so False tiles cost nothing; SHIFT aligns the query
tiles to positions (block boundaries) when the queries start mid-tile (a KV cache). SPARSE=False compiles it out.

Dtypes: fp32, bf16, fp16; accumulation always fp32. On a GPU half-precision tiles go to the tensor cores as they
are, and fp32 tiles use exact ("ieee") products, not TF32, to match SDPA in fp32. In the interpreter every tile
is cast to fp32 on load: its bf16 matmul is wrong (numpy, which runs it, has no bf16 arithmetic).
The head dim is padded to a power of two (at least 16, tl.dot's minimum) with masked loads and stores.

One fixed launch configuration per kernel, dtype and head-dim size (`launch_config`); no autotuning, whose
several configs fail under the interpreter. Tests pass 16 x 16 tiles (`block_m`, `block_n`) to cross tile edges
at lengths of a few dozen.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from minillm.kernels import runtime
from minillm.kernels.flash_blocksparse import check_block_layout, kernel_tables
from minillm.kernels.flash_reference import check_inputs

JIT_MODE = runtime.current_mode()  # fixed now: @triton.jit below decides interpreter vs compiled at import
LOG2E = 1.4426950408889634  # exp(x) = exp2(x * log2(e))
_LOG2E = tl.constexpr(LOG2E)  # the same, for the kernels (which may read globals only as constexpr)
DTYPES = (torch.float32, torch.bfloat16, torch.float16)

# (BLOCK_M, BLOCK_N, num_warps, num_stages) per kernel on a GPU, for half precision (bf16/fp16) or fp32 and the
# head dim padded to <= 64 or to 128. Chosen without a GPU at hand: the largest tiles whose kernels, compiled for
# sm_90, ptxas fits in the register file without spilling (dK/dV holds two fp32 accumulators, hence its narrower
# query tiles; fp32 tiles are smaller still: exact fp32 products run on CUDA cores, not tensor cores). Not timed:
# bench/ is where to tune them.
GPU_CONFIGS = {
    "fwd": {("half", 64): (128, 64, 8, 3), ("half", 128): (128, 64, 8, 3),
            ("fp32", 64): (64, 32, 8, 2), ("fp32", 128): (32, 16, 8, 2)},
    "dkdv": {("half", 64): (64, 64, 8, 2), ("half", 128): (32, 64, 8, 2),
             ("fp32", 64): (16, 32, 8, 2), ("fp32", 128): (16, 16, 8, 2)},
    "dq": {("half", 64): (64, 64, 8, 2), ("half", 128): (64, 64, 8, 2),
           ("fp32", 64): (32, 32, 8, 2), ("fp32", 128): (32, 32, 8, 2)},
}
INTERPRETER_CONFIG = (32, 32, 4, 1)  # each program is slow Python; tests pass 16 x 16 tiles


@triton.jit
def _kv_tile(K, V, sk, sv, LUT, t, cols_d, Tk, SPARSE: tl.constexpr, UPCAST: tl.constexpr, BLOCK_N: tl.constexpr,
             HEAD_DIM: tl.constexpr):
    """Key tile t (block-sparse: the table's t-th entry): its key indices (BLOCK_N,) and K, V (BLOCK_N, BLOCK_D)."""
    if SPARSE:
        t = tl.load(LUT + t)
    cols = t * BLOCK_N + tl.arange(0, BLOCK_N)
    kv_mask = (cols[:, None] < Tk) & (cols_d[None, :] < HEAD_DIM)
    k = tl.load(K + cols[:, None] * sk + cols_d[None, :], mask=kv_mask, other=0.0)
    v = tl.load(V + cols[:, None] * sv + cols_d[None, :], mask=kv_mask, other=0.0)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    return cols, k, v


@triton.jit
def _fwd_tiles(acc, l_i, m_i, q, K, V, sk, sv, rows, cols_d, lo, hi, LUT, Tk, offset, qk_scale,
               MASKED: tl.constexpr, SPARSE: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr,
               BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Online softmax over key tiles lo..hi-1 (entries of the lookup table LUT when SPARSE): the new (acc, l, m)."""
    for t in range(lo, hi):
        cols, k, v = _kv_tile(K, V, sk, sv, LUT, t, cols_d, Tk, SPARSE, UPCAST, BLOCK_N, HEAD_DIM)
        s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale  # (BLOCK_M, BLOCK_N), log2 units
        if MASKED:  # the diagonal (causal) or the end of the keys crosses this tile
            s = tl.where((cols[None, :] <= rows[:, None] + offset) & (cols[None, :] < Tk), s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))  # finite: a row sees a key in its first tile (see _key_tiles)
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)  # rescales the old terms to the new max (0 on the first tile)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _key_tiles(start_m, Tq, Tk, LUT, CAUSAL: tl.constexpr, SPARSE: tl.constexpr, BLOCK_M: tl.constexpr,
               BLOCK_N: tl.constexpr):
    """(offset, full, end) of a query tile: the mask's horizon (row i sees keys j <= i + offset), and its key tiles
    0..full-1 seen whole, full..end-1 seen in part (when SPARSE: entries of LUT, the tile's row of the table).
    Either way each row sees a key in the first tile it visits, so the running max is finite from then on: dense,
    key 0; block-sparse, a whole tile of an earlier block or, first among the masked ones, the first key of its
    own block. A row whose layout gives it no key visits no tile at all (every row of a tile shares its block)."""
    if CAUSAL:
        offset = Tk - Tq  # queries aligned to the end of the keys
        end = tl.cdiv(tl.minimum(Tk, start_m + BLOCK_M + offset), BLOCK_N)  # later key tiles: above the diagonal
        full = tl.minimum(start_m + offset + 1, Tk) // BLOCK_N  # tiles every row of ours sees whole
    else:
        offset = Tk  # a horizon past every key: the masks then only cut off the keys past Tk
        end = tl.cdiv(Tk, BLOCK_N)
        full = Tk // BLOCK_N  # the tail tile (keys past Tk) needs a mask
    if SPARSE:
        full = tl.load(LUT)
        end = tl.load(LUT + 1)
    return offset, full, end


@triton.jit
def _fwd_kernel(Q, K, V, O, LSE, sq_b, sq_h, sq_t, sk_b, sk_h, sk_t, sv_b, sv_h, sv_t, so_b, so_h, so_t, H, GROUP,
                Tq, Tk, qk_scale, LUT, VISITS, lut_h, lut_r, SHIFT, CAUSAL: tl.constexpr, SPARSE: tl.constexpr,
                COUNT: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, HEAD_DIM: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M - SHIFT  # SHIFT > 0: block-sparse tiles aligned to positions
    bh = tl.program_id(1).to(tl.int64)  # int64: b * stride overflows int32 on large tensors
    b, h = bh // H, bh % H
    hkv = h // GROUP  # GQA: this query head's K/V head
    rows = start_m + tl.arange(0, BLOCK_M)
    cols_d = tl.arange(0, BLOCK_D)
    row_ok = _real_rows(rows, Tq, SPARSE)
    q_mask = row_ok[:, None] & (cols_d[None, :] < HEAD_DIM)
    q = tl.load(Q + b * sq_b + h * sq_h + rows[:, None] * sq_t + cols_d[None, :], mask=q_mask, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    K += b * sk_b + hkv * sk_h
    V += b * sv_b + hkv * sv_h
    LUT += h * lut_h + tl.program_id(0) * lut_r  # this tile's row of the table: counts, then key tiles
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    offset, full, end = _key_tiles(start_m, Tq, Tk, LUT, CAUSAL, SPARSE, BLOCK_M, BLOCK_N)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, K, V, sk_t, sv_t, rows, cols_d, 0, full, LUT + 2, Tk, offset,
                               qk_scale, False, SPARSE, UPCAST, PREC, BLOCK_N, HEAD_DIM)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, K, V, sk_t, sv_t, rows, cols_d, full, end, LUT + 2, Tk, offset,
                               qk_scale, True, SPARSE, UPCAST, PREC, BLOCK_N, HEAD_DIM)
    if SPARSE:  # a row that saw no key (l = 0, m = -inf): output 0, LSE -inf + log2(1) = -inf, an empty sum's log
        l_i = tl.where(l_i == 0.0, 1.0, l_i)
    o = acc / l_i[:, None]
    tl.store(O + b * so_b + h * so_h + rows[:, None] * so_t + cols_d[None, :], o.to(O.dtype.element_ty),
             mask=q_mask)
    tl.store(LSE + bh * Tq + rows, (m_i + tl.math.log2(l_i)) / _LOG2E, mask=row_ok)  # natural log
    if COUNT:  # tests: how many key tiles this program visited
        tl.store(VISITS + tl.program_id(1) * tl.num_programs(0) + tl.program_id(0), end)


@triton.jit
def _bwd_delta_kernel(O, DO, DELTA, so_b, so_h, so_t, sd_b, sd_h, sd_t, H, Tq,
                      BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, HEAD_DIM: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    bh = tl.program_id(1).to(tl.int64)
    b, h = bh // H, bh % H
    cols_d = tl.arange(0, BLOCK_D)
    mask = (rows[:, None] < Tq) & (cols_d[None, :] < HEAD_DIM)
    o = tl.load(O + b * so_b + h * so_h + rows[:, None] * so_t + cols_d[None, :], mask=mask, other=0.0)
    do = tl.load(DO + b * sd_b + h * sd_h + rows[:, None] * sd_t + cols_d[None, :], mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)  # (BLOCK_M,) = sum_j P_ij dP_ij
    tl.store(DELTA + bh * Tq + rows, delta, mask=rows < Tq)


@triton.jit
def _real_rows(rows, Tq, SPARSE: tl.constexpr):
    """Which rows are queries: < Tq, and >= 0 (block-sparse only: its tile 0 may start before query 0)."""
    ok = rows < Tq
    if SPARSE:
        ok = ok & (rows >= 0)
    return ok


@triton.jit
def _row_stats(LSE, DELTA, rows, Tq, SPARSE: tl.constexpr):
    """LSE (log2 units) and D of the rows. Rows outside 0..Tq-1 read 0 (their q and dO are 0: they add nothing);
    a row with LSE -inf (no key) lies in no visited tile: its block's layout row gives its whole tile no key."""
    ok = _real_rows(rows, Tq, SPARSE)
    return tl.load(LSE + rows, mask=ok, other=0.0) * _LOG2E, tl.load(DELTA + rows, mask=ok, other=0.0)


@triton.jit
def _dkdv_tiles(dk, dv, k, v, Q, DO, LSE, DELTA, sq, sd, cols, cols_d, lo, hi, LUT, Tq, Tk, offset, qk_scale, SHIFT,
                MASKED: tl.constexpr, SPARSE: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr,
                BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Adds query tiles lo..hi-1 (LUT entries when SPARSE) of one query head to this key tile's dK (unscaled), dV."""
    for t in range(lo, hi):
        if SPARSE:
            start_m = tl.load(LUT + t) * BLOCK_M - SHIFT
        else:
            start_m = t * BLOCK_M
        rows = start_m + tl.arange(0, BLOCK_M)
        q_mask = _real_rows(rows, Tq, SPARSE)[:, None] & (cols_d[None, :] < HEAD_DIM)
        q = tl.load(Q + rows[:, None] * sq + cols_d[None, :], mask=q_mask, other=0.0)  # (BLOCK_M, BLOCK_D)
        do = tl.load(DO + rows[:, None] * sd + cols_d[None, :], mask=q_mask, other=0.0)
        if UPCAST:
            q = q.to(tl.float32)
            do = do.to(tl.float32)
        lse, delta = _row_stats(LSE, DELTA, rows, Tq, SPARSE)  # (BLOCK_M,) each
        s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale  # (BLOCK_M, BLOCK_N)
        if MASKED:  # -inf before exp2: a masked score's exp2(s - lse) could overflow
            keep = (cols[None, :] <= rows[:, None] + offset) & (cols[None, :] < Tk)
            s = tl.where(keep, s, float("-inf"))
        p = tl.math.exp2(s - lse[:, None])  # the forward's softmax tile, recomputed
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PREC)  # P^T dO  (BLOCK_N, BLOCK_D)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)  # dO V^T  (BLOCK_M, BLOCK_N)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PREC)  # dS^T Q  (BLOCK_N, BLOCK_D)
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(Q, K, V, DO, LSE, DELTA, DK, DV, sq_b, sq_h, sq_t, sk_b, sk_h, sk_t, sv_b, sv_h, sv_t, sd_b,
                     sd_h, sd_t, H, HKV, GROUP, Tq, Tk, scale, qk_scale, LUT, VISITS, lut_h, lut_r, SHIFT,
                     CAUSAL: tl.constexpr, SPARSE: tl.constexpr, COUNT: tl.constexpr, UPCAST: tl.constexpr,
                     PREC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                     HEAD_DIM: tl.constexpr):
    start_n = tl.program_id(0) * BLOCK_N
    bhkv = tl.program_id(1).to(tl.int64)
    b, hkv = bhkv // HKV, bhkv % HKV
    cols = start_n + tl.arange(0, BLOCK_N)
    cols_d = tl.arange(0, BLOCK_D)
    kv_mask = (cols[:, None] < Tk) & (cols_d[None, :] < HEAD_DIM)
    k = tl.load(K + b * sk_b + hkv * sk_h + cols[:, None] * sk_t + cols_d[None, :], mask=kv_mask, other=0.0)
    v = tl.load(V + b * sv_b + hkv * sv_h + cols[:, None] * sv_t + cols_d[None, :], mask=kv_mask, other=0.0)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    dk = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    n_tiles = tl.cdiv(Tq, BLOCK_M)
    if CAUSAL:
        offset = Tk - Tq
        lo = tl.maximum(start_n - offset, 0) // BLOCK_M  # earlier query tiles see none of our keys
        full = tl.cdiv(tl.maximum(start_n + BLOCK_N - 1 - offset, 0), BLOCK_M)  # from here on they see all
    else:
        offset = Tk  # every query sees every key
        lo = 0
        full = 0
    visits = n_tiles * 0  # a tensor, as the loop below adds tensors to it
    # The unmasked stage also takes a last, partial query tile, and a key tile past Tk: rows past Tq load q = dO = 0
    # and LSE = D = 0, so P = 1 there but P^T dO = 0 and dS = 1 * (0 - 0) = 0 add nothing; keys past Tk only make
    # their own rows of dK, dV (never stored) wrong.
    for g in range(0, GROUP):  # every query head that shares this K/V head adds to its dK, dV
        h = hkv * GROUP + g
        Qh = Q + b * sq_b + h * sq_h
        DOh = DO + b * sd_b + h * sd_h
        row0 = (b * H + h) * Tq  # LSE and DELTA are (B, H, Tq) contiguous
        if SPARSE:  # this key tile's row of the head's table: unmasked query tiles, then masked ones
            lut = LUT + h * lut_h + tl.program_id(0) * lut_r
            m_lo, m_hi, u_lo, u_hi = tl.load(lut), tl.load(lut + 1), 0, tl.load(lut)
        else:
            lut = LUT
            m_lo, m_hi, u_lo, u_hi = lo, tl.minimum(full, n_tiles), full, n_tiles
        dk, dv = _dkdv_tiles(dk, dv, k, v, Qh, DOh, LSE + row0, DELTA + row0, sq_t, sd_t, cols, cols_d, m_lo, m_hi,
                             lut + 2, Tq, Tk, offset, qk_scale, SHIFT, True, SPARSE, UPCAST, PREC, BLOCK_M, HEAD_DIM)
        dk, dv = _dkdv_tiles(dk, dv, k, v, Qh, DOh, LSE + row0, DELTA + row0, sq_t, sd_t, cols, cols_d, u_lo, u_hi,
                             lut + 2, Tq, Tk, offset, qk_scale, SHIFT, False, SPARSE, UPCAST, PREC, BLOCK_M, HEAD_DIM)
        visits += tl.maximum(m_hi - m_lo, 0) + tl.maximum(u_hi - u_lo, 0)
    out = bhkv * Tk * HEAD_DIM + cols[:, None] * HEAD_DIM + cols_d[None, :]  # DK, DV are contiguous
    tl.store(DK + out, (dk * scale).to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=kv_mask)
    if COUNT:  # tests: how many (query tile, query head) pairs this program visited
        tl.store(VISITS + tl.program_id(1) * tl.num_programs(0) + tl.program_id(0), visits)


@triton.jit
def _dq_tiles(dq, q, do, lse, delta, K, V, sk, sv, rows, cols_d, lo, hi, LUT, Tk, offset, qk_scale,
              MASKED: tl.constexpr, SPARSE: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr,
              BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Adds key tiles lo..hi-1 (LUT entries when SPARSE) to this query tile's dQ (unscaled)."""
    for t in range(lo, hi):
        cols, k, v = _kv_tile(K, V, sk, sv, LUT, t, cols_d, Tk, SPARSE, UPCAST, BLOCK_N, HEAD_DIM)
        s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
        if MASKED:
            s = tl.where((cols[None, :] <= rows[:, None] + offset) & (cols[None, :] < Tk), s, float("-inf"))
        p = tl.math.exp2(s - lse[:, None])
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)  # dS K  (BLOCK_M, BLOCK_D)
    return dq


@triton.jit
def _bwd_dq_kernel(Q, K, V, DO, LSE, DELTA, DQ, sq_b, sq_h, sq_t, sk_b, sk_h, sk_t, sv_b, sv_h, sv_t, sd_b, sd_h,
                   sd_t, H, GROUP, Tq, Tk, scale, qk_scale, LUT, VISITS, lut_h, lut_r, SHIFT, CAUSAL: tl.constexpr,
                   SPARSE: tl.constexpr, COUNT: tl.constexpr, UPCAST: tl.constexpr, PREC: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, HEAD_DIM: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M - SHIFT
    bh = tl.program_id(1).to(tl.int64)
    b, h = bh // H, bh % H
    hkv = h // GROUP
    rows = start_m + tl.arange(0, BLOCK_M)
    cols_d = tl.arange(0, BLOCK_D)
    q_mask = _real_rows(rows, Tq, SPARSE)[:, None] & (cols_d[None, :] < HEAD_DIM)
    q = tl.load(Q + b * sq_b + h * sq_h + rows[:, None] * sq_t + cols_d[None, :], mask=q_mask, other=0.0)
    do = tl.load(DO + b * sd_b + h * sd_h + rows[:, None] * sd_t + cols_d[None, :], mask=q_mask, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    lse, delta = _row_stats(LSE + bh * Tq, DELTA + bh * Tq, rows, Tq, SPARSE)
    K += b * sk_b + hkv * sk_h
    V += b * sv_b + hkv * sv_h
    LUT += h * lut_h + tl.program_id(0) * lut_r
    dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    offset, full, end = _key_tiles(start_m, Tq, Tk, LUT, CAUSAL, SPARSE, BLOCK_M, BLOCK_N)  # as the forward's
    dq = _dq_tiles(dq, q, do, lse, delta, K, V, sk_t, sv_t, rows, cols_d, 0, full, LUT + 2, Tk, offset, qk_scale,
                   False, SPARSE, UPCAST, PREC, BLOCK_N, HEAD_DIM)
    dq = _dq_tiles(dq, q, do, lse, delta, K, V, sk_t, sv_t, rows, cols_d, full, end, LUT + 2, Tk, offset, qk_scale,
                   True, SPARSE, UPCAST, PREC, BLOCK_N, HEAD_DIM)
    out = bh * Tq * HEAD_DIM + rows[:, None] * HEAD_DIM + cols_d[None, :]  # DQ is contiguous
    tl.store(DQ + out, (dq * scale).to(DQ.dtype.element_ty), mask=q_mask)
    if COUNT:
        tl.store(VISITS + tl.program_id(1) * tl.num_programs(0) + tl.program_id(0), end)


def launch_config(kernel: str, dtype: torch.dtype, head_dim: int, device: torch.device,
                  block_m: int | None = None, block_n: int | None = None) -> tuple[int, int, int, int]:
    """(block_m, block_n, num_warps, num_stages) of `kernel` ('fwd', 'dkdv' or 'dq'): the fixed config for this
    dtype and head dim, with the tiles asked for (if any) in place of its own."""
    for name, n in (("block_m", block_m), ("block_n", block_n)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 16 or n & (n - 1)):
            raise ValueError(f"{name}={n!r} must be a power of two >= 16 (Triton blocks are powers of two, and "
                             "tl.dot needs at least 16 rows and columns)")
    if device.type == "cuda" and JIT_MODE == "compiled":
        key = ("fp32" if dtype == torch.float32 else "half", 64 if head_block(head_dim) <= 64 else 128)
        bm, bn, warps, stages = GPU_CONFIGS[kernel][key]
    else:
        bm, bn, warps, stages = INTERPRETER_CONFIG
    return block_m or bm, block_n or bn, warps, stages


def head_block(head_dim: int) -> int:
    """The head dim padded to a power of two, at least 16 (tl.dot's smallest inner dimension)."""
    return max(16, triton.next_power_of_2(head_dim))


def _check_kernel_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                         scale: float | None) -> float:
    scale = check_inputs(q, k, v, causal, scale)
    if q.dtype not in DTYPES:
        raise TypeError(f"the Triton flash attention kernels take {', '.join(map(str, DTYPES))}, got {q.dtype}; "
                        "cast q, k, v (or use flash_attention_reference, which takes any float dtype)")
    if q.shape[0] * q.shape[1] > 65535:
        raise ValueError(f"batch * heads = {q.shape[0] * q.shape[1]} exceeds the 65535 programs of a grid's "
                         "second dimension; split the batch")
    runtime.check_runnable(q, JIT_MODE, "flash attention")
    return scale


def _unit_stride(t: torch.Tensor) -> torch.Tensor:
    """The kernels take any batch/head/time strides (e.g. a transposed view) but need a contiguous head dim."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def flash_attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                            scale: float | None = None, block_m: int | None = None, block_n: int | None = None, *,
                            block_layout: torch.Tensor | None = None, sparse_block: int | None = None,
                            _visits: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel. q (B, H, Tq, D), k/v (B, Hkv, Tk, D) -> O (B, H, Tq, D) in q's dtype and
    LSE (B, H, Tq) fp32, the log-sum-exp of each query row's scaled scores. `_visits`: see kernel_tables."""
    scale = _check_kernel_inputs(q, k, v, causal, scale)
    q, k, v = _unit_stride(q), _unit_stride(k), _unit_stride(v)
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    layout = check_block_layout(block_layout, sparse_block, Tq, Tk, H)
    bm, bn, warps, stages = launch_config("fwd", q.dtype, D, q.device, block_m, block_n)
    t = kernel_tables(layout, sparse_block, Tq, Tk, causal, bm, bn, "fwd", (B, H), q.device, _visits)
    o = torch.empty(B, H, Tq, D, dtype=q.dtype, device=q.device)  # (B, H, Tq, D)
    lse = torch.empty(B, H, Tq, dtype=torch.float32, device=q.device)  # (B, H, Tq)
    if o.numel():
        with runtime.on_device(q):
            _fwd_kernel[(t.pop("programs"), B * H)](
                q, k, v, o, lse, *_strides(q), *_strides(k), *_strides(v), *_strides(o), H, H // Hkv, Tq, Tk,
                scale * LOG2E, **t, **_flags(q, causal), BLOCK_M=bm, BLOCK_N=bn, num_warps=warps,
                num_stages=stages)
    return o, lse


def flash_attention_backward(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             o: torch.Tensor, lse: torch.Tensor, causal: bool = True, scale: float | None = None,
                             block_m: int | None = None, block_n: int | None = None, *,
                             block_layout: torch.Tensor | None = None, sparse_block: int | None = None,
                             _visits: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the three backward kernels: dq (B, H, Tq, D), dk and dv (B, Hkv, Tk, D), in the inputs' dtype."""
    scale = _check_kernel_inputs(q, k, v, causal, scale)
    q, k, v, o, do = (_unit_stride(t) for t in (q, k, v, o, do))  # do may be an expanded (stride 0) gradient
    lse = lse.float().contiguous()
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    layout = check_block_layout(block_layout, sparse_block, Tq, Tk, H)
    dq = torch.empty(B, H, Tq, D, dtype=q.dtype, device=q.device)
    dk = torch.zeros(B, Hkv, Tk, D, dtype=k.dtype, device=q.device)  # zeros: stays so when there are no queries
    dv = torch.zeros(B, Hkv, Tk, D, dtype=v.dtype, device=q.device)
    if not dq.numel():
        return dq, dk, dv
    delta = torch.empty(B, H, Tq, dtype=torch.float32, device=q.device)  # (B, H, Tq): rowsum(dO * O)
    flags = _flags(q, causal)
    strides = (*_strides(q), *_strides(k), *_strides(v), *_strides(do))
    bm1, bn1, warps1, stages1 = launch_config("dkdv", q.dtype, D, q.device, block_m, block_n)
    bm2, bn2, warps2, stages2 = launch_config("dq", q.dtype, D, q.device, block_m, block_n)
    t1 = kernel_tables(layout, sparse_block, Tq, Tk, causal, bm1, bn1, "dkdv", (B, Hkv), q.device, _visits)
    t2 = kernel_tables(layout, sparse_block, Tq, Tk, causal, bm2, bn2, "dq", (B, H), q.device, _visits)
    with runtime.on_device(q):
        _bwd_delta_kernel[(triton.cdiv(Tq, bm2), B * H)](o, do, delta, *_strides(o), *_strides(do), H, Tq,
                                                          BLOCK_M=bm2, BLOCK_D=head_block(D), HEAD_DIM=D)
        _bwd_dkdv_kernel[(t1.pop("programs"), B * Hkv)](
            q, k, v, do, lse, delta, dk, dv, *strides, H, Hkv, H // Hkv, Tq, Tk, scale, scale * LOG2E, **t1,
            **flags, BLOCK_M=bm1, BLOCK_N=bn1, num_warps=warps1, num_stages=stages1)
        _bwd_dq_kernel[(t2.pop("programs"), B * H)](
            q, k, v, do, lse, delta, dq, *strides, H, H // Hkv, Tq, Tk, scale, scale * LOG2E, **t2, **flags,
            BLOCK_M=bm2, BLOCK_N=bn2, num_warps=warps2, num_stages=stages2)
    return dq, dk, dv


def _upcast() -> bool:
    """Cast tiles to fp32 on load: always in the interpreter (its bf16 tl.dot is wrong), a no-op for fp32."""
    return JIT_MODE == "interpreter"


def _flags(q: torch.Tensor, causal: bool) -> dict:
    """The kernels' constexpr arguments. PREC: exact fp32 products for fp32 (TF32 would miss SDPA's fp32 by ~1e-3);
    "tf32", the default, is ignored for bf16/fp16."""
    return dict(CAUSAL=bool(causal), UPCAST=_upcast(), PREC="ieee" if q.dtype == torch.float32 else "tf32",
                BLOCK_D=head_block(q.shape[-1]), HEAD_DIM=q.shape[-1])


class FlashAttentionFunction(torch.autograd.Function):
    """Saves q, k, v, O and LSE (B, H, Tq), never the (Tq, Tk) attention matrix; backward recomputes it by tiles."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float | None,
                block_m: int | None, block_n: int | None, block_layout: torch.Tensor | None,
                sparse_block: int | None) -> torch.Tensor:
        o, lse = flash_attention_forward(q, k, v, causal, scale, block_m, block_n, block_layout=block_layout,
                                         sparse_block=sparse_block)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.args = (causal, scale, block_m, block_n)
        ctx.sparse = dict(block_layout=block_layout, sparse_block=sparse_block)  # a bool layout, not saved state
        return o

    @staticmethod
    def backward(ctx, do: torch.Tensor):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = flash_attention_backward(do, q, k, v, o, lse, *ctx.args, **ctx.sparse)
        return dq, dk, dv, None, None, None, None, None, None


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                    scale: float | None = None, *, block_m: int | None = None, block_n: int | None = None,
                    block_layout: torch.Tensor | None = None, sparse_block: int | None = None) -> torch.Tensor:
    """softmax(q k^T * scale, causal) v with the Triton FlashAttention-2 kernels, differentiable in q, k, v.

    q (B, H, Tq, D), k/v (B, Hkv, Tk, D), H % Hkv == 0 (GQA/MQA), D <= 128 -> (B, H, Tq, D) in q's dtype.
    causal aligns the queries to the end of the keys (query i sees keys j <= i + Tk - Tq; the KV-cache case),
    unlike SDPA's is_causal, which aligns them to the start; the two agree when Tq == Tk. scale defaults to
    1/sqrt(D). block_m, block_n override the fixed tile sizes (powers of two >= 16), e.g. for tests.
    block_layout, sparse_block: block-sparse attention (flash_blocksparse.py): a bool layout (query blocks, key
    blocks) or (H, ...) of sparse_block = S positions per block, S a multiple of the tiles; only the tiles of True
    blocks are visited (forward and backward), still under the causal mask; a query that sees no key gets 0.
    """
    return FlashAttentionFunction.apply(q, k, v, causal, scale, block_m, block_n, block_layout, sparse_block)
