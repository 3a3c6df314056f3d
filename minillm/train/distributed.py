"""How one Trainer process takes part in data-parallel training (TrainConfig.parallel). Survey §4.3.2.

Data parallelism splits the global batch over N processes that each hold the model (DDP) or a 1/N shard of it
(FSDP, = ZeRO stage 3). The Trainer's loop stays the one of a single process; this module supplies the few
places where a rank differs from a lone process:

- wrapping the model (`wrap_ddp` / `shard_fsdp2`, applied from outside: the model class knows nothing of it),
- skipping the gradient all-reduce on all but the last micro-batch of a step (`no_sync`),
- averaging the step's loss over ranks, so every rank decides the NaN guard alike and logs the same numbers,
- a barrier after rank 0 writes history and checkpoints, so no rank runs ahead of a file it may need.

The data split itself lives in the loader: every rank draws the same world_size * B window starts from the
same seed and keeps its own B (`RandomLoader(rank=, world_size=)`), so the global batch of a step is the
concatenation of the ranks' batches, exactly what one process with batch world_size * B would draw.
"""
from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from minillm.config import PARALLEL as PARALLEL_MODES
from minillm.train.parallel.ddp import wrap_ddp
from minillm.train.parallel.fsdp import shard_fsdp2


class Parallelism:
    """This process's role: rank, world_size, and the collectives the Trainer needs (no-ops for 'none').

    mode 'none' ignores any process group (each process trains on its own, as in a single-process run);
    'ddp' and 'fsdp' need an initialised default group (`init_distributed()` under torchrun, or `spawn`).
    """

    def __init__(self, mode: str):
        if mode not in PARALLEL_MODES:
            raise ValueError(f"parallel={mode!r} is not valid; choose one of {', '.join(PARALLEL_MODES)}")
        self.mode = mode
        if mode == "none":
            self.rank, self.world_size = 0, 1
            return
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(f"TrainConfig.parallel={mode!r} needs a process group, but none is initialised: "
                               f"launch with `torchrun --nproc_per_node=N -m minillm train ... --parallel {mode}` "
                               f"(the CLI then calls init_distributed()), call "
                               f"minillm.train.parallel.init_distributed() first, or use parallel='none'")
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    @property
    def is_main(self) -> bool:
        """Rank 0 writes history and checkpoints and shows the progress bar."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to run forward/backward through. 'fsdp' shards `model` in place (its params become
        DTensors), so the optimizer must be built after this call."""
        if self.mode == "ddp":
            return wrap_ddp(model)
        if self.mode == "fsdp":
            return shard_fsdp2(model)
        return model

    def no_sync(self, wrapped: nn.Module, last: bool):
        """Context for one micro-batch's backward: gradients are all-reduced only on the last micro-batch
        of a step; before that they add up locally (one all-reduce per step instead of one per micro-batch)."""
        if last or self.mode == "none":
            return contextlib.nullcontext()
        if isinstance(wrapped, DistributedDataParallel):
            return wrapped.no_sync()
        return _fsdp_no_sync(wrapped)

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The average of `t` over ranks (a new tensor; `t` itself for a single process)."""
        if self.world_size == 1:
            return t
        out = t.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.world_size

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


@contextlib.contextmanager
def _fsdp_no_sync(model: nn.Module):
    # FSDP2's counterpart of DDP.no_sync: keep unsharded gradients locally, reduce-scatter on the last backward.
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)
