"""Fused Triton kernels for the hot, memory-bound ops of a Llama-style model, each beside its PyTorch reference.

Survey §4.3 (training at scale: efficiency) and §4.2.2 (RMSNorm, SwiGLU, RoPE). One file per op, in the
Liger-Kernel layout: the Triton kernel(s), the launcher, a `torch.autograd.Function` with a fused backward,
and the plain PyTorch reference the tests compare against.

    rmsnorm.py                     RMSNorm (saves 1/rms per row; dweight by per-program partial sums)
    swiglu.py                      silu(a) * b (backward recomputes silu instead of storing it)
    rope.py                        rotary embedding of q and k in place (backward = rotation by -angle)
    cross_entropy.py               online-softmax cross-entropy over large vocabularies, gradient written in forward
    fused_linear_cross_entropy.py  lm_head matmul + cross-entropy in token chunks: the (N, V) logits never exist
    flash_attention.py             FlashAttention-2 forward/backward (tiled online softmax, causal tile skipping, GQA)
    flash_blocksparse.py           block-sparse attention's host side: layout checks, each program's tiles (lookup tables)
    flash_reference.py             the same algorithm in plain PyTorch, for reading and as the tests' oracle
    ops.py                         the entry points the model calls; each imports its kernel module on first use
    runtime.py                     where kernels can run (CUDA, or the interpreter), and the clear errors elsewhere

The model uses them when `ModelConfig(kernels="triton")` and its tensors are on CUDA. On a CPU they run only
in Triton's interpreter (TRITON_INTERPRET=1, or `use_interpreter()` before first use), which is how CI tests
them; anywhere else a `KernelUnavailableError` says what to do instead of falling back silently.

Call them through `minillm.kernels.ops` (rms_norm, swiglu, rope, cross_entropy, fused_linear_cross_entropy,
flash_attention), which imports a kernel module on first call: importing minillm never imports triton.
"""
from __future__ import annotations

from minillm.kernels import ops
from minillm.kernels.flash_reference import flash_attention_reference
from minillm.kernels.runtime import KernelUnavailableError, current_mode, require_triton, triton_installed, use_interpreter

__all__ = ["flash_attention_reference", "KernelUnavailableError", "triton_installed", "current_mode", "use_interpreter", "require_triton", "ops"]
