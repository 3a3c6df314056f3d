"""`python -m minillm finetune`: LoRA-tune a run folder on a JSONL of conversations (Survey §5.1 instruction tuning,
§5.3 LoRA); the recipe is `minillm.finetune.recipe.finetune_run`.

    python -m minillm finetune --base runs/mine --data pairs.jsonl --out runs/mine-chat --merge
    python -m minillm generate --run runs/mine-chat --chat --prompt "capital of peru"

Each JSONL line is {"messages": [{"role", "content"}, ...]}, {"instruction", "input"?, "output", "system"?} or
{"prompt", "response"}. A base without the chat tokens gets them (and a grown embedding). One conversation per row
by default; --packed packs across conversations (for large corpora of long responses). Without --merge the run
folder holds only the adapter and needs the base folder to stay where it is.
"""
from __future__ import annotations

import argparse

from minillm.finetune.recipe import FINETUNE_DEFAULTS, finetune_run


def cmd_finetune(args: argparse.Namespace) -> None:
    finetune_run(args.base, args.data, args.out, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
                 merge=args.merge, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                 one_per_row=not args.packed, holdout=args.holdout, seed=args.seed, device=args.device,
                 progress=True)


def register(sub: argparse._SubParsersAction) -> None:
    d = FINETUNE_DEFAULTS
    pf = sub.add_parser("finetune", help="LoRA-tune a run on a JSONL of conversations",
                        description="LoRA-tune a run folder on a JSONL of conversations (Survey §5.1 instruction "
                                    "tuning, §5.3 LoRA): minillm.finetune.recipe.finetune_run.",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=__doc__.split("\n\n", 1)[1])
    pf.add_argument("--base", required=True, help="run folder to start from (written by `train`)")
    pf.add_argument("--data", required=True, help="JSONL file of conversations (shapes below)")
    pf.add_argument("--out", required=True, help="new run folder for the fine-tuned model")
    pf.add_argument("--lora_rank", type=int, default=d["lora_rank"], help=f"LoRA rank r [default: {d['lora_rank']}]")
    pf.add_argument("--lora_alpha", type=float, default=None, help="LoRA alpha [default: 2 * rank]")
    pf.add_argument("--merge", action="store_true",
                    help="save full merged weights (a plain run) instead of the adapter alone")
    pf.add_argument("--steps", type=int, default=d["steps"], help=f"optimizer steps [default: {d['steps']}]")
    pf.add_argument("--lr", type=float, default=d["lr"], help=f"peak learning rate [default: {d['lr']:g}]")
    pf.add_argument("--batch_size", type=int, default=d["batch_size"],
                    help=f"rows per step [default: {d['batch_size']}]")
    pf.add_argument("--packed", action="store_true",
                    help="pack several conversations per row (throughput) instead of one per row")
    pf.add_argument("--holdout", type=int, default=0,
                    help="conversations kept out of training to report held-out loss and exact match [default: 0]")
    pf.add_argument("--seed", type=int, default=0, help="seed of the LoRA init, batches and holdout [default: 0]")
    pf.add_argument("--device", default="auto", help="auto, cpu, cuda, mps [default: auto]")
    pf.set_defaults(func=cmd_finetune)
