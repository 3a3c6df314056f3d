"""The ops bench/kernel_speed.py and bench/attention_bench.py measure: seeded inputs for one size, and each implementation
as a function of them. Survey §4.3 (efficient training), §4.2.2 (the ops; attention and FlashAttention).

Each op: inputs(op, shape, device, dtype) -> (args, leaves), and one function per implementation taking *args
(eager: the PyTorch reference minillm's kernel tests compare against; minillm: ours through minillm.kernels.ops,
as the model calls them; liger: Liger-Kernel's functional op). Attention has its own trio below (its
implementations are SDPA's backends, not Liger): attention_inputs, attention_fn, attention_flops. Not a script:
the benches import it.
"""
from __future__ import annotations

import importlib.metadata
from typing import Callable

import torch
import torch.nn.functional as F

OPS = ("rmsnorm", "swiglu", "rope", "cross_entropy", "fused_linear_cross_entropy")
# `leaves` are the tensors whose gradients backward computes; every implementation gets the same seeded inputs.


def _randn(*shape, device, dtype, scale=1.0, grad=True) -> torch.Tensor:
    return (torch.randn(*shape, device=device, dtype=torch.float32) * scale).to(dtype).requires_grad_(grad)


def _targets(n: int, v: int, device) -> torch.Tensor:
    t = torch.randint(0, v, (n,), device=device)
    t[::16] = -100  # a few ignored positions (padding, prompt tokens), as in real batches
    return t


def inputs(op: str, s: dict[str, int], device, dtype) -> tuple[tuple, list[torch.Tensor]]:
    if op == "rmsnorm":
        x = _randn(s["rows"], s["hidden"], device=device, dtype=dtype)  # (N, C)
        w = (1 + 0.1 * torch.randn(s["hidden"], device=device)).to(dtype).requires_grad_()  # (C,)
        return (x, w, 1e-5), [x, w]
    if op == "swiglu":
        a = _randn(s["rows"], s["hidden"], device=device, dtype=dtype)  # (N, H) gate projection
        b = _randn(s["rows"], s["hidden"], device=device, dtype=dtype)  # (N, H) up projection
        return (a, b), [a, b]
    if op == "rope":
        from minillm.model.position import rope_angles

        q = _randn(s["B"], s["H"], s["T"], s["D"], device=device, dtype=dtype)  # (B, H, T, D)
        k = _randn(s["B"], s["H"], s["T"], s["D"], device=device, dtype=dtype)
        cos, sin = rope_angles(torch.arange(s["T"], device=device), s["D"])  # (T, D/2) fp32, as the model has
        # Liger (Hugging Face layout): (1, T, D) tables in the activations' dtype, the half repeated.
        cos_hf, sin_hf = (torch.cat((t, t), dim=-1)[None].to(dtype) for t in (cos, sin))
        return (q, k, cos, sin, cos_hf, sin_hf), [q, k]
    if op == "cross_entropy":
        logits = _randn(s["N"], s["V"], device=device, dtype=dtype)  # (N, V)
        return (logits, _targets(s["N"], s["V"], device)), [logits]
    if op == "fused_linear_cross_entropy":
        hidden = _randn(s["N"], s["C"], device=device, dtype=dtype)  # (N, C)
        weight = _randn(s["V"], s["C"], device=device, dtype=dtype, scale=0.02)  # (V, C) lm_head
        return (hidden, weight, _targets(s["N"], s["V"], device)), [hidden, weight]
    raise ValueError(f"unknown op {op!r}; choose from {', '.join(OPS)}")


def eager_fn(op: str) -> Callable:
    """The reference each kernel module exports (the kernels' tests compare against the same functions)."""
    if op == "rmsnorm":
        from minillm.kernels.rmsnorm import rms_norm_reference
        return rms_norm_reference
    if op == "swiglu":
        from minillm.kernels.swiglu import swiglu_reference
        return swiglu_reference
    if op == "rope":
        from minillm.kernels.rope import rope_reference
        return lambda q, k, cos, sin, *_: rope_reference(q, k, cos, sin)
    if op == "cross_entropy":
        from minillm.kernels.cross_entropy import cross_entropy_reference
        return lambda logits, t: cross_entropy_reference(logits, t, -100, 0.0)
    from minillm.kernels.fused_linear_cross_entropy import linear_cross_entropy_reference
    return lambda h, w, t: linear_cross_entropy_reference(h, w, t, -100, 0.0)


def minillm_fn(op: str) -> Callable:
    """Ours, through the public entry points (minillm.kernels.ops), as the model calls them."""
    from minillm.kernels import ops as K

    return {
        "rmsnorm": K.rms_norm,
        "swiglu": K.swiglu,
        "rope": lambda q, k, cos, sin, *_: K.rope(q, k, cos, sin),
        "cross_entropy": lambda logits, t: K.cross_entropy(logits, t, -100, 0.0),
        "fused_linear_cross_entropy": lambda h, w, t: K.fused_linear_cross_entropy(h, w, t, -100, 0.0),
    }[op]


def liger_fn(op: str) -> Callable:
    """Liger's functional ops, called positionally with defaults only (their keyword lists differ by version)."""
    from liger_kernel.transformers import functional as L

    def loss_only(out):  # recent versions return the loss, older ones (loss, z_loss)
        return out[0] if isinstance(out, tuple) else out

    return {
        "rmsnorm": lambda x, w, eps: L.liger_rms_norm(x, w, eps),
        "swiglu": L.liger_swiglu,
        "rope": lambda q, k, cos, sin, cos_hf, sin_hf: L.liger_rope(q, k, cos_hf, sin_hf),
        "cross_entropy": lambda logits, t: loss_only(L.liger_cross_entropy(logits, t)),
        "fused_linear_cross_entropy": lambda h, w, t: loss_only(L.liger_fused_linear_cross_entropy(h, w, t)),
    }[op]


def liger_version() -> str | None:
    """liger_kernel's version when it imports (it needs a CUDA build of triton), else None."""
    try:
        import liger_kernel.transformers.functional  # noqa: F401
    except Exception:  # noqa: BLE001 (not installed, or installed but unusable here: absent either way)
        return None
    return version("liger-kernel") or "unknown"


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------------------------- attention

# Ours, SDPA forced to each of its fused backends (torch.nn.attention.sdpa_kernel), and materialised attention.
ATTENTION_IMPLS = ("minillm", "sdpa_flash", "sdpa_cudnn", "sdpa_efficient", "eager")
SDPA_BACKENDS = {"sdpa_flash": "FLASH_ATTENTION", "sdpa_cudnn": "CUDNN_ATTENTION",
                 "sdpa_efficient": "EFFICIENT_ATTENTION"}


def attention_inputs(s: dict[str, int], device, dtype) -> tuple[tuple, list[torch.Tensor]]:
    """q, k, v (B, H, T, D), N(0, 1) like the activations after RMSNorm and the projections; all three are leaves."""
    q, k, v = (_randn(s["B"], s["H"], s["T"], s["D"], device=device, dtype=dtype) for _ in range(3))
    return (q, k, v), [q, k, v]


def attention_flops(s: dict[str, int], causal: bool = True, backward: bool = False) -> float:
    """Model FLOPs of one call, in FlashAttention-2's convention (flash-attn's benchmark_flash_attention.py):

        forward          4 * B * H * Tq * Tk * D   two matmuls per head, S = Q K^T and O = P V, 2 * Tq * Tk * D each
        causal           / 2                       the masked half of the scores is not computed (exactly
                                                   (T + 1) / 2T of them are kept; the convention rounds to 1/2)
        backward         2.5 x forward             five matmuls: S again, dV = P^T dO, dP = dO V^T, dQ = dS K,
                                                   dK = dS^T Q
        forward+backward 3.5 x forward             (backward = 2.5 x forward, so forward + backward = 3.5 x)

    Model FLOPs, not executed ones: the recomputation a kernel chooses (ours computes S and P in both its dK/dV
    and its dQ kernel) is not counted, so TFLOP/s compares implementations doing the same useful work."""
    forward = 4 * s["B"] * s["H"] * s["T"] * s["T"] * s["D"] / (2 if causal else 1)
    return 3.5 * forward if backward else forward


def eager_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention with the (T, T) scores and probabilities in memory: the textbook formula FlashAttention
    avoids. Softmax in fp32 or wider (as minillm's attn_impl='math'), the products in the inputs' dtype."""
    T = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, T, T)
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)  # (T, T) True = may not attend
    wide = torch.promote_types(q.dtype, torch.float32)  # bf16/fp16 -> fp32; fp64 stays fp64
    p = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1, dtype=wide)  # (B, H, T, T)
    return p.to(v.dtype) @ v  # (B, H, T, D)


def eager_attention_bytes(s: dict[str, int], dtype: torch.dtype) -> int:
    """Estimated peak of eager_attention's forward+backward beyond its inputs: in backward about four fp32 (T, T)
    tensors per head (saved probabilities, their gradient, softmax-backward's product and result) and two in the
    inputs' dtype are alive at once, plus the (T, T) mask. Rows record it beside the measured peak."""
    n = s["B"] * s["H"] * s["T"] * s["T"]
    return n * (4 * 4 + 2 * torch.empty((), dtype=dtype).element_size()) + s["T"] * s["T"]


def attention_fn(impl: str) -> Callable:
    """(q, k, v) -> causal attention, (B, H, T, D). impl "sdpa" is SDPA with PyTorch's own choice of backend (the
    correctness reference); "sdpa_<backend>" forces one: it raises RuntimeError where that backend refuses."""
    if impl == "minillm":
        from minillm.kernels import ops as K
        return lambda q, k, v: K.flash_attention(q, k, v, causal=True)
    if impl == "eager":
        return eager_attention
    if impl == "sdpa":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
    if impl not in SDPA_BACKENDS:
        raise ValueError(f"unknown attention implementation {impl!r}; choose from {', '.join(ATTENTION_IMPLS)}")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, SDPA_BACKENDS[impl])

    def forced(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(backend):  # only this backend: no silent fallback to another (or to the math one)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    return forced
