"""Fused Triton kernels against eager PyTorch, torch.compile and Liger-Kernel: time and memory of forward+backward.

Survey §4.3 (efficient training) and §4.2.2 (RMSNorm, SwiGLU, RoPE). For each op of `minillm.kernels` over a
range of sizes, up to four implementations are measured side by side in one process, on identical inputs:

    eager    the op's PyTorch reference (`<op>_reference` in minillm/kernels/<op>.py): what kernels='torch' runs
    compile  torch.compile of that reference (fusion by Inductor: the bar a hand-written kernel must clear)
    liger    liger_kernel's equivalent op, when `import liger_kernel` works (else recorded as absent)
    minillm  ours (minillm.kernels)

Time: forward + backward of one call, CUDA events around it, `--warmup` untimed calls first (compile pays its
compilation there), then the median of `--repeats` timed calls. Before each timed call a 256 MB buffer is
zeroed so that every call starts with a cold L2 cache (an H100's 50 MB L2 holds the smaller inputs; timing them
warm would flatter every implementation alike and hide the memory traffic that fusion saves).
Memory: torch.cuda.max_memory_allocated during one more call, minus what was allocated before it (the inputs
and the output gradient): the activations, saved tensors and gradients the op itself needs.
Each row also has `max_err`: the largest absolute difference of the forward outputs and input gradients from
the eager ones (None for Liger's RoPE, which pairs dimension i with i + D/2, not minillm's adjacent pairs: the
same work on a different layout).

    python bench/kernels.py                      # every op, bf16, on a CUDA GPU (minutes: compile per size)
    python bench/kernels.py --ops rope --ops cross_entropy --dtype fp32 --repeats 50
    python bench/kernels.py --smoke [--out PATH] # no GPU: every op once at tiny sizes in Triton's interpreter

Appends {"bench": "kernels", "device", "dtype", "rows", "summary", "liger", "triton", "provenance", ...} to
bench/results/kernels.jsonl (or --out). `summary` gives per op the geometric mean over its sizes of ours vs
each other implementation: speedup (their ms / our ms, > 1 = ours faster) and memory (our MB / their MB,
< 1 = ours smaller). --smoke checks that the script and every kernel run (wall-clock timing of the
interpreter, no memory column); it writes a record only with --out, which then says "smoke": true.
"""
from __future__ import annotations

import argparse
import gc
import importlib.metadata
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "kernels.jsonl"
OPS = ("rmsnorm", "swiglu", "rope", "cross_entropy", "fused_linear_cross_entropy")
IMPLS = ("eager", "compile", "liger", "minillm")
DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float32: "fp32"}

# GPU sizes: Llama/GPT-2 widths (768 .. 8192), 4k-32k tokens per micro-batch, GPT-2/Llama-2/Llama-3 vocabularies.
GPU_SIZES: dict[str, list[dict[str, int]]] = {
    "rmsnorm": [dict(rows=r, hidden=h) for r in (4096, 32768) for h in (768, 4096, 8192)],
    "swiglu": [dict(rows=r, hidden=h) for r in (4096, 32768) for h in (768, 4096, 8192)],
    "rope": [dict(B=8, H=12, T=1024, D=64), dict(B=8, H=12, T=1024, D=128), dict(B=8, H=32, T=2048, D=128)],
    "cross_entropy": [dict(N=8192, V=v) for v in (32000, 50304, 128256)],
    "fused_linear_cross_entropy": [dict(N=8192, C=c, V=v) for c in (768, 2048, 4096) for v in (50304, 128256)],
}
# --smoke: odd, tiny shapes (the interpreter runs one program instance at a time, ~1-3 ms each).
SMOKE_SIZES: dict[str, list[dict[str, int]]] = {
    "rmsnorm": [dict(rows=5, hidden=48)],
    "swiglu": [dict(rows=5, hidden=40)],
    "rope": [dict(B=1, H=2, T=5, D=8)],
    "cross_entropy": [dict(N=6, V=50)],
    "fused_linear_cross_entropy": [dict(N=6, C=16, V=50)],
}


# --------------------------------------------------------------------------------------------- the ops
# Each op: inputs(shape, device, dtype) -> (args, leaves), and one function per implementation taking *args.
# `leaves` are the tensors whose gradients backward computes; every implementation gets the same seeded inputs.

def _randn(*shape, device, dtype, scale=1.0, grad=True) -> torch.Tensor:
    return (torch.randn(*shape, device=device, dtype=torch.float32) * scale).to(dtype).requires_grad_(grad)


def _targets(n: int, v: int, device) -> torch.Tensor:
    t = torch.randint(0, v, (n,), device=device)
    t[::16] = -100  # a few ignored positions (padding, prompt tokens), as in real batches
    return t


def _inputs(op: str, s: dict[str, int], device, dtype) -> tuple[tuple, list[torch.Tensor]]:
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


def _eager(op: str) -> Callable:
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


def _minillm(op: str) -> Callable:
    """Ours, through the public entry points (minillm.kernels.ops), as the model calls them."""
    from minillm.kernels import ops as K

    return {
        "rmsnorm": K.rms_norm,
        "swiglu": K.swiglu,
        "rope": lambda q, k, cos, sin, *_: K.rope(q, k, cos, sin),
        "cross_entropy": lambda logits, t: K.cross_entropy(logits, t, -100, 0.0),
        "fused_linear_cross_entropy": lambda h, w, t: K.fused_linear_cross_entropy(h, w, t, -100, 0.0),
    }[op]


def _liger(op: str) -> Callable:
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


# --------------------------------------------------------------------------------------------- measuring

def _outputs(out: Any) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


class Bench:
    """Times forward+backward of fn(*args) on one device; `cuda=False` is the smoke mode's wall clock."""

    def __init__(self, cuda: bool, warmup: int, repeats: int):
        self.cuda, self.warmup, self.repeats = cuda, warmup, repeats
        # Zeroed before each timed call to evict the inputs from L2 (256 MB > any GPU's L2 today).
        self.flush = torch.empty(256 * 2**20, dtype=torch.int8, device="cuda") if cuda else None

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

    def time_ms(self, fn: Callable, args: tuple, leaves: list[torch.Tensor], grads: list[torch.Tensor]) -> float:
        times = []
        for i in range(self.warmup + self.repeats):
            g = self._fresh(leaves, grads)
            if self.cuda:
                self.flush.zero_()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                self.call(fn, args, g)
                end.record()
                if i >= self.warmup:
                    times.append((start, end))
            else:
                t0 = time.perf_counter()
                self.call(fn, args, g)
                if i >= self.warmup:
                    times.append(1e3 * (time.perf_counter() - t0))
        if self.cuda:
            torch.cuda.synchronize()
            times = [s.elapsed_time(e) for s, e in times]
        return statistics.median(times)

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


def run_case(op: str, shape: dict[str, int], impls: list[str], bench: Bench, device: str, dtype: torch.dtype,
             strict: bool) -> list[dict]:
    """Every implementation of one op at one size: a row each ({"error": ...} instead of numbers if it failed)."""
    rows, reference = [], None
    for impl in impls:
        row: dict[str, Any] = {"op": op, "shape": shape, "dtype": DTYPE_NAMES[dtype], "impl": impl}
        args = leaves = fn = None
        try:
            torch.manual_seed(0)
            args, leaves = _inputs(op, shape, device, dtype)
            if impl == "eager":
                fn = _eager(op)
            elif impl == "compile":
                torch._dynamo.reset()  # a fresh cache per size: no recompile limit, no dynamic-shape fallback
                fn = torch.compile(_eager(op), dynamic=False)
            elif impl == "liger":
                fn = _liger(op)
            else:
                fn = _minillm(op)
            # First call, checked against eager: the output gradient (seeded: the same for every
            # implementation) is random, or 1 for a scalar loss; it is reused by every timed call.
            outs = _outputs(fn(*args))
            torch.manual_seed(1)
            grads = [torch.randn_like(o) if o.dim() else torch.ones_like(o) for o in outs]  # dL/d(output)
            torch.autograd.backward(outs, [g.clone() for g in grads])
            got = tuple(o.detach() for o in outs) + tuple(leaf.grad for leaf in leaves)
            del outs
            if impl == "eager":
                reference = got
            comparable = reference is not None and not (impl == "liger" and op == "rope")
            row["max_err"] = max_err(got, reference) if comparable else None
            del got  # (the eager one lives on as `reference`)
            row["ms"] = bench.time_ms(fn, args, leaves, grads)
            row["peak_mb"] = bench.peak_mb(fn, args, leaves, grads)
        except Exception as e:  # noqa: BLE001 (one failing implementation must not lose a long GPU run)
            if strict:
                raise
            row.update(ms=None, peak_mb=None, max_err=None, error=f"{type(e).__name__}: {e}"[:500])
            print(f"  {op} {shape} {impl}: FAILED {row['error']}", file=sys.stderr, flush=True)
        rows.append(row)
        del args, leaves, fn
        gc.collect()
        if bench.cuda:
            torch.cuda.empty_cache()
    eager = next((r for r in rows if r["impl"] == "eager" and r.get("ms")), None)
    for r in rows:
        ok = eager is not None and r.get("ms")
        r["speedup_vs_eager"] = eager["ms"] / r["ms"] if ok else None
        r["mem_ratio_vs_eager"] = (r["peak_mb"] / eager["peak_mb"]
                                   if ok and r["peak_mb"] is not None and eager["peak_mb"] else None)
    return rows


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


# --------------------------------------------------------------------------------------------- main

def _fmt(x: Any, spec: str = ".3g") -> str:
    return "" if x is None else format(x, spec)


def print_tables(rows: list[dict], summary: dict) -> None:
    from book.viz import markdown_table

    shown = [{**r, "shape": " ".join(f"{k}={v}" for k, v in r["shape"].items()),
              "ms": r["ms"] if r.get("ms") else r.get("error", "failed")} for r in rows]
    print(markdown_table(shown, ["op", "shape", "impl", "ms", "peak_mb", "speedup_vs_eager", "mem_ratio_vs_eager",
                                 "max_err"],
                         {c: _fmt for c in ("peak_mb", "speedup_vs_eager", "mem_ratio_vs_eager", "max_err")}
                         | {"ms": lambda v: v if isinstance(v, str) else format(v, ".4g")}))
    print("\nminillm vs the others (geometric mean over sizes; speedup > 1 and memory ratio < 1 favour minillm):\n")
    table = [{"op": op, **v} for op, v in summary.items()]
    cols = ["op"] + [f"{kind}_vs_{o}" for o in ("eager", "compile", "liger") for kind in ("speedup", "mem_ratio")]
    print(markdown_table(table, cols, {c: _fmt for c in cols[1:]}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", action="append", choices=OPS, help="only these ops (repeatable) [default: all]")
    ap.add_argument("--impls", action="append", choices=IMPLS, help="only these implementations (repeatable; "
                    "eager always runs, as the baseline) [default: all]")
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16", help="input dtype [default: bf16]")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first [default: 5; smoke 1]")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls, median reported [default: 20; smoke 2]")
    ap.add_argument("--smoke", action="store_true", help="no GPU needed: tiny sizes in Triton's CPU interpreter")
    ap.add_argument("--out", default=None, help=f"JSONL file to append to [default: {RESULTS}; smoke: none]")
    args = ap.parse_args(argv)

    from minillm.kernels import runtime

    cuda = torch.cuda.is_available() and not args.smoke
    if not args.smoke and not torch.cuda.is_available():
        print("bench/kernels.py times Triton kernels on a CUDA GPU, and this machine has none. Run it on a CUDA "
              "machine, or pass --smoke to check that every op runs at tiny sizes in Triton's CPU interpreter "
              "(no meaningful timings).", file=sys.stderr)
        return 2
    if not runtime.triton_installed():
        print("bench/kernels.py needs the `triton` package (it ships with CUDA builds of torch on Linux).",
              file=sys.stderr)
        return 2
    if args.smoke:
        runtime.use_interpreter()  # before any kernel module is imported: @triton.jit decides at import
    ops = args.ops or list(OPS)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    liger = liger_version() if cuda else None
    skipped = {}
    if not cuda:
        skipped["compile"] = "torch.compile is not measured in smoke mode (CPU): it times Inductor's C++ backend"
    if liger is None:
        skipped["liger"] = ("liger_kernel is not importable" if cuda else
                            "liger_kernel is not measured in smoke mode (its kernels need a GPU)")
    wanted = set(args.impls or IMPLS) | {"eager"}
    impls = [i for i in IMPLS if i in wanted and i not in skipped]
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 5)
    repeats = args.repeats if args.repeats is not None else (2 if args.smoke else 20)
    device = "cuda" if cuda else "cpu"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 runs: the lm_head matmul as a trainer would run it
    sizes = SMOKE_SIZES if args.smoke else GPU_SIZES
    bench = Bench(cuda, warmup, repeats)

    rows = []
    for op in ops:
        for shape in sizes[op]:
            t0 = time.perf_counter()
            rows += run_case(op, shape, impls, bench, device, dtype, strict=args.smoke)
            print(f"{op} {shape}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    summary = summarize(rows)
    device_name = torch.cuda.get_device_name() if cuda else "cpu-interpreter"
    print(f"\nkernels bench on {device_name}, {args.dtype}, forward+backward, median of {repeats} after {warmup} "
          f"warm-up calls{' (smoke: interpreter wall clock, not a measurement)' if args.smoke else ''}\n")
    print_tables(rows, summary)

    out = args.out or (None if args.smoke else RESULTS)
    if out is not None:
        from minillm.provenance import append_jsonl, provenance

        append_jsonl(out, {
            "bench": "kernels", "device": device_name, "dtype": args.dtype, "smoke": args.smoke,
            "impls": impls, "skipped": skipped, "warmup": warmup, "repeats": repeats,
            "timing": ("CUDA events around forward+backward, L2 flushed before each call; median" if cuda else
                       "wall clock of the Triton interpreter (smoke check, not a measurement)"),
            "memory": "max_memory_allocated during one call minus memory allocated before it (MB)" if cuda else None,
            "rows": rows, "summary": summary, "liger": liger, "triton": version("triton"),
            "provenance": provenance(),
        })
        print(f"\nappended to {out}")
    failed = [r for r in rows if r["impl"] == "minillm" and r.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
