"""Where minillm's Triton kernels can run, and the one error raised where they cannot.

Triton compiles a kernel for a GPU. With the environment variable TRITON_INTERPRET=1 set *before* a kernel
module is imported, `@triton.jit` returns an interpreted function instead, which runs the same kernel body
with numpy on the CPU, one program instance at a time (~2-3 ms each): slow, but exact, so the kernels are
tested in CI without a GPU. The choice is made once per kernel module, when it is imported; each module
records it in `JIT_MODE`, and `check_runnable` compares that with the tensors it is given.

Nothing here imports triton at import time, so `import minillm` works where triton is not installed.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys

import torch

KERNEL_MODULES = ("rmsnorm", "swiglu", "rope", "cross_entropy", "fused_linear_cross_entropy", "flash_attention")


class KernelUnavailableError(RuntimeError):
    """Triton kernels were asked for where they cannot run (no triton, or CPU tensors without the interpreter)."""


def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreter_requested() -> bool:
    """True when TRITON_INTERPRET is set to a true value in this process's environment."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def current_mode() -> str:
    """'interpreter' or 'compiled': what `@triton.jit` produces if a kernel module is imported now."""
    return "interpreter" if interpreter_requested() else "compiled"


def imported_modes() -> dict[str, str]:
    """{kernel module name: mode it was compiled in} for the kernel modules imported so far."""
    out = {}
    for name in KERNEL_MODULES:
        mod = sys.modules.get(f"{__package__}.{name}")
        if mod is not None:
            out[name] = mod.JIT_MODE
    return out


def use_interpreter() -> None:
    """Run the kernels in Triton's CPU interpreter from now on (for notebooks and tests without a GPU).

    Must happen before the first kernel is used: a kernel module imported in compiled mode cannot switch.
    """
    compiled = [name for name, mode in imported_modes().items() if mode == "compiled"]
    if compiled:
        raise KernelUnavailableError(
            f"kernel modules {compiled} were already imported in compiled (GPU) mode, so they cannot switch to "
            "the interpreter; restart the Python process (or notebook kernel) and call use_interpreter() first")
    os.environ["TRITON_INTERPRET"] = "1"


def require_triton() -> None:
    if not triton_installed():
        raise KernelUnavailableError(
            "kernels='triton' needs the `triton` package, which is not installed. It ships with CUDA builds of "
            "torch on Linux (`pip install triton` otherwise); on other systems use kernels='torch'")


def check_runnable(tensor: torch.Tensor, jit_mode: str, op: str) -> None:
    """Raise a clear error unless `op`'s kernels (compiled in `jit_mode`) can run on `tensor`."""
    if tensor.is_cuda:
        return  # compiled kernels run on CUDA; the interpreter also accepts CUDA tensors (it copies them)
    if jit_mode == "interpreter":
        return
    raise KernelUnavailableError(
        f"the Triton {op} kernel needs a CUDA tensor, but got one on {tensor.device}. On a CPU use "
        "kernels='torch' (the same maths in PyTorch), or to step through the Triton code on the CPU, set "
        "TRITON_INTERPRET=1 (or call minillm.kernels.use_interpreter()) before the first kernel is used, "
        "in a fresh process")


def on_device(t: torch.Tensor):
    """The context every launch runs in: `torch.cuda.device(t.device)` for a CUDA tensor, so the kernel goes to the
    stream and context of the GPU that holds its tensors (not to the current device, which on a multi-GPU rank
    need not be that one); nothing for CPU tensors (the interpreter)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def block_size(n: int, limit: int = 65536) -> int:
    """Smallest power of two >= n: a Triton block covers a whole row, and block shapes must be powers of 2."""
    if n > limit:
        raise ValueError(f"row length {n} exceeds the largest block this kernel fuses ({limit}); "
                         "use kernels='torch' for such rows")
    return 1 << max(0, (n - 1).bit_length())


def num_warps(block: int) -> int:
    """Warps per program by block size (more threads for longer rows, as Liger-Kernel's heuristic)."""
    if block >= 32768:
        return 32
    if block >= 8192:
        return 16
    if block >= 2048:
        return 8
    return 4


def scale_saved_grad(grad: torch.Tensor | None, grad_output: torch.Tensor, n_valid: torch.Tensor,
                     dtype: torch.dtype | None = None) -> torch.Tensor | None:
    """grad * grad_output / n_valid, multiplied in fp32 and stored in `dtype` (default: grad's), out of place.

    For the cross-entropy kernels, which save the gradient of the loss SUM in forward: the mean's 1/n_valid and
    the GradScaler's scale (grad_output) meet here, in fp32, and only the product is rounded to fp16 or bf16.
    The factor is (1,), not 0-d: a 0-d fp32 operand would be cast to grad's dtype first (type promotion), and
    in fp16 lose precision, or overflow (GradScaler's first scale, 65536, is already inf in fp16). On CUDA the
    multiply casts as it goes, with no fp32 copy of grad. Always the multiply: skipping it when grad_output == 1
    would read the device, one sync per step. Out of place, so that a second backward through a retained graph
    sees the same saved gradient.
    """
    if grad is None:
        return None
    factor = (grad_output.float() / n_valid).reshape(1)  # (1,) fp32
    return torch.mul(grad, factor, out=torch.empty_like(grad, dtype=dtype or grad.dtype))


def program_count(n_rows: int, device: torch.device) -> int:
    """Programs for kernels that loop over rows (e.g. a weight-gradient partial sum per program).

    One per streaming multiprocessor on a GPU; in the interpreter a handful, since each program is slow.
    """
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        return max(1, min(n_rows, sms))
    return max(1, min(n_rows, 4))
