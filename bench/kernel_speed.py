"""Fused Triton kernels against eager PyTorch, torch.compile and Liger-Kernel: time and memory of forward+backward.

Survey §4.3 (efficient training) and §4.2.2 (RMSNorm, SwiGLU, RoPE). For each op of `minillm.kernels` over a
range of sizes, up to four implementations are measured side by side in one process, on identical inputs:

    eager    the op's PyTorch reference (`<op>_reference` in minillm/kernels/<op>.py): what kernels='torch' runs
    compile  torch.compile of that reference (fusion by Inductor: the bar a hand-written kernel must clear)
    liger    liger_kernel's equivalent op, when `import liger_kernel` works (else recorded as absent)
    minillm  ours (minillm.kernels)

Sizes come in stages, most informative first, so that a short GPU lease measures what matters before it ends:
stage 1 is the model bench/mfu.py trains (GPT-2 124M width 768, 16 x 1024 tokens, vocabulary 50304, 12 heads of
64, SwiGLU hidden 2048), stage 2 a 7B-class layer (width 4096, SwiGLU hidden 11008, 32 heads of 128, Llama-3's
vocabulary 128256, 8192 tokens), stage 3 the rest of the range. Every op's stage 1 runs before any op's stage 2.
`--budget-s N` starts a size only if it fits in what is left of N seconds (judged by the slowest size so far: one
compilation per size dominates) and records the sizes it skipped; a SIGTERM stops the same way.

Time: forward + backward of one call, CUDA events around it, `--warmup` untimed calls first (compile pays its
compilation there), then the median of `--repeats` timed calls. Before each timed call a 256 MB buffer is
zeroed so that every call starts with a cold L2 cache (an H100's 50 MB L2 holds the smaller inputs; timing them
warm would flatter every implementation alike and hide the memory traffic that fusion saves). The timed calls
are queued back to back behind a GPU-side wait (torch.cuda._sleep) long enough for Python to enqueue all of
them, so each event pair measures the GPU's work, not Python's launch overhead, which at the small sizes would
dominate; `host_ms` records that overhead (the CPU time to enqueue one call: a call with host_ms > ms is
launch-bound in a real step), and `queued` whether the wait covered the whole enqueueing.
Memory: torch.cuda.max_memory_allocated during one more call, minus what was allocated before it (the inputs
and the output gradient): the activations, saved tensors and gradients the op itself needs.
Each row also has `max_err`: the largest absolute difference of the forward outputs and input gradients from
the eager ones (None for Liger's RoPE, which pairs dimension i with i + D/2, not minillm's adjacent pairs: the
same work on a different layout).

    python bench/kernel_speed.py                      # every stage, bf16, on a CUDA GPU (minutes: compile per size)
    python bench/kernel_speed.py --budget-s 90        # what fits in 90 s, stage 1 first (bench/gpu_check.py does this)
    python bench/kernel_speed.py --ops rope --ops cross_entropy --dtype fp32 --repeats 50 --max-stage 1
    python bench/kernel_speed.py --smoke [--out PATH] # no GPU: every op once at tiny sizes in Triton's interpreter
    python bench/kernel_speed.py --ops attention ...  # FlashAttention vs SDPA's backends: bench/attention_bench.py

Writes to bench/results/kernels.jsonl (or --out), as bench/_live.py describes: one line per row as it is measured
({"record": "row", "rows": [row], "provenance", ...}), then the run's record {"bench": "kernels", "record": "run",
"device", "dtype", "rows", "summary", "skipped_sizes", "complete", "liger", "triton", "provenance", ...}.
`summary` gives per op the geometric mean over its sizes of ours vs each other implementation: speedup (their
ms / our ms, > 1 = ours faster) and memory (our MB / their MB, < 1 = ours smaller). --smoke checks that the script
and every kernel run (wall-clock timing of the interpreter, no memory column); it writes only with --out, and
its lines then say "smoke": true.
"""
from __future__ import annotations

import argparse
import gc
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_live.py, also when imported from elsewhere
from _kernel_ops import OPS, eager_fn, inputs, liger_fn, liger_version, minillm_fn, version  # noqa: E402
from _live import Budget, LiveTable, RowLog, Stopped, fmt, stop_on_sigterm, stop_requested  # noqa: E402
from _kernel_bench import Bench, _outputs, geomean, kernel_device, max_err, summarize  # noqa: E402,F401

RESULTS = Path(__file__).resolve().parent / "results" / "kernels.jsonl"
IMPLS = ("eager", "compile", "liger", "minillm")
DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float32: "fp32"}

# GPU sizes by stage (see the docstring); within a stage, per op, in order.
GPU_STAGES: list[dict[str, list[dict[str, int]]]] = [
    {  # 1: bench/mfu.py's model, 16 x 1024 tokens
        "rmsnorm": [dict(rows=16384, hidden=768)],
        "swiglu": [dict(rows=16384, hidden=2048)],
        "rope": [dict(B=16, H=12, T=1024, D=64)],
        "cross_entropy": [dict(N=16384, V=50304)],
        "fused_linear_cross_entropy": [dict(N=16384, C=768, V=50304)],
    },
    {  # 2: a 7B-class layer, 8192 tokens
        "rmsnorm": [dict(rows=8192, hidden=4096)],
        "swiglu": [dict(rows=8192, hidden=11008)],
        "rope": [dict(B=4, H=32, T=2048, D=128)],
        "cross_entropy": [dict(N=8192, V=128256)],
        "fused_linear_cross_entropy": [dict(N=8192, C=4096, V=128256)],
    },
    {  # 3: the rest of the range: 4k-32k rows x 768-8192 wide, Llama-2's vocabulary, mixed widths
        "rmsnorm": [dict(rows=r, hidden=h) for r in (4096, 32768) for h in (768, 4096, 8192)],
        "swiglu": [dict(rows=r, hidden=h) for r in (4096, 32768) for h in (768, 4096, 8192)],
        "rope": [dict(B=8, H=12, T=1024, D=128), dict(B=8, H=32, T=2048, D=128)],
        "cross_entropy": [dict(N=8192, V=v) for v in (32000, 50304)],
        "fused_linear_cross_entropy": [dict(N=8192, C=c, V=v) for c, v in ((768, 128256), (2048, 50304),
                                                                          (2048, 128256), (4096, 50304))],
    },
]
# --smoke: odd, tiny shapes (the interpreter runs one program instance at a time, ~1-3 ms each).
SMOKE_STAGES: list[dict[str, list[dict[str, int]]]] = [{
    "rmsnorm": [dict(rows=5, hidden=48)],
    "swiglu": [dict(rows=5, hidden=40)],
    "rope": [dict(B=1, H=2, T=5, D=8)],
    "cross_entropy": [dict(N=6, V=50)],
    "fused_linear_cross_entropy": [dict(N=6, C=16, V=50)],
}]


# --------------------------------------------------------------------------------------------- measuring

def run_case(op: str, shape: dict[str, int], impls: list[str], bench: Bench, device: str, dtype: torch.dtype,
             strict: bool, emit: Callable[[dict], None] = lambda row: None) -> list[dict]:
    """Every implementation of one op at one size (eager first, the baseline): a row each, passed to `emit` as
    soon as it is measured ({"error": ...} instead of numbers if it failed)."""
    rows, reference, eager = [], None, None
    for impl in impls:
        row: dict[str, Any] = {"op": op, "shape": shape, "dtype": DTYPE_NAMES[dtype], "impl": impl}
        args = leaves = fn = None
        try:
            torch.manual_seed(0)
            args, leaves = inputs(op, shape, device, dtype)
            if impl == "eager":
                fn = eager_fn(op)
            elif impl == "compile":
                torch._dynamo.reset()  # a fresh cache per size: no recompile limit, no dynamic-shape fallback
                fn = torch.compile(eager_fn(op), dynamic=False)
            elif impl == "liger":
                fn = liger_fn(op)
            else:
                fn = minillm_fn(op)
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
            row["ms"], row["host_ms"], row["queued"] = bench.time_ms(fn, args, leaves, grads)
            row["peak_mb"] = bench.peak_mb(fn, args, leaves, grads)
        except Exception as e:  # noqa: BLE001 (one failing implementation must not lose a long GPU run)
            if isinstance(e, Stopped) or stop_requested():  # (a SIGTERM, maybe wrapped by what it interrupted)
                raise Stopped(stop_requested()) from e
            if strict:
                raise
            row.update(ms=None, peak_mb=None, max_err=None, error=f"{type(e).__name__}: {e}"[:500])
            print(f"  {op} {shape} {impl}: FAILED {row['error']}", file=sys.stderr, flush=True)
        if impl == "eager" and row.get("ms"):
            eager = row
        ok = eager is not None and row.get("ms")
        row["speedup_vs_eager"] = eager["ms"] / row["ms"] if ok else None
        row["mem_ratio_vs_eager"] = (row["peak_mb"] / eager["peak_mb"]
                                     if ok and row["peak_mb"] is not None and eager["peak_mb"] else None)
        rows.append(row)
        emit(row)
        del args, leaves, fn
        gc.collect()
        if bench.cuda:
            torch.cuda.empty_cache()
    return rows


# --------------------------------------------------------------------------------------------- main

LIVE_COLUMNS = [  # (row key, width, format spec or a function of the row)
    ("op", 26, "s"), ("shape", 24, lambda r: " ".join(f"{k}={v}" for k, v in r["shape"].items())), ("impl", 8, "s"),
    ("ms", 9, lambda r: fmt(r["ms"]) if r.get("ms") else "FAILED"), ("host_ms", 8, ".3g"), ("peak_mb", 9, ".4g"),
    ("speedup_vs_eager", 16, ".3g"), ("mem_ratio_vs_eager", 18, ".3g"), ("max_err", 9, ".3g"),
]


def print_summary(summary: dict) -> None:
    from book.viz import markdown_table

    print("\nminillm vs the others (geometric mean over sizes; speedup > 1 and memory ratio < 1 favour minillm):\n")
    table = [{"op": op, **v} for op, v in summary.items()]
    cols = ["op"] + [f"{kind}_vs_{o}" for o in ("eager", "compile", "liger") for kind in ("speedup", "mem_ratio")]
    print(markdown_table(table, cols, {c: lambda v: fmt(v, ".3g") for c in cols[1:]}))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", action="append", choices=OPS + ("attention",), help="only these ops (repeatable) "
                    "[default: all but attention, which runs alone: bench/attention_bench.py, results/attention.jsonl]")
    ap.add_argument("--impls", action="append", choices=IMPLS, help="only these implementations (repeatable; "
                    "eager always runs, as the baseline) [default: all]")
    ap.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16", help="input dtype [default: bf16]")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first [default: 5; smoke 1]")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls, median reported [default: 20; smoke 2]")
    ap.add_argument("--max-stage", type=int, choices=(1, 2, 3), default=3,
                    help="last stage of sizes to run (1: bench/mfu.py's model; 2: + a 7B-class layer) [default: 3]")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="stop before a size that would not finish within this many seconds [default: none]")
    ap.add_argument("--smoke", action="store_true", help="no GPU needed: tiny sizes in Triton's CPU interpreter")
    ap.add_argument("--out", default=None, help=f"JSONL file to append to [default: {RESULTS}; smoke: none]")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ops and "attention" in args.ops:  # its own bench, rows and file
        from attention_bench import from_kernels_args
        return from_kernels_args(args)
    cuda = kernel_device("bench/kernel_speed.py", args.smoke, "times Triton kernels",
                         "that every op runs at tiny sizes in Triton's CPU interpreter (no meaningful timings)")
    if cuda is None:
        return 2
    budget = Budget(args.budget_s)  # from here: the import of the kernels and of liger count against it
    stop_on_sigterm()
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
    stages = SMOKE_STAGES if args.smoke else GPU_STAGES[:args.max_stage]
    cases = [(n, op, shape) for n, stage in enumerate(stages, 1) for op in ops for shape in stage.get(op, [])]
    bench = Bench(cuda, warmup, repeats)
    device_name = torch.cuda.get_device_name() if cuda else "cpu-interpreter"
    timing = ("CUDA events around forward+backward, L2 flushed before each call, calls queued behind a GPU wait; "
              "median" if cuda else "wall clock of the Triton interpreter (smoke check, not a measurement)")
    out = args.out or (None if args.smoke else RESULTS)
    log = RowLog(out, "kernels", {"device": device_name, "dtype": args.dtype, "smoke": args.smoke})
    table = LiveTable(LIVE_COLUMNS)
    print(f"kernels bench on {device_name}, {args.dtype}, forward+backward, median of {repeats} after {warmup} "
          f"warm-up calls{' (smoke: interpreter wall clock, not a measurement)' if args.smoke else ''}; "
          f"{len(cases)} sizes x {', '.join(impls)}; {'no budget' if args.budget_s is None else f'budget {args.budget_s:g} s'}\n", flush=True)

    rows: list[dict] = []
    stopped, done = None, 0  # why the run stopped early; sizes finished (a size in progress counts as skipped)
    try:
        for stage, op, shape in cases:
            if not budget.fits():
                stopped = budget.why_not()
                break
            t0 = time.perf_counter()
            run_case(op, shape, impls, bench, device, dtype, strict=args.smoke,
                     emit=lambda row, s=stage: (row.update(stage=s), rows.append(row), log.row(row), table.row(row)))
            budget.record("", time.perf_counter() - t0)
            done += 1
    except Stopped as e:  # every row measured so far is on disk and in `rows`
        stopped = str(e)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # from here on, a second SIGTERM ends the process as usual
    skipped_sizes = [{"stage": stage, "op": op, "shape": shape, "reason": stopped} for stage, op, shape in cases[done:]]
    if skipped_sizes:
        print(f"\nskipped {len(skipped_sizes)} of {len(cases)} sizes ({stopped})", flush=True)
    summary = summarize(rows)
    print_summary(summary)
    log.run({"impls": impls, "skipped": skipped, "warmup": warmup, "repeats": repeats, "timing": timing,
             "memory": "max_memory_allocated during one call minus memory allocated before it (MB)" if cuda else None,
             "budget_s": args.budget_s, "max_stage": len(stages), "seconds": budget.elapsed(),
             "complete": not skipped_sizes, "skipped_sizes": skipped_sizes, "rows": rows, "summary": summary,
             "liger": liger, "triton": version("triton")})
    if out is not None:
        print(f"\nappended to {out}")
    failed = [r for r in rows if r["impl"] == "minillm" and r.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
