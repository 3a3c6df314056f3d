"""Fused SwiGLU gate in Triton: c = silu(a) * b, forward and backward, beside its PyTorch reference.

Survey §4.2.2 (activation functions): SwiGLU (Shazeer 2020; PaLM, Llama) gates the up projection b = x W3^T
by silu(a), a = x W1^T, with silu(a) = a * sigmoid(a). The matmuls around it are compute-bound; this
elementwise step is pure memory traffic. Eager PyTorch runs it as two kernels: silu reads a and writes a
temporary, the multiply reads the temporary and b and writes c, so 5 passes over an (N, hidden) tensor
(and autograd keeps the temporary alive for backward). Fused, the kernel reads a and b and writes c: 3 passes.

Backward, with s = sigmoid(a) and silu = a * s, d silu/da = s + a * s * (1 - s) = s + silu * (1 - s):
    da = dc * b * (s + silu * (1 - s))
    db = dc * silu
The kernel recomputes s and silu from a instead of saving them in forward: a sigmoid per element costs far
less than writing and re-reading an activation-sized tensor, and only a and b (which autograd needs anyway
for the matmuls' inputs) are saved. Eager backward is again several kernels; fused it reads dc, a, b and
writes da, db: 5 passes.

The tensors are treated as flat arrays: a 1-D grid of programs, each covering BLOCK consecutive elements with
a masked tail. bf16/fp16 are cast to fp32 inside the kernel (the interpreter gives NaN for bf16 arithmetic,
and fp32 is what the reference computes in too); results are stored in the input dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from minillm.kernels import runtime

JIT_MODE = runtime.current_mode()  # fixed now: @triton.jit below decides interpreter vs compiled at import

BLOCK = 1024  # elements per program: a power of two; 1024 keeps 4 warps busy with 8 elements per thread


def swiglu_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The PyTorch definition the kernel is tested against (fp32 maths, output in a's dtype)."""
    return (F.silu(a.float()) * b.float()).to(a.dtype)


@triton.jit
def _swiglu_fwd_kernel(A, B, C, n_elements, BLOCK: tl.constexpr):
    start = tl.program_id(0).to(tl.int64) * BLOCK  # int64: offsets pass 2^31 in big activations
    offs = start + tl.arange(0, BLOCK)
    mask = offs < n_elements  # the last block runs past the end: its tail loads 0 and stores nothing
    a = tl.load(A + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + offs, mask=mask, other=0.0).to(tl.float32)
    c = a * tl.sigmoid(a) * b
    tl.store(C + offs, c.to(C.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd_kernel(DC, A, B, DA, DB, n_elements, BLOCK: tl.constexpr):
    start = tl.program_id(0).to(tl.int64) * BLOCK
    offs = start + tl.arange(0, BLOCK)
    mask = offs < n_elements
    dc = tl.load(DC + offs, mask=mask, other=0.0).to(tl.float32)
    a = tl.load(A + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + offs, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(a)  # recomputed, not saved: cheaper than a round trip through GPU memory
    silu = a * sig
    da = dc * b * (sig + silu * (1.0 - sig))
    db = dc * silu
    tl.store(DA + offs, da.to(DA.dtype.element_ty), mask=mask)
    tl.store(DB + offs, db.to(DB.dtype.element_ty), mask=mask)


def _check_inputs(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"SwiGLU needs a (gate) and b (up) of the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}; it is elementwise and does not broadcast")
    if a.dtype != b.dtype:
        raise ValueError(f"SwiGLU needs a and b of the same dtype, got {a.dtype} and {b.dtype}; cast one "
                         "(e.g. b.to(a.dtype))")
    if not a.is_floating_point():
        raise ValueError(f"SwiGLU needs floating-point inputs, got {a.dtype}")
    if a.device != b.device:
        raise ValueError(f"SwiGLU needs a and b on the same device, got {a.device} and {b.device}")
    runtime.check_runnable(a, JIT_MODE, "SwiGLU")


def _grid(n: int) -> tuple[int]:
    return (triton.cdiv(n, BLOCK),)


def swiglu_forward(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """c = silu(a) * b with the fused kernel (a's shape and dtype). Inputs must already be contiguous."""
    c = torch.empty_like(a)
    n = a.numel()
    if n:
        with runtime.on_device(a):
            _swiglu_fwd_kernel[_grid(n)](a, b, c, n, BLOCK=BLOCK, num_warps=runtime.num_warps(BLOCK))
    return c


def swiglu_backward(dc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """da, db (a's shape and dtype) from the upstream gradient and the saved contiguous a and b."""
    dc = dc.contiguous()  # autograd may hand us an expanded or transposed gradient; the kernel is flat
    da, db = torch.empty_like(a), torch.empty_like(b)
    n = a.numel()
    if n:
        with runtime.on_device(a):
            _swiglu_bwd_kernel[_grid(n)](dc, a, b, da, db, n, BLOCK=BLOCK, num_warps=runtime.num_warps(BLOCK))
    return da, db


class SwiGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check_inputs(a, b)
        # The kernels index flat memory, so both must be dense in row-major order (a copy only if not already).
        a, b = a.contiguous(), b.contiguous()
        c = swiglu_forward(a, b)
        ctx.save_for_backward(a, b)  # only the inputs: silu and sigmoid are recomputed in backward
        return c

    @staticmethod
    def backward(ctx, dc: torch.Tensor):
        a, b = ctx.saved_tensors
        return swiglu_backward(dc, a, b)


def swiglu(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """silu(a) * b elementwise (a: gate projection, b: up projection; same shape and dtype) with fused kernels."""
    return SwiGLUFunction.apply(a, b)
