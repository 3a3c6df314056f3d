"""One optimizer step, shared by the training loops: `train_step(model, optimizer, batches, loss_fn=...)`.

Survey §4.3 (model training). Pre-training (`Trainer`), instruction tuning, DPO and the reward model
(`finetune.sft.optimize`) and the book's architecture runs (`fit_lm` in book/ch04_architectures/studies_arch.py)
all take their optimizer steps here, so they all train the same way:

    lr ← schedule(step)                                   warmup + decay (§4.3.1); the caller computes it
    for each of accum_steps micro-batches:                a large effective batch from small memory
        loss = loss_fn(model, batch) under autocast       mixed precision (§4.3.2)
        (loss / accum_steps).backward()                   summed gradients = those of the mean loss
    clip the global gradient norm                         stabilization against loss spikes (§4.3.1)
    step only if the loss (and norm) are finite           one device sync per step, the only one
    zero the gradients

What a batch means is the caller's business, as in torchtitan: `loss_fn(model, batch)` turns one micro-batch
into a scalar loss, or into (loss, {name: scalar}) to log alongside it. `lm_loss` is next-token prediction for
any `model(x, y) -> (logits, loss)`; it is SFT's response-only loss too, because the model's cross-entropy
ignores targets of -100. The prefix decoder, the encoder-decoder, DPO and the reward model pass their own.

The step never decides what a non-finite loss means for the run: it drops that update and reports ok=False,
and the caller raises (finetuning, Trainer on_nan='raise') or counts the skip (on_nan='skip').

(PPO and GRPO still step through `finetune.rollout.optimizer_step`, one backward per minibatch with torch's clip.)
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from minillm.train.optim import clip_grad_norm_
from minillm.train.precision import PrecisionPolicy

__all__ = ["StepResult", "lm_loss", "train_step"]

LossFn = Callable[[nn.Module, Any], "torch.Tensor | tuple[torch.Tensor, dict]"]
_FP32 = PrecisionPolicy("fp32")  # no autocast, no loss scaling: plain loss.backward() and optimizer.step()


class StepResult(NamedTuple):
    loss: torch.Tensor       # 0-d fp32 on the device: mean over micro-batches (and ranks). .item() it only to log
    grad_norm: torch.Tensor  # 0-d: global gradient norm before clipping (the true one under fp16, after unscale_)
    ok: bool                 # loss (and norm) were finite and the optimizer was asked to step
    extras: dict             # loss_fn's side values from the LAST micro-batch, detached (e.g. DPO's reward_acc)


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy of `model(x, y) -> (logits, loss)` on batch (x, y), both (B, T).
    Targets of -100 carry no loss, so packed SFT rows (prompt and padding masked) need nothing else."""
    x, y = batch
    return model(x, y)[1]


def _clip(params: Sequence[torch.Tensor], max_norm: float | None, parallel: Any) -> torch.Tensor:
    if parallel is not None and parallel.mode == "fsdp":
        # FSDP gradients are DTensor shards: torch's clip reduces the norm over ranks, full_tensor() makes it 0-d
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm or math.inf)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    return clip_grad_norm_(params, max_norm)  # one process or DDP: the gradients are already equal on every rank


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable, *,
               loss_fn: LossFn = lm_loss, accum_steps: int = 1, lr: float | None = None,
               grad_clip: float | None = 1.0, policy: PrecisionPolicy | None = None,
               params: Sequence[torch.Tensor] | None = None, parallel: Any = None,
               wrapped: nn.Module | None = None) -> StepResult:
    """One optimizer step over `accum_steps` micro-batches taken from `batches`.

    model: what loss_fn calls (the plain module, a DDP/FSDP wrapper, or torch.compile of one); put it in train
        mode yourself. batches: an iterator is advanced accum_steps times (a loader, a generator); a list
        supplies just this step's micro-batches. lr: set on every param group first (None: leave them).
    grad_clip: max global norm (None: measure only). policy: autocast + GradScaler (None: plain fp32).
    params: the trainable tensors to clip, in a fixed order (default: model's with requires_grad); the clip's
        float sums follow this order, so pass the same list every step. parallel: a train.distributed.Parallelism
        (None: one process); wrapped: the DDP/FSDP module whose gradient sync no_sync turns off (default model).
    """
    if isinstance(accum_steps, bool) or not isinstance(accum_steps, int) or accum_steps < 1:
        raise ValueError(f"accum_steps={accum_steps!r} must be a positive int (micro-batches per step)")
    policy = _FP32 if policy is None else policy
    params = [p for p in model.parameters() if p.requires_grad] if params is None else params
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    it = iter(batches)
    step_loss, extras = None, {}
    for i in range(accum_steps):
        try:
            batch = next(it)
        except StopIteration:
            # Drop the half-accumulated gradients: a caller that catches this must not step on them later.
            optimizer.zero_grad(set_to_none=True)
            raise ValueError(f"batches ran out after {i} of accum_steps={accum_steps} micro-batches: pass an "
                             f"endless iterator (a loader, a generator) or a list of accum_steps batches") from None
        last = i == accum_steps - 1
        # Data-parallel: gradients are all-reduced in the last micro-batch's backward only (one all-reduce/step).
        target = model if wrapped is None else wrapped  # (not `wrapped or model`: an empty Sequential is falsy)
        sync = parallel.no_sync(target, last=last) if parallel is not None else contextlib.nullcontext()
        with sync:
            with policy.autocast():
                out = loss_fn(model, batch)
            loss, extras = out if isinstance(out, tuple) else (out, {})
            if not (isinstance(loss, torch.Tensor) and loss.dim() == 0):
                optimizer.zero_grad(set_to_none=True)
                raise ValueError(f"loss_fn must return a 0-d loss tensor (or (loss, {{name: scalar}})), got "
                                 f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__}"
                                 f": reduce it (e.g. .mean()) inside loss_fn")
            # Summed on the device: an .item() here would make the CPU wait for the GPU every micro-batch.
            # (The first term is taken as is: 0 + x == x, so this equals summing into a zero tensor.)
            part = loss.detach().float()
            step_loss = part if i == 0 else step_loss + part
            # Dividing by accum_steps makes the summed gradients those of the mean loss over the whole
            # effective batch, as if it had been one big batch (exact when accum_steps == 1).
            policy.backward(loss / accum_steps)
    # The global batch's mean loss (equal-sized rank batches): every rank logs it and judges it alike.
    step_loss = step_loss / accum_steps
    if parallel is not None:
        step_loss = parallel.mean(step_loss)
    policy.unscale_(optimizer)  # fp16: clip and report the true gradients, not the scaled ones
    norm = _clip(params, grad_clip, parallel)
    # The one sync per step: never step on a NaN/inf loss (it would poison every weight). With fp16 the
    # GradScaler already skips steps whose gradients overflowed, so only the loss is checked there.
    check = step_loss if policy.scaler is not None else step_loss + norm
    ok = bool(torch.isfinite(check))
    if ok:
        policy.step(optimizer)
    else:
        policy.skip(optimizer)  # fp16: keep the scaler's bookkeeping consistent (it lowers the scale)
    # Zeroed after the step, not before the next one: a step always starts from no gradients, and
    # set_to_none frees their memory between steps (evaluation, checkpoints) instead of filling it with 0s.
    optimizer.zero_grad(set_to_none=True)
    extras = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in extras.items()}
    return StepResult(step_loss, norm, ok, extras)
