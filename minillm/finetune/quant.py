"""Weight-only post-training quantization: int8 / int4, absmax, per tensor or per group.

Survey §5.4 (memory-efficient model adaptation; §5.4.1 quantization basics): a weight w is stored as an integer
q = round(w / s) with a scale s, and used as s * q. Absmax (symmetric) quantization picks s = max|w| / qmax,
qmax = 2^(bits-1) - 1 (127 for int8, 7 for int4), so nothing is clipped and every element's error is at most
s / 2. One large weight (an outlier, common in LLMs) inflates s for everything sharing it: a scale per group
of `group_size` consecutive weights along the input dimension confines the damage to its group (as GPTQ/AWQ
use groups of 64-128), for a few extra bytes of scales.

Weight-only: activations stay in floating point, and `QuantLinear` dequantizes its weight at each forward (real
kernels fuse that into the matmul; here it is spelled out). int4 values are packed two per byte, so the byte
counts are honest: int8 ~4x and int4 ~8x smaller than fp32 before the scales (fp32, one per group) are added.
`quantize_model` replaces Linear layers (embeddings only when asked) and reports bytes before and after;
`model_bytes` counts what a model holds. The perplexity cost is measured by the chapter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["quantize_tensor", "dequantize", "pack_int4", "unpack_int4", "QuantizedWeight", "QuantLinear",
           "QuantEmbedding", "QuantReport", "quantize_model", "model_bytes"]

BITS = (8, 4)
SCHEMES = ("absmax",)


def _check(bits: int, group_size: int | None, scheme: str = "absmax") -> None:
    if bits not in BITS or isinstance(bits, bool):
        raise ValueError(f"bits={bits!r} is not supported; choose one of {', '.join(map(str, BITS))}")
    if group_size is not None and (not isinstance(group_size, int) or isinstance(group_size, bool)
                                   or group_size <= 0):
        raise ValueError(f"group_size={group_size!r} must be None (one scale per tensor) or a positive integer")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r} is not supported; choose one of {', '.join(SCHEMES)}")


def quantize_tensor(w: torch.Tensor, bits: int = 8, group_size: int | None = None,
                    scheme: str = "absmax") -> tuple[torch.Tensor, torch.Tensor]:
    """w (..., K) -> (q int8 of w's shape, scales fp32).

    group_size=None: one scale (a 0-d tensor) for the whole tensor. group_size=g: one scale per g consecutive
    elements of the last dimension, scales (..., K // g); g = K gives one scale per row (per output channel).
    int4 values lie in [-7, 7] (absmax is symmetric and never reaches -8), stored in int8; see `pack_int4`.
    """
    _check(bits, group_size, scheme)
    qmax = 2 ** (bits - 1) - 1
    x = w.detach().float()
    if group_size is None:
        amax = x.abs().amax()  # ()
        groups = x
    else:
        if x.dim() == 0 or x.shape[-1] % group_size:
            raise ValueError(f"group_size={group_size} must divide the last dimension of a tensor of shape "
                             f"{tuple(x.shape)}; pick a divisor of {x.shape[-1] if x.dim() else 1}")
        groups = x.unflatten(-1, (-1, group_size))  # (..., K // g, g)
        amax = groups.abs().amax(-1)  # (..., K // g)
    scale = amax / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group: any scale is exact
    s = scale if group_size is None else scale[..., None]
    q = torch.round(groups / s).clamp(-qmax - 1, qmax).to(torch.int8)
    return q.reshape(x.shape), scale


def dequantize(q: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of `quantize_tensor`: s * q; the group size is read off the shapes (K // scales.shape[-1])."""
    if scales.dim() == 0:
        return (q.float() * scales).to(dtype)
    g = q.shape[-1] // scales.shape[-1]
    return (q.float().unflatten(-1, (-1, g)) * scales[..., None]).flatten(-2).to(dtype)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """int8 values in [-8, 7] (..., K) -> uint8 (..., ceil(K / 2)), two 4-bit two's-complement values per byte."""
    if q.shape[-1] % 2:
        q = F.pad(q, (0, 1))  # an odd width gets one zero nibble; unpack_int4 crops it
    u = (q & 0xF).to(torch.uint8)
    return u[..., 0::2] | (u[..., 1::2] << 4)


def unpack_int4(p: torch.Tensor, width: int) -> torch.Tensor:
    """uint8 (..., ceil(width / 2)) -> int8 (..., width) in [-8, 7]."""
    nibbles = torch.stack([p & 0xF, p >> 4], dim=-1).flatten(-2)[..., :width].to(torch.int8)  # 0..15
    return (nibbles ^ 8) - 8  # sign-extend 4-bit two's complement: 8..15 -> -8..-1


class QuantizedWeight(nn.Module):
    """A weight matrix (rows, K) held as integers (int8, or packed int4) plus fp32 scales.

    A module of its own so that a tied embedding and output head can share one instance."""

    def __init__(self, w: torch.Tensor, bits: int = 8, group_size: int | None = None):
        super().__init__()
        if w.dim() != 2:
            raise ValueError(f"QuantizedWeight expects a 2-D weight, got shape {tuple(w.shape)}")
        q, scales = quantize_tensor(w, bits, group_size)
        self.bits, self.group_size, self.width, self.dtype = bits, group_size, w.shape[1], w.dtype
        self.register_buffer("q", pack_int4(q) if bits == 4 else q)
        self.register_buffer("scales", scales)

    def ints(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The int8 values (rows, K), or of the selected rows (index tensor of any shape)."""
        q = self.q if rows is None else self.q[rows]
        return unpack_int4(q, self.width) if self.bits == 4 else q

    def dequantized(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        s = self.scales if rows is None or self.scales.dim() == 0 else self.scales[rows]
        return dequantize(self.ints(rows), s, self.dtype)

    def extra_repr(self) -> str:
        return f"shape=({self.q.shape[0]}, {self.width}), bits={self.bits}, group_size={self.group_size}"


class QuantLinear(nn.Module):
    """A Linear whose weight is a QuantizedWeight, dequantized at every forward (weight-only quantization)."""

    def __init__(self, qweight: QuantizedWeight, bias: torch.Tensor | None = None):
        super().__init__()
        self.qweight = qweight
        self.out_features, self.in_features = qweight.q.shape[0], qweight.width
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 8, group_size: int | None = None) -> "QuantLinear":
        return cls(QuantizedWeight(linear.weight, bits, group_size), linear.bias)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized (out, in) weight, for code that reads `.weight` (GPT's fused loss, LoRA's merge)."""
        return self.qweight.dequantized()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class QuantEmbedding(nn.Module):
    """An Embedding whose table is a QuantizedWeight; a lookup dequantizes only the rows it reads."""

    def __init__(self, qweight: QuantizedWeight):
        super().__init__()
        self.qweight = qweight
        self.num_embeddings, self.embedding_dim = qweight.q.shape[0], qweight.width

    @property
    def weight(self) -> torch.Tensor:
        return self.qweight.dequantized()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, C)
        return self.qweight.dequantized(idx)


def model_bytes(model: nn.Module) -> int:
    """Bytes of all parameters and buffers, each storage once (tied or shared tensors are not double-counted)."""
    seen: dict[int, int] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


@dataclass
class QuantReport:
    """What `quantize_model` did. weight_bytes_*: the quantized weights alone (before: float; after: integers
    plus scales); model_bytes_*: the whole model (embeddings, norms, biases included)."""

    bits: int
    group_size: int | None
    quantized: list[str]
    skipped: list[str] = field(default_factory=list)
    weight_bytes_before: int = 0
    weight_bytes_after: int = 0
    model_bytes_before: int = 0
    model_bytes_after: int = 0

    @property
    def weight_ratio(self) -> float:
        return self.weight_bytes_before / max(self.weight_bytes_after, 1)

    @property
    def model_ratio(self) -> float:
        return self.model_bytes_before / max(self.model_bytes_after, 1)

    def __str__(self) -> str:
        g = "per tensor" if self.group_size is None else f"group {self.group_size}"
        return (f"int{self.bits} ({g}): {len(self.quantized)} weights quantized, {self.weight_bytes_before:,} -> "
                f"{self.weight_bytes_after:,} bytes ({self.weight_ratio:.2f}x); model {self.model_bytes_before:,} "
                f"-> {self.model_bytes_after:,} bytes ({self.model_ratio:.2f}x)")


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def quantize_model(model: nn.Module, bits: int = 8, group_size: int | None = None, *, embeddings: bool = False,
                   skip: tuple[str, ...] = ()) -> QuantReport:
    """Replace every nn.Linear (and, with embeddings=True, every nn.Embedding) by its quantized version, in
    place (deep-copy the model first to keep the original). Returns a QuantReport.

    skip: regular expressions; a module whose full name matches one (re.fullmatch, e.g. "lm_head" or
    r"blocks\\.0\\..*") stays in float. A Linear tied to an embedding (GPT's lm_head with tie_embeddings) is
    treated as that embedding: kept unless embeddings=True, and then it shares the embedding's quantized table.
    For inference: the replaced weights are buffers, not parameters, so nothing in them trains.
    """
    _check(bits, group_size)
    if not isinstance(embeddings, bool):
        raise ValueError(f"embeddings={embeddings!r} must be True or False")
    if isinstance(skip, str):
        raise ValueError(f"skip={skip!r} is one string; give a tuple of patterns, e.g. ({skip!r},)")
    mods = dict(model.named_modules())
    emb_of = {id(m.weight): n for n, m in mods.items() if isinstance(m, nn.Embedding)}
    todo, skipped = [], []
    for name, m in mods.items():
        if not isinstance(m, (nn.Linear, nn.Embedding)):
            continue
        tied = isinstance(m, nn.Linear) and id(m.weight) in emb_of
        if any(re.fullmatch(p, name) for p in skip) or ((isinstance(m, nn.Embedding) or tied) and not embeddings):
            skipped.append(name)
        else:
            if group_size is not None and m.weight.shape[1] % group_size:
                raise ValueError(f"group_size={group_size} does not divide the input width {m.weight.shape[1]} "
                                 f"of {name!r}; choose a divisor, or skip that module")
            todo.append(name)
    report = QuantReport(bits, group_size, todo, skipped, model_bytes_before=model_bytes(model))
    shared: dict[int, QuantizedWeight] = {}
    for name in sorted(todo, key=lambda n: not isinstance(mods[n], nn.Embedding)):  # embeddings first: ties
        m = mods[name]
        qw = shared.get(id(m.weight))
        if qw is None:
            qw = shared[id(m.weight)] = QuantizedWeight(m.weight, bits, group_size)
            report.weight_bytes_before += m.weight.numel() * m.weight.element_size()
            report.weight_bytes_after += model_bytes(qw)
        _set_module(model, name, QuantEmbedding(qw) if isinstance(m, nn.Embedding) else QuantLinear(qw, m.bias))
    report.model_bytes_after = model_bytes(model)
    return report
