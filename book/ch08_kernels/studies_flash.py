"""FlashAttention on the roofline: bytes and FLOPs of attention with and without its score matrix in memory.

Survey §4.2.2 (attention; FlashAttention among the efficient implementations) and §4.3 (efficient training).
Attention over T tokens computes a (T, T) score matrix per head. The *materialised* way writes it to GPU memory,
reads it back for the softmax, writes the probabilities, and reads them again for P V: every byte of that
traffic is quadratic in T while the arithmetic per score is only ~4 x head_dim. FlashAttention
(minillm/kernels/flash_attention.py) keeps one tile of scores on chip and merges it into the output with the
online softmax: what it moves is Q, K, V, O and a log-sum-exp per row, plus K and V read again for each tile of
queries (and Q, dO again for each tile of keys in the backward).

The model, like studies.py's: every kernel is its own pass, bounded by its own roofline; caches are ignored, so
every tile re-read is counted as memory traffic (on a real GPU the L2 cache serves many of them: the flash
numbers are on the cautious side). `cached=True` counts the other extreme, every re-read served by the cache;
a real kernel lies between the two. The materialised side is the *best* materialised attention, three kernels as
in Dao et al. (2022), Algorithm 0: S = Q K^T (scale and mask folded in), P = softmax(S), O = P V, with S and P
in the activation dtype; eager PyTorch makes more passes than that (an fp32 cast, a separate mask). Its FLOPs
cover the whole (T, T) matrix even when causal; FlashAttention skips the key tiles above the diagonal, and a tile
is counted whole (masked scores cost FLOPs too). FLOPs count a multiply-add as 2 and each elementwise step
(scale, max, subtract, exp, sum, ...) as 1.

    attention_cost("flash", seq_len=1024, head_dim=128, heads=1, batch=1, causal=False, phase="forward").bytes
        == (1024 * 128 * 2) * 2 + 1024 * 4 + 8 * (2 * 1024 * 128 * 2)   # Q in, O out, LSE; K, V per 128-query tile
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from book.ch08_kernels.studies import FP32, PHASES, OpCost, Pass, get_device
from minillm.kernels.flash_reference import key_end, query_start

ATTN_IMPLS = ("materialised", "flash")
# (block_m, block_n) of the Triton kernels on a GPU in bf16 at head dim 128: flash_attention.GPU_CONFIGS (a test
# keeps them equal; importing that module here would import triton and fix its compile mode at import time)
FLASH_TILES = {"fwd": (128, 64), "dkdv": (32, 64), "dq": (64, 64)}
FWD_ELEMENTWISE = 5  # per score: scale, running max, subtract, exp, row sum
BWD_ELEMENTWISE = 5  # per score: scale, subtract LSE, exp, dP - D, multiply by P
# The chapter's shape: one layer of a Llama-3-8B-sized model, 8 sequences of 1024 tokens, 32 heads of 128, bf16
LLAMA_8B_ATTENTION = dict(seq_len=1024, head_dim=128, heads=32, batch=8, dtype_bytes=2, causal=True)


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


def query_tiles(seq_q: int, seq_k: int, block_m: int, block_n: int, causal: bool) -> list[tuple[int, int]]:
    """(rows, keys visited) of each query tile of the forward (and of the dQ kernel): the keys run up to the
    diagonal's end (flash_reference.key_end), rounded up to whole key tiles, at most to the last key tile."""
    out = []
    for start_m in range(0, seq_q, block_m):
        rows = min(block_m, seq_q - start_m)
        end = key_end(start_m, rows, seq_q, seq_k, causal)
        out.append((rows, min(-(-end // block_n) * block_n, -(-seq_k // block_n) * block_n)))
    return out


def key_tiles(seq_q: int, seq_k: int, block_m: int, block_n: int, causal: bool) -> list[tuple[int, int]]:
    """(keys, queries visited) of each key tile of the dK/dV kernel: from the first query tile that sees it
    (flash_reference.query_start) to the end of the queries, in whole query tiles."""
    out = []
    padded_q = -(-seq_q // block_m) * block_m
    for start_n in range(0, seq_k, block_n):
        keys = min(block_n, seq_k - start_n)
        out.append((keys, padded_q - query_start(start_n, seq_q, seq_k, causal, block_m)))
    return out


def _materialised(t: int, d: int, b: int, train: bool) -> list[Pass]:
    """Per (batch, head): the three kernels of standard attention and, for training, the five of its backward."""
    tt, td = t * t, t * d
    fwd = [Pass("S = Q K^T (scaled, masked)", 2 * td * b, tt * b, 2 * tt * d + tt),
           Pass("P = softmax(S)", tt * b, tt * b, 4 * tt),
           Pass("O = P V", tt * b + td * b, td * b, 2 * tt * d)]
    bwd = [Pass("dV = P^T dO", tt * b + td * b, td * b, 2 * tt * d),
           Pass("dP = dO V^T", 2 * td * b, tt * b, 2 * tt * d),
           Pass("dS = P * (dP - rowsum(P * dP))", 2 * tt * b, tt * b, 4 * tt),
           Pass("dQ = dS K", tt * b + td * b, td * b, 2 * tt * d),
           Pass("dK = dS^T Q", tt * b + td * b, td * b, 2 * tt * d)]
    return fwd + (bwd if train else [])


def _flash(t: int, d: int, b: int, causal: bool, train: bool, tiles: dict[str, tuple[int, int]],
           cached: bool) -> list[Pass]:
    """Per (batch, head): the forward kernel and, for training, the D pre-pass, the dK/dV and the dQ kernels.
    cached: every re-read of a tile hits the cache, so each kernel reads each operand from memory once."""
    td = t * d
    fwd_tiles = query_tiles(t, t, *tiles["fwd"], causal)
    scores = sum(r * k for r, k in fwd_tiles)
    kv_reads = t if cached else sum(k for _, k in fwd_tiles)  # keys loaded, over all query tiles
    fwd = [Pass("flash forward", td * b + 2 * kv_reads * d * b, td * b + t * FP32,
                scores * (4 * d + FWD_ELEMENTWISE))]
    if not train:
        return fwd
    kv = key_tiles(t, t, *tiles["dkdv"], causal)
    q_reads = t if cached else sum(q for _, q in kv)  # query rows loaded over all key tiles: Q, dO, LSE, D
    dq_tiles = query_tiles(t, t, *tiles["dq"], causal)
    dq_kv_reads = t if cached else sum(k for _, k in dq_tiles)
    bwd = [Pass("D = rowsum(dO * O)", 2 * td * b, t * FP32, 2 * td),
           Pass("dK, dV", 2 * td * b + q_reads * (2 * d * b + 2 * FP32), 2 * td * b,
                sum(k * q for k, q in kv) * (8 * d + BWD_ELEMENTWISE)),
           Pass("dQ", 2 * td * b + 2 * t * FP32 + 2 * dq_kv_reads * d * b, td * b,
                sum(r * k for r, k in dq_tiles) * (6 * d + BWD_ELEMENTWISE))]
    return fwd + bwd


def attention_cost(impl: str, seq_len: int, head_dim: int = 128, heads: int = 32, batch: int = 8,
                   dtype_bytes: int = 2, causal: bool = True, phase: str = "train",
                   tiles: dict[str, tuple[int, int]] | None = None, cached: bool = False) -> OpCost:
    """Bytes and FLOPs of self-attention (T queries, T keys) over batch x heads, materialised or FlashAttention.

    impl: "materialised" (S and P written to memory) or "flash"; phase: "forward" or "train" (+ backward);
    tiles: the flash kernels' (block_m, block_n) by kernel name ("fwd", "dkdv", "dq"), default FLASH_TILES;
    cached: count each flash kernel's operands as read from memory once (every tile re-read served by the cache;
    the default counts each re-read as memory traffic, like the rest of the model). The materialised kernels
    stream tensors far larger than any cache, so cached=True is refused for them. The returned OpCost's
    largest_buffer is the largest intermediate tensor: the (T, T) scores of every head, or the flash kernels'
    (batch, heads, T) fp32 log-sum-exp.
    """
    if impl not in ATTN_IMPLS:
        raise ValueError(f"impl={impl!r} must be one of {', '.join(ATTN_IMPLS)}")
    if phase not in PHASES:
        raise ValueError(f"phase={phase!r} must be 'forward' or 'train' (forward + backward)")
    t, d = _count("seq_len", seq_len), _count("head_dim", head_dim)
    n = _count("heads", heads) * _count("batch", batch)
    if dtype_bytes not in (1, 2, 4, 8):
        raise ValueError(f"dtype_bytes={dtype_bytes!r} must be 1, 2, 4 or 8 (bytes per element: bf16 is 2)")
    unknown = sorted(set(tiles or {}) - set(FLASH_TILES))
    if unknown:
        raise ValueError(f"tiles for unknown kernel(s) {unknown}; the kernels are {', '.join(FLASH_TILES)}")
    if cached and impl == "materialised":
        raise ValueError("cached=True applies to the flash kernels only: the materialised kernels stream whole "
                         "(T, T) tensors, far larger than any cache")
    tiles = {**FLASH_TILES, **(tiles or {})}
    for name, (bm, bn) in tiles.items():
        _count(f"tiles[{name!r}] block_m", bm), _count(f"tiles[{name!r}] block_n", bn)
    train = phase == "train"
    if impl == "materialised":
        per_head, largest = _materialised(t, d, dtype_bytes, train), n * t * t * dtype_bytes
    else:
        per_head, largest = _flash(t, d, dtype_bytes, causal, train, tiles, cached), n * t * FP32
    passes = tuple(Pass(p.name, p.read * n, p.written * n, p.flops * n) for p in per_head)
    return OpCost("attention", impl, phase, passes, largest)


IMPL_LABELS = {"materialised": "materialised", "flash": "flash, re-reads from memory",
               "flash_cached": "flash, re-reads from cache"}


def attention_table(device: str, lengths: Sequence[int] = (1024, 4096, 16384), **shape) -> list[dict]:
    """One row per sequence length and implementation (materialised; flash with every re-read from memory; flash
    with re-reads from the cache): GB moved, GFLOP, intensity, bound, predicted ms and the largest intermediate
    tensor in GB (shape: attention_cost's keyword arguments besides impl, seq_len and cached)."""
    d = get_device(device)
    out = []
    for t in lengths:
        for key, label in IMPL_LABELS.items():
            c = attention_cost("flash" if key.startswith("flash") else key, t, **shape, cached=key == "flash_cached")
            out.append({"T": t, "impl": label, "GB moved": c.bytes / 1e9, "GFLOP": c.flops / 1e9,
                        "FLOP/byte": c.intensity, "bound": "compute" if c.intensity > d.ridge else "memory",
                        "predicted ms": c.time(d) * 1e3, "largest buffer GB": c.largest_buffer / 1e9})
    return out


def online_softmax_trace(scores: torch.Tensor, values: torch.Tensor, block: int) -> tuple[list[dict], torch.Tensor]:
    """The forward's running statistics for ONE query row, tile by tile: scores (Tk,) of the row (already scaled
    and masked), values (Tk, D). Returns one row per key tile (its keys, its max, the running max m, the factor
    alpha = exp(m_old - m) that rescales the old sum and accumulator, the running sum l) and the output acc / l,
    which equals softmax(scores) @ values."""
    if scores.dim() != 1 or values.dim() != 2 or values.shape[0] != scores.shape[0]:
        raise ValueError(f"scores must be (Tk,) and values (Tk, D), got {tuple(scores.shape)} and "
                         f"{tuple(values.shape)}")
    _count("block", block)
    m = torch.tensor(float("-inf"))
    l = torch.tensor(0.0)
    acc = torch.zeros(values.shape[1])  # (D,): the unnormalised output
    rows = []
    for start in range(0, scores.shape[0], block):
        s, v = scores[start:start + block].float(), values[start:start + block].float()  # (bn,), (bn, D)
        m_new = torch.maximum(m, s.max())
        p = torch.exp(s - m_new)  # (bn,)
        alpha = torch.exp(m - m_new)  # 0 on the first tile: there is nothing to rescale yet
        l = alpha * l + p.sum()
        acc = alpha * acc + p @ v  # (D,)
        m = m_new
        rows.append({"tile": len(rows), "keys": f"{start}..{start + len(s) - 1}", "tile max": float(s.max()),
                     "m": float(m), "alpha": float(alpha), "l": float(l)})
    return rows, acc / l


def chapter_numbers(device: str = "H100 SXM") -> dict:
    """What chapter 08's FlashAttention section quotes (`@book.ch08_kernels.studies_flash:chapter_numbers/PATH`):
    the model's predictions on `device`, forward + backward, at LLAMA_8B_ATTENTION's shape with T = 1024 (the
    chapter's training step) under `t1024` and with T = 4096 under `t4096`. No GPU record exists yet."""
    d = get_device(device)
    out: dict = {"ridge": d.ridge}
    for t in (1024, 4096):
        shape = {**LLAMA_8B_ATTENTION, "seq_len": t}
        cost = {"materialised": attention_cost("materialised", **shape), "flash": attention_cost("flash", **shape),
                "flash_cached": attention_cost("flash", **shape, cached=True)}
        mat = cost["materialised"]
        out[f"t{t}"] = {
            "intensity": {impl: c.intensity for impl, c in cost.items()},
            "gb": {impl: c.bytes / 1e9 for impl, c in cost.items()},
            "ms": {impl: c.time(d) * 1e3 for impl, c in cost.items()},
            "speedup": {impl: mat.time(d) / c.time(d) for impl, c in cost.items()},
            "flops_ratio": cost["flash"].flops / mat.flops,  # recomputed in backward, fewer tiles when causal
            "scores_gb": mat.largest_buffer / 1e9,  # one layer's (B, H, T, T) scores in bf16
        }
    return out
