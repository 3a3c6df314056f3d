"""Run chapter 05's optimization studies at laptop scale and append one record per study. Survey §4.3.

    python bench/train_studies.py                  # every study, ~2 min on one CPU thread
    python bench/train_studies.py --only lr_sweep

Each study trains the shared small char-level GPT of chapter 04 (`ArchRun.for_size("laptop")`) and changes one
optimization setting (book/ch05_training/studies*.py). Appends to bench/results/train_studies.jsonl:
{"study", "run", "rows", "seconds", "provenance"}; the chapter shows the latest record of each beside the
reader's own runs.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict

import torch

from book.runs import ArchRun
from book import results
from book.results import run_studies
from book.ch05_training.studies import batch_size_study, gradient_noise_scale, lr_sweep, schedule_study, warmup_study
from book.ch05_training.studies_optim import LR_GRIDS, decay_clip_study, optimizer_study
from book.ch05_training.studies_parallel_live import live_config, parallel_live
from book.ch05_training.studies_stability import clipping_study, loss_spike_study, precision_study, weight_decay_study

OUT = results.path("train_studies.jsonl", must_exist=False)


def studies(run: ArchRun) -> dict:
    return {
        "lr_sweep": lambda: lr_sweep((1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 1.0), run),
        "warmup": lambda: warmup_study((0, 10, 50), run, lr=3e-2),
        "schedule": lambda: schedule_study(("cosine", "wsd", "constant"), run),
        "noise_scale": lambda: gradient_noise_scale(run, (4, 32), draws=32),
        "batch_size": lambda: batch_size_study((4, 8, 16, 32, 64), run),
        "weight_decay": lambda: weight_decay_study((0.0, 0.1, 1.0), run),
        "clipping": lambda: clipping_study((None, 1.0, 0.25), run),
        "loss_spike": lambda: loss_spike_study(run),
        "precision": lambda: precision_study(("fp32", "bf16"), run),
        "optimizers": lambda: optimizer_study(LR_GRIDS, run),
        "decay_clip": lambda: decay_clip_study((0.0, 0.1, 1.0), (None, 1.0, 0.25), run),
        # its own small GPT (not `run`'s): one step as ZeRO-1, TP and PP on 2 gloo processes, bytes measured
        "parallel_live": lambda: parallel_live(live_config("laptop")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", action="append", help="run only these studies (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = ArchRun.for_size("laptop")
    for rec in run_studies(studies(run), args.out, args.only, run=asdict(run)):
        print(f"{rec['study']}: {len(rec['rows'])} rows in {rec['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
