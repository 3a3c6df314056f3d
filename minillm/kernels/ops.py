"""The public entry points of minillm's kernels: one function per op, importing its module on first call.

They live here, not in `minillm/kernels/__init__.py`, because each kernel file is named after its op
(swiglu.py, rope.py, ...): importing a submodule binds its name on the package, which would shadow a
package-level function of the same name.
"""
from __future__ import annotations

import torch

from minillm.kernels.runtime import require_triton


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Fused RMSNorm over the last dim of x (any leading shape)."""
    require_triton()
    from minillm.kernels.rmsnorm import rms_norm as fn
    return fn(x, weight, eps)


def swiglu(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Fused silu(a) * b, elementwise (a: the gate projection, b: the up projection)."""
    require_triton()
    from minillm.kernels.swiglu import swiglu as fn
    return fn(a, b)


def rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary embedding of q (B, H, T, D) and k (B, Hkv, T, D) by cos/sin (T, D/2), adjacent-pair convention."""
    require_triton()
    from minillm.kernels.rope import rope as fn
    return fn(q, k, cos, sin)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of logits (N, V) against targets (N,), as F.cross_entropy(reduction='mean')."""
    require_triton()
    from minillm.kernels.cross_entropy import cross_entropy as fn
    return fn(logits, targets, ignore_index, label_smoothing)


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                               ignore_index: int = -100, label_smoothing: float = 0.0,
                               chunk_size: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of hidden (N, C) @ weight (V, C).T against targets (N,), in token chunks."""
    require_triton()
    from minillm.kernels.fused_linear_cross_entropy import fused_linear_cross_entropy as fn
    return fn(hidden, weight, targets, ignore_index, label_smoothing, chunk_size)


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                    scale: float | None = None, block_layout: torch.Tensor | None = None,
                    sparse_block: int | None = None) -> torch.Tensor:
    """FlashAttention-2: q (B, H, Tq, D) over k/v (B, Hkv, Tk, D) -> (B, H, Tq, D), H % Hkv == 0, D <= 128; causal
    aligns the queries to the end of the keys (the KV-cache case). The (Tq, Tk) scores never exist in memory.
    block_layout (query blocks, key blocks) bool, or (H, ...), with sparse_block positions per block: block-sparse
    attention, visiting only the tiles of True blocks (minillm.model.sparse builds layouts; S a multiple of the
    kernel's tiles)."""
    require_triton()
    from minillm.kernels.flash_attention import flash_attention as fn
    return fn(q, k, v, causal, scale, block_layout=block_layout, sparse_block=sparse_block)
