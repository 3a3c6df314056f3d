"""The memory FlashAttention saves, measured on this machine: peak live bytes of attention with and without
its (T, T) score matrix. Survey §4.2.2 (attention; FlashAttention) and §4.3 (efficient training: memory).

What is measured: `peak_live_bytes` watches every PyTorch operation (a TorchDispatchMode sees each aten op,
backward included) and keeps a running total of the bytes of the tensors they create that are still alive: a
new storage adds its size, and its size is taken off when the storage is freed (a weakref finalizer fires the
moment its last tensor or view dies). The peak of that total is the most memory the call held at once on top of
its inputs. Views, in-place and out= ops allocate nothing and are skipped, as in
fused_linear_cross_entropy.peak_intermediate_numel. Blind spots, equal for both sides: scratch space an op
allocates and frees inside itself (it is never a tensor), and the caching allocator's rounding on a GPU. On the
CPU, where the chapter runs it, PyTorch allocates each tensor with its own malloc, so this is the footprint.

Both sides run the same causal attention on fp32 (B, H, T, D) inputs, forward and backward:
    materialised  minillm.scaled_dot_product_attention with the (T, T) causal mask: scores, masked scores, the
                  softmax (saved for backward), their gradients: several (B, H, T, T) fp32 tensors
    tiled         minillm.kernels.flash_attention_reference: one (B, H, block, block) tile of scores at a time,
                  O and the fp32 log-sum-exp saved, the tiles recomputed in backward
`attention_memory_model` counts what is alive at each side's peak; the chapter prints it beside the measurement.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

FP32 = 4  # bytes: the measurement runs in fp32 on the CPU


class _LiveBytes(TorchDispatchMode):
    """Running total and peak of the bytes held by the storages that the ops inside the mode created."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._owned: dict[int, int] = {}  # data_ptr -> bytes, of the storages created inside and still alive
        self._finalizers: list[weakref.finalize] = []

    def _freed(self, ptr: int) -> None:
        self.live -= self._owned.pop(ptr, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        outs = out if isinstance(out, (tuple, list)) and len(returns) > 1 else (out,)
        for ret, t in zip(returns, outs):
            if ret.alias_info is not None:  # a view, an in-place or an out= op: no new memory
                continue
            for x in tree_flatten(t)[0]:
                if not isinstance(x, torch.Tensor):
                    continue
                storage = x.untyped_storage()
                ptr, size = storage.data_ptr(), storage.nbytes()
                if size == 0 or ptr in self._owned:
                    continue
                self._owned[ptr] = size
                self.live += size
                self.peak = max(self.peak, self.live)
                self._finalizers.append(weakref.finalize(storage, self._freed, ptr))
        return out

    def __exit__(self, *exc: Any) -> None:
        for f in self._finalizers:  # tensors that outlive the block (the result) no longer report back
            f.detach()
        return super().__exit__(*exc)


def peak_live_bytes(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """The most bytes that the tensors created while fn(*args, **kwargs) runs held at the same time (see the
    module docstring). Tensors made before the call (the inputs) are not counted; the result is.

        peak_live_bytes(lambda: torch.ones(1000) + 1)  == 8000   # the ones, then the sum, both alive at once
    """
    with _LiveBytes() as mode:
        fn(*args, **kwargs)
    return mode.peak


def _inputs(batch: int, heads: int, seq_len: int, head_dim: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, seq_len, head_dim, generator=g) for _ in range(4)]  # q, k, v, dO


def _run_materialised(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor) -> tuple:
    from minillm.model.attention import causal_mask, scaled_dot_product_attention

    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    o = scaled_dot_product_attention(q, k, v, mask=causal_mask(q.shape[-2], device=q.device))
    o.backward(do)
    return o.detach(), q.grad, k.grad, v.grad


def _run_tiled(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, do: torch.Tensor, block: int) -> tuple:
    from minillm.kernels.flash_reference import flash_attention_reference

    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    o = flash_attention_reference(q, k, v, causal=True, block_m=block, block_n=block)
    o.backward(do)
    return o.detach(), q.grad, k.grad, v.grad


@contextmanager
def one_cpu_thread() -> Iterator[None]:
    """Run on one CPU thread: the tiles are tiny, and on a busy machine extra threads make each small op many
    times slower (they spin waiting for each other). Memory does not depend on it; the setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_attention_memory(lengths: Sequence[int], batch: int = 1, heads: int = 2, head_dim: int = 32,
                             block: int = 64, seed: int = 0) -> list[dict]:
    """For each sequence length: peak live bytes (in MB) of causal attention, forward + backward, materialised
    and tiled (fp32, on the CPU), what `attention_memory_model` predicts for each, the size of one (B, H, T, T)
    score matrix and of q, and the largest difference between the two sides' outputs and input gradients (the
    same maths in another order: float rounding)."""
    if not lengths:
        raise ValueError("lengths is empty: pass sequence lengths such as (128, 256, 512)")
    for name, n in (("batch", batch), ("heads", heads), ("head_dim", head_dim), ("block", block),
                    *((f"lengths[{i}]", t) for i, t in enumerate(lengths))):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name}={n!r} must be a positive integer")
    rows = []
    with one_cpu_thread():
        for t in lengths:
            q, k, v, do = _inputs(batch, heads, t, head_dim, seed)
            got: dict[str, tuple] = {}
            row: dict[str, Any] = {"T": t}
            for name, run in (("materialised", lambda: _run_materialised(q, k, v, do)),
                              ("tiled", lambda: _run_tiled(q, k, v, do, block))):
                def step(name: str = name, run: Callable[[], tuple] = run) -> None:
                    got[name] = run()
                row[f"{name} MB"] = peak_live_bytes(step) / 1e6
            model = attention_memory_model(t, batch, heads, head_dim, block)
            row.update({f"{name} model MB": b / 1e6 for name, b in model.items()})
            row["scores MB"] = batch * heads * t * t * FP32 / 1e6
            row["q MB"] = batch * heads * t * head_dim * FP32 / 1e6
            row["max diff"] = max(float((a - b).abs().max()) for a, b in zip(got["materialised"], got["tiled"]))
            rows.append(row)
    return rows


def attention_memory_model(seq_len: int, batch: int = 1, heads: int = 2, head_dim: int = 32,
                           block: int = 64) -> dict[str, int]:
    """Peak live bytes of `measure_attention_memory`'s two runs, counted from what is alive at each peak (fp32).

    materialised, at the peak of the backward through the softmax (written exp(x - max) / sum, as
    minillm.model.layers.softmax): six (B, H, T, T) tensors (exp and the probabilities, saved by the forward;
    their gradient and the three products of the quotient rule's backward, some of them already freed), the
    (T, T) bool mask, two (B, H, T, D) and one (B, H, T) (the row max).
    tiled, in the backward: four (B, H, T, D) (O and the gradients of q, k, v), two (B, H, T) (the log-sum-exp
    and D = rowsum(dO * O)) and six (B, H, block, block) tiles (S, P, dP, dS and two products). No (T, T) tensor.
    """
    n, t, d, bm = batch * heads, seq_len, head_dim, min(block, seq_len)
    return {"materialised": (6 * n * t * t + 2 * n * t * d + n * t) * FP32 + t * t,
            "tiled": (4 * n * t * d + 2 * n * t + 6 * n * bm * bm) * FP32}
