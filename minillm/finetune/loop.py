"""The fine-tuning loop shared by SFT, DPO and the reward model (Survey §5.1-§5.2; checkpoints §4.3.2).

Why a loop here and not `Trainer`: the Trainer samples random windows of one flat token stream and builds the
targets itself (y = x shifted), so it cannot carry per-token -100 targets. `optimize` is the fine-tuning driver
around `train.step.train_step`, the same step the Trainer takes (`build_optimizer`, `lr_at`, clipping,
`PrecisionPolicy`, TrainConfig's knobs); `sft.train_sft`, `dpo.train_dpo` and `reward.train_reward_model` train
through it. With cfg.out_dir it keeps the Trainer's run folder: OUT_DIR/history.jsonl, and
OUT_DIR/ckpt/step_NNNNNNNN every cfg.checkpoint_every steps (checkpoint_interval, else eval_interval) and at the
end (save_checkpoint: weights, optimizer, RNG states, step, history; the newest only). cfg.resume=True continues from the newest one exactly as an
uninterrupted run would go. `epoch_sampler` draws the batches' row indices, a fresh seeded permutation per epoch.
"""
from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from minillm.config import TrainConfig
from minillm.device import resolve_device, seed_everything
from minillm.train.checkpoint import (checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint,
                                      load_checkpoint_state, save_checkpoint)
from minillm.train.history import HistoryWriter
from minillm.train.optim import build_optimizer, lr_at
from minillm.train.precision import PrecisionPolicy
from minillm.train.step import lm_loss, train_step

__all__ = ["epoch_sampler", "optimize"]


def epoch_sampler(n: int, batch_size: int, seed: int) -> Callable[[], torch.Tensor]:
    """draw() -> the next `batch_size` indices of range(n), from a fresh seeded permutation each epoch (the tail
    of an epoch too short for a batch is dropped, so every batch has the same size)."""
    g = torch.Generator().manual_seed(seed)
    order: list[int] = []

    def draw() -> torch.Tensor:
        nonlocal order
        if len(order) < batch_size:
            order = torch.randperm(n, generator=g).tolist()
        idx, order = torch.tensor(order[:batch_size]), order[batch_size:]
        return idx

    return draw


def _resume_point(cfg: TrainConfig, model: torch.nn.Module, opt: torch.optim.Optimizer, policy: PrecisionPolicy,
                  batches: Iterator, closure: bool) -> tuple[int, list[dict]]:
    """(steps done, history rows) to continue from; (0, []) for a fresh run. On resume the batch stream is first
    advanced past the micro-batches the saved steps used, then the RNG states are restored: in that order, any
    global-RNG draws the stream makes are overwritten by the saved state, exactly as in the run it continues."""
    if not cfg.out_dir:
        return 0, []
    out = Path(cfg.out_dir)
    if not cfg.resume:
        if list_checkpoints(out):  # the same guard as the Trainer's: never mix two runs in one folder
            raise ValueError(f"out_dir {out} already holds checkpoints of an earlier run (newest: "
                             f"{latest_checkpoint(out)}): set resume=True to continue it, or use a new out_dir")
        return 0, []
    if closure:
        raise ValueError("TrainConfig.resume=True needs batches= (an iterator optimize can advance past the saved "
                         "steps) with loss_fn; a batch_loss closure draws its own data, so the resumed run could "
                         "not continue where the saved one stopped")
    ckpt = latest_checkpoint(out)
    if ckpt is None:
        raise FileNotFoundError(f"resume=True but there is no checkpoint under {out / 'ckpt'}: set resume=False "
                                f"to start a new run")
    state = load_checkpoint_state(ckpt)
    done = int(state["step"])
    if done > cfg.max_steps:
        raise ValueError(f"checkpoint {ckpt} is at step {done}, past max_steps={cfg.max_steps}: resume with the "
                         f"saved run's max_steps (it also sets the lr schedule)")
    for i in range(done * cfg.grad_accum_steps):  # a loop over micro-batches drawn only to be skipped
        if next(batches, None) is None:
            raise ValueError(f"batches ran out after {i} of the {done * cfg.grad_accum_steps} micro-batches of the "
                             f"{done} steps done in {ckpt}: pass the same endless stream the saved run used")
    load_checkpoint(ckpt, model, opt, restore_rng=True)
    policy.load_state_dict(state["extra"]["precision"])
    return done, list(state["extra"]["history"])


def _save(cfg: TrainConfig, model: torch.nn.Module, opt: torch.optim.Optimizer, policy: PrecisionPolicy, step: int,
          history: list[dict]) -> None:
    """OUT_DIR/ckpt/step_NNNNNNNN, then this run's older checkpoints go (the new one is complete on disk first)."""
    target = checkpoint_path(cfg.out_dir, step)
    save_checkpoint(target, model, opt, step, config=cfg,
                    extra={"history": history, "precision": policy.state_dict()})
    for old in list_checkpoints(cfg.out_dir):
        if old != target and old.parent == target.parent:
            shutil.rmtree(old)


def optimize(model: torch.nn.Module, cfg: TrainConfig,
             batch_loss: Callable[[], torch.Tensor | tuple[torch.Tensor, dict]] | None = None, *,
             batches: Iterable | None = None,
             loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor | tuple[torch.Tensor, dict]] = lm_loss,
             ) -> list[dict]:
    """Run cfg.max_steps AdamW steps on model's trainable parameters; returns history rows.

    Either `batches=` (an iterator of micro-batches, e.g. `sft_batches`) with `loss_fn(model, batch)` (default
    `lm_loss`: `model(x, y)[1]`), or `batch_loss()`, a zero-argument callable that draws its own batch. Either
    returns the loss or (loss, {name: scalar}) logged alongside. Each step is `train.step.train_step`: warmup +
    decay (lr_at), gradient accumulation, clipping, and a stop on a non-finite loss. The model must already be
    on resolve_device(cfg.device). cfg.out_dir: rows also go to OUT_DIR/history.jsonl and checkpoints to OUT_DIR/ckpt
    (every cfg.checkpoint_interval steps, and at the end); cfg.resume=True continues the newest one (batches= only:
    the stream is advanced past the steps already done, so pass the same stream as the saved run)."""
    if (batch_loss is None) == (batches is None):
        raise ValueError("pass either batch_loss (a zero-argument callable that draws a batch and returns its "
                         "loss) or batches= (an iterator of micro-batches) with loss_fn(model, batch)")
    if batch_loss is not None:
        if not callable(batch_loss):
            raise ValueError(f"batch_loss must be a zero-argument callable, got {type(batch_loss).__name__}: "
                             f"pass data as batches= instead")
        # The closure draws its own batch (inside autocast, as before): the step just feeds it placeholders.
        batches, loss_fn = itertools.repeat(None), (lambda _model, _batch: batch_loss())
    closure = batch_loss is not None
    batches = iter(batches)  # one stream across steps (a list would otherwise restart at every step)
    device = resolve_device(cfg.device)
    policy = PrecisionPolicy(cfg.precision, device)
    seed_everything(cfg.seed)
    opt = build_optimizer(model, cfg, device)  # param_groups skips frozen parameters (PEFT, reward backbones)
    params = [p for p in model.parameters() if p.requires_grad]  # one fixed order: the clip's sums follow it
    done, history = _resume_point(cfg, model, opt, policy, batches, closure)
    if done:
        print(f"minillm optimize: resuming from step {done} ({latest_checkpoint(cfg.out_dir)})")
    # Rewritten from the checkpoint's rows, so rows a crashed run logged after its last checkpoint are not doubled.
    writer = HistoryWriter(Path(cfg.out_dir) / "history.jsonl", history) if cfg.out_dir else None
    model.train()
    try:
        for step in range(done, cfg.max_steps):
            lr = lr_at(step, cfg)
            res = train_step(model, opt, batches, loss_fn=loss_fn, accum_steps=cfg.grad_accum_steps, lr=lr,
                             grad_clip=cfg.grad_clip, policy=policy, params=params)
            if not res.ok:  # the step dropped the update; fine-tuning has no skip mode: stop here
                raise RuntimeError(f"non-finite loss at step {step + 1} (loss={res.loss.item()}, grad norm="
                                   f"{res.grad_norm.item()}): lower lr, keep grad_clip on, or use precision='fp32'")
            if (step + 1) % cfg.log_interval == 0 or step + 1 == cfg.max_steps:  # the only reads of device values
                history.append({"step": step + 1, "loss": float(res.loss), "lr": lr,
                                "grad_norm": float(res.grad_norm), **{k: float(v) for k, v in res.extras.items()}})
                if writer is not None:
                    writer.write(history[-1])
            if cfg.out_dir and (step + 1 == cfg.max_steps
                                or (cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0)):
                _save(cfg, model, opt, policy, step + 1, history)
    finally:
        if writer is not None:
            writer.close()
    model.eval()
    return history
