"""Device and dtype choice, and seeding.

Survey §4.3.2 (scalable training: mixed precision) starts from a practical question: where does the
math run and in which number format? This module answers it once for the whole package. Asking for a
device that is not there is an error with a fix, never a silent fall back to the CPU.
"""
from __future__ import annotations

import operator
import os
import random

import numpy as np
import torch

from minillm.config import DEVICES


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn 'auto' | 'cpu' | 'cuda[:i]' | 'mps' into a torch.device that exists on this machine.

    'auto' picks CUDA, then Apple's MPS, then the CPU. An explicit request for an absent accelerator raises.
    """
    if isinstance(name, torch.device):
        name = str(name)
    base = name.split(":")[0]
    if base not in DEVICES:
        raise ValueError(f"device={name!r} is not valid; choose one of {', '.join(DEVICES)} (optionally 'cuda:N')")
    if base == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if base == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise RuntimeError(
                f"device={name!r} was requested but CUDA is not available (torch {torch.__version__} is {build}). "
                "Use device='cpu' (or 'auto'), or install a CUDA build of torch as the README explains.")
        if ":" in name and int(name.split(":")[1]) >= torch.cuda.device_count():
            raise RuntimeError(f"device={name!r} was requested but only {torch.cuda.device_count()} GPU(s) are visible")
    if base == "mps" and not _mps_available():
        raise RuntimeError(f"device={name!r} was requested but Apple MPS is not available here; use device='cpu'")
    return torch.device(name)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a model's parameters live (a parameter-free model runs on the CPU): where its inputs must go."""
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting, or None for plain fp32.

    'auto' = bf16 on CUDA (same exponent range as fp32, so no loss scaling needed) and fp32 elsewhere:
    CPUs without bf16 units run bf16 matmuls far slower than fp32.
    """
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("precision='fp16' needs a CUDA device (fp16 + GradScaler); on CPU use 'fp32'")
        return torch.float16
    raise ValueError(f"precision={precision!r} is not valid; choose auto, fp32, bf16 or fp16")


def set_tf32(device: torch.device, enabled: bool = True) -> bool:
    """On CUDA, let fp32 matmuls use TF32 tensor cores (fp32 range, 10-bit mantissa: ~8x the fp32 rate on an
    A100/H100; nanoGPT's and most trainers' setting), or with enabled=False make them exact fp32 again.
    Returns True if it changed the setting; a CPU or MPS device is left alone (False).

    Process-wide (cuBLAS has one switch), CUDA only: the legacy `allow_tf32` flag, not
    `torch.set_float32_matmul_precision("high")`, which would also switch the CPU's oneDNN matmuls to TF32, and
    not the per-backend `fp32_precision` API: set for CUDA alone, it makes `torch.get_float32_matmul_precision()`
    raise (torch 2.13), and torch.compile's inductor calls that.
    """
    if torch.device(device).type != "cuda":
        return False
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    return True


def seed_everything(seed: int) -> None:
    """Seed every global random generator a run draws from, so it can be repeated exactly. Returns None.

    Seeds python's `random`, numpy's global generator (with seed mod 2**32: numpy takes 32 bits) and torch's
    generators on every device (`torch.manual_seed` covers the CPU, all CUDA GPUs and MPS). It also sets
    PYTHONHASHSEED if unset, which only reaches subprocesses started later (this process's str hashing is fixed
    at start-up). It does not make GPU kernels deterministic (`torch.use_deterministic_algorithms` does).

    Call it right before building a model: `GPT(cfg)` draws its initial weights from torch's generator, so
    `seed_everything(s); GPT(cfg)` gives the same weights every time, and the same as `python -m minillm train
    --seed s`, which seeds the same way just before it builds the model. The Trainer seeds again with
    TrainConfig.seed when it starts (dropout, sampling); it cannot reach weights that already exist.
    """
    try:
        seed = operator.index(seed)  # an int or numpy integer; a float or string is a mistake worth naming
    except TypeError:
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}") from None
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def rng_state() -> dict:
    """Every RNG state a training run depends on (for exact resume)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
