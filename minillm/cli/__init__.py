"""The command line, `python -m minillm COMMAND --help`: the pipeline the chapters run, for homework and real runs
(Survey §4: data -> model -> training -> utilization -> evaluation).

    python -m minillm prepare --source story --n_docs 20000 --tokenizer char --out data/story
    python -m minillm prepare --source my_text.txt --out data/mine      # verbatim; the last 5% held out
    python -m minillm train --data data/story --preset small --out runs/story --max_steps 2000 --lr 1e-3
    python -m minillm generate --run runs/story --prompt "Mia " --max_new_tokens 200 --temperature 0.8
    python -m minillm eval --run runs/mine --text my_heldout.txt        # loss, perplexity, bits per byte
    python -m minillm finetune --base runs/mine --data pairs.jsonl --out runs/chat --merge   # LoRA, chat template
    python -m minillm sweep --size laptop --out bench/results/sweeps/laptop_isoflop.jsonl   # Survey §2.1

`train` accepts every ModelConfig and TrainConfig field as an option (listed by --help with its comment and the
default the chosen --size/--preset really uses), prints the resolved configuration when it starts, and resumes a
run folder that already holds checkpoints. Under ``torchrun`` the same command trains on several processes:

    torchrun --nproc_per_node=2 -m minillm train --data data/story --out runs/story --parallel ddp

One module per command, each with `register(subparsers)` and its `cmd_*` function:

    options.py       ModelConfig/TrainConfig fields -> options, with the defaults the chosen presets really use
    cmd_prepare.py   a corpus -> token shards + tokenizer
    cmd_train.py     train (resumes; DDP/FSDP under torchrun)
    cmd_generate.py  sample from a run folder
    cmd_eval.py      loss on a text file, benchmark tasks
    cmd_finetune.py  LoRA-tune a run on a JSONL of conversations (minillm/finetune/recipe.py)
    cmd_sweep.py     scaling-law sweeps
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from minillm.cli import cmd_eval, cmd_finetune, cmd_generate, cmd_prepare, cmd_sweep, cmd_train, options

__all__ = ["build_parser", "main"]


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; `argv` only picks which --size/--preset row `train --help` shows as the defaults."""
    size, preset = options.chosen_presets(argv)
    p = argparse.ArgumentParser(prog="python -m minillm", description=__doc__.split("\n\nOne module")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd_prepare.register(sub)
    cmd_train.register(sub, size, preset)
    cmd_generate.register(sub)
    cmd_eval.register(sub)
    cmd_finetune.register(sub)
    cmd_sweep.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError, TypeError) as e:  # one clear line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
