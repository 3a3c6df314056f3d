"""Data parallelism: every rank holds the whole model and sees a different slice of the batch.

Survey §4.3.2 (3D parallelism, data parallelism): the model and optimizer are replicated on every device and
the global batch is split across them. After backward the gradients are averaged over ranks (all-reduce), so
every replica takes the same optimizer step and stays identical; N ranks on B/N examples each compute exactly
the step one process would on all B (up to float rounding), N times faster.

torch's `DistributedDataParallel` does the all-reduce during backward, bucket by bucket, overlapping
communication with the rest of the backward pass. With gradient accumulation the all-reduce is only needed
once, after the last micro-batch: `accumulate` skips it for the others with `no_sync()`.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def wrap_ddp(model: nn.Module, **ddp_kwargs) -> DistributedDataParallel:
    """Wrap `model` (already on this rank's device) in DistributedDataParallel.

    DDP broadcasts rank 0's parameters at construction, so replicas start equal even if each rank initialised
    its own. On CUDA the model's device becomes `device_ids`; on CPU none is given. The wrapped model's
    forward is the model's; `.module` is the model itself (save checkpoints from it, on rank 0).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"wrap_ddp expects an nn.Module, got {type(model).__name__}")
    if not dist.is_initialized():
        raise RuntimeError("wrap_ddp: no process group; call init_distributed() first (or run under spawn)")
    device = next(model.parameters()).device
    if device.type == "cuda" and "device_ids" not in ddp_kwargs:
        ddp_kwargs["device_ids"] = [device]
    return DistributedDataParallel(model, **ddp_kwargs)


def accumulate(model: nn.Module, micro_batches: Sequence[Any],
               loss_fn: Callable[[nn.Module, Any], torch.Tensor]) -> torch.Tensor:
    """Forward + backward over `micro_batches`, leaving in .grad the gradient of their mean loss.

    loss_fn(model, micro_batch) -> scalar mean loss. Each loss is divided by the number of micro-batches so the
    gradients add up to the mean over all of them (equal-sized micro-batches: the gradient of one big batch).
    For a DDP model every backward but the last runs under `no_sync()`: gradients accumulate locally and the
    all-reduce happens once, in the last backward, instead of once per micro-batch. Returns the mean loss
    (detached) of this rank's micro-batches. The caller zeroes gradients before and steps the optimizer after.
    """
    n = len(micro_batches)
    if n == 0:
        raise ValueError("accumulate: micro_batches is empty")
    losses = []
    for i, mb in enumerate(micro_batches):
        last = i == n - 1
        skip_sync = isinstance(model, DistributedDataParallel) and not last
        with model.no_sync() if skip_sync else contextlib.nullcontext():
            loss = loss_fn(model, mb) / n
            loss.backward()
        losses.append(loss.detach())  # stays on the device: no sync per micro-batch
    return torch.stack(losses).sum()
