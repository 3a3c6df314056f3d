"""The training loop: `Trainer(model, cfg, data).fit() -> history`. Survey §4.3 (model training).

One optimizer step, as in every LLM pre-training codebase, taken by `train_step` (train/step.py, shared with
fine-tuning):

    lr ← schedule(step)                                   warmup + decay (Survey §4.3.1)
    for each of grad_accum_steps micro-batches:           a large effective batch from small memory
        loss = model(x, y) under autocast                 mixed precision (Survey §4.3.2)
        (loss / grad_accum_steps).backward()              gradients add up to the full batch's mean
    clip the global gradient norm                         stabilization against loss spikes
    optimizer.step(); zero the gradients                  AdamW

around which the Trainer adds: the batches (a seeded RandomLoader), periodic evaluation on held-out tokens, a
history of rows (see history.py), hooks for live plots, what a non-finite step means (TrainConfig.on_nan: stop,
or skip it; step.py has already dropped its update), and checkpoints that make resuming exact.

Data parallelism (Survey §4.3.2; TrainConfig.parallel = ddp | fsdp, inside a process group): every rank runs
this same loop on its own batch_size windows of each step's global batch, gradients are averaged across ranks,
the step's loss is averaged too (all ranks log the same numbers), and rank 0 alone writes history and
checkpoints (under FSDP the shards are first gathered, so the checkpoint is a single process's). See
distributed.py.

Speed matters even in a teaching loop: the loop never calls .item() on the loss per micro-batch (that would
make the CPU wait for the GPU); losses are summed on the device and read at log steps only. The single
per-step sync is the finiteness check that decides whether the optimizer may step (see step.py).
"""
from __future__ import annotations

import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from minillm.config import ModelConfig, TrainConfig
from minillm.data.loader import DataSplits, RandomLoader, get_batch
from minillm.data.tokenizer import Tokenizer
from minillm.device import resolve_device, seed_everything, set_tf32
from minillm.train.checkpoint import (checkpoint_path, config_changes, is_sharded, latest_checkpoint, list_checkpoints,
                                      load_checkpoint, load_checkpoint_state, save_checkpoint)
from minillm.train.distributed import Parallelism
from minillm.train.parallel.fsdp import full_state_dicts
from minillm.train.history import HistoryWriter, mfu, normalize_hooks, peak_flops
from minillm.train.optim import build_optimizer, lr_at
from minillm.train.precision import PrecisionPolicy
from minillm.train.progress import show_progress
from minillm.train.rundir import check_tokenizer, write_run_config
from minillm.train.step import train_step


def _as_splits(data: Any) -> DataSplits:
    """A DataSplits from a 1-D token array/tensor (last 10% held out), a DataSplits, or a prepared directory."""
    if isinstance(data, DataSplits):
        return data
    if isinstance(data, (str, os.PathLike)):
        return DataSplits.from_dir(data)
    if isinstance(data, (np.ndarray, torch.Tensor, list, tuple)):
        return DataSplits.from_tokens(data, val_fraction=0.1)
    raise ValueError(f"data must be a 1-D token array or tensor, a DataSplits, or the path of a prepared data "
                     f"directory; got {type(data).__name__}")


def _data_source(data: Any) -> str | None:
    """The prepared-data folder a run trains on, for config.json: the path given, or the folder of the memory-mapped
    train.bin a DataSplits.from_dir holds; None for tokens held in memory (they have no folder)."""
    if isinstance(data, (str, os.PathLike)):
        return str(data)
    filename = getattr(getattr(data, "train", None), "filename", None)  # np.memmap keeps its file's absolute path
    return str(Path(filename).parent) if isinstance(data, DataSplits) and filename else None


def _check_vocab(splits: DataSplits, vocab_size: int) -> None:
    """Every token id must index the model's embedding table; fail here, not deep inside a CUDA kernel."""
    if splits.vocab_size is not None and splits.vocab_size > vocab_size:
        raise ValueError(f"the data was tokenized with vocab_size={splits.vocab_size} but the model has "
                         f"vocab_size={vocab_size}: build the model with "
                         f"ModelConfig(vocab_size={splits.vocab_size}, ...)")
    if splits.vocab_size is not None and isinstance(splits.train, np.memmap):
        return  # shard files store their vocab size and are checked against it when written; skip a full scan
    parts = [t for t in (splits.train, splits.val) if t is not None and len(t)]
    hi = max(int(t.max()) for t in parts)
    lo = min(int(t.min()) for t in parts)
    if lo < 0 or hi >= vocab_size:
        bad = hi if hi >= vocab_size else lo
        raise ValueError(f"token id {bad} in the data is outside the model's vocabulary [0, {vocab_size}): "
                         f"build the model with ModelConfig(vocab_size={hi + 1}) or more, or re-tokenize the data")


# TrainConfig fields a resumed run may change without a warning: they change what is shown, recorded or saved,
# never what is trained (resume itself always differs; out_dir may have been moved or renamed).
RESUME_MAY_CHANGE = ("resume", "progress", "out_dir", "checkpoint_interval", "log_interval", "eval_interval")


class Trainer:
    """Train `model` on `data` as `cfg` says. `fit()` runs the loop and returns `history` (a list of row dicts).

    model: a minillm `GPT` or any module with `.config.block_size`, `.config.vocab_size` and
        `model(x, y) -> (logits, loss)`; it is moved to cfg.device. The context length is config.block_size.
    data: a 1-D token array/tensor (the last 10% becomes the validation split), a `DataSplits`, or the path of
        a directory prepared with `python -m minillm prepare` (train.bin / val.bin).
    tokenizer: the tokenizer the data's ids come from (optional); with cfg.out_dir it is saved beside config.json
        so `minillm.load_run(out_dir)` returns it with the model.
    hooks: {"on_step": fn, "on_eval": fn} (a callable or a list of callables per name), or a list of objects
        with on_step / on_eval methods. Each is called as fn(trainer, row): on_step for every history row,
        on_eval for rows holding a val_loss. E.g. `hooks={"on_step": lambda tr, row: losses.append(row["loss"])}`.

    `fit(stop_at=n)` trains up to step n and returns; call fit() again to continue (the schedule is always
    the one of cfg.max_steps). With cfg.out_dir set, the run folder is the command line's (train/rundir.py):
    OUT_DIR/config.json (model and train configs, written when the Trainer is built) and tokenizer.json (when
    given), which `minillm.load_run(OUT_DIR)` and `python -m minillm generate --run OUT_DIR` read; rows go to
    OUT_DIR/history.jsonl and checkpoints to OUT_DIR/ckpt/step_NNNNNNNN (every cfg.checkpoint_every steps:
    checkpoint_interval, by default eval_interval; at the end; at stop_at; only the newest is kept).
    cfg.resume=True continues from the newest one (printing "resuming from step N of M", and warning about the
    TrainConfig fields changed since the save) and reproduces the uninterrupted run exactly (bit for bit on CPU,
    under DDP and FSDP too).
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, data: Any, *, tokenizer: Tokenizer | None = None,
                 hooks: Any = None):
        if not isinstance(cfg, TrainConfig):
            raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
        mcfg = getattr(model, "config", None)
        if not (hasattr(mcfg, "block_size") and hasattr(mcfg, "vocab_size")):
            raise ValueError("model must have a .config with block_size and vocab_size (like minillm.GPT)")
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        set_tf32(self.device, cfg.tf32)  # CUDA only: fp32 matmuls on TF32 tensor cores (a process-wide switch)
        self.policy = PrecisionPolicy(cfg.precision, self.device)
        self.splits = _as_splits(data)
        _check_vocab(self.splits, mcfg.vocab_size)
        if tokenizer is not None:
            check_tokenizer(tokenizer, mcfg.vocab_size)
        self.block_size = mcfg.block_size
        val = self.splits.val
        if val is None:
            warnings.warn("the data has no validation split: history rows will carry no val_loss", stacklevel=2)
        elif len(val) <= self.block_size:
            raise ValueError(f"the validation split has {len(val)} tokens, too few for one window of "
                             f"block_size+1={self.block_size + 1}: use more data or a larger validation split")
        self.par = Parallelism(cfg.parallel, self.device)  # rank, world_size, collectives (no-ops for one process)
        self.model = model.to(self.device)  # the plain module: its state_dict is what checkpoints hold
        # DDP wrapper / the FSDP-sharded model / the model itself, and what to call (compiled as the wrapper needs)
        self._wrapped, self._forward = self.par.wrap(self.model, compile=cfg.compile, dtype=self.policy.dtype)
        # Evaluation needs no gradient sync: a DDP replica scores alone (FSDP must still gather its shards).
        self._eval_forward = self.model if cfg.parallel == "ddp" else self._forward
        self.optimizer = build_optimizer(self.model, cfg, self.device)  # after wrap: FSDP replaced the params
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        # Each rank keeps its own disjoint batch_size windows of every step's global batch (see loader.py).
        self.loader = RandomLoader(self.splits.train, cfg.batch_size, self.block_size, seed=cfg.seed,
                                   rank=self.par.rank, world_size=self.par.world_size, device=self.device)
        self.hooks = normalize_hooks(hooks)
        self.tokens_per_step = cfg.batch_size * cfg.grad_accum_steps * self.block_size * self.par.world_size
        fpt = getattr(self.model, "flops_per_token", None)
        peak = peak_flops(self.device)
        self._peak = peak * self.par.world_size if peak else None  # tok_per_s counts all ranks' tokens
        self._flops_per_token = fpt() if callable(fpt) and self._peak else None
        self.out_dir = Path(cfg.out_dir) if cfg.out_dir else None

        self.step = 0  # optimizer steps done
        self.skipped = 0  # steps dropped for a non-finite loss
        self.history: list[dict] = []
        self.elapsed_s = 0.0  # wall time spent in fit() so far (carried over on resume)
        # Accumulators for the row being built: summed on the device, read at log steps.
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_count = 0  # finite steps in _loss_sum
        self._interval_steps = 0  # steps (finite or not) since the last row, for throughput
        self._last_lr = 0.0
        self._last_norm = torch.zeros((), device=self.device)
        self._writer: HistoryWriter | None = None

        if cfg.resume:
            self._resume()
        else:
            if self.out_dir is not None and list_checkpoints(self.out_dir):
                raise ValueError(f"out_dir {self.out_dir} already holds checkpoints of an earlier run (newest: "
                                 f"{latest_checkpoint(self.out_dir)}): set resume=True to continue it, or use a "
                                 f"new out_dir (or delete the old one) to start afresh")
            seed_everything(cfg.seed)  # dropout and any other global randomness start from cfg.seed
        self.tokenizer = tokenizer
        if self.out_dir is not None and self.par.is_main:
            self._write_run_config(mcfg, data)

    def _write_run_config(self, mcfg: Any, data: Any) -> None:
        """OUT_DIR/config.json (+ tokenizer.json) in the CLI's format, so load_run and `generate --run` read it."""
        if not isinstance(mcfg, ModelConfig):  # e.g. a custom module: load_run could not rebuild it anyway
            warnings.warn(f"the model's config is a {type(mcfg).__name__}, not a ModelConfig: {self.out_dir} gets "
                          f"checkpoints and history but no config.json, so load_run cannot open it", stacklevel=3)
            return
        write_run_config(self.out_dir, mcfg, self.cfg, self.tokenizer, data=_data_source(data))

    # ------------------------------------------------------------------------------------------ one step
    def _train_step(self) -> None:
        # The step itself (accumulation, no_sync, autocast, clip, the finiteness check) is train/step.py's;
        # the Trainer decides what a dropped step means for the run and keeps the row's accumulators.
        cfg = self.cfg
        lr = lr_at(self.step, cfg)
        res = train_step(self._forward, self.optimizer, self.loader, accum_steps=cfg.grad_accum_steps, lr=lr,
                         grad_clip=cfg.grad_clip, policy=self.policy, params=self._params, parallel=self.par,
                         wrapped=self._wrapped)
        if res.ok:
            self._loss_sum += res.loss
            self._loss_count += 1
        elif cfg.on_nan == "raise":  # the update was dropped and the gradients zeroed; the step is not counted
            raise RuntimeError(
                f"non-finite loss at step {self.step + 1} (loss={res.loss.item()}, grad norm={res.grad_norm.item()}): "
                f"training diverged. Lower TrainConfig.lr, keep grad_clip on (e.g. 1.0), or use "
                f"precision='fp32'; on_nan='skip' drops such steps instead. No checkpoint was written for it.")
        else:
            self.skipped += 1
        self.step += 1
        self._interval_steps += 1
        self._last_lr, self._last_norm = lr, res.grad_norm

    # ------------------------------------------------------------------------------------------ the loop
    def fit(self, stop_at: int | None = None) -> list[dict]:
        """Train until step `stop_at` (default cfg.max_steps); returns the history rows."""
        cfg = self.cfg
        end = cfg.max_steps if stop_at is None else stop_at
        if isinstance(end, bool) or not isinstance(end, int) or not 0 < end <= cfg.max_steps:
            raise ValueError(f"stop_at={stop_at!r} must be an int in [1, max_steps={cfg.max_steps}]")
        if self.step >= end:
            return self.history
        if self.out_dir is not None and self.par.is_main:  # one history file, written by rank 0
            self._writer = HistoryWriter(self.out_dir / "history.jsonl", self.history)
            print(f"minillm Trainer: history -> {self.out_dir / 'history.jsonl'}, "
                  f"checkpoints -> {self.out_dir / 'ckpt'}")
        if getattr(self.model.config, "kernels", "torch") == "triton" and self.par.is_main and self.step == 0:
            print(f"minillm Trainer: {self.model.kernel_summary()}")  # say which ops are fused, never silently
        # Off unless asked for, on rank 0, on a terminal or in a notebook: a log file gets no bar (progress.py).
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not show_progress(cfg.progress, self.par.is_main),
                   desc="train", unit="step")
        self.model.train()
        fit_start = time.perf_counter() - self.elapsed_s
        interval_start = time.perf_counter()
        try:
            while self.step < end:
                self._train_step()
                bar.update(1)
                step, last = self.step, self.step == cfg.max_steps
                do_eval = self.splits.val is not None and (
                    last or (cfg.eval_interval > 0 and step % cfg.eval_interval == 0))
                logged = step % cfg.log_interval == 0 or last or do_eval
                if logged:
                    row = self._make_row(time.perf_counter() - interval_start)
                    row["elapsed_s"] = self.elapsed_s = time.perf_counter() - fit_start
                    if do_eval:
                        row["val_loss"] = self.evaluate()
                    self._record(row, evaluated=do_eval)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
                every = cfg.checkpoint_every  # checkpoint_interval, or eval_interval when that is None
                if self.out_dir is not None and (last or step == end or (every and step % every == 0)):
                    self.elapsed_s = time.perf_counter() - fit_start
                    self.save()
                if logged:  # evaluation, hooks and saving do not count toward the next row's throughput
                    interval_start = time.perf_counter()
        finally:
            self.elapsed_s = time.perf_counter() - fit_start
            bar.close()
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        return self.history

    def _make_row(self, interval_s: float) -> dict:
        """Close the current interval: mean loss, throughput, and reset the accumulators."""
        loss = (self._loss_sum / self._loss_count).item() if self._loss_count else math.nan
        tok_per_s = self._interval_steps * self.tokens_per_step / max(interval_s, 1e-9)
        row = {"step": self.step, "tokens": self.step * self.tokens_per_step, "loss": loss, "lr": self._last_lr,
               "grad_norm": self._last_norm.item(), "tok_per_s": tok_per_s, "skipped": self.skipped}
        if self._peak is not None:
            row["mfu"] = mfu(self._flops_per_token, tok_per_s, self._peak)
        self._loss_sum.zero_()
        self._loss_count = self._interval_steps = 0
        return row

    def _record(self, row: dict, evaluated: bool) -> None:
        self.history.append(row)
        if self._writer is not None:
            self._writer.write(row)
        for hook in self.hooks["on_step"]:
            hook(self, row)
        if evaluated:
            for hook in self.hooks["on_eval"]:
                hook(self, row)

    # ------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, batches: int | None = None) -> float:
        """Mean loss over `batches` (default cfg.eval_batches) validation batches.

        The batches come from a generator seeded with cfg.seed every call, so every evaluation of a run (and of
        runs with the same seed) scores the very same windows: differences between evals are the model's.
        Data-parallel ranks split each batch and average: every rank returns the same number.
        This is the run's own progress estimate (the model's loss under the run's precision, on sampled windows);
        the number to report for a trained model is `minillm.evaluation.heldout_loss` (pure cross-entropy over
        windows spread evenly across the held-out tokens).
        """
        if self.splits.val is None:
            raise ValueError("no validation split to evaluate on: pass data with held-out tokens")
        n = self.cfg.eval_batches if batches is None else batches
        B = self.cfg.batch_size
        generator = torch.Generator().manual_seed(self.cfg.seed)
        was_training = self.model.training
        self.model.eval()  # dropout off
        total = torch.zeros((), device=self.device)
        try:
            for _ in range(n):
                # Data-parallel: the same global batch as one process with world_size * batch_size, each rank
                # scoring its own slice; the all-reduced mean below is the global batch's loss on every rank.
                x, y = get_batch(self.splits.val, B * self.par.world_size, self.block_size, self.device, generator)
                x, y = x[self.par.rank * B:(self.par.rank + 1) * B], y[self.par.rank * B:(self.par.rank + 1) * B]
                with self.policy.autocast():
                    _, loss = self._eval_forward(x, y)
                total += loss.float()
        finally:
            self.model.train(was_training)
        return self.par.mean(total / n).item()

    # ------------------------------------------------------------------------------------------ checkpoints
    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Checkpoint everything needed to resume (default: OUT_DIR/ckpt/step_NNNNNNNN, keeping only the newest).

        Data-parallel: rank 0 writes (the replicas are equal, and the loader state is the same on every rank:
        all draw the same global batch), the other ranks wait at a barrier until the checkpoint is on disk.
        FSDP: every rank first takes part in gathering the full weights and optimizer state onto rank 0, which
        writes the single-process format (load_run, `generate --run` and a 1-process run read it).
        """
        if path is None and self.out_dir is None:
            raise ValueError("Trainer.save() needs a path, or TrainConfig.out_dir to save under")
        target = Path(path) if path is not None else checkpoint_path(self.out_dir, self.step)
        rng_states = self.par.rng_states()  # a collective: every rank's RNG, so each resumes its own
        # A collective too under FSDP: the shards all-gathered onto rank 0 (None = the plain state dicts).
        model_state, optim_state = (full_state_dicts(self.model, self.optimizer) if is_sharded(self.model)
                                    else (None, None))
        if self.par.is_main:
            self._save(target, prune=path is None, rng_states=rng_states, model_state=model_state,
                       optim_state=optim_state)
        self.par.barrier()
        return target

    def _save(self, target: Path, prune: bool, rng_states: list[dict], model_state: dict | None,
              optim_state: dict | None) -> None:
        extra = {"history": self.history, "skipped": self.skipped, "elapsed_s": self.elapsed_s,
                 "loss_sum": self._loss_sum.detach().cpu(), "loss_count": self._loss_count,
                 "interval_steps": self._interval_steps, "precision": self.policy.state_dict()}
        save_checkpoint(target, self.model, self.optimizer, self.step, loader_state=self.loader.state_dict(),
                        config=self.cfg, extra=extra, rng_states=rng_states, model_state=model_state,
                        optimizer_state=optim_state)
        if prune:  # the new checkpoint is complete on disk, so this run's older ones can go
            for old in list_checkpoints(self.out_dir):
                if old != target and old.parent == target.parent:
                    shutil.rmtree(old)

    def _resume(self) -> None:
        ckpt = latest_checkpoint(self.out_dir)
        if ckpt is None:
            raise FileNotFoundError(f"resume=True but there is no checkpoint under {self.out_dir / 'ckpt'}: "
                                    f"set resume=False to start a new run")
        state = load_checkpoint_state(ckpt)
        if self.par.is_main:
            changes = config_changes(state.get("train_config"), self.cfg.to_dict(), ignore=RESUME_MAY_CHANGE)
            if changes:
                warnings.warn(f"resuming {ckpt} with a TrainConfig that differs from the saved run's: "
                              f"{', '.join(changes)}. Training continues with the new values, so it will not "
                              f"reproduce the uninterrupted run; pass the saved values to continue it exactly",
                              stacklevel=3)
        # Loads a sharded (FSDP) model too: every rank reads the full checkpoint and keeps its slice.
        self.step = load_checkpoint(ckpt, self.model, self.optimizer, restore_rng=True, rank=self.par.rank)
        if self.par.is_main:  # print, not a warning: the user must see that this run continues an earlier one
            print(f"minillm Trainer: resuming from step {self.step} of {self.cfg.max_steps} (checkpoint {ckpt})")
        self.loader.load_state_dict(state["loader_state"])
        extra = state["extra"]
        self.history = list(extra["history"])
        self.skipped, self.elapsed_s = extra["skipped"], extra["elapsed_s"]
        self._loss_sum = extra["loss_sum"].to(self.device)
        self._loss_count, self._interval_steps = extra["loss_count"], extra["interval_steps"]
        self.policy.load_state_dict(extra["precision"])
