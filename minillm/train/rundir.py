"""Run folders: one layout for the command line and the API, and `load_run` to get a trained model back.

Survey §4.3 (model training): a run is more than its weights. To generate from it, evaluate it or train it further,
one needs the architecture it was built with and the tokenizer its ids mean. Both `python -m minillm train --out
RUN` and `Trainer(model, TrainConfig(out_dir=RUN), data, tokenizer=tok)` therefore write the same folder:

    RUN/config.json       {"model": ModelConfig.to_dict(), "train": TrainConfig.to_dict(), "data": ..., ...}
    RUN/tokenizer.json    the tokenizer's own save() format (absent for a run trained on bare token ids)
    RUN/history.jsonl     one row per logged step (train/history.py)
    RUN/ckpt/step_NNNNNNNN/   checkpoints (train/checkpoint.py); the newest is the run's current model

`load_run(RUN) -> (model, tokenizer)` reads any such folder: one the CLI wrote, one the Trainer wrote, or one
`save_run` wrote for a model changed after training (e.g. LoRA adapters merged into the weights with
`minillm.finetune.peft.merge_lora`, which leaves a plain GPT with the base model's parameter names).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minillm.config import ModelConfig, TrainConfig
from minillm.data.tokenizer import Tokenizer, load_tokenizer
from minillm.device import resolve_device
from minillm.io import atomic_write_text
from minillm.model.transformer import GPT
from minillm.train.checkpoint import (checkpoint_path, latest_checkpoint, load_checkpoint, load_checkpoint_state,
                                      save_checkpoint)

CONFIG, TOKENIZER = "config.json", "tokenizer.json"


def check_tokenizer(tokenizer: Any, vocab_size: int) -> None:
    """Refuse a tokenizer that cannot be saved in a run folder, or whose ids do not all fit the model's embedding."""
    if not (callable(getattr(tokenizer, "save", None)) and isinstance(getattr(tokenizer, "vocab_size", None), int)):
        raise TypeError(f"tokenizer must be a minillm tokenizer (CharTokenizer, BPETokenizer, ByteBPE) with "
                        f"save() and vocab_size, got {type(tokenizer).__name__}")
    if tokenizer.vocab_size > vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                         f"{vocab_size}: it would produce ids the model cannot embed; build the model with "
                         f"ModelConfig(vocab_size={tokenizer.vocab_size}, ...) or pass the data's own tokenizer")


def write_run_config(out_dir: str | os.PathLike, model_cfg: ModelConfig, train_cfg: TrainConfig | None = None,
                     tokenizer: Tokenizer | None = None, **extra: Any) -> Path:
    """Write OUT_DIR/config.json (and OUT_DIR/tokenizer.json when `tokenizer` is given); returns config.json's path.

    The format is the command line's: {"model": model_cfg.to_dict(), "train": train_cfg.to_dict() or null,
    **extra} (the CLI passes data="the prepared data folder"). Both files are written atomically, so a crash
    leaves the old file or the new one. The folder is created if needed.
    """
    if not isinstance(model_cfg, ModelConfig):
        raise TypeError(f"model_cfg must be a ModelConfig, got {type(model_cfg).__name__}: pass model.config")
    if train_cfg is not None and not isinstance(train_cfg, TrainConfig):
        raise TypeError(f"train_cfg must be a TrainConfig or None, got {type(train_cfg).__name__}")
    clash = sorted({"model", "train"} & set(extra))
    if clash:
        raise ValueError(f"extra key(s) {clash} would overwrite the config itself: pass them as model_cfg/train_cfg")
    if tokenizer is not None:
        check_tokenizer(tokenizer, model_cfg.vocab_size)
    payload = {"model": model_cfg.to_dict(), "train": train_cfg.to_dict() if train_cfg is not None else None, **extra}
    try:
        text = json.dumps(payload, indent=2)
    except TypeError as e:
        raise TypeError(f"config.json values must be JSON-serializable ({e}): pass strings, numbers, lists or "
                        f"dicts as extra keys") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer is not None:  # the tokenizer first: a config.json never names a run whose tokenizer is missing
        tokenizer.save(out / TOKENIZER)
    atomic_write_text(out / CONFIG, text)
    return out / CONFIG


def save_run(out_dir: str | os.PathLike, model: nn.Module, tokenizer: Tokenizer | None = None, *,
             train_cfg: TrainConfig | None = None, step: int = 0, **extra: Any) -> Path:
    """Save a model that did not come out of a Trainer as a run folder `load_run` reads; returns the checkpoint.

    For a model changed after training, e.g. LoRA merged into the weights (`merge_lora(model)` turns it back into
    a plain GPT): config.json from `model.config`, the tokenizer, and a weights-only checkpoint at
    OUT_DIR/ckpt/step_{step:08d}. A later step number than the run's checkpoints makes it the one load_run picks.
    """
    cfg = getattr(getattr(model, "_orig_mod", model), "config", None)
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"model must carry a ModelConfig as .config (like minillm.GPT), got "
                        f"{type(cfg).__name__}: load_run rebuilds the model from it")
    write_run_config(out_dir, cfg, train_cfg, tokenizer, **extra)
    return save_checkpoint(checkpoint_path(out_dir, step), model, None, step, config=train_cfg)


def _find_checkpoint(run: Path, checkpoint: str | os.PathLike | int | None) -> Path:
    if checkpoint is None:
        found = latest_checkpoint(run)
        if found is None:
            raise FileNotFoundError(f"no checkpoint in {run} (looked in {run / 'ckpt'}): train first "
                                    f"(Trainer with TrainConfig(out_dir={str(run)!r}), or python -m minillm train "
                                    f"... --out {run}), or save one with minillm.train.rundir.save_run")
        return found
    if isinstance(checkpoint, bool):
        raise TypeError("checkpoint must be a step number, a checkpoint path, or None for the newest")
    if isinstance(checkpoint, int):
        path = checkpoint_path(run, checkpoint)
        if not path.exists():
            raise FileNotFoundError(f"no checkpoint of step {checkpoint} in {run} (expected {path}); "
                                    f"leave checkpoint=None for the newest")
        return path
    return Path(checkpoint)  # load_checkpoint explains a path that is not a checkpoint


def load_run(path: str | os.PathLike, *, device: str | torch.device = "cpu",
             checkpoint: str | os.PathLike | int | None = None) -> tuple[nn.Module, Tokenizer | None]:
    """(model, tokenizer) of a run folder written by `python -m minillm train`, a Trainer with out_dir, or save_run.

    The model is a minillm `GPT` with the newest checkpoint's weights (or `checkpoint`: a step number or a
    checkpoint directory), on `device` ("cpu", "cuda", "mps" or "auto"), in eval mode; call `.train()` or hand it
    to a Trainer to train it further. Its architecture is the ModelConfig saved inside the checkpoint, which is the
    config of exactly those weights (a model changed after training, e.g. with a resized vocabulary, keeps its own),
    or config.json's where a checkpoint carries none. The tokenizer is RUN/tokenizer.json, or None when the run was
    trained on bare token ids without one (pass `tokenizer=` to the Trainer so the folder carries it).
    """
    run = Path(path)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist: give the --out of `python -m minillm train` or "
                                f"the TrainConfig.out_dir of a Trainer run")
    cfg_path = run / CONFIG
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: {run} is not a run folder (one is written by `python -m "
                                f"minillm train --out`, by a Trainer with TrainConfig(out_dir=...), or by save_run)")
    try:
        saved = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{cfg_path} is not valid UTF-8 JSON ({e}): rewrite it with write_run_config") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        raise ValueError(f"{cfg_path} has no \"model\" object (a ModelConfig as a dict): it was not written by "
                         f"minillm; rewrite it with write_run_config")
    ckpt = _find_checkpoint(run, checkpoint)
    model_dict = load_checkpoint_state(ckpt).get("model_config") or saved["model"]
    model = GPT(ModelConfig.from_dict(model_dict))
    load_checkpoint(ckpt, model)  # a RuntimeError lists every tensor that does not fit
    tok_path = run / TOKENIZER
    tokenizer = load_tokenizer(tok_path) if tok_path.exists() else None
    if tokenizer is not None and tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"{tok_path} has {tokenizer.vocab_size} tokens but the model in {ckpt} has vocab_size="
                         f"{model.config.vocab_size}: the tokenizer belongs to another model; save the matching one "
                         f"with write_run_config(..., tokenizer=...)")
    return model.to(resolve_device(device)).eval(), tokenizer
