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


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles pos * theta^(-2i/d), each (T, head_dim // 2)."""
    if head_dim % 2:
        raise ValueError(f"RoPE rotates pairs of dimensions: head_dim={head_dim} must be even")
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, hd/2)
    return angles.cos(), angles.sin()


def apply_rope_cached(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (x[2i], x[2i+1]) of x (..., T, hd) by the angles whose cos/sin are (T, hd/2)."""
    x2 = x.float().unflatten(-1, (-1, 2))  # (..., T, hd/2, 2)
    x_even, x_odd = x2[..., 0], x2[..., 1]
    out = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """RoPE as in RoFormer: rotate each adjacent pair of x (..., T, hd) by angle pos * theta^(-2i/hd).

    Because rotations compose, <rope(q, m), rope(k, n)> depends on m - n only: relative position for free.
    """
    cos, sin = rope_angles(positions, x.size(-1), theta)
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
