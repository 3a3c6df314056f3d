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

Two GPU-run details follow torchtitan: under bf16 autocast the shards are all-gathered in bf16 and gradients
reduce-scattered in fp32 (`mixed_precision_kwargs`), and with torch.compile each Block is compiled before it is
sharded, so FSDP2's communication hooks stay outside the compiled graphs.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from minillm.model.transformer import GPT
from minillm.train.parallel import group as pdist


def mixed_precision_kwargs(dtype: torch.dtype | None) -> dict[str, Any]:
    """The `fully_shard` kwargs for training under autocast `dtype` (PrecisionPolicy.dtype; None = fp32).

    bf16: MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32). The all-gathered weights are bf16 (half the
    bytes on the wire, and what autocast would cast them to anyway), while gradients are reduce-scattered in fp32:
    averaging N bf16 gradients would drop the low bits that small updates live in. The shards the optimizer
    updates (and Adam's moments) stay fp32. fp32 and fp16: {} (fp32 shards, autocast casts per op; fp16's
    GradScaler is not rehearsed on 16-bit sharded parameters, so they are not made fp16).
    """
    if dtype == torch.bfloat16:
        return {"mp_policy": MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)}
    if dtype in (None, torch.float16, torch.float32):
        return {}
    raise ValueError(f"mixed_precision_kwargs: no FSDP2 policy for dtype {dtype}; use torch.bfloat16, "
                     f"torch.float16 or None (fp32)")


def shard_fsdp2(model: nn.Module, mesh: DeviceMesh | None = None, *, compile: bool = False,
                **fsdp_kwargs) -> nn.Module:
    """Apply `fully_shard` to each Block of `model.blocks`, then to `model`; return `model` (sharded in place).

    mesh None = a 1-D mesh over all ranks, on the model's device type (cuda or cpu). `fsdp_kwargs` go to every
    `fully_shard` call (e.g. `**mixed_precision_kwargs(torch.bfloat16)`). After this, each parameter is a
    DTensor holding this rank's shard; `p.full_tensor()` gathers the whole weight.
    compile=True compiles each Block in place (`Block.compile()`) BEFORE sharding it, as torchtitan does: the
    graphs then hold one Block's math and FSDP2's all-gather/reduce-scatter hooks run around them (dynamo skips
    FSDP hooks), whereas compiling the sharded model as a whole traces through every Block's hooks. In place
    rather than `torch.compile(block)`, so the state_dict keys (and checkpoints) stay those of the plain model.
    Do not torch.compile the returned model again.
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
        if compile:
            block.compile()
        fully_shard(block, mesh=mesh, **fsdp_kwargs)
    fully_shard(model, mesh=mesh, **fsdp_kwargs)
    return model
