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

An adapter run (`save_adapter_run`, what `python -m minillm finetune` writes without --merge) holds no full
weights, only what fine-tuning changed, next to a pointer to its base run (Survey §5.3, LoRA):

    RUN/config.json            {"model": the fine-tuned ModelConfig, ..., "adapter": {"base_run": "/abs/path",
                                "base_checkpoint": step, "lora": {"rank", "alpha", ...}, "first_new_id": id|null}}
    RUN/adapter.safetensors    every LoRA A and B ("blocks.0.attn.wq.lora_A", ...) and, when tokens were added,
                               their embedding rows ("tok_emb.new_rows" (n, C); "lm_head.new_rows" if untied)

load_run rebuilds it: the base run at that checkpoint, the vocabulary grown to the saved size, the new rows set,
and each W += (alpha/rank) B A, which is `merge_lora`'s arithmetic, so the model equals the merged one exactly.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from minillm.config import ModelConfig, TrainConfig
from minillm.data.tokenizer import Tokenizer, load_tokenizer
from minillm.device import resolve_device
from minillm.io import atomic_write, atomic_write_text
from minillm.model.resize import resize_token_embeddings
from minillm.model.transformer import GPT
from minillm.train.checkpoint import (checkpoint_path, latest_checkpoint, load_checkpoint, load_checkpoint_state,
                                      save_checkpoint)

CONFIG, TOKENIZER, ADAPTER = "config.json", "tokenizer.json", "adapter.safetensors"
LORA_KEYS = (".lora_A", ".lora_B")  # state-dict suffixes of minillm.finetune.peft.LoRALinear's factors


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
    or config.json's where a checkpoint carries none. An adapter run (`save_adapter_run`) is rebuilt from its base
    run with the LoRA factors merged in (a plain GPT, equal to `merge_lora`'s). The tokenizer is RUN/tokenizer.json,
    or None when the run was trained on bare token ids without one (pass `tokenizer=` to the Trainer so the folder
    carries it).
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
    if saved.get("adapter") is not None:
        if checkpoint is not None:
            raise ValueError(f"{run} is an adapter run (config.json names a base run): it has no checkpoints to "
                             f"choose from; leave checkpoint=None")
        model, ckpt = _load_adapter_run(run, saved), run / ADAPTER
    else:
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


# ---- adapter runs: LoRA factors (+ new token rows) next to a pointer to the base run ------------------------------

def save_adapter_run(out_dir: str | os.PathLike, model: nn.Module, tokenizer: Tokenizer | None, *,
                     base_run: str | os.PathLike, base_checkpoint: int, lora: dict, first_new_id: int | None = None,
                     train_cfg: TrainConfig | None = None, **extra: Any) -> Path:
    """Save a LoRA-tuned GPT (not merged) as an adapter run `load_run` rebuilds; returns OUT_DIR/adapter.safetensors.

    base_run / base_checkpoint: the run and step the model was loaded from (load_run will take exactly that step);
    lora: the LoRAConfig as a dict (`LoRAConfig.to_dict()`: rank and alpha give the scale); first_new_id: the first
    token id added after the base run (the vocab_size before `resize_token_embeddings`), or None when none was.
    """
    cfg = getattr(getattr(model, "_orig_mod", model), "config", None)
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"model must carry a ModelConfig as .config (like minillm.GPT), got {type(cfg).__name__}")
    if not isinstance(lora, dict) or not {"rank", "alpha"} <= set(lora):
        raise TypeError(f"lora must be the LoRAConfig as a dict (LoRAConfig.to_dict()), got {lora!r}")
    state = model.state_dict()
    tensors = {k: v.detach().contiguous() for k, v in state.items() if k.endswith(LORA_KEYS)}
    if not tensors:
        raise ValueError("the model holds no LoRA factors (no *.lora_A / *.lora_B): apply_lora first, or save a "
                         "plain (or merged) model with save_run")
    if any(getattr(m, "merged", False) for m in model.modules()):
        raise ValueError("a LoRA layer is merged into its weight; unmerge() it first, or merge_lora(model) and use "
                         "save_run")
    if first_new_id is not None:
        if not 0 <= first_new_id < cfg.vocab_size:
            raise ValueError(f"first_new_id={first_new_id} must be an id in [0, {cfg.vocab_size})")
        emb = model.tok_emb.weight
        head = getattr(model.lm_head, "base", model.lm_head).weight
        tensors["tok_emb.new_rows"] = emb[first_new_id:cfg.vocab_size].detach().contiguous()  # (n, C)
        if head is not emb:
            tensors["lm_head.new_rows"] = head[first_new_id:cfg.vocab_size].detach().contiguous()
    adapter = {"base_run": str(Path(base_run).resolve()), "base_checkpoint": int(base_checkpoint), "lora": lora,
               "first_new_id": first_new_id, "file": ADAPTER}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blob = safetensors.torch.save({k: v.cpu() for k, v in tensors.items()})
    atomic_write(out / ADAPTER, lambda f: f.write(blob))  # before config.json, which names it
    write_run_config(out, cfg, train_cfg, tokenizer, adapter=adapter, **extra)
    return out / ADAPTER


def _load_adapter_run(run: Path, saved: dict) -> nn.Module:
    """The GPT of an adapter run: its base run at the saved checkpoint, grown and with the LoRA factors merged."""
    info = saved["adapter"]
    base = Path(info["base_run"])
    if base.resolve() == run.resolve():
        raise ValueError(f"{run / CONFIG} names itself as its base run: the folder is corrupt")
    if not (base / CONFIG).is_file():
        raise FileNotFoundError(f"{run} is a LoRA adapter on base run {base}, which is gone: restore that folder, or "
                                f"re-run the fine-tuning with merge=True (--merge) so the run carries full weights")
    model, _ = load_run(base, checkpoint=int(info["base_checkpoint"]))
    cfg = ModelConfig.from_dict(saved["model"])
    mine, theirs = cfg.to_dict(), model.config.to_dict()
    changed = sorted(k for k in mine if k != "vocab_size" and mine[k] != theirs.get(k))
    if changed:
        raise ValueError(f"{run}'s model differs from its base run {base} in {changed}: the adapter belongs to "
                         f"another base; restore the base run it was trained on")
    resize_token_embeddings(model, cfg.vocab_size)
    path = run / info.get("file", ADAPTER)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the adapter weights of {run} are missing")
    tensors = safetensors.torch.load_file(str(path))
    scale = float(info["lora"]["alpha"]) / int(info["lora"]["rank"])
    with torch.no_grad():
        first = info.get("first_new_id")
        if first is not None:
            model.tok_emb.weight[first:cfg.vocab_size] = tensors.pop("tok_emb.new_rows")
            if "lm_head.new_rows" in tensors:
                model.lm_head.weight[first:cfg.vocab_size] = tensors.pop("lm_head.new_rows")
        for key in sorted(k for k in tensors if k.endswith(".lora_A")):
            name = key[: -len(".lora_A")]
            try:
                layer, B = model.get_submodule(name), tensors[name + ".lora_B"]
            except (AttributeError, KeyError):
                raise ValueError(f"{path}: {key} has no matching layer {name!r} in the base model, or no lora_B: the "
                                 f"adapter does not fit its base run {base}") from None
            if layer.weight is model.tok_emb.weight:  # W += BA would change the input embeddings too
                raise ValueError(f"{run}: LoRA on {name}, whose weight is tied to the token embedding; re-run the "
                                 f"fine-tuning with merge=True (--merge)")
            delta = (B @ tensors[key]) * scale  # (out, in): LoRALinear.delta_weight
            layer.weight.copy_(layer.weight + delta.to(layer.weight.dtype))  # merge_lora's sum, so equal bit for bit
    return model
