"""How one Trainer process takes part in data-parallel training (TrainConfig.parallel). Survey §4.3.2.

Data parallelism splits the global batch over N processes that each hold the model (DDP) or a 1/N shard of it
(FSDP, = ZeRO stage 3). The Trainer's loop stays the one of a single process; this module supplies the few
places where a rank differs from a lone process:

- wrapping the model (`wrap_ddp` / `shard_fsdp2`, applied from outside: the model class knows nothing of it),
  and compiling it in the order each wrapper needs,
- skipping the gradient all-reduce on all but the last micro-batch of a step (`no_sync`),
- averaging the step's loss over ranks, so every rank decides the NaN guard alike and logs the same numbers,
- a barrier after rank 0 writes history and checkpoints, so no rank runs ahead of a file it may need,
- every rank's RNG state for the checkpoint rank 0 writes, so each rank resumes its own (GPU dropout differs).

The data split itself lives in the loader: every rank draws the same world_size * B window starts from the
same seed and keeps its own B (`RandomLoader(rank=, world_size=)`), so the global batch of a step is the
concatenation of the ranks' batches, exactly what one process with batch world_size * B would draw.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from minillm.config import PARALLEL as PARALLEL_MODES
from minillm.device import rng_state
from minillm.train.parallel.ddp import wrap_ddp
from minillm.train.parallel.fsdp import mixed_precision_kwargs, shard_fsdp2


class Parallelism:
    """This process's role: rank, world_size, and the collectives the Trainer needs (no-ops for 'none').

    mode 'none' ignores any process group (each process trains on its own, as in a single-process run);
    'ddp' and 'fsdp' need an initialised default group (`init_distributed()` under torchrun, or `spawn`).
    """

    def __init__(self, mode: str, device: torch.device | str):
        if mode not in PARALLEL_MODES:
            raise ValueError(f"parallel={mode!r} is not valid; choose one of {', '.join(PARALLEL_MODES)}")
        self.mode = mode
        self.device = torch.device(device)  # the training device; the group's backend must be able to reduce on it
        if mode == "none":
            self.rank, self.world_size = 0, 1
            return
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(f"TrainConfig.parallel={mode!r} needs a process group, but none is initialised: "
                               f"launch with `torchrun --nproc_per_node=N -m minillm train ... --parallel {mode}` "
                               f"(the CLI then calls init_distributed()), call "
                               f"minillm.train.parallel.init_distributed() first, or use parallel='none'")
        backend = str(dist.get_backend())  # 'gloo', 'nccl', or a per-device mix such as 'cpu:gloo,cuda:nccl'
        if self.device.type == "cpu" and "gloo" not in backend:
            raise RuntimeError(f"the process group uses {backend!r}, which cannot reduce the CPU tensors of "
                               f"device={str(self.device)!r}: initialise it with "
                               f"init_distributed(device='cpu') (gloo), or train on device='cuda'")
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    @property
    def is_main(self) -> bool:
        """Rank 0 writes history and checkpoints and shows the progress bar."""
        return self.rank == 0

    def wrap(self, model: nn.Module, *, compile: bool = False,
             dtype: torch.dtype | None = None) -> tuple[nn.Module, nn.Module]:
        """(wrapped, forward): the DDP wrapper / the FSDP-sharded model / the model itself, and what to call.

        'fsdp' shards `model` in place (its params become DTensors), so the optimizer must be built after this
        call; under bf16 (`dtype`, the autocast dtype) the shards are gathered in bf16 and gradients reduced in
        fp32 (fsdp.mixed_precision_kwargs). compile: 'fsdp' compiles each Block before sharding it and `forward`
        is the sharded model itself; otherwise `forward` is torch.compile(wrapped) (DDP's bucketed all-reduce is
        then split along the compiled graph by torch's DDPOptimizer). `wrapped` is what no_sync needs.
        """
        if self.mode == "fsdp":
            wrapped = shard_fsdp2(model, compile=compile, **mixed_precision_kwargs(dtype))
            return wrapped, wrapped
        wrapped = wrap_ddp(model) if self.mode == "ddp" else model
        return wrapped, (torch.compile(wrapped) if compile else wrapped)

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

    def rng_states(self) -> list[dict]:
        """[rank 0's RNG states, rank 1's, ...] (minillm.device.rng_state), on every rank; a collective.

        A checkpoint must hold each rank's own: on CUDA every process advances its own GPU's generator (dropout
        masks differ per rank), and restoring rank 0's state on every rank would make the resumed run diverge.
        """
        mine = rng_state()
        if self.world_size == 1:
            return [mine]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, mine)  # a few KB per rank, once per checkpoint
        return out


@contextlib.contextmanager
def _fsdp_no_sync(model: nn.Module):
    # FSDP2's counterpart of DDP.no_sync: keep unsharded gradients locally, reduce-scatter on the last backward.
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)
