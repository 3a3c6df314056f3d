"""Fused rotary position embedding (RoPE) of q and k in Triton, beside its PyTorch reference.

Survey §4.2.2 (position embeddings): RoPE (Su et al. 2021; PaLM, Llama) rotates each pair of a head's
dimensions by an angle proportional to the token's position, so that q·k depends only on the relative
offset. minillm rotates ADJACENT pairs (x[2i], x[2i+1]) (as RoFormer; `model/position.py`), with cos/sin
tables of shape (T, D/2):
    out[2i]   = x[2i] * cos[t, i] - x[2i+1] * sin[t, i]
    out[2i+1] = x[2i] * sin[t, i] + x[2i+1] * cos[t, i]

Why fuse: eager PyTorch casts, splits into even/odd, does four multiplies, two adds, a stack and a cast,
each a kernel that reads and writes a (B, H, T, D) tensor, and does it all twice (q and k). The kernel
reads q and k once and writes them once. One program per (b, t) loads that position's cos/sin row once and
rotates all H query heads and all Hkv key heads with it (GQA/MQA: Hkv < H), as two 2-D blocks
(heads, D/2) masked where H or D/2 is not a power of two.

Backward: a rotation by angle θ is orthogonal, so its transpose, the rotation by -θ, maps the output
gradient to the input gradient. The backward is the same kernel with sin negated (BACKWARD=True); nothing
but cos/sin is saved.

q and k may be non-contiguous views (the model makes them as `.view(B, T, H, D).transpose(1, 2)`), so the
kernel takes all four strides of every tensor instead of copying. `rope` writes new tensors (safe under
autograd when q and k are views of a projection's output); `rope_` rotates in place for inference.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.autograd.graph import increment_version

from minillm.kernels import runtime

JIT_MODE = runtime.current_mode()  # fixed now: @triton.jit below decides interpreter vs compiled at import


def _rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (x[2i], x[2i+1]) of x (..., T, hd) by the angles whose cos/sin are (T, hd/2).
    The same arithmetic as `minillm.model.position.apply_rope_cached` (a test keeps them equal); written out
    here because a kernel file never imports the model."""
    x2 = x.float().unflatten(-1, (-1, 2))  # (..., T, hd/2, 2)
    x_even, x_odd = x2[..., 0], x2[..., 1]
    out = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)


def rope_reference(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                   sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The PyTorch definition the kernel is tested against: adjacent pairs rotated, on q and k."""
    return _rotate_pairs(q, cos, sin), _rotate_pairs(k, cos, sin)


@triton.jit
def _rotate_heads(X, Y, b, t, sxb, sxh, sxt, sxd, syb, syh, syt, syd, n_heads, half, cos, sin,
                  HEADS: tl.constexpr, HALF: tl.constexpr):
    """Rotate the (n_heads, D) slice X[b, :, t, :] into Y[b, :, t, :]; cos/sin are (1, HALF) fp32."""
    heads = tl.arange(0, HEADS).to(tl.int64)[:, None]  # (HEADS, 1)
    pairs = tl.arange(0, HALF).to(tl.int64)[None, :]  # (1, HALF)
    mask = (heads < n_heads) & (pairs < half)  # padding lanes of the power-of-two block load 0, store nothing
    x_ptr = X + b * sxb + t * sxt + heads * sxh + (2 * pairs) * sxd  # (HEADS, HALF): the even element of each pair
    y_ptr = Y + b * syb + t * syt + heads * syh + (2 * pairs) * syd
    x_even = tl.load(x_ptr, mask=mask, other=0.0).to(tl.float32)
    x_odd = tl.load(x_ptr + sxd, mask=mask, other=0.0).to(tl.float32)
    # Both loads happen before either store, so Y may be X (in place): each program owns its elements.
    y_even = x_even * cos - x_odd * sin
    y_odd = x_even * sin + x_odd * cos
    tl.store(y_ptr, y_even.to(Y.dtype.element_ty), mask=mask)
    tl.store(y_ptr + syd, y_odd.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _rope_kernel(Q, K, QO, KO, COS, SIN,
                 sqb, sqh, sqt, sqd, sqob, sqoh, sqot, sqod,
                 skb, skh, skt, skd, skob, skoh, skot, skod,
                 cos_stride, n_tokens, n_q_heads, n_k_heads, half,
                 Q_HEADS: tl.constexpr, K_HEADS: tl.constexpr, HALF: tl.constexpr, BACKWARD: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)  # int64: b * stride overflows int32 for long sequences and big batches
    b = pid // n_tokens
    t = pid % n_tokens
    pairs = tl.arange(0, HALF)[None, :]  # (1, HALF)
    cs_mask = pairs < half
    # One row of the tables per program, shared by every q and k head at this position.
    cos = tl.load(COS + t * cos_stride + pairs, mask=cs_mask, other=0.0).to(tl.float32)
    sin = tl.load(SIN + t * cos_stride + pairs, mask=cs_mask, other=0.0).to(tl.float32)
    if BACKWARD:
        sin = -sin  # the gradient of a rotation by θ is the rotation by -θ: cos(-θ) = cos θ, sin(-θ) = -sin θ
    _rotate_heads(Q, QO, b, t, sqb, sqh, sqt, sqd, sqob, sqoh, sqot, sqod, n_q_heads, half, cos, sin,
                  Q_HEADS, HALF)
    _rotate_heads(K, KO, b, t, skb, skh, skt, skd, skob, skoh, skot, skod, n_k_heads, half, cos, sin,
                  K_HEADS, HALF)


def _check_inputs(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4:
        raise ValueError(f"RoPE needs 4-D q (B, H, T, D) and k (B, Hkv, T, D), got shapes {tuple(q.shape)} "
                         f"and {tuple(k.shape)}")
    (B, H, T, D), (Bk, Hkv, Tk, Dk) = q.shape, k.shape
    if (B, T, D) != (Bk, Tk, Dk):
        raise ValueError(f"RoPE needs q (B, H, T, D) and k (B, Hkv, T, D) with the same B, T and D, got "
                         f"{tuple(q.shape)} and {tuple(k.shape)}")
    if D % 2:
        raise ValueError(f"RoPE rotates pairs of dimensions: head dim D={D} must be even")
    if Hkv == 0 or H % Hkv:
        raise ValueError(f"RoPE with grouped keys needs Hkv to divide H, got H={H} query heads and "
                         f"Hkv={Hkv} key heads")
    for name, table in (("cos", cos), ("sin", sin)):
        if table.shape != (T, D // 2):
            raise ValueError(f"RoPE {name} table has shape {tuple(table.shape)}; expected (T, D/2) = "
                             f"({T}, {D // 2}) for q of shape {tuple(q.shape)} (slice the table to these T)")
        if not table.is_floating_point():
            raise ValueError(f"RoPE {name} table must be floating point (fp32 from rope_angles), got {table.dtype}")
    if q.dtype != k.dtype or not q.is_floating_point():
        raise ValueError(f"RoPE needs q and k of the same floating-point dtype, got {q.dtype} and {k.dtype}")
    devices = {t.device for t in (q, k, cos, sin)}
    if len(devices) > 1:
        raise ValueError(f"RoPE needs q, k, cos and sin on one device, got {sorted(map(str, devices))}")
    runtime.check_runnable(q, JIT_MODE, "RoPE")


def _launch(q, k, q_out, k_out, cos, sin, backward: bool) -> None:
    """Rotate q -> q_out and k -> k_out (any strides; out may be in) by the tables, or by -angle if backward."""
    B, H, T, D = q.shape
    Hkv = k.shape[1]
    if B * T == 0 or D == 0:
        return
    cos, sin = cos.contiguous(), sin.contiguous()  # (T, D/2): tiny, and one stride then serves both
    half = D // 2
    q_heads, k_heads, half_block = runtime.block_size(H), runtime.block_size(Hkv), runtime.block_size(half)
    with runtime.on_device(q):
        _rope_kernel[(B * T,)](
            q, k, q_out, k_out, cos, sin,
            *q.stride(), *q_out.stride(), *k.stride(), *k_out.stride(),
            cos.stride(0), T, H, Hkv, half,
            Q_HEADS=q_heads, K_HEADS=k_heads, HALF=half_block, BACKWARD=backward,
            num_warps=runtime.num_warps(q_heads * half_block))


class RoPEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_inputs(q, k, cos, sin)
        # New contiguous (B, H, T, D) outputs, the layout the reference returns: writing out of place costs the
        # same traffic as in place and leaves q, k (often views of one projection) intact for autograd.
        q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device)
        _launch(q, k, q_out, k_out, cos, sin, backward=False)
        ctx.save_for_backward(cos, sin)  # the rotation is linear in q and k: nothing else is needed
        return q_out, k_out

    @staticmethod
    def backward(ctx, dq_out: torch.Tensor, dk_out: torch.Tensor):
        cos, sin = ctx.saved_tensors
        # An output that did not reach the loss arrives as zeros (autograd materialises it), so both exist.
        dq = torch.empty(dq_out.shape, dtype=dq_out.dtype, device=dq_out.device)
        dk = torch.empty(dk_out.shape, dtype=dk_out.dtype, device=dk_out.device)
        _launch(dq_out, dk_out, dq, dk, cos, sin, backward=True)
        return dq, dk, None, None  # cos/sin are constants of the position, not learned


def rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
         sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary embedding of q (B, H, T, D) and k (B, Hkv, T, D) by cos/sin (T, D/2); new tensors, differentiable."""
    return RoPEFunction.apply(q, k, cos, sin)


def rope_(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
          sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k in place (inference: no new activation memory) and return them."""
    if q.requires_grad or k.requires_grad:
        raise RuntimeError("rope_ rotates in place, which autograd cannot differentiate: q or k requires grad. "
                           "Use rope(q, k, cos, sin) for training, or call rope_ under torch.no_grad() on "
                           "tensors that do not require grad")
    _check_inputs(q, k, cos, sin)
    _launch(q, k, q, k, cos, sin, backward=False)
    # Triton writes behind autograd's back: bump the version counters so that a graph which saved q or k
    # (e.g. as an input of a matmul with a trainable weight) fails loudly instead of using rotated values.
    increment_version((q, k))
    return q, k
