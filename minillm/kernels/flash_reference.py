"""FlashAttention-2 in plain PyTorch: the tiled algorithm that flash_attention.py's Triton kernels implement.

Survey §4.2.2 (attention; FlashAttention among the efficient implementations) and §4.3 (efficient training).
Attention softmax(Q K^T * scale) V is usually computed with the score matrix S = Q K^T (Tq, Tk) written out in
full: memory quadratic in the length, and on a GPU the time goes into reading and writing S, not into the
arithmetic. FlashAttention (Dao et al. 2022; FlashAttention-2, Dao 2023) never forms S. It walks over tiles of
BLOCK_M queries x BLOCK_N keys, keeps one tile of scores at a time, and merges each tile into the output with the
online softmax (the running max and sum that chapter 08's cross-entropy kernel also uses).

Forward, for one tile of queries Q_i (bm, D), over the key tiles K_j, V_j (bn, D):
    S    = Q_i K_j^T * scale                        (bm, bn)  the only scores ever held
    m'   = max(m, rowmax(S))                        the running max grows; exp(m - m') shrinks the old terms
    P    = exp(S - m')
    l    = l * exp(m - m') + rowsum(P)              the running sum, rescaled to the new max
    acc  = acc * exp(m - m') + P V_j                the unnormalised output, rescaled the same way
then O_i = acc / l and LSE_i = m + log(l) (one float per query row, saved for backward).

Backward never stores P either: it recomputes each tile as P = exp(S - LSE), exactly the forward's softmax.
With dO the gradient of O and the pre-pass D = rowsum(dO * O) (one float per query row):
    dV_j += P^T dO_i        dP = dO_i V_j^T        dS = P * (dP - D)
    dQ_i += dS K_j * scale   dK_j += dS^T Q_i * scale
D is the softmax's correction: dS_ab = P_ab (dP_ab - sum_c P_ac dP_ac), and sum_c P_ac dP_ac = dO_a . O_a.

GQA/MQA: q has H heads, k and v have Hkv (H % Hkv == 0); query head h uses K/V head h // (H // Hkv), as
`repeat_interleave` (and SDPA's enable_gqa) pair them. dK and dV sum over the query heads of a group.

Causal with Tq != Tk aligns the queries to the END of the keys: query i sees keys j <= i + (Tk - Tq), the
KV-cache case (the Tq new tokens come after Tk - Tq cached ones). torch's SDPA with is_causal=True does NOT do
this: it aligns to the start (j <= i, `tril` of a (Tq, Tk) matrix), so tests compare against SDPA with the
explicit bottom-right mask of `causal_mask_bottom_right`. Causal needs Tq <= Tk (every query sees key 0).
Tiles that lie wholly above the diagonal (no query of the tile sees any key of it) are skipped, not masked.

Block-sparse (`block_layout`, `sparse_block`; conventions in flash_blocksparse.py): only the tiles of True layout
blocks are visited, the query tiles aligned to positions. A tile here holds every head at once, so with one layout
per head it is visited if any head's layout says so and filled with -inf for the others: a row may then meet tiles
before its first key (m = -inf, guarded below) or none at all (output 0, LSE -inf, and P = 0 in backward).

Written to be read, not to be fast: the loops are Python, the arithmetic fp32, outputs in the inputs' dtype.
`_bug` breaks one subtle step on purpose, so the tests can show that their comparison would notice.
"""
from __future__ import annotations

import math

import torch

from minillm.kernels.flash_blocksparse import check_block_layout, check_tiles, tile_layout

MAX_HEAD_DIM = 128
BUGS = (None, "no_rescale", "causal_skip", "no_delta")  # the knobs of `_bug`, one per subtle step


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float | None) -> float:
    """One clear error for each way the arguments can be wrong; returns the softmax scale (1/sqrt(D) if None)."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"flash attention expects {name} of shape (B, heads, T, head_dim), got {got}; "
                             "for (B, T, heads, head_dim) pass x.transpose(1, 2)")
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}; cast them together")
    if not q.is_floating_point():
        raise TypeError(f"flash attention expects floating-point q, k, v, got {q.dtype}")
    if q.device != k.device or q.device != v.device:
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}; move them "
                         "together")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    (B, H, Tq, D), (Bk, Hkv, Tk, Dk) = q.shape, k.shape
    if B != Bk or D != Dk:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} must agree in batch and head_dim")
    if D > MAX_HEAD_DIM or D == 0:
        raise ValueError(f"head_dim={D} is not supported: flash attention handles 1..{MAX_HEAD_DIM} (a tile of "
                         "queries and one of keys must fit on chip); use SDPA for larger heads")
    if Hkv == 0 or H % Hkv:
        raise ValueError(f"q has {H} heads and k/v have {Hkv}: the query heads must divide into equal groups "
                         "per K/V head (GQA), so n_head must be a multiple of n_kv_head")
    if Tk == 0:
        raise ValueError("flash attention needs at least one key (k and v have length 0)")
    if causal and Tq > Tk:
        raise ValueError(f"causal attention with {Tq} queries and {Tk} keys: queries are aligned to the end of "
                         "the keys (KV-cache case), so there must be at least as many keys as queries")
    if scale is None:
        return 1.0 / math.sqrt(D)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"scale={scale!r} must be a positive number (or None for 1/sqrt(head_dim))")
    return float(scale)


def causal_mask_bottom_right(Tq: int, Tk: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(Tq, Tk) bool, True = may attend: query i sees keys j <= i + Tk - Tq (SDPA's is_causal is j <= i)."""
    return tile_mask(0, Tq, 0, Tk, Tk - Tq, device)


def tile_mask(start_m: int, rows: int, start_n: int, cols: int, offset: int,
              device: torch.device | str | None = None) -> torch.Tensor:
    """(rows, cols) bool, the causal mask of one tile only (query i sees key j <= i + offset, offset = Tk - Tq)."""
    i = torch.arange(start_m, start_m + rows, device=device)[:, None]
    j = torch.arange(start_n, start_n + cols, device=device)[None, :]
    return j <= i + offset


def key_end(start_m: int, rows: int, Tq: int, Tk: int, causal: bool) -> int:
    """Exclusive end of the keys the query tile [start_m, start_m + rows) sees: later key tiles are skipped."""
    return min(Tk, start_m + rows + Tk - Tq) if causal else Tk  # the tile's last query sees up to its row + offset


def query_start(start_n: int, Tq: int, Tk: int, causal: bool, block_m: int) -> int:
    """Start of the first query tile that sees any key of the tile starting at key start_n (earlier ones skip it)."""
    if not causal:
        return 0
    first_row = max(0, start_n - (Tk - Tq))  # the first query whose horizon i + Tk - Tq reaches key start_n
    return first_row // block_m * block_m


def flash_forward_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                            scale: float | None = None, block_m: int = 64, block_n: int = 64,
                            _bug: str | None = None, *, block_layout: torch.Tensor | None = None,
                            sparse_block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiled forward. q (B, H, Tq, D), k/v (B, Hkv, Tk, D) -> O (B, H, Tq, D) in q's dtype, LSE (B, H, Tq) fp32."""
    scale, (B, H, Hkv, G, Tq, Tk, D), (visit, shift), (qg, kg, vg) = _setup(
        q, k, v, causal, scale, _bug, block_layout, sparse_block, block_m, block_n)
    o = torch.empty(B, Hkv, G, Tq, D, device=q.device)  # (B, Hkv, G, Tq, D) fp32
    lse = torch.empty(B, Hkv, G, Tq, device=q.device)  # (B, Hkv, G, Tq) fp32
    for t_m, start_m in enumerate(range(-shift, Tq, block_m)):  # shift > 0: block-sparse, tiles aligned to blocks
        lo = max(start_m, 0)
        qi = qg[..., lo:start_m + block_m, :]  # (B, Hkv, G, bm, D); the first and last tiles may be shorter
        bm = qi.shape[-2]
        m = torch.full((B, Hkv, G, bm), float("-inf"), device=q.device)  # running max of each query row
        l = torch.zeros(B, Hkv, G, bm, device=q.device)  # running sum of exp(s - m)
        acc = torch.zeros(B, Hkv, G, bm, D, device=q.device)  # running sum of exp(s - m) v
        end = key_end(lo, bm, Tq, Tk, causal)  # key tiles from here on lie above the diagonal: skipped
        if causal and _bug == "causal_skip":
            end -= block_n  # off by one tile: the diagonal tile is skipped too
        for start_n in range(0, end, block_n):
            heads = _heads(visit, t_m, start_n // block_n, G)  # block-sparse: the heads that visit this tile
            if heads is not None and not heads.any():
                continue
            kj = kg[..., start_n:start_n + block_n, :]  # (B, Hkv, 1, bn, D)
            vj = vg[..., start_n:start_n + block_n, :]
            bn = kj.shape[-2]
            s = qi @ kj.transpose(-1, -2) * scale  # (B, Hkv, G, bm, bn): one tile of scores, never more
            if causal and start_n + bn - 1 > lo + Tk - Tq:  # the tile crosses the diagonal: mask inside it
                visible = tile_mask(lo, bm, start_n, bn, Tk - Tq, q.device)  # (bm, bn)
                s = s.masked_fill(~visible, float("-inf"))  # broadcast over B, Hkv, G
            if heads is not None:
                s = s.masked_fill(~heads, float("-inf"))  # (Hkv, G, 1, 1): heads whose layout skips this tile
            m_new = torch.maximum(m, s.amax(dim=-1))  # dense: finite, every row sees key 0 in the first tile
            m_ref = m_new.masked_fill(m_new == float("-inf"), 0.0)  # a row without keys yet: exp(-inf - 0) = 0
            p = torch.exp(s - m_ref[..., None])  # (B, Hkv, G, bm, bn), relative to the new max
            alpha = torch.exp(m - m_ref)  # how much the old terms shrink (0 on the first tile: exp(-inf))
            l = (l if _bug == "no_rescale" else l * alpha) + p.sum(dim=-1)
            acc = acc * alpha[..., None] + p @ vj  # (B, Hkv, G, bm, D)
            m = m_new
        l = l.masked_fill(l == 0, 1.0)  # a row that saw no key (block-sparse): output 0, LSE -inf + log(1) = -inf
        o[..., lo:lo + bm, :] = acc / l[..., None]
        lse[..., lo:lo + bm] = m + torch.log(l)  # log sum_j exp(s_j), all that backward needs of P
    return o.reshape(B, H, Tq, D).to(q.dtype), lse.reshape(B, H, Tq)


def flash_backward_reference(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             o: torch.Tensor, lse: torch.Tensor, causal: bool = True, scale: float | None = None,
                             block_m: int = 64, block_n: int = 64, _bug: str | None = None, *,
                             block_layout: torch.Tensor | None = None,
                             sparse_block: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tiled backward from the saved O and LSE: dq (B, H, Tq, D), dk and dv (B, Hkv, Tk, D), in the inputs' dtype.

    The loops are FlashAttention-2's: the outer one over key tiles (dK_j, dV_j are finished per key tile, as in
    the Triton dK/dV kernel), the inner one over the query tiles that see it. dQ_i gets a share from every key
    tile; here it is simply added up, where the Triton kernels compute it in a second kernel that loops over key
    tiles instead (so that no two GPU programs add into the same dQ rows).
    """
    scale, (B, H, Hkv, G, Tq, Tk, D), (visit, shift), (qg, kg, vg) = _setup(
        q, k, v, causal, scale, _bug, block_layout, sparse_block, block_m, block_n)
    dog = do.float().reshape(B, Hkv, G, Tq, D)  # (B, Hkv, G, Tq, D)
    lseg = lse.float().reshape(B, Hkv, G, Tq)
    lseg = lseg.masked_fill(lseg == float("-inf"), float("inf"))  # a row that saw no key: P = exp(s - inf) = 0
    # Pre-pass: D_i = rowsum(dO_i * O_i) = sum_j P_ij dP_ij, one float per query row (B, Hkv, G, Tq)
    delta = (dog * o.float().reshape(B, Hkv, G, Tq, D)).sum(dim=-1)
    dq = torch.zeros(B, Hkv, G, Tq, D, device=q.device)
    dk = torch.zeros(B, Hkv, Tk, D, device=q.device)
    dv = torch.zeros(B, Hkv, Tk, D, device=q.device)
    for start_n in range(0, Tk, block_n):
        kj = kg[..., start_n:start_n + block_n, :]  # (B, Hkv, 1, bn, D)
        vj = vg[..., start_n:start_n + block_n, :]
        bn = kj.shape[-2]
        # earlier query tiles see none of these keys (block-sparse: the visited tiles already say so)
        first = query_start(start_n, Tq, Tk, causal, block_m) if visit is None else 0
        if causal and _bug == "causal_skip":
            first += block_m  # off by one tile: the diagonal tile is skipped too
        for start_m in range(first - shift, Tq, block_m):
            heads = _heads(visit, (start_m + shift) // block_m, start_n // block_n, G)
            if heads is not None and not heads.any():
                continue
            lo = max(start_m, 0)
            qi = qg[..., lo:start_m + block_m, :]  # (B, Hkv, G, bm, D)
            doi = dog[..., lo:start_m + block_m, :]
            bm = qi.shape[-2]
            s = qi @ kj.transpose(-1, -2) * scale  # (B, Hkv, G, bm, bn)
            if causal and start_n + bn - 1 > lo + Tk - Tq:
                s = s.masked_fill(~tile_mask(lo, bm, start_n, bn, Tk - Tq, q.device), float("-inf"))
            if heads is not None:
                s = s.masked_fill(~heads, float("-inf"))
            p = torch.exp(s - lseg[..., lo:lo + bm, None])  # the forward's softmax tile, recomputed
            # dV_j = P^T dO, summed over the G query heads that share this V head
            dv[..., start_n:start_n + bn, :] += (p.transpose(-1, -2) @ doi).sum(dim=2)
            dp = doi @ vj.transpose(-1, -2)  # (B, Hkv, G, bm, bn)
            ds = p * dp if _bug == "no_delta" else p * (dp - delta[..., lo:lo + bm, None])
            dq[..., lo:lo + bm, :] += ds @ kj * scale  # (B, Hkv, G, bm, D)
            dk[..., start_n:start_n + bn, :] += (ds.transpose(-1, -2) @ qi).sum(dim=2) * scale
    return dq.reshape(B, H, Tq, D).to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class FlashAttentionReference(torch.autograd.Function):
    """The tiled reference as an autograd op: saves q, k, v, O and LSE (not P), recomputes P in backward."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float | None,
                block_m: int, block_n: int, _bug: str | None, block_layout: torch.Tensor | None,
                sparse_block: int | None) -> torch.Tensor:
        ctx.sparse = dict(block_layout=block_layout, sparse_block=sparse_block)
        o, lse = flash_forward_reference(q, k, v, causal, scale, block_m, block_n, _bug, **ctx.sparse)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.args = (causal, scale, block_m, block_n, _bug)
        return o

    @staticmethod
    def backward(ctx, do: torch.Tensor):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = flash_backward_reference(do, q, k, v, o, lse, *ctx.args, **ctx.sparse)
        return dq, dk, dv, None, None, None, None, None, None, None


def flash_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                              scale: float | None = None, block_m: int = 64, block_n: int = 64,
                              _bug: str | None = None, *, block_layout: torch.Tensor | None = None,
                              sparse_block: int | None = None) -> torch.Tensor:
    """softmax(q k^T * scale, causal bottom-right) v by the tiled algorithm, with gradients for q, k, v.

    q (B, H, Tq, D), k/v (B, Hkv, Tk, D) with H % Hkv == 0 -> (B, H, Tq, D). `_bug` is for the tests only.
    block_layout, sparse_block: block-sparse attention, as flash_attention's (flash_blocksparse.py): only the tiles
    of True blocks are visited; sparse_block must be a multiple of block_m and block_n.
    """
    for name, n in (("block_m", block_m), ("block_n", block_n)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name}={n!r} must be a positive int")
    return FlashAttentionReference.apply(q, k, v, causal, scale, block_m, block_n, _bug, block_layout, sparse_block)


def _setup(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float | None, _bug: str | None,
           block_layout: torch.Tensor | None, sparse_block: int | None, block_m: int, block_n: int):
    """What forward and backward both start from: the checked scale, the sizes (B, H, Hkv, G, Tq, Tk, D), the
    block-sparse tiles (visit, shift), and q, k, v in fp32 with the query heads grouped by their K/V head."""
    scale = check_inputs(q, k, v, causal, scale)
    if _bug not in BUGS:
        raise ValueError(f"_bug={_bug!r} is not one of {BUGS}")
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    G = H // Hkv
    tiles = _sparse_tiles(block_layout, sparse_block, q, Tk, causal, block_m, block_n)
    qg = q.float().reshape(B, Hkv, G, Tq, D)  # (B, Hkv, G, Tq, D): query heads grouped by their K/V head
    kg = k.float().unsqueeze(2)  # (B, Hkv, 1, Tk, D): broadcast over the G query heads, never copied
    vg = v.float().unsqueeze(2)  # (B, Hkv, 1, Tk, D)
    return scale, (B, H, Hkv, G, Tq, Tk, D), tiles, (qg, kg, vg)


def _sparse_tiles(block_layout: torch.Tensor | None, sparse_block: int | None, q: torch.Tensor, Tk: int,
                  causal: bool, block_m: int, block_n: int) -> tuple[torch.Tensor | None, int]:
    """Block-sparse: the tiles to visit (Hl, query tiles, key tiles) and the rows of query tile 0 before query 0
    (tiles are aligned to positions, flash_blocksparse.py); dense: (None, 0)."""
    Tq = q.shape[2]
    layout = check_block_layout(block_layout, sparse_block, Tq, Tk, q.shape[1])
    if layout is None:
        return None, 0
    check_tiles(sparse_block, block_m, block_n, "reference")
    visit, _ = tile_layout(layout.to(q.device), sparse_block, Tq, Tk, block_m, block_n, causal)
    return visit, (Tk - Tq) % block_m


def _heads(visit: torch.Tensor | None, t_m: int, t_n: int, G: int) -> torch.Tensor | None:
    """Which query heads visit tile (t_m, t_n): (Hkv, G, 1, 1) bool (or (1, 1, 1, 1), one layout for all heads),
    to broadcast over a (B, Hkv, G, bm, bn) tile of scores; None when dense (every head, every tile it reaches)."""
    if visit is None:
        return None
    heads = visit[:, t_m, t_n]  # (Hl,)
    return heads.reshape(-1, G if heads.numel() > 1 else 1, 1, 1)
