"""How much does the Trainer cost over a bare hand-written loop? (Survey §4.3, model training.)

The Trainer adds a schedule, clipping with a recorded norm, a NaN guard, history rows and hooks around the same
forward/backward/step. This script trains the same GPT (~1.8M parameters) on the same data for the same number
of steps both ways, alternating bare and Trainer rounds within one process (so drift in machine load hits both
alike), and reports tokens/s of each and the ratio Trainer / bare (goal: >= 0.97 on CPU).

Both sides use torch's AdamW with the same parameter groups, so the comparison isolates the loop itself; the
Trainer with minillm's own (foreach) AdamW is reported as an extra number. Timing covers the training steps
only (not model construction), and the Trainer runs with progress bar off, no evaluation and no out_dir.

    python bench/trainer_overhead.py [--steps 15] [--rounds 4] [--threads N]

On a shared machine other processes make single rounds vary a lot; the JSON keeps every round's time and the
1-minute load average, so a noisy measurement can be recognised as such.

Prints one summary line and appends a JSON record (command, date, host, versions, config, numbers) to
bench/results/trainer_overhead.jsonl.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from minillm.config import ModelConfig, TrainConfig
from minillm.data.loader import DataSplits, get_batch
from minillm.model.transformer import GPT
from minillm.provenance import append_jsonl, provenance
from minillm.train.optim import param_groups
from minillm.train.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results" / "trainer_overhead.jsonl"
MODEL = dict(vocab_size=256, block_size=128, n_layer=4, n_head=4, n_embd=192)


def make_model(seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(**MODEL))


def bare_loop(tokens: np.ndarray, cfg: TrainConfig, seed: int) -> float:
    """The loop as one would write it by hand; returns seconds spent in the steps."""
    model = make_model(seed)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            eps=cfg.eps, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    start = time.perf_counter()
    for step in range(cfg.max_steps):
        x, y = get_batch(tokens, cfg.batch_size, MODEL["block_size"], "cpu", gen)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if (step + 1) % cfg.log_interval == 0:
            loss.item()  # what a hand-written loop logs
    return time.perf_counter() - start


def trainer_loop(tokens: np.ndarray, cfg: TrainConfig, seed: int) -> float:
    model = make_model(seed)
    with warnings.catch_warnings():  # no validation split on purpose: the benchmark measures training only
        warnings.simplefilter("ignore")
        trainer = Trainer(model, cfg, DataSplits(tokens, None))
    start = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=15, help="optimizer steps per round")
    ap.add_argument("--rounds", type=int, default=4, help="timed (bare, Trainer) pairs, order alternating")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    tokens = np.random.default_rng(0).integers(0, MODEL["vocab_size"], 200_000).astype(np.int64)
    cfg = TrainConfig(batch_size=args.batch_size, max_steps=args.steps, warmup_steps=2, log_interval=5,
                      eval_interval=0, optimizer="torch_adamw", progress=False, device="cpu", seed=0)
    ours_cfg = cfg.replace(optimizer="adamw")
    tokens_per_round = args.steps * args.batch_size * MODEL["block_size"]

    bare_loop(tokens, cfg.replace(max_steps=3), 0)  # warm up allocators and lazy imports
    trainer_loop(tokens, cfg.replace(max_steps=3), 0)
    bare_s, trainer_s, ours_s, ratios = [], [], [], []
    for r in range(args.rounds):
        if r % 2 == 0:
            b, t = bare_loop(tokens, cfg, r), trainer_loop(tokens, cfg, r)
        else:
            t, b = trainer_loop(tokens, cfg, r), bare_loop(tokens, cfg, r)
        bare_s.append(b)
        trainer_s.append(t)
        ratios.append(b / t)  # = trainer tok/s / bare tok/s for this pair
        ours_s.append(trainer_loop(tokens, ours_cfg, r))

    def tok_s(times: list[float]) -> float:
        return len(times) * tokens_per_round / sum(times)

    n_params = make_model(0).num_params(non_embedding=False)
    result = {
        "bare_tok_s": tok_s(bare_s), "trainer_tok_s": tok_s(trainer_s),
        "ratio": tok_s(trainer_s) / tok_s(bare_s), "ratio_median_of_pairs": statistics.median(ratios),
        "pair_ratios": ratios, "trainer_own_adamw_tok_s": tok_s(ours_s),
        "bare_s": bare_s, "trainer_s": trainer_s, "trainer_own_adamw_s": ours_s,
    }
    record = provenance() | {
        "config": {"model": MODEL, "n_params": n_params, "batch_size": args.batch_size, "steps": args.steps,
                   "rounds": args.rounds, "device": "cpu", "precision": "fp32"},
        "results": result,
    }
    append_jsonl(RESULTS, record)
    print(f"trainer_overhead: {n_params / 1e6:.2f}M params, bare {result['bare_tok_s']:.0f} tok/s, Trainer "
          f"{result['trainer_tok_s']:.0f} tok/s, ratio {result['ratio']:.3f} (median of pairs "
          f"{result['ratio_median_of_pairs']:.3f}; goal >= 0.97); Trainer with minillm AdamW "
          f"{result['trainer_own_adamw_tok_s']:.0f} tok/s -> {RESULTS}")


if __name__ == "__main__":
    main()
