"""What a training run records: history rows, history.jsonl, hooks and model FLOPs utilization (Survey §4.3).

Each logged step becomes one dict ("row"):

    step        optimizer steps done (1-based: the row after the first update has step=1)
    tokens      training tokens consumed so far (step x batch_size x grad_accum_steps x block_size)
    loss        mean training loss over the steps since the previous row
    lr          learning rate of this step
    grad_norm   global gradient norm of this step, before clipping
    tok_per_s   training throughput since the previous row (evaluation time excluded)
    elapsed_s   training wall time so far
    skipped     steps dropped so far because of a non-finite loss (TrainConfig.on_nan='skip')
    val_loss    held-out loss, only in rows where an evaluation ran
    mfu         model FLOPs utilization, only on CUDA: achieved FLOP/s / the GPU's peak (PaLM, Chowdhery et al.)

Hooks let a notebook watch the run live (plot the loss as it falls) without changing the loop.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from minillm.io import atomic_write_text

HOOK_NAMES = ("on_step", "on_eval")
Hook = Callable[[Any, dict], None]

# Dense (no sparsity) bf16 tensor-core peak FLOP/s from the vendors' data sheets. MFU is reported against this
# peak whatever the precision, the usual convention (an fp32 run therefore shows a low MFU, which is the point).
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,  # SXM
    "GH200": 989e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
}


def peak_flops(device: torch.device | str) -> float | None:
    """Peak dense bf16 FLOP/s of a CUDA device, from its name; None for CPUs and unknown GPUs."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    # Longest key first, so "H100 PCIe" wins over "H100" and "A100" is not taken for "A10".
    for key in sorted(PEAK_BF16_FLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_FLOPS[key]
    return None


def mfu(flops_per_token: float | None, tok_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilization: useful FLOP/s (6N + attention per token) over the hardware's peak."""
    if not flops_per_token or not peak:
        return None
    return flops_per_token * tok_per_s / peak


def normalize_hooks(hooks: Any) -> dict[str, list[Hook]]:
    """Accept hooks as {"on_step": f, "on_eval": [g, h]} or as a list of objects with on_step/on_eval methods.

    Every hook is called as hook(trainer, row) after the row is complete. Returns {name: [callables]}.
    """
    out: dict[str, list[Hook]] = {name: [] for name in HOOK_NAMES}
    if hooks is None:
        return out
    if isinstance(hooks, dict):
        unknown = sorted(set(hooks) - set(HOOK_NAMES))
        if unknown:
            raise ValueError(f"unknown hook name(s) {unknown}; valid names: {', '.join(HOOK_NAMES)}")
        for name, fns in hooks.items():
            fns = [fns] if callable(fns) else list(fns)
            for fn in fns:
                if not callable(fn):
                    raise ValueError(f"hook {name!r} must be callable as fn(trainer, row), got {fn!r}")
            out[name].extend(fns)
        return out
    if isinstance(hooks, Iterable) and not isinstance(hooks, (str, bytes)):
        for obj in hooks:
            found = [name for name in HOOK_NAMES if callable(getattr(obj, name, None))]
            if not found:
                raise ValueError(f"hook object {obj!r} has none of the methods {', '.join(HOOK_NAMES)}")
            for name in found:
                out[name].append(getattr(obj, name))
        return out
    raise ValueError(f"hooks must be None, a dict like {{'on_step': fn}} or a list of objects with "
                     f"on_step/on_eval methods; got {type(hooks).__name__}")


def _jsonable(row: dict) -> dict:
    # JSON has no NaN/inf: write them as null so every line stays valid JSON for any reader.
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


class HistoryWriter:
    """Appends rows to OUT_DIR/history.jsonl, one JSON object per line, flushed as written.

    Flushing each line means a crashed run keeps its log, and `tail -f` / a notebook can follow a live run.
    """

    def __init__(self, path: str | os.PathLike, rows: list[dict] | None = None):
        """Start the file afresh with `rows` (a resumed run rewrites the rows up to its checkpoint)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Atomic rewrite, so a crash here cannot lose the previous log.
        atomic_write_text(self.path, "".join(json.dumps(_jsonable(row)) + "\n" for row in rows or []))
        self._file = open(self.path, "a")

    def write(self, row: dict) -> None:
        self._file.write(json.dumps(_jsonable(row)) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_history(path: str | os.PathLike) -> list[dict]:
    """Rows of a history.jsonl file (or of OUT_DIR/history.jsonl when given the run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "history.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no history file at {path}; runs with TrainConfig.out_dir set write one")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
