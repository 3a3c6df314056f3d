"""Measuring activation memory on any device: the bytes autograd saves for backward. Survey §4.3.2
(activation recomputation, alongside ZeRO and mixed precision, is how large models fit).

`saved_activation_bytes(model, x, y)` runs one forward pass under `torch.autograd.graph.saved_tensors_hooks` and
adds up the tensors autograd keeps for the backward pass (parameters excluded: they are stored anyway). That is
the activation memory of a training step, measured the same way on a CPU as on a GPU, where
`torch.cuda.max_memory_allocated` would also count allocator caching and temporary buffers.
`checkpointing_tradeoff` compares a model with and without `activation_checkpointing`: saved bytes and the time
of forward + backward.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from minillm.model.transformer import GPT


def saved_activation_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of the distinct non-parameter tensors autograd saves during one training forward pass."""
    params = {p.data_ptr() for p in model.parameters()}
    seen: dict[tuple[int, int], int] = {}  # (storage pointer, offset) -> bytes: a tensor saved twice counts once

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in params:
            seen[(t.untyped_storage().data_ptr(), t.storage_offset())] = t.numel() * t.element_size()
        return t

    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _, loss = model(x, y)
        loss.backward()  # also runs the recomputation of checkpointed blocks (its saves are freed as it goes)
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return sum(seen.values())


def checkpointing_tradeoff(cfg, batch_size: int = 8, repeats: int = 3, seed: int = 0) -> list[dict]:
    """The same model and batch with activation_checkpointing off and on: rows with saved_bytes and the median
    seconds of forward + backward (measured side by side, alternating)."""

    rows = []
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, cfg.vocab_size, (batch_size, cfg.block_size + 1), generator=g)
    x, y = seq[:, :-1], seq[:, 1:]
    models = {}
    for on in (False, True):
        torch.manual_seed(seed)
        models[on] = GPT(cfg.replace(activation_checkpointing=on))
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for on, model in models.items():
            t0 = time.perf_counter()
            model(x, y)[1].backward()
            times[on].append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
    for on, model in models.items():
        rows.append({"activation_checkpointing": on, "saved_bytes": saved_activation_bytes(model, x, y),
                     "seconds": sorted(times[on])[len(times[on]) // 2], "n_layer": cfg.n_layer,
                     "batch_size": batch_size, "seq_len": cfg.block_size})
    return rows
