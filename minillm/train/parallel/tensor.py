"""Tensor parallelism (Megatron-LM): split each layer's weight matrices across ranks.

Survey §4.3.2 (scalable training techniques: tensor parallelism). Data parallelism copies the whole model to
every rank; tensor parallelism instead splits every big matrix multiply, so a layer too large for one device
fits on several. Megatron-LM (Shoeybi et al. 2019) pairs the two matmuls of each sub-layer so that only one
all-reduce is needed between them:

    MLP:        Y = w2( act(w1 X) * w3 X )        w1, w3 split by output columns   (ColwiseParallel)
                                                  w2 split by input rows           (RowwiseParallel)
    attention:  Y = wo( attend(wq X, wk X, wv X) ) wq, wk, wv split by heads       (ColwiseParallel)
                                                  wo split by input rows           (RowwiseParallel)

Rank r holds hidden units (or heads) [r * n / tp, (r + 1) * n / tp): the column-split output never leaves the
rank, the element-wise activation and per-head attention need nothing from other ranks, and the row-split
matmul produces a partial sum that one all-reduce (Megatron's "g") turns into the full output. In backward the
mirror image ("f") all-reduces the gradient of the replicated input X. So per layer: 2 all-reduces forward,
2 backward, each of a (B, T, C) activation (`tp_comm_bytes`).

We use torch's `parallelize_module` (DTensor) for the sharding and communication, applied from outside: the
model class knows nothing of it. After sharding, each rank's attention holds n_head / tp heads: `tensor_parallel`
sets those per-rank head counts on every Attention instance (its forward reshapes to whatever width its heads
make). Training only: a pre-hook refuses the KV cache (sized for all heads), and mixture-of-experts layers are
not supported.
"""
from __future__ import annotations

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from minillm.config import ModelConfig


def _refuse_cache(module: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook of a sharded Attention: the KV cache is sized for all heads, so it cannot be used."""
    if kwargs.get("cache") is not None:
        raise ValueError("tensor_parallel: the KV cache is not supported on a tensor-parallel model "
                         "(it is sized for all heads); generate with the unsharded model")


def _check(model: nn.Module, tp: int) -> ModelConfig:
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, ModelConfig) or not hasattr(model, "blocks"):
        raise TypeError(f"tensor_parallel: expected a minillm GPT, got {type(model).__name__}")
    if cfg.n_expert > 0:
        raise ValueError("tensor_parallel: mixture-of-experts layers are not supported (shard experts with expert "
                         "parallelism instead); use n_expert=0")
    if cfg.n_head % tp:
        raise ValueError(f"tensor_parallel: n_head={cfg.n_head} must be divisible by the mesh size tp={tp}, "
                         "so every rank holds whole heads")
    if cfg.n_kv_head % tp:
        raise ValueError(f"tensor_parallel: n_kv_head={cfg.n_kv_head} must be divisible by tp={tp} (MHA, or GQA "
                         "with at least tp key/value heads); replicating shared K/V heads is not supported")
    if cfg.ffn_hidden % tp:
        raise ValueError(f"tensor_parallel: ffn_hidden={cfg.ffn_hidden} must be divisible by tp={tp}")
    return cfg


def tensor_parallel(model: nn.Module, mesh: DeviceMesh) -> nn.Module:
    """Shard every Block of a minillm GPT over the 1-D `mesh` (Megatron layout), in place; returns the model.

    Embeddings, norms and lm_head stay replicated (every rank holds and updates an identical copy; their
    gradients agree because every rank sees the same batch). Sharded weights become DTensors: an optimizer
    steps them as usual, `p.full_tensor()` gathers one. Every rank must call this with the same model
    (same seed) and must then feed the same batch.
    """
    if mesh.ndim != 1:
        raise ValueError(f"tensor_parallel: expected a 1-D device mesh, got {mesh.ndim} dimensions")
    tp = mesh.size()
    cfg = _check(model, tp)
    rank = mesh.get_local_rank()
    plan = {"attn.wq": ColwiseParallel(), "attn.wk": ColwiseParallel(), "attn.wv": ColwiseParallel(),
            "attn.wo": RowwiseParallel(), "mlp.w1": ColwiseParallel(), "mlp.w2": RowwiseParallel()}
    if model.blocks[0].mlp.w3 is not None:  # gated (SwiGLU/GeGLU) MLPs have a second up-projection
        plan["mlp.w3"] = ColwiseParallel()
    for block in model.blocks:
        parallelize_module(block, mesh, plan)
        attn = block.attn
        attn.n_head, attn.n_kv_head = cfg.n_head // tp, cfg.n_kv_head // tp  # this rank's heads
        if hasattr(attn, "alibi_slopes"):  # ALiBi: each head has its own slope; keep this rank's
            h = attn.n_head
            attn.alibi_slopes = attn.alibi_slopes[rank * h:(rank + 1) * h].clone()
        attn.register_forward_pre_hook(_refuse_cache, with_kwargs=True)
    return model


def tp_comm_bytes(cfg: ModelConfig, batch: int, seq_len: int, tp: int, bytes_per_elem: int = 2,
                  backward: bool = True) -> float:
    """Bytes each rank sends for one step's tensor-parallel all-reduces (ring algorithm).

    Per layer, forward: 2 all-reduces (after wo and after w2) of a (batch, seq_len, C) activation; backward: 2
    more (the gradient of each sub-layer's replicated input). A ring all-reduce of S bytes sends
    2 (tp - 1) / tp * S per rank. So per step: n_layer * (2 or 4) * 2 (tp - 1) / tp * batch * seq_len * C * bytes.
    Unlike data parallelism this grows with the batch, not the parameter count: why TP stays inside one node.
    """
    for name, v in (("batch", batch), ("seq_len", seq_len), ("tp", tp), ("bytes_per_elem", bytes_per_elem)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"tp_comm_bytes: {name}={v!r} must be a positive integer")
    activation = batch * seq_len * cfg.n_embd * bytes_per_elem  # one (B, T, C) tensor
    n_allreduce = cfg.n_layer * (4 if backward else 2)
    return n_allreduce * 2 * (tp - 1) / tp * activation
