"""Distributed training applied from outside the model (torchtitan style).

Survey §4.3.2 (scalable training techniques: 3D parallelism, ZeRO). The model class knows nothing of
distribution; these modules take a model and make N processes train it together:

- ``group.py`` process groups: ``init_distributed`` (torchrun's environment), ``rank``/``world_size``/``is_main``,
               and ``spawn`` to run a function on N local processes with a deadline (tests, notebooks)
- ``ddp.py``   data parallelism: ``wrap_ddp`` (replicas + gradient all-reduce) and ``accumulate``
               (gradient accumulation that all-reduces once, via ``no_sync``)
- ``zero.py``  ZeRO stage 1 written out: ``ZeroOneAdamW`` keeps Adam's moments for 1/N of the parameters per rank
- ``fsdp.py``  ZeRO stage 3 with torch's FSDP2: ``shard_fsdp2`` shards any nn.Module unit by unit (``fsdp_units``
               shows the plan: a GPT's Blocks, else picked by parameter count), then the root

The other two axes of 3D parallelism matter once one model replica no longer fits on one device:

- ``tensor.py``    tensor parallelism (Megatron-LM): each layer's weight matrices split across ranks
- ``pipeline.py``  pipeline parallelism (GPipe): the stack of layers split into stages, fed micro-batches
"""
from minillm.train.parallel.ddp import accumulate, wrap_ddp
from minillm.train.parallel.group import free_port, init_distributed, is_main, rank, spawn, world_size
from minillm.train.parallel.fsdp import fsdp_units, full_state_dicts, load_full_state_dicts, mp_policy, shard_fsdp2
from minillm.train.parallel.pipeline import PipelineStage, bubble_fraction, gpipe_step, schedule_table, split_stages
from minillm.train.parallel.tensor import tensor_parallel, tp_comm_bytes
from minillm.train.parallel.zero import ZeroOneAdamW

__all__ = ["full_state_dicts", "load_full_state_dicts", "init_distributed", "is_main", "rank", "world_size", "spawn", "free_port", "wrap_ddp", "accumulate",
           "ZeroOneAdamW", "shard_fsdp2", "fsdp_units", "mp_policy", "tensor_parallel", "tp_comm_bytes", "PipelineStage", "split_stages",
           "gpipe_step", "bubble_fraction", "schedule_table"]
