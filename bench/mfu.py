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

    python bench/mfu.py                                # all five variants on one CUDA GPU (minutes: compilation)
    python bench/mfu.py --variants llama-compile --variants llama-compile-triton --batch 32 --steps 50
    python bench/mfu.py --smoke [--out PATH]           # no GPU: a tiny model on CPU, kernels in Triton's interpreter

Appends {"bench": "mfu", "device", "config", "rows", "triton", "provenance"} to bench/results/mfu.jsonl (or
--out). --smoke (tiny model: 2 layers, 64 wide, vocab 128, T 32; variants eager, llama-eager, llama-triton; 3
steps; MFU null, CPUs have no peak in the table) checks that every variant trains, and writes a record only with
--out, which then says "smoke": true.
"""
from __future__ import annotations

import argparse
import gc
import importlib.metadata
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

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


def model_config(arch: str, triton: bool, smoke: bool):
    from minillm.config import ModelConfig
    from minillm.presets import model_preset

    extra = dict(LLAMA if arch == "llama" else {}, kernels="triton" if triton else "torch")
    if smoke:
        return ModelConfig(**SMOKE_MODEL, **extra)
    return model_preset("gpt2-124m", vocab_size=50304, block_size=1024, **extra)


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
        "final_loss": float(losses[-1]), "warmup_s": warmup_s,
    }
    return row  # model, optimizer and compiled graphs go with this frame (release() then frees the memory)


def release(cuda: bool) -> None:
    """Free one variant's model, optimizer state and compiled graphs before the next."""
    gc.collect()
    torch._dynamo.reset()
    if cuda:
        torch.cuda.empty_cache()


def _fmt(v: Any, spec: str) -> str:
    return "" if v is None else format(v, spec)


def print_table(rows: list[dict], device_name: str) -> None:
    from book.viz import markdown_table

    shown = [{**r, "mfu": r["error"] if r.get("error") else _fmt(None if r["mfu"] is None else 100 * r["mfu"], ".1f")}
             for r in rows]
    cols = ["variant", "tok_per_s", "step_ms", "mfu", "peak_mem_gb", "final_loss"]
    print(markdown_table(shown, cols, {"tok_per_s": lambda v: _fmt(v, ",.0f"), "step_ms": lambda v: _fmt(v, ".1f"),
                                       "peak_mem_gb": lambda v: _fmt(v, ".1f"),
                                       "final_loss": lambda v: _fmt(v, ".3f")}).replace("| mfu |", "| MFU % |"))
    best = max((r["mfu"] for r in rows if r.get("mfu") is not None), default=None)
    best_text = f"n/a (no known peak for {device_name})" if best is None else f"{100 * best:.1f}%"
    print(f"\n{GOAL}; best here: {best_text}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", action="append", choices=list(VARIANTS),
                    help=f"variants to run (repeatable) [default: {', '.join(GPU_VARIANTS)}; smoke: "
                         f"{', '.join(SMOKE_VARIANTS)}]")
    ap.add_argument("--batch", type=int, default=None, help="sequences per step [default: 16; smoke: 1]")
    ap.add_argument("--steps", type=int, default=None, help="timed steps [default: 20; smoke: 3]")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first [default: 3; smoke: 1]")
    ap.add_argument("--compile-warmup", type=int, default=8, help="untimed steps for compiled variants [default: 8]")
    ap.add_argument("--smoke", action="store_true", help="no GPU needed: a tiny model on CPU, kernels interpreted")
    ap.add_argument("--out", default=None, help=f"JSONL file to append to [default: {RESULTS}; smoke: none]")
    args = ap.parse_args(argv)

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

    rows = []
    for name in variants:
        t0 = time.perf_counter()
        try:
            rows.append(run_variant(name, args, device, batches))
        except Exception as e:  # noqa: BLE001 (one failing variant must not lose the others' GPU time)
            if args.smoke:
                raise
            rows.append({"variant": name, "tok_per_s": None, "step_ms": None, "mfu": None, "peak_mem_gb": None,
                         "final_loss": None, "error": f"{type(e).__name__}: {e}"[:500]})
            print(f"{name}: FAILED {rows[-1]['error']}", file=sys.stderr, flush=True)
        release(device.type == "cuda")
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    from minillm.train.history import peak_flops

    peak = peak_flops(device)
    what = "tiny-model training step (smoke: kernels interpreted; not a measurement)" if args.smoke else \
        "GPT-2 124M-size training step"
    print(f"\n{what} on {device_name}: batch {batch} x {T} tokens, bf16 autocast, {args.steps} timed steps\n")
    print_table(rows, device_name)

    out = args.out or (None if args.smoke else RESULTS)
    if out is not None:
        from minillm.provenance import append_jsonl, provenance

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
            "grad_clip": 1.0, "tf32": device.type == "cuda", "peak_flops": peak,
            "data": f"uniform random token ids (throughput only: the loss stays near ln(vocab) = {math.log(V):.2f})",
        }
        append_jsonl(out, {"bench": "mfu", "device": device_name, "smoke": args.smoke, "config": config,
                           "rows": rows, "goal": GOAL, "triton": triton_version, "provenance": provenance()})
        print(f"\nappended to {out}")
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
