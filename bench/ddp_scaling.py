"""How well does data-parallel training scale with the number of processes? (Survey §4.3.2, data parallelism.)

The same tiny training (Trainer, TrainConfig.parallel='ddp', fixed per-rank batch: weak scaling) runs under
torchrun with 1 and 2 processes (on CUDA: 1, 2, 4, ... up to all GPUs, nccl; on CPU: gloo). The 1-process run
uses parallel='none', the honest baseline. Reported per world size N: tokens/s over all ranks and the scaling
efficiency tok/s(N) / (N * tok/s(1)); 1.0 means the gradient all-reduce costs nothing.

On CPU the "devices" are processes sharing this machine's cores (OMP_NUM_THREADS=1 each), so the numbers measure
the overhead of the DDP machinery and gloo all-reduce on a tiny model, not GPU scaling; the record says so.

    python bench/ddp_scaling.py [--steps 150] [--warmup 5]

Prints one line per world size and appends a JSON record (command, date, host, versions, config, numbers) to
bench/results/ddp_scaling.jsonl. `--worker` is the per-rank entry point torchrun starts (internal).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "ddp_scaling.jsonl"
MODEL = dict(vocab_size=64, block_size=64, n_layer=2, n_head=2, n_embd=64)
TRAIN = dict(batch_size=8, grad_accum_steps=1, lr=1e-3, warmup_steps=2, eval_interval=0, eval_batches=1,
             log_interval=1000, progress=False, seed=0)


def worker(args: argparse.Namespace) -> None:
    """One rank: train `warmup` steps untimed, then `steps` timed; rank 0 writes tokens/s to args.result."""
    import torch.distributed as dist

    from minillm.config import ModelConfig, TrainConfig
    from minillm.model.transformer import GPT
    from minillm.train.parallel import init_distributed, world_size
    from minillm.train.trainer import Trainer

    world = int(os.environ["WORLD_SIZE"])
    init_distributed()  # nccl on CUDA (one GPU per rank via LOCAL_RANK), gloo on CPU
    try:
        torch.manual_seed(0)
        model = GPT(ModelConfig(**MODEL))
        tokens = np.random.default_rng(0).integers(0, MODEL["vocab_size"], size=200_000)
        cfg = TrainConfig(**TRAIN, max_steps=args.warmup + args.steps, device=args.device,
                          parallel="ddp" if world > 1 else "none")
        trainer = Trainer(model, cfg, tokens)
        trainer.fit(stop_at=args.warmup)  # first steps pay for allocation and DDP's bucket set-up
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        sync()
        dist.barrier()
        start = time.perf_counter()
        trainer.fit()
        sync()
        dist.barrier()
        seconds = time.perf_counter() - start
        if dist.get_rank() == 0:
            Path(args.result).write_text(json.dumps(
                {"world_size": world_size(), "seconds": seconds, "tokens": args.steps * trainer.tokens_per_step,
                 "tok_per_s": args.steps * trainer.tokens_per_step / seconds,
                 "final_loss": trainer.history[-1]["loss"], "backend": dist.get_backend()}))
    finally:
        dist.destroy_process_group()


def launch(n: int, args: argparse.Namespace, device: str) -> dict:
    """Run `n` ranks of this script under torchrun; return rank 0's measurement."""
    from minillm.train.launch import torchrun

    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        torchrun([__file__, "--worker", "--result", str(result), "--device", device, "--steps", str(args.steps),
                  "--warmup", str(args.warmup)], nproc=n, timeout_s=300)
        return json.loads(result.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="timed optimizer steps per run [default: 150]")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first [default: 5]")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--device", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from minillm.provenance import append_jsonl, provenance

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    n_max = torch.cuda.device_count() if cuda else 2
    sizes = [1] + [n for n in (2, 4, 8, 16) if n <= n_max]
    runs = []
    for n in sizes:
        r = launch(n, args, device)
        r["efficiency"] = r["tok_per_s"] / (n * runs[0]["tok_per_s"]) if runs else 1.0
        runs.append(r)
        print(f"world_size={n}: {r['tok_per_s']:,.0f} tok/s ({r['backend']}), scaling efficiency "
              f"{r['efficiency']:.2f}")
    note = (f"nccl, one GPU per process ({torch.cuda.get_device_name(0)})" if cuda else
            f"gloo on CPU processes ({os.cpu_count()} cores, OMP_NUM_THREADS=1 each): measures DDP/all-reduce "
            f"overhead on a tiny model, not GPU scaling")
    append_jsonl(RESULTS, {**provenance(), "bench": "ddp_scaling", "device": device, "note": note,
                           "model": MODEL, "train": {**TRAIN, "steps": args.steps, "warmup": args.warmup},
                           "scaling": "weak (fixed per-rank batch)", "load_avg_1m": os.getloadavg()[0],
                           "runs": runs})


if __name__ == "__main__":
    main()
