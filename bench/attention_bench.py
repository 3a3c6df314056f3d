"""FlashAttention (ours) against PyTorch SDPA's fused backends and materialised attention: speed and memory.

Survey §4.2.2 (attention; FlashAttention) and §4.3 (efficient training); issue #23's benchmark. Causal attention,
bf16, Tq == Tk, every implementation in one process on the same seeded inputs:

    minillm         ours: minillm.kernels.ops.flash_attention (Triton FlashAttention-2, forward and backward)
    sdpa_flash      torch's scaled_dot_product_attention forced (torch.nn.attention.sdpa_kernel) to one backend:
    sdpa_cudnn      FlashAttention-2, cuDNN's fused attention, or the memory-efficient kernel. A backend that
    sdpa_efficient  refuses a shape, dtype or device is recorded as "unavailable" with PyTorch's reasons
    eager           softmax(Q K^T) V with the (T, T) scores in memory (_kernel_ops.eager_attention); where its
                    estimated peak would not fit in free GPU memory it is not run, and recorded as "skipped"

Sizes: head dim 128 and 64, T = 1k, 2k, 4k, 8k, 16k; B x H as in FlashAttention-2's own benchmark, B * T = 16k
tokens and H = 2048 / D heads (model width 2048), so every case holds the same tokens and its FLOPs grow with T.
Stages, most informative first, so that a short GPU lease measures what matters before it ends:

    1  T=4096, D=128 (B=4, H=16): issue #23's goal, forward+backward >= 0.9x the speed of SDPA's best backend
    2  memory at growing T: B=1, H=16, D=128, T = 1k..16k, one forward+backward per implementation
    3  the other lengths at D=128          4  D=64, every length

`--budget-s N` starts an item only if it fits in what is left of N seconds (judged by the slowest item of its kind
so far) and records those it skipped; a SIGTERM stops the same way (bench/_live.py).

Per case and implementation, in this order:
    check   one forward+backward with a seeded output gradient, against SDPA with PyTorch's own choice of backend
            on the same inputs (bf16): max_err_out (the output) and max_err_grad (dq, dk, dv), max |difference|
    time    forward (under no_grad: inference) and forward+backward with bench/kernel_speed.py's Bench: CUDA events, L2
            flushed before each call, calls queued behind a GPU-side wait, median of --repeats after --warmup;
            ms and TFLOP/s (_kernel_ops.attention_flops: 4*B*H*T*T*D / 2 causal forward, 3.5x for fwd+bwd)
    memory  peak_mb: max_memory_allocated during one forward+backward minus what was allocated before it (CUDA);
            saved_mb: what autograd keeps for backward beyond the inputs, read with saved-tensor hooks on any
            device: FlashAttention keeps O and the log-sum-exp (linear in T), eager the probabilities (T^2)
The run's `summary`: per case and pass ("fwd", "fwd+bwd"), ours vs the fastest SDPA backend that ran
(speed_vs_best_sdpa = its ms / our ms: > 1 is ours faster) and vs eager; `headline`: stage 1's forward+backward
against the goal; `memory_growth`: per implementation, p in memory ~ T^p over stage 2 (1 linear, 2 quadratic).

    python bench/attention_bench.py                  # every stage, bf16, on a CUDA GPU
    python bench/attention_bench.py --budget-s 45    # what fits in 45 s, stage 1 first (bench/gpu_check.py)
    python bench/attention_bench.py --impls minillm --impls sdpa_flash --max-stage 1 --repeats 50
    python bench/attention_bench.py --smoke [--out PATH]   # no GPU: tiny sizes, ours in Triton's interpreter
    python bench/kernel_speed.py --ops attention [...]    # the same, from the kernels bench

Writes to bench/results/attention.jsonl (or --out), as bench/_live.py describes: one line per row as it is
measured, then the run's record {"bench": "attention", "record": "run", "device", "dtype", "rows", "summary",
"skipped_items", "complete", "triton", "peak_flops", "provenance", ...}. --smoke runs the same code at tiny sizes
(head dims 16 and 8, T of a few dozen, across the interpreter's 32-wide tiles; on a CPU SDPA's cuDNN and efficient
backends are unavailable and there is no peak memory, only saved_mb) and writes only with --out ("smoke": true).
"""
from __future__ import annotations

import argparse
import gc
import math
import re
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench/ helpers, also when imported from elsewhere
from _kernel_ops import (ATTENTION_IMPLS, SDPA_BACKENDS, attention_flops, attention_fn,  # noqa: E402
                         attention_inputs, eager_attention_bytes, version)
from _live import Budget, LiveTable, RowLog, Stopped, fmt, stop_on_sigterm, stop_requested  # noqa: E402
from _kernel_bench import Bench, kernel_device, max_err  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "attention.jsonl"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
GOAL = 0.9  # issue #23: on an H100, fwd+bwd at T=4096, D=128 >= 0.9x the speed of SDPA's best backend
LENGTHS = (1024, 2048, 4096, 8192, 16384)
PASSES = (("fwd", "fwd"), ("fwd+bwd", "fwdbwd"))  # (label, row key prefix)


def fa2_case(T: int, D: int, tokens: int = 16384, width: int = 2048) -> dict[str, int]:
    """FlashAttention-2's benchmark sizes: B * T = tokens, H = width / D."""
    return dict(B=max(1, tokens // T), H=width // D, T=T, D=D)


# (stage, kind, case). kind "time": check, timing and memory; "memory": check and memory only.
GPU_PLAN: list[tuple[int, str, dict[str, int]]] = (
    [(1, "time", fa2_case(4096, 128))]
    + [(2, "memory", dict(B=1, H=16, T=T, D=128)) for T in LENGTHS]
    + [(3, "time", fa2_case(T, 128)) for T in LENGTHS if T != 4096]
    + [(4, "time", fa2_case(T, 64)) for T in LENGTHS])
# --smoke: lengths around the interpreter's 32-wide tiles (less than one, one and a half, two); head dims 16 and 8
# stand for 128 and 64. Each interpreted call takes 0.05-0.3 s: these few keep the smoke at seconds.
SMOKE_PLAN: list[tuple[int, str, dict[str, int]]] = (
    [(1, "time", dict(B=1, H=2, T=48, D=16))]
    + [(2, "memory", dict(B=1, H=2, T=T, D=16)) for T in (16, 32, 64)]
    + [(3, "time", dict(B=1, H=2, T=24, D=16)), (4, "time", dict(B=1, H=2, T=40, D=8))])


# --------------------------------------------------------------------------------------------- measuring

class ForwardOnly(Bench):
    """kernels.Bench timing the forward alone, without an autograd graph (inference), sharing `base`'s L2 flush
    buffer and GPU clock rate."""

    def __init__(self, base: Bench):  # noqa: super().__init__ would allocate and calibrate again
        self.__dict__.update(base.__dict__)

    @staticmethod
    def call(fn: Callable, args: tuple, grads: list[torch.Tensor]) -> None:
        with torch.no_grad():
            fn(*args)


class NotRun(Exception):
    """An implementation that was not measured at this size, for a reason that is not a bug: status + reason."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status


_REFUSED = re.compile(r"No (available kernel|viable backend)")  # SDPA's error when the forced backend cannot run


def checked_call(fn: Callable, args: tuple, leaves: list[torch.Tensor], do: torch.Tensor) -> list[torch.Tensor]:
    """One forward+backward: [output, *input gradients]. A forced SDPA backend that refuses raises NotRun with
    PyTorch's reasons (its warnings say why, e.g. the head dim or the GPU's architecture)."""
    for leaf in leaves:
        leaf.grad = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = fn(*args)
            out.backward(do)
        except RuntimeError as e:
            if not _REFUSED.search(str(e)):
                raise
            why = "; ".join(dict.fromkeys(str(w.message).strip().replace("\n", " ") for w in caught))
            raise NotRun("unavailable", (str(e).splitlines()[0] + (f" ({why})" if why else ""))[:600]) from e
    got = [out.detach()] + [leaf.grad for leaf in leaves]
    for leaf in leaves:
        leaf.grad = None
    return got


def saved_mb(fn: Callable, args: tuple) -> float:
    """MB of the tensors autograd saves for backward during one forward, beyond the inputs (each storage once)."""
    seen = {a.untyped_storage().data_ptr() for a in args if isinstance(a, torch.Tensor)}
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*args)
    del out
    return total / 2**20


def measure_impl(row: dict, kind: str, case: dict[str, int], fn: Callable, args: tuple, leaves: list[torch.Tensor],
                 do: torch.Tensor, want: list[torch.Tensor] | None, bench: Bench, fwd: Bench) -> None:
    """Fill `row` with one implementation's check, times (kind "time") and memory."""
    got = checked_call(fn, args, leaves, do)  # also compiles, autotunes, warms the caches
    if want is not None:
        row["max_err_out"], row["max_err_grad"] = max_err(got[:1], want[:1]), max_err(got[1:], want[1:])
    del got
    if kind == "time":
        for prefix, b, lv, grads in (("fwd", fwd, [], []), ("fwdbwd", bench, leaves, [do])):
            ms, row[f"{prefix}_host_ms"], row[f"{prefix}_queued"] = b.time_ms(fn, args, lv, grads)
            row[f"{prefix}_ms"] = ms
            row[f"{prefix}_tflops"] = attention_flops(case, backward=prefix == "fwdbwd") / (ms * 1e-3) / 1e12
    row["peak_mb"] = bench.peak_mb(fn, args, leaves, [do])
    row["saved_mb"] = saved_mb(fn, args)


def run_item(kind: str, case: dict[str, int], impls: list[str], bench: Bench, fwd: Bench, device: str,
             dtype: torch.dtype, strict: bool, memory_limit_gb: float | None,
             emit: Callable[[dict], None] = lambda row: None) -> list[dict]:
    """Every implementation at one size: a row each ({"status": "ok"} or why not), passed to `emit` as measured."""
    torch.manual_seed(0)
    args, leaves = attention_inputs(case, device, dtype)
    torch.manual_seed(1)
    do = torch.randn(case["B"], case["H"], case["T"], case["D"], device=device).to(dtype)  # dL/dO, shared
    want, ref_error = None, None  # the reference: SDPA with PyTorch's own choice of backend
    if kind == "time":
        try:
            want = checked_call(attention_fn("sdpa"), args, leaves, do)
        except Exception as e:  # noqa: BLE001 (then no max_err, but every implementation is still timed)
            if isinstance(e, Stopped) or stop_requested():
                raise Stopped(stop_requested()) from e
            if strict:
                raise
            ref_error = f"{type(e).__name__}: {e}"[:300]
    dtype_name = next(k for k, v in DTYPES.items() if v == dtype)
    rows = []
    for impl in impls:
        row: dict[str, Any] = {"kind": kind, **case, "dtype": dtype_name, "causal": True, "impl": impl,
                               "status": "ok", "reason": None, **({"reference_error": ref_error} if ref_error else {})}
        try:
            if impl == "eager":
                need = eager_attention_bytes(case, dtype)
                row["estimate_mb"] = need / 2**20
                limit = (memory_limit_gb * 2**30 if memory_limit_gb is not None else
                         0.9 * torch.cuda.mem_get_info()[0] if device == "cuda" else None)
                if limit is not None and need > limit:
                    raise NotRun("skipped", f"its (T, T) tensors would need about {need / 2**30:.1f} GiB, over the "
                                 f"{limit / 2**30:.1f} GiB limit (--memory-limit-gb; default 90% of free GPU memory)")
            measure_impl(row, kind, case, attention_fn(impl), args, leaves, do, want, bench, fwd)
        except NotRun as e:
            row.update(status=e.status, reason=str(e))
        except Exception as e:  # noqa: BLE001 (one failing implementation must not lose a long GPU run)
            if isinstance(e, Stopped) or stop_requested():  # (a SIGTERM, maybe wrapped by what it interrupted)
                raise Stopped(stop_requested()) from e
            if strict:
                raise
            oom = isinstance(e, torch.cuda.OutOfMemoryError)
            row.update(status="oom" if oom else "error", reason=f"{type(e).__name__}: {e}"[:500])
            print(f"  attention {case} {impl}: {row['status'].upper()} {row['reason']}", file=sys.stderr, flush=True)
        rows.append(row)
        emit(row)
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


# --------------------------------------------------------------------------------------------- summary

def exponent(points: list[tuple[int, float | None]]) -> float | None:
    """p in value ~ T^p between the smallest and the largest T measured (None with fewer than two)."""
    pts = sorted((t, v) for t, v in points if v)
    if len(pts) < 2 or pts[0][0] == pts[-1][0]:
        return None
    return math.log(pts[-1][1] / pts[0][1]) / math.log(pts[-1][0] / pts[0][0])


def summarize(rows: list[dict]) -> dict[str, Any]:
    """Ours vs the best SDPA backend and eager per case and pass; the headline; memory growth with T."""
    timed = [r for r in rows if r["kind"] == "time"]
    key = lambda r: (r["stage"], r["B"], r["H"], r["T"], r["D"])  # noqa: E731
    cases = []
    for k in dict.fromkeys(map(key, timed)):
        by = {r["impl"]: r for r in timed if key(r) == k}
        ok = {i: r for i, r in by.items() if r["status"] == "ok"}
        for label, p in PASSES:
            ours = ok["minillm"][f"{p}_ms"] if "minillm" in ok else None
            best_ms, best = min(((ok[i][f"{p}_ms"], i) for i in SDPA_BACKENDS if i in ok), default=(None, None))
            eager = ok["eager"][f"{p}_ms"] if "eager" in ok else None
            cases.append({"stage": k[0], "B": k[1], "H": k[2], "T": k[3], "D": k[4], "pass": label, "ours_ms": ours,
                          "ours_tflops": ok["minillm"][f"{p}_tflops"] if ours else None, "best_sdpa": best,
                          "best_sdpa_ms": best_ms, "speed_vs_best_sdpa": best_ms / ours if ours and best_ms else None,
                          "speed_vs_eager": eager / ours if ours and eager else None,
                          "not_ok": {i: r["status"] for i, r in by.items() if r["status"] != "ok"}})
    head = next((c for c in cases if c["stage"] == 1 and c["pass"] == "fwd+bwd"), None)
    headline = None if head is None else {
        **{k: head[k] for k in ("B", "H", "T", "D", "pass", "best_sdpa", "speed_vs_best_sdpa")}, "goal": GOAL,
        "meets_goal": None if head["speed_vs_best_sdpa"] is None else head["speed_vs_best_sdpa"] >= GOAL}
    growth = {}
    mem = [r for r in rows if r["kind"] == "memory" and r["status"] == "ok"]
    for impl in dict.fromkeys(r["impl"] for r in mem):
        pts = sorted((r["T"], r) for r in mem if r["impl"] == impl)
        growth[impl] = {"T": [t for t, _ in pts], "peak_mb": [r["peak_mb"] for _, r in pts],
                        "saved_mb": [r["saved_mb"] for _, r in pts],
                        "peak_exponent": exponent([(t, r["peak_mb"]) for t, r in pts]),
                        "saved_exponent": exponent([(t, r["saved_mb"]) for t, r in pts])}
    return {"cases": cases, "headline": headline, "memory_growth": growth}


def headline_text(h: dict | None) -> str:
    if h is None:
        return "not measured (stage 1 did not run)"
    ratio = h["speed_vs_best_sdpa"]
    where = f"T={h['T']}, D={h['D']}, B={h['B']}, H={h['H']}, forward+backward"
    if ratio is None:
        return f"{where}: no ratio (ours or every SDPA backend did not run)"
    return (f"{where}: ours {ratio:.2f}x the speed of SDPA's best backend ({h['best_sdpa']}); goal >= {h['goal']}x: "
            f"{'met' if h['meets_goal'] else 'NOT met'}")


def summary_markdown(summary: dict[str, Any], smoke: bool) -> str:
    """The headline, a table per case and pass, and memory growth: printed by the bench and in gpu_check's summary."""
    from book.viz import markdown_table

    lines = [f"Headline: {headline_text(summary['headline'])}." +
             (" (Smoke: tiny sizes, ours in the interpreter; no figure here is a measurement.)" if smoke else ""), ""]
    cols = ["D", "T", "B", "H", "pass", "ours_ms", "ours_tflops", "best_sdpa", "best_sdpa_ms", "speed_vs_best_sdpa",
            "speed_vs_eager", "not_ok"]
    f3 = lambda v: fmt(v, ".3g")  # noqa: E731
    lines.append(markdown_table(summary["cases"], cols, {
        "ours_ms": f3, "ours_tflops": f3, "best_sdpa_ms": f3, "speed_vs_best_sdpa": f3, "speed_vs_eager": f3,
        "not_ok": lambda d: ", ".join(f"{i}: {s}" for i, s in d.items())}) if summary["cases"] else "(no cases)")
    g = summary["memory_growth"]
    if g:
        lines += ["", "Memory vs T (p in memory ~ T^p: 1 linear, 2 quadratic), peak / saved for backward: " +
                  "; ".join(f"{i} {fmt(v['peak_exponent'], '.2f') or '-'} / {fmt(v['saved_exponent'], '.2f') or '-'}"
                            for i, v in g.items())]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- main

LIVE_COLUMNS = [  # (row key, width, format spec or a function of the row)
    ("kind", 6, "s"), ("T", 6, "d"), ("D", 4, "d"), ("B", 3, "d"), ("H", 3, "d"), ("impl", 14, "s"),
    ("status", 11, "s"), ("fwd_ms", 9, ".4g"), ("fwd_tflops", 10, ".4g"), ("fwdbwd_ms", 9, ".4g"),
    ("fwdbwd_tflops", 13, ".4g"), ("peak_mb", 9, ".4g"), ("saved_mb", 9, ".4g"), ("max_err_out", 11, ".3g"),
    ("max_err_grad", 12, ".3g"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impls", action="append", choices=ATTENTION_IMPLS, help="only these (repeatable) [default: all]")
    ap.add_argument("--dtype", choices=tuple(DTYPES), default="bf16", help="input dtype [default: bf16]")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first [default: 5; smoke 1]")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls, median reported [default: 20; smoke 1]")
    ap.add_argument("--max-stage", type=int, choices=(1, 2, 3, 4), default=4,
                    help="last stage to run (1: T=4096, D=128; 2: + memory vs T; 3: + D=128; 4: + D=64) [default: 4]")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="stop before an item that would not finish within this many seconds [default: none]")
    ap.add_argument("--memory-limit-gb", type=float, default=None, help="run eager only where its estimated peak "
                    "fits in this many GiB [default: 90%% of free GPU memory; no limit on a CPU]")
    ap.add_argument("--smoke", action="store_true", help="no GPU needed: tiny sizes, ours in Triton's CPU interpreter")
    ap.add_argument("--out", default=None, help=f"JSONL file to append to [default: {RESULTS}; smoke: none]")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cuda = kernel_device("bench/attention_bench.py", args.smoke, "times attention kernels",
                         "that every implementation runs at tiny sizes on the CPU (ours in Triton's interpreter; no "
                         "meaningful timings)")
    if cuda is None:
        return 2
    budget = Budget(args.budget_s)
    stop_on_sigterm()
    from minillm.train.history import peak_flops

    dtype = DTYPES[args.dtype]
    impls = [i for i in ATTENTION_IMPLS if i in set(args.impls or ATTENTION_IMPLS)]
    warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 5)
    repeats = args.repeats if args.repeats is not None else (1 if args.smoke else 20)
    plan = [(s, k, c) for s, k, c in (SMOKE_PLAN if args.smoke else GPU_PLAN) if s <= args.max_stage]
    device = "cuda" if cuda else "cpu"
    bench = Bench(cuda, warmup, repeats)
    fwd = ForwardOnly(bench)
    device_name = torch.cuda.get_device_name() if cuda else "cpu-interpreter"
    out = args.out or (None if args.smoke else RESULTS)
    log = RowLog(out, "attention", {"device": device_name, "dtype": args.dtype, "smoke": args.smoke})
    table = LiveTable(LIVE_COLUMNS)
    print(f"attention bench on {device_name}, {args.dtype}, causal; median of {repeats} after {warmup} warm-up calls"
          f"{' (smoke: interpreter wall clock, not a measurement)' if args.smoke else ''}; {len(plan)} items x "
          f"{', '.join(impls)}; {'no budget' if args.budget_s is None else f'budget {args.budget_s:g} s'}\n",
          flush=True)

    rows: list[dict] = []
    stopped, done = None, 0  # why the run stopped early; items finished (one in progress counts as skipped)
    try:
        for stage, kind, case in plan:
            if not budget.fits(kind):
                stopped = budget.why_not(kind)
                break
            t0 = time.perf_counter()
            run_item(kind, case, impls, bench, fwd, device, dtype, strict=args.smoke,
                     memory_limit_gb=args.memory_limit_gb,
                     emit=lambda row, s=stage: (row.update(stage=s), rows.append(row), log.row(row), table.row(row)))
            budget.record(kind, time.perf_counter() - t0)
            done += 1
    except Stopped as e:  # every row measured so far is on disk and in `rows`
        stopped = str(e)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # from here on, a second SIGTERM ends the process as usual
    skipped = [{"stage": s, "kind": k, "case": c, "reason": stopped} for s, k, c in plan[done:]]
    if skipped:
        print(f"\nskipped {len(skipped)} of {len(plan)} items ({stopped})", flush=True)
    summary = summarize(rows)
    print("\n" + summary_markdown(summary, args.smoke), flush=True)
    timing = ("CUDA events, L2 flushed before each call, calls queued behind a GPU wait; median" if cuda else
              "wall clock of the Triton interpreter (smoke check, not a measurement)")
    log.run({"impls": impls, "warmup": warmup, "repeats": repeats, "timing": timing, "causal": True,
             "flops": "forward 4*B*H*T*T*D/2 (causal), forward+backward 3.5x that (FlashAttention-2's convention)",
             "reference": "SDPA with PyTorch's choice of backend, same inputs and output gradient",
             "memory": "peak_mb: max_memory_allocated during one fwd+bwd minus before (CUDA); saved_mb: tensors "
                       "saved for backward beyond the inputs", "budget_s": args.budget_s, "max_stage": args.max_stage,
             "seconds": budget.elapsed(), "complete": not skipped, "skipped_items": skipped, "rows": rows,
             "summary": summary, "goal": GOAL, "peak_flops": peak_flops(device), "triton": version("triton")})
    if out is not None:
        print(f"\nappended to {out}")
    failed = [r for r in rows if r["impl"] == "minillm" and r["status"] in ("error", "oom")]
    return 1 if failed else 0


def from_kernels_args(args: argparse.Namespace) -> int:
    """`bench/kernel_speed.py --ops attention ...`: this bench with that command's settings (its own rows and file)."""
    if set(args.ops) != {"attention"} or args.impls or args.max_stage != 3:
        print("--ops attention runs alone, without --impls or --max-stage (its implementations and stages are "
              "bench/attention_bench.py's: pass those to it directly); run the other ops separately", file=sys.stderr)
        return 2
    given = {"--out": args.out, "--budget-s": args.budget_s, "--warmup": args.warmup, "--repeats": args.repeats}
    return main(["--dtype", args.dtype, *(["--smoke"] if args.smoke else []),
                 *(x for k, v in given.items() if v is not None for x in (k, str(v)))])


if __name__ == "__main__":
    sys.exit(main())
