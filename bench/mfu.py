"""Model FLOPs utilization of a GPT-2 small (124M) training step on one GPU, with and without minillm's kernels.

Survey §4.3 (efficient training). MFU = useful FLOP/s / the GPU's peak: `model.flops_per_token(T)` (6 N + the
attention products, PaLM's count) x tokens/s / `peak_flops(device)` (dense bf16). Goal: MFU >= 50% on an H100;
llm.c reaches about 40% on this model. Variants, in one run, on the same batches and the same initialization:

    eager                 GPT-2 block (LayerNorm, GELU, learned positions), no compilation
    compile               the same, torch.compile'd
    compile-triton        + kernels='triton': here only the fused linear cross-entropy is ours (the (B*T, V) logits
                          are never materialized; the model returns logits=None)
    llama-compile         Llama-style block at the same width, depth and vocabulary (RMSNorm, SwiGLU, RoPE, no
                          biases), torch.compile'd
    llama-compile-triton  + kernels='triton': fused RMSNorm, SwiGLU, RoPE and linear cross-entropy
(--variants also accepts triton, llama-eager and llama-triton: the uncompiled counterparts.)

Setup: model_preset("gpt2-124m", vocab_size=50304, block_size=1024), micro-batch --batch (16) x 1024 tokens, no
gradient accumulation, bf16 autocast over fp32 weights, SDPA attention (FlashAttention on CUDA), TF32 matmuls,
torch's fused AdamW (TrainConfig optimizer='torch_adamw', minillm's parameter groups), gradient clipping at 1.0.
Data: uniform random token ids, generated on the GPU up front (throughput only: nothing to learn, so the loss
stays near ln(vocab) = 10.8, which the record's final_loss confirms; no data loading is timed).

Why a plain training step rather than the Trainer: the step below is exactly forward, backward, clip, optimizer
step, zero_grad(set_to_none=True), with no host synchronization inside the timed steps, so wall time over N
steps between two cuda.synchronize() is the GPU's time. The Trainer adds a learning-rate schedule, a NaN guard
and history rows that read the loss (bench/trainer_overhead.py measures that overhead separately); those are
bookkeeping, not what MFU is about.

Graph breaks: for each compiled variant (`--explain all`: every variant) one forward goes through
torch._dynamo.explain first; the row's "dynamo" field has the number of graphs, of graph breaks and each break's
reason and source line (a break splits the compiled step and costs fusion; `TORCH_LOGS=graph_breaks,recompiles`
prints the same as it happens, and bench/gpu_check.py sets it).

Variants run in the order given, most informative first by default; `--budget-s N` starts a variant only if it
fits in what is left of N seconds (a compiled variant is guessed at 90 s until one has been measured: Inductor
compiles forward and backward) and records the variants it skipped; a SIGTERM stops the same way.

    python bench/mfu.py                                # all five variants on one CUDA GPU (minutes: compilation)
    python bench/mfu.py --budget-s 160                 # those that fit in 160 s, in order (bench/gpu_check.py)
    python bench/mfu.py --variants llama-compile --variants llama-compile-triton --batch 32 --steps 50
    python bench/mfu.py --smoke [--out PATH]           # no GPU: a tiny model on CPU, kernels in Triton's interpreter

Writes to bench/results/mfu.jsonl (or --out), as bench/_live.py describes: one line per variant as it is measured
({"record": "row", "rows": [row], "provenance", ...}), then the run's record {"bench": "mfu", "record": "run",
"device", "config", "rows", "skipped_variants", "complete", "triton", "provenance"}. --smoke (tiny model: 2
layers, 64 wide, vocab 128, T 32; variants eager, llama-eager, llama-triton; 3 steps; MFU null, CPUs have no peak
in the table) checks that every variant trains, and writes only with --out, its lines then saying "smoke": true.
"""
from __future__ import annotations

import argparse
import gc
import importlib.metadata
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/_live.py, also when imported from elsewhere
from _live import Budget, LiveTable, RowLog, Stopped, fmt, stop_on_sigterm, stop_requested  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "mfu.jsonl"
# name: (arch, torch.compile, kernels='triton')
VARIANTS: dict[str, tuple[str, bool, bool]] = {
    "eager": ("gpt2", False, False),
    "compile": ("gpt2", True, False),
    "triton": ("gpt2", False, True),
    "compile-triton": ("gpt2", True, True),
    "llama-eager": ("llama", False, False),
    "llama-compile": ("llama", True, False),
    "llama-triton": ("llama", False, True),
    "llama-compile-triton": ("llama", True, True),
}
GPU_VARIANTS = ("eager", "compile", "compile-triton", "llama-compile", "llama-compile-triton")
SMOKE_VARIANTS = ("eager", "llama-eager", "llama-triton")
LLAMA = dict(norm="rmsnorm", activation="swiglu", position="rope", bias=False)  # same width, depth, vocab
SMOKE_MODEL = dict(n_layer=2, n_head=2, n_embd=64, vocab_size=128, block_size=32)
GOAL = "goal: MFU >= 50% on an H100 (llm.c: ~40% for GPT-2 124M)"
COMPILE_GUESS_S = 90.0  # a compiled variant's time before one has been measured (Inductor, forward + backward)


def model_config(arch: str, triton: bool, smoke: bool):
    from minillm.config import ModelConfig
    from minillm.presets import model_preset

    extra = dict(LLAMA if arch == "llama" else {}, kernels="triton" if triton else "torch")
    if smoke:
        return ModelConfig(**SMOKE_MODEL, **extra)
    return model_preset("gpt2-124m", vocab_size=50304, block_size=1024, **extra)


def _relative(filename: str) -> str:
    """A source path relative to the checkout (minillm/model/transformer.py), or as it is when outside it."""
    root = Path(__file__).resolve().parents[1]
    path = Path(filename).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else filename


def graph_breaks(model: torch.nn.Module, batch: torch.Tensor, autocast) -> dict[str, Any]:
    """torch._dynamo.explain of one training forward: graphs, graph breaks, and each break's reason and line."""
    try:
        with autocast:
            ex = torch._dynamo.explain(model)(batch[:, :-1], batch[:, 1:])
    except Exception as e:  # noqa: BLE001 (a model dynamo cannot trace at all: that is the finding)
        if isinstance(e, Stopped) or stop_requested():
            raise Stopped(stop_requested()) from e
        return {"error": f"{type(e).__name__}: {e}"[:500]}
    finally:
        torch._dynamo.reset()  # explain's graphs must not be reused by the compiled variant
    reasons = []
    for r in ex.break_reasons:
        frame = r.user_stack[-1] if r.user_stack else None
        where = None if frame is None else f"{_relative(frame.filename)}:{frame.lineno}"
        reasons.append({"reason": str(r.reason).strip().splitlines()[0][:300], "where": where})
    return {"graphs": ex.graph_count, "graph_breaks": ex.graph_break_count, "break_reasons": reasons[:20]}


def run_variant(name: str, args: argparse.Namespace, device: torch.device, batches: torch.Tensor) -> dict[str, Any]:
    """Build, warm up and time one variant; returns its row."""
    from minillm.config import TrainConfig
    from minillm.model.transformer import GPT
    from minillm.train.history import mfu, peak_flops
    from minillm.train.optim import build_optimizer

    arch, compiled, triton = VARIANTS[name]
    cfg = model_config(arch, triton, args.smoke)
    torch.manual_seed(0)  # the same initialization for every variant of an architecture
    model = GPT(cfg).to(device)
    model.train()
    opt = build_optimizer(model, TrainConfig(optimizer="torch_adamw", lr=6e-4, weight_decay=0.1), device)
    forward = torch.compile(model) if compiled else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    T = cfg.block_size
    cuda = device.type == "cuda"

    def step(i: int) -> torch.Tensor:
        batch = batches[i % len(batches)]  # (B, T + 1)
        with autocast:
            _, loss = forward(batch[:, :-1], batch[:, 1:])  # logits are None with the fused linear CE
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    dynamo = None
    if args.explain == "all" or (compiled and args.explain == "compiled"):
        # Under TRITON_INTERPRET dynamo would trace the interpreter's numpy code, not a kernel launch: nothing learnt.
        dynamo = {"skipped": "kernels run in Triton's CPU interpreter"} if triton and args.smoke else \
            graph_breaks(model, batches[0], autocast)
    warmup = args.compile_warmup if compiled else args.warmup
    t0 = time.perf_counter()
    for i in range(warmup):  # the first compiled step compiles forward and backward (tens of seconds)
        step(i)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warmup_s = time.perf_counter() - t0
    losses = []
    t0 = time.perf_counter()
    for i in range(warmup, warmup + args.steps):
        losses.append(step(i))  # kept on the device: reading it here would stall the GPU every step
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tokens = args.steps * batches.shape[1] * T
    tok_per_s = tokens / seconds
    flops = model.flops_per_token(T)
    peak = peak_flops(device)
    row = {
        "variant": name, "arch": arch, "compile": compiled, "kernels": cfg.kernels,
        "params": model.num_params(non_embedding=False), "flops_per_token": flops,
        "tok_per_s": tok_per_s, "step_ms": 1e3 * seconds / args.steps, "mfu": mfu(flops, tok_per_s, peak),
        "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
        "final_loss": float(losses[-1]), "warmup_s": warmup_s, "dynamo": dynamo,
    }
    return row  # model, optimizer and compiled graphs go with this frame (release() then frees the memory)


def release(cuda: bool) -> None:
    """Free one variant's model, optimizer state and compiled graphs before the next."""
    gc.collect()
    torch._dynamo.reset()
    if cuda:
        torch.cuda.empty_cache()


def _breaks(r: dict) -> str:
    d = r.get("dynamo")
    if not d:
        return ""
    if "graphs" not in d:
        return "explain failed" if "error" in d else "not explained"
    return f"{d['graph_breaks']} ({d['graphs']} graphs)"


LIVE_COLUMNS = [("variant", 21, "s"), ("tok_per_s", 11, lambda r: fmt(r["tok_per_s"], ",.0f")),
                ("step_ms", 8, ".1f"), ("MFU %", 20, lambda r: r["error"] if r.get("error") else
                                         fmt(None if r["mfu"] is None else 100 * r["mfu"], ".1f")),
                ("peak_mem_gb", 11, ".1f"), ("final_loss", 10, ".3f"), ("warmup_s", 8, ".0f"),
                ("graph breaks", 20, _breaks)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", action="append", choices=list(VARIANTS),
                    help=f"variants to run, in this order (repeatable) [default: {', '.join(GPU_VARIANTS)}; smoke: "
                         f"{', '.join(SMOKE_VARIANTS)}]")
    ap.add_argument("--batch", type=int, default=None, help="sequences per step [default: 16; smoke: 1]")
    ap.add_argument("--steps", type=int, default=None, help="timed steps [default: 20; smoke: 3]")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first [default: 3; smoke: 1]")
    ap.add_argument("--compile-warmup", type=int, default=8, help="untimed steps for compiled variants [default: 8]")
    ap.add_argument("--explain", choices=("compiled", "all", "none"), default="compiled",
                    help="which variants get torch._dynamo.explain's graph-break report [default: compiled]")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="stop before a variant that would not finish within this many seconds [default: none]")
    ap.add_argument("--smoke", action="store_true", help="no GPU needed: a tiny model on CPU, kernels interpreted")
    ap.add_argument("--out", default=None, help=f"JSONL file to append to [default: {RESULTS}; smoke: none]")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("bench/mfu.py measures GPU training throughput (MFU) and this machine has no CUDA GPU. Run it on a "
              "CUDA machine, or pass --smoke to check that every variant trains a tiny model on the CPU (Triton "
              "kernels in the interpreter; no meaningful numbers).", file=sys.stderr)
        return 2
    from minillm.kernels import runtime

    variants = args.variants or list(SMOKE_VARIANTS if args.smoke else GPU_VARIANTS)
    if any(VARIANTS[v][2] for v in variants) and not runtime.triton_installed():
        print("the *-triton variants need the `triton` package; install it or leave those variants out "
              "(--variants)", file=sys.stderr)
        return 2
    budget = Budget(args.budget_s)
    stop_on_sigterm()
    if args.smoke:
        runtime.use_interpreter()  # before any kernel module is imported: @triton.jit decides at import
        device = torch.device("cpu")
    else:
        device = torch.device("cuda")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    batch = args.batch or (1 if args.smoke else 16)
    args.steps = args.steps or (3 if args.smoke else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 3)
    cfg0 = model_config("gpt2", False, args.smoke)
    T, V = cfg0.block_size, cfg0.vocab_size
    gen = torch.Generator(device=device).manual_seed(0)
    batches = torch.randint(0, V, (8, batch, T + 1), device=device, generator=gen)  # (8, B, T + 1), cycled

    from minillm.train.history import peak_flops

    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = peak_flops(device)
    try:
        triton_version = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton_version = None
    config = {
        "model": "tiny (smoke)" if args.smoke else "gpt2-124m", "model_fields": {**SMOKE_MODEL} if args.smoke
        else dict(n_layer=cfg0.n_layer, n_head=cfg0.n_head, n_embd=cfg0.n_embd, vocab_size=V, block_size=T),
        "llama_fields": LLAMA, "batch": batch, "seq_len": T, "grad_accum": 1, "steps": args.steps,
        "warmup": args.warmup, "compile_warmup": args.compile_warmup, "precision": "bf16 autocast, fp32 weights",
        "attention": "sdpa", "optimizer": "torch AdamW (fused on CUDA), lr 6e-4, weight decay 0.1",
        "grad_clip": 1.0, "tf32": device.type == "cuda", "peak_flops": peak, "explain": args.explain,
        "data": f"uniform random token ids (throughput only: the loss stays near ln(vocab) = {math.log(V):.2f})",
    }
    out = args.out or (None if args.smoke else RESULTS)
    log = RowLog(out, "mfu", {"device": device_name, "smoke": args.smoke, "config": config})
    table = LiveTable(LIVE_COLUMNS)
    what = "tiny-model training step (smoke: kernels interpreted; not a measurement)" if args.smoke else \
        "GPT-2 124M-size training step"
    print(f"{what} on {device_name}: batch {batch} x {T} tokens, bf16 autocast, {args.steps} timed steps; "
          f"{'no budget' if args.budget_s is None else f'budget {args.budget_s:g} s'}\n", flush=True)

    rows: list[dict] = []
    stopped, done = None, 0  # why the run stopped early; variants finished (one in progress counts as skipped)
    try:
        for name in variants:
            kind, guess = ("compiled", COMPILE_GUESS_S if device.type == "cuda" else 0.0) if VARIANTS[name][1] \
                else ("eager", 0.0)
            if not budget.fits(kind, guess):
                stopped = budget.why_not(kind, guess)
                break
            t0 = time.perf_counter()
            try:
                row = run_variant(name, args, device, batches)
            except Exception as e:  # noqa: BLE001 (one failing variant must not lose the others' GPU time)
                if isinstance(e, Stopped) or stop_requested():  # (a SIGTERM, maybe wrapped by what it interrupted)
                    raise Stopped(stop_requested()) from e
                if args.smoke:
                    raise
                row = {"variant": name, "tok_per_s": None, "step_ms": None, "mfu": None, "peak_mem_gb": None,
                       "final_loss": None, "error": f"{type(e).__name__}: {e}"[:500]}
                print(f"{name}: FAILED {row['error']}", file=sys.stderr, flush=True)
            release(device.type == "cuda")
            row["seconds"] = time.perf_counter() - t0
            budget.record(kind, row["seconds"])
            rows.append(row)
            log.row(row)
            table.row(row)
            done += 1
    except Stopped as e:  # every variant measured so far is on disk and in `rows`
        stopped = str(e)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # from here on, a second SIGTERM ends the process as usual
    skipped = [{"variant": v, "reason": stopped} for v in variants[done:]]
    if skipped:
        print(f"\nskipped {', '.join(v['variant'] for v in skipped)} ({stopped})", flush=True)
    best = max((r["mfu"] for r in rows if r.get("mfu") is not None), default=None)
    print(f"\n{GOAL}; best here: {f'n/a (no known peak for {device_name})' if best is None else f'{100 * best:.1f}%'}")
    log.run({"rows": rows, "goal": GOAL, "triton": triton_version, "budget_s": args.budget_s,
             "seconds": budget.elapsed(), "complete": not skipped, "skipped_variants": skipped})
    if out is not None:
        print(f"\nappended to {out}")
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
