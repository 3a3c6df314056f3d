"""`python -m minillm train`: a GPT on prepared shards, every config field an option (Survey §4.3).

The run folder (--out) is the one a Trainer with TrainConfig(out_dir=...) writes (train/rundir.py): config.json,
tokenizer.json, history.jsonl and checkpoints. A folder that already holds checkpoints is resumed, unless
--resume false is given (then it is an error, so a finished run is never overwritten by accident). Under
``torchrun`` the same command trains data-parallel (--parallel ddp) or fully sharded (--parallel fsdp).
"""
from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path

import torch.distributed as dist

from minillm.cli.options import add_config_options, config_overrides
from minillm.config import ModelConfig, TrainConfig
from minillm.data.loader import DataSplits
from minillm.data.tokenizer import load_tokenizer
from minillm.device import seed_everything
from minillm.model.transformer import GPT
from minillm.presets import (
    MODEL_PRESETS,
    MODEL_SIZE_DEFAULTS,
    SIZES,
    TRAIN_PRESETS,
    model_preset,
    size_profile,
    train_preset,
)
from minillm.train.checkpoint import latest_checkpoint
from minillm.train.parallel.group import init_distributed
from minillm.train.trainer import Trainer


def resolve_configs(args: argparse.Namespace, vocab_size: int) -> tuple[ModelConfig, TrainConfig, str]:
    """(model config, train config, size): the --preset and --size tables under the command line's overrides;
    resume is on when --out already holds a checkpoint and --resume was not given.
    Both tables use the same size, so a CUDA host (profile gpu) training --size laptop pads no vocabulary."""
    size = args.size or size_profile()
    model_over = config_overrides(args, ModelConfig)
    model_over.setdefault("vocab_size", vocab_size)
    model_cfg = model_preset(args.preset, size=size, **model_over)
    train_over = config_overrides(args, TrainConfig)
    if "resume" not in train_over and latest_checkpoint(args.out) is not None:
        train_over["resume"] = True  # a killed run goes on where it stopped (nanoGPT's init_from="resume")
    train_cfg = train_preset(size, **train_over, out_dir=args.out)
    return model_cfg, train_cfg, size


def config_block(model_cfg: ModelConfig, train_cfg: TrainConfig, size: str, preset: str) -> str:
    """Every field of both configs, wrapped: what this run really uses, printed before it starts."""
    lines = [f"config (--size {size}, --preset {preset}):"]
    for name, cfg in (("model", model_cfg), ("train", train_cfg)):
        body = " ".join(f"{k}={v}" for k, v in cfg.to_dict().items())
        lines += textwrap.wrap(body, width=110, initial_indent=f"  {name}: ", subsequent_indent=" " * 9)
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> None:
    data = DataSplits.from_dir(args.data)
    model_cfg, train_cfg, size = resolve_configs(args, data.vocab_size)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and train_cfg.parallel == "none":
        raise ValueError(f"started by torchrun with WORLD_SIZE={world} but --parallel is none: every process "
                         f"would train alone and write the same files; pass --parallel ddp (or fsdp)")
    grouped = train_cfg.parallel != "none"  # ddp/fsdp need a process group, even of one (torchrun --nproc_per_node=1)
    if grouped:
        # RANK, WORLD_SIZE, MASTER_ADDR/PORT from torchrun's environment; the backend follows the training device
        init_distributed(device=train_cfg.device)
    try:
        _train(args, model_cfg, train_cfg, size, main=int(os.environ.get("RANK", "0")) == 0)
    finally:
        if grouped:
            dist.destroy_process_group()


def _train(args: argparse.Namespace, model_cfg: ModelConfig, train_cfg: TrainConfig, size: str, main: bool) -> None:
    seed_everything(train_cfg.seed)  # the initial weights depend on the seed alone, not on what ran before
    model = GPT(model_cfg)
    out = Path(args.out)
    tok_path = Path(args.data) / "tokenizer.json"
    tokenizer = load_tokenizer(tok_path) if tok_path.exists() else None  # the run folder carries it for generate
    if main:
        print(config_block(model_cfg, train_cfg, size, args.preset))
        print(f"model: {model.num_params():,} non-embedding parameters; checkpoints and history.jsonl go to {out}/")
    # The Trainer writes config.json (+ tokenizer.json) on rank 0 and says "resuming from step N" when it resumes.
    history = Trainer(model, train_cfg, args.data, tokenizer=tokenizer).fit()
    last = history[-1]
    val = f", val loss {last['val_loss']:.4f}" if last.get("val_loss") is not None else ""
    if main:
        print(f"done: step {last['step']}, train loss {last['loss']:.4f}{val}; checkpoint in {out}/")


def register(sub: argparse._SubParsersAction, size: str | None, preset: str) -> None:
    """`train`'s parser; `size`/`preset` pick the preset rows --help shows as the defaults."""
    pt = sub.add_parser("train", help="train a GPT on prepared shards",
                        description="Train a model. Any ModelConfig/TrainConfig field can be overridden, "
                                    "e.g. --n_layer 4 --lr 1e-3 --schedule wsd.")
    pt.add_argument("--data", required=True, help="folder written by `prepare`")
    pt.add_argument("--preset", default="small", help="model preset (tiny, small, medium, gpt2-124m, llama-tiny)")
    pt.add_argument("--size", default=None, choices=SIZES,
                    help="training preset scale (minillm.presets.TRAIN_PRESETS) [default: $MINILLM_SIZE, else gpu "
                         f"with CUDA, else laptop; here: {size or 'unknown: $MINILLM_SIZE is invalid'}]")
    pt.add_argument("--out", required=True, help="run folder: checkpoints, history.jsonl, config.json, tokenizer")
    add_config_options(pt, ModelConfig, skip=("vocab_size",),
                       tables=[(MODEL_SIZE_DEFAULTS, "--size", size), (MODEL_PRESETS, "--preset", preset)])
    add_config_options(pt, TrainConfig, skip=("out_dir",), tables=[(TRAIN_PRESETS, "--size", size)])
    pt.set_defaults(func=cmd_train)
