"""Fused RMSNorm in Triton: forward, backward, launcher, autograd.Function and the PyTorch reference.

Survey §4.2.2 (normalization): y = x / sqrt(mean(x^2) + eps) * w. Eager PyTorch runs this as ~5 kernels,
each reading and writing the whole (M, N) activation from GPU memory; the op does almost no arithmetic per
byte, so its time is memory traffic. Fused, each row is read once and written once.

Forward: one program per row. It loads the row, reduces sum(x^2) in fp32, and stores y and the row's
1/rms ("rstd", one float per row) so that backward need not recompute the reduction.

Backward, with x_hat = x * rstd and g = dy * w:
    dx = rstd * (g - x_hat * mean(g * x_hat))      (row-local: the same program layout as forward)
    dw = sum over rows of dy * x_hat               (a reduction over rows: each program loops over a slice of
                                                    rows and writes one fp32 partial sum; torch adds the partials)
bf16/fp16 inputs are cast to fp32 inside the kernel (the interpreter gives NaN for bf16 arithmetic, and the
reduction needs fp32 on a GPU too); outputs are cast back to the input dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from minillm.kernels import runtime

JIT_MODE = runtime.current_mode()  # fixed now: @triton.jit below decides interpreter vs compiled at import


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The PyTorch definition the kernel is tested against (fp32 reduction, output in x's dtype)."""
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps) * weight.float()
    return y.to(x.dtype)


@triton.jit
def _rms_norm_fwd_kernel(X, W, Y, RSTD, x_stride, y_stride, n_cols, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)  # int64: row * stride overflows int32 past 2^31 elements
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols  # the block is a power of two >= n_cols; the tail lanes load 0 and store nothing
    x = tl.load(X + row * x_stride + cols, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n_cols + eps)
    tl.store(RSTD + row, rstd)
    tl.store(Y + row * y_stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _rms_norm_bwd_kernel(DY, X, W, RSTD, DX, DW_PARTIAL, stride, n_rows, n_cols, rows_per_program,
                         BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw_acc = tl.zeros((BLOCK,), dtype=tl.float32)  # this program's share of dw, kept in registers
    first = pid * rows_per_program
    for i in range(0, rows_per_program):
        row = (first + i).to(tl.int64)
        if row < n_rows:
            x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(DY + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
            rstd = tl.load(RSTD + row)
            x_hat = x * rstd
            g = dy * w
            dx = rstd * (g - x_hat * (tl.sum(g * x_hat, axis=0) / n_cols))
            tl.store(DX + row * stride + cols, dx.to(DX.dtype.element_ty), mask=mask)
            dw_acc += dy * x_hat
    tl.store(DW_PARTIAL + pid * n_cols + cols, dw_acc, mask=mask)


def rms_norm_forward(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel on x viewed as (M, N). Returns y (x's shape and dtype) and rstd (M,) fp32."""
    runtime.check_runnable(x, JIT_MODE, "RMSNorm")
    if weight.shape != (x.shape[-1],):
        raise ValueError(f"RMSNorm weight has shape {tuple(weight.shape)}; expected ({x.shape[-1]},)")
    x2 = x.reshape(-1, x.shape[-1]).contiguous()  # (M, N)
    n_rows, n_cols = x2.shape
    block = runtime.block_size(n_cols)
    y = torch.empty_like(x2)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    if n_rows:
        with runtime.on_device(x2):
            _rms_norm_fwd_kernel[(n_rows,)](x2, weight, y, rstd, x2.stride(0), y.stride(0), n_cols, eps,
                                            BLOCK=block, num_warps=runtime.num_warps(block))
    return y.view(x.shape), rstd


def rms_norm_backward(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                      rstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """dx (x's shape and dtype) and dweight (weight's dtype) from the saved x and rstd."""
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    dy2 = dy.reshape(-1, dy.shape[-1]).contiguous()
    n_rows, n_cols = x2.shape
    block = runtime.block_size(n_cols)
    programs = runtime.program_count(n_rows, x.device)
    rows_per_program = -(-n_rows // programs) if n_rows else 0
    dx = torch.empty_like(x2)
    dw_partial = torch.zeros(programs, n_cols, dtype=torch.float32, device=x.device)
    if n_rows:
        with runtime.on_device(x2):
            _rms_norm_bwd_kernel[(programs,)](dy2, x2, weight, rstd, dx, dw_partial, x2.stride(0), n_rows, n_cols,
                                              rows_per_program, BLOCK=block, num_warps=runtime.num_warps(block))
    return dx.view(x.shape), dw_partial.sum(dim=0).to(weight.dtype)


class RMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        y, rstd = rms_norm_forward(x, weight, eps)
        ctx.save_for_backward(x, weight, rstd)  # x and one float per row: not y, not x_hat
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, weight, rstd = ctx.saved_tensors
        dx, dw = rms_norm_backward(dy, x, weight, rstd)
        return dx, dw, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm over the last dim of x (any leading shape) with the fused Triton kernels."""
    return RMSNormFunction.apply(x, weight, eps)
