"""What the kernel benchmarks share: timing forward+backward on a GPU (CUDA events, L2 flushed, calls queued
ahead) or by wall clock in smoke mode, errors between outputs, and kernel_speed.py's per-op summary (also read by
gpu_check.py).

A module of its own with a private name: `kernels` is also the name of a PyPI package (Hugging Face's), which can
shadow bench/kernel_speed.py when another import loaded it first.
"""
from __future__ import annotations

import gc
import math
import sys
import statistics
import time
from typing import Any, Callable

import torch


def _outputs(out: Any) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


class Bench:
    """Times forward+backward of fn(*args) on one device; `cuda=False` is the smoke mode's wall clock."""

    def __init__(self, cuda: bool, warmup: int, repeats: int):
        if warmup < 1 or repeats < 1:
            raise ValueError(f"--warmup {warmup} and --repeats {repeats} must be >= 1 (the first call compiles)")
        self.cuda, self.warmup, self.repeats = cuda, warmup, repeats
        # Zeroed before each timed call to evict the inputs from L2 (256 MB > any GPU's L2 today).
        self.flush = torch.empty(256 * 2**20, dtype=torch.int8, device="cuda") if cuda else None
        self.cycles_per_ms = self._sleep_rate() if cuda else None

    @staticmethod
    def _sleep_rate() -> float | None:
        """GPU clock cycles per ms of torch.cuda._sleep (a private API: None where it is missing, so no wait)."""
        if not hasattr(torch.cuda, "_sleep"):
            return None
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1000)  # first use loads the kernel
        start.record()
        torch.cuda._sleep(10_000_000)
        end.record()
        torch.cuda.synchronize()
        return 10_000_000 / max(start.elapsed_time(end), 1e-3)

    @staticmethod
    def call(fn: Callable, args: tuple, grads: list[torch.Tensor]) -> None:
        """One forward+backward: what is timed. `grads` are consumed (Liger's RMSNorm writes dx into dy)."""
        torch.autograd.backward(_outputs(fn(*args)), grads)

    @staticmethod
    def _fresh(leaves: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """Before each call, untimed: no gradients yet (no accumulation kernel) and a fresh output gradient."""
        for leaf in leaves:
            leaf.grad = None
        return [g.clone() for g in grads]

    def time_ms(self, fn: Callable, args: tuple, leaves: list[torch.Tensor],
                grads: list[torch.Tensor]) -> tuple[float, float, bool | None]:
        """(median ms of one call, host ms to enqueue one call, whether the timed calls were all queued ahead)."""
        host = []
        for _ in range(self.warmup):  # compile and autotune here; the last ones give the host's enqueue time
            g = self._fresh(leaves, grads)
            t0 = time.perf_counter()
            if self.cuda:
                self.flush.zero_()
            self.call(fn, args, g)
            host.append(1e3 * (time.perf_counter() - t0))
        host_ms = min(host[-3:])
        if not self.cuda:
            times = []
            for _ in range(self.repeats):
                g = self._fresh(leaves, grads)
                t0 = time.perf_counter()
                self.call(fn, args, g)
                times.append(1e3 * (time.perf_counter() - t0))
            return statistics.median(times), host_ms, None
        torch.cuda.synchronize()
        # Hold the GPU while Python enqueues every timed call (2x the expected time, at most 2 s): the GPU then
        # runs flush, call, flush, call... back to back, and each event pair brackets GPU work only.
        wait_ms = min(2000.0, 2.0 * self.repeats * host_ms + 1.0)
        if self.cycles_per_ms is not None:
            torch.cuda._sleep(int(wait_ms * self.cycles_per_ms))
        t0, events = time.perf_counter(), []
        for _ in range(self.repeats):
            g = self._fresh(leaves, grads)
            self.flush.zero_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self.call(fn, args, g)
            end.record()
            events.append((start, end))
        enqueue_ms = 1e3 * (time.perf_counter() - t0)
        torch.cuda.synchronize()
        queued = self.cycles_per_ms is not None and enqueue_ms < wait_ms
        return statistics.median(s.elapsed_time(e) for s, e in events), host_ms, queued

    def peak_mb(self, fn: Callable, args: tuple, leaves: list[torch.Tensor], grads: list[torch.Tensor]) -> float | None:
        if not self.cuda:
            return None
        g = self._fresh(leaves, grads)
        gc.collect()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()  # inputs, output gradient, flush buffer
        torch.cuda.reset_peak_memory_stats()
        self.call(fn, args, g)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20


def max_err(got: tuple, want: tuple) -> float:
    return max((float((g.float() - w.float()).abs().max()) if g.numel() else 0.0)
               for g, w in zip(got, want, strict=True))


def geomean(xs: list[float]) -> float | None:
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


def summarize(rows: list[dict]) -> dict[str, dict[str, float | None]]:
    """Per op, geometric mean over sizes of ours vs each other implementation (sizes where both ran)."""
    out: dict[str, dict[str, float | None]] = {}
    for op in dict.fromkeys(r["op"] for r in rows):
        by_impl: dict[str, dict[str, dict]] = {}
        for r in rows:
            if r["op"] == op and r.get("ms"):
                by_impl.setdefault(r["impl"], {})[repr(r["shape"])] = r
        ours = by_impl.get("minillm", {})
        entry: dict[str, float | None] = {}
        for other in ("eager", "compile", "liger"):
            theirs = by_impl.get(other, {})
            both = [k for k in ours if k in theirs]
            entry[f"speedup_vs_{other}"] = geomean([theirs[k]["ms"] / ours[k]["ms"] for k in both])
            mem = [ours[k]["peak_mb"] / theirs[k]["peak_mb"] for k in both
                   if ours[k]["peak_mb"] is not None and theirs[k]["peak_mb"]]
            entry[f"mem_ratio_vs_{other}"] = geomean(mem)
        out[op] = entry
    return out


def kernel_device(script: str, smoke: bool, what: str, smoke_check: str) -> bool | None:
    """Where a kernel bench runs: True on CUDA (timed), False in smoke mode (Triton's CPU interpreter, switched on
    here, before any kernel module is imported: @triton.jit decides at import), None when it cannot run (printed
    why; the caller exits 2). `what` says what the script times, `smoke_check` what --smoke checks instead."""
    from minillm.kernels import runtime

    if not smoke and not torch.cuda.is_available():
        print(f"{script} {what} on a CUDA GPU, and this machine has none. Run it on a CUDA machine, or pass --smoke "
              f"to check {smoke_check}.", file=sys.stderr)
        return None
    if not runtime.triton_installed():
        print(f"{script} needs the `triton` package (it ships with CUDA builds of torch on Linux).", file=sys.stderr)
        return None
    if smoke:
        runtime.use_interpreter()
    return not smoke
