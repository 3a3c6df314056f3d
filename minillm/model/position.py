"""Position encodings: learned, sinusoidal, RoPE and ALiBi.

Survey §4.2.2 (position embeddings). Attention by itself is permutation-invariant, so order must enter
somewhere: added to the input (learned absolute, as GPT-2; fixed sinusoidal, as the original transformer),
rotated into queries and keys (RoPE, Su et al. 2021: the q·k product then depends only on the relative
offset), or added to the attention scores as a distance penalty (ALiBi, Press et al. 2022: extrapolates to
longer inputs than seen in training).
"""
from __future__ import annotations

import math

import torch


def sinusoidal_embedding(T: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """(T, dim) table: even dims sin(pos / base^(2i/dim)), odd dims cos(...), as in Vaswani et al. 2017."""
    pos = torch.arange(T, dtype=torch.float32)[:, None]  # (T, 1)
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # (ceil(dim/2),)
    table = torch.zeros(T, dim)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq[: dim // 2])
    return table


def _check_positions(positions: torch.Tensor, where: str) -> None:
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"{where}: positions must be a tensor of shape (T,) or (..., T), got {type(positions).__name__}")
    if positions.dim() == 0:
        raise ValueError(f"{where}: positions is a scalar; give one position per token, shape (T,) or (B, T) "
                         f"(e.g. torch.arange(T), or torch.tensor([pos]) for a single token)")


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles pos * theta^(-2i/d): positions (T,) -> each (T, head_dim // 2);
    batched positions (..., T) -> each (..., T, head_dim // 2)."""
    _check_positions(positions, "rope_angles")
    if head_dim % 2:
        raise ValueError(f"RoPE rotates pairs of dimensions: head_dim={head_dim} must be even")
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    angles = positions.float()[..., None] * inv_freq  # (..., T, 1) * (hd/2,) -> (..., T, hd/2)
    return angles.cos(), angles.sin()


def apply_rope_cached(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (x[2i], x[2i+1]) of x (..., T, hd) by the angles whose cos/sin are (T, hd/2), or any
    shape that broadcasts against (..., T, hd/2) from the right."""
    x2 = x.float().unflatten(-1, (-1, 2))  # (..., T, hd/2, 2)
    x_even, x_odd = x2[..., 0], x2[..., 1]
    out = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """RoPE as in RoFormer: rotate each adjacent pair of x (..., T, hd) by angle pos * theta^(-2i/hd).

    positions: (T,), shared by every leading row of x, or batched (..., T) whose leading dims are a prefix of x's
    leading dims (each equal or 1): (B, T) for x (B, T, hd) or x (B, H, T, hd), the heads sharing their sequence's
    positions, as Hugging Face's position_ids. A KV-cache batch whose sequences sit at different offsets needs the
    batched form. Because rotations compose, <rope(q, m), rope(k, n)> depends on m - n only: relative position for
    free.
    """
    _check_positions(positions, "apply_rope")
    T, lead, p_lead = x.size(-2) if x.dim() >= 2 else -1, x.shape[:-2], positions.shape[:-1]
    if positions.size(-1) != T:
        raise ValueError(f"apply_rope: positions {tuple(positions.shape)} must end in T={T}, the length of x "
                         f"{tuple(x.shape)} (..., T, head_dim)")
    if len(p_lead) > len(lead) or any(p not in (1, d) for p, d in zip(p_lead, lead)):
        raise ValueError(f"apply_rope: the leading dims {tuple(p_lead)} of positions {tuple(positions.shape)} do not "
                         f"match x {tuple(x.shape)}: give positions (T,)=({T},) shared by all rows, or (..., T) "
                         f"whose leading dims are a prefix of x's {tuple(lead)} (e.g. (B, T) for x (B, H, T, hd))")
    cos, sin = rope_angles(positions, x.size(-1), theta)  # (*p_lead, T, hd/2)
    if p_lead:  # (B, T, hd/2) -> (B, 1, T, hd/2) for x (B, H, T, hd): the missing leading dims broadcast
        shape = (*p_lead, *([1] * (len(lead) - len(p_lead))), T, cos.size(-1))
        cos, sin = cos.reshape(shape), sin.reshape(shape)
    return apply_rope_cached(x, cos, sin)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head slopes: a geometric sequence starting at 2^(-8/n) (Press et al. 2022).

    For a head count that is not a power of two, take the power-of-two sequence below it and interleave
    slopes from the next one, as the paper's reference code does.
    """
    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        slopes = power_of_2(n_heads)
    else:
        closest = 2 ** math.floor(math.log2(n_heads))
        slopes = power_of_2(closest) + power_of_2(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(n_heads: int, T: int, T_k: int | None = None, offset: int = 0) -> torch.Tensor:
    """(H, T, T_k) additive attention bias -slope_h * |i - j| (queries at positions offset..offset+T-1).

    The penalty grows linearly with distance, so far tokens get less attention; combined with a causal
    mask only the j <= i half matters, and the symmetric form also serves bidirectional (prefix) attention.
    """
    T_k = T if T_k is None else T_k
    i = torch.arange(offset, offset + T)[:, None]
    j = torch.arange(T_k)[None, :]
    dist = (i - j).abs().float()  # (T, T_k)
    return -alibi_slopes(n_heads)[:, None, None] * dist  # (H, T, T_k)
