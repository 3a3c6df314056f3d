"""Fully sharded data parallelism (FSDP2, = ZeRO stage 3): parameters, gradients and optimizer state all sharded.

Survey §4.3.2 (ZeRO): stage 3 also partitions the parameters. Each rank stores 1/N of every weight; right
before a layer runs, its full weights are all-gathered, used, and freed again; after its backward the gradients
are reduce-scattered so each rank keeps only the averaged gradient of its own shard, and the optimizer updates
only that shard. Memory per rank for model state falls to ≈ 16 bytes · P / N, at the price of one all-gather
(forward), one more (backward) and one reduce-scatter per layer per step.

torch's FSDP2 (`fully_shard`) turns every parameter into a DTensor sharded on dim 0 over a device mesh. As in
torchtitan, each transformer Block is sharded as its own unit (so only one Block's full weights exist at a time)
and then the root module, which takes the remaining parameters (embeddings, final norm, output layer). The
model class itself is unchanged: parallelism is applied from outside. Any optimizer then works on the shards.
"""
from __future__ import annotations

import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import fully_shard

from minillm.model.transformer import GPT
from minillm.train.parallel import group as pdist


def shard_fsdp2(model: nn.Module, mesh: DeviceMesh | None = None, **fsdp_kwargs) -> nn.Module:
    """Apply `fully_shard` to each Block of `model.blocks`, then to `model`; return `model` (sharded in place).

    mesh None = a 1-D mesh over all ranks, on the model's device type (cuda or cpu). `fsdp_kwargs` go to every
    `fully_shard` call (e.g. `mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16)`). After this, each
    parameter is a DTensor holding this rank's shard; `p.full_tensor()` gathers the whole weight.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"shard_fsdp2 expects a minillm GPT (it shards model.blocks one by one), "
                        f"got {type(model).__name__}")
    if mesh is None:
        if not dist.is_initialized():
            raise RuntimeError("shard_fsdp2: no process group; call init_distributed() first (or run under spawn)")
        device_type = next(model.parameters()).device.type
        mesh = init_device_mesh(device_type, (pdist.world_size(),))
    for block in model.blocks:
        fully_shard(block, mesh=mesh, **fsdp_kwargs)
    fully_shard(model, mesh=mesh, **fsdp_kwargs)
    return model
