"""Normalization layers, activations and feed-forward blocks, as functions and as modules.

Survey §4.2.2 (detailed configuration): normalization methods (LayerNorm, RMSNorm, DeepNorm), normalization
position (pre, post, sandwich) and activation functions (ReLU, GeLU, SwiGLU, GeGLU). Each piece exists twice:
a plain function on tensors that reads like its equation (used by homework, tests and the explicit
"math" path) and an `nn.Module` the model uses, which calls torch's fused op where one exists. Tests
check that the two agree.

Weights are stored (out, in) as in `nn.Linear`, so `x @ w.T` is a linear layer.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm import kernels
from minillm.config import ModelConfig

# ---------------------------------------------------------------------------------------------------------
# Functional forms: one equation each.


def rmsnorm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * weight. No mean subtraction, no bias."""
    x32 = x.float()  # the reduction in fp32: bf16 sums of squares lose precision fast
    y = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    y = y.to(x.dtype)
    return y * weight if weight is not None else y


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
               eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm (Ba et al. 2016): (x - mean) / sqrt(var + eps) * weight + bias, over the last dim."""
    x32 = x.float()
    mean = x32.mean(dim=-1, keepdim=True)
    var = (x32 - mean).pow(2).mean(dim=-1, keepdim=True)  # biased variance, as torch and the paper
    y = ((x32 - mean) * torch.rsqrt(var + eps)).to(x.dtype)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GeLU (Hendrycks & Gimpel 2016), exact form x * Phi(x) with Phi the standard normal CDF."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU / Swish-1: x * sigmoid(x). The gate of SwiGLU."""
    return x * torch.sigmoid(x)


def relu(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp_min(x, 0.0)


def swiglu(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, w3: torch.Tensor) -> torch.Tensor:
    """SwiGLU MLP (Shazeer 2020, used by PaLM and Llama): (silu(x W1^T) * (x W3^T)) W2^T.

    Llama naming: w1 = gate (hidden, C), w3 = up (hidden, C), w2 = down (C, hidden).
    """
    return (silu(x @ w1.T) * (x @ w3.T)) @ w2.T


def geglu(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, w3: torch.Tensor) -> torch.Tensor:
    """GeGLU: like SwiGLU with a GeLU gate."""
    return (gelu(x @ w1.T) * (x @ w3.T)) @ w2.T


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax: subtracting the max changes nothing mathematically but keeps exp() finite."""
    x = x - x.amax(dim=dim, keepdim=True).detach()
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean negative log-likelihood of `targets` under `logits` (..., V), averaged over all leading dims.

    log_softmax = x - logsumexp(x): computed without ever forming exp(x) of large values. Positions whose
    target equals `ignore_index` (e.g. prompt tokens in SFT) do not count.
    """
    logits = logits.reshape(-1, logits.size(-1)).float()
    targets = targets.reshape(-1)
    keep = targets != ignore_index
    logz = torch.logsumexp(logits, dim=-1)  # (N,)
    picked = logits.gather(1, targets.clamp_min(0)[:, None]).squeeze(1)  # (N,)
    nll = (logz - picked) * keep
    return nll.sum() / keep.sum().clamp_min(1)


# ---------------------------------------------------------------------------------------------------------
# Modules used by the model.


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (GPT-2 has one; many later models drop it)."""

    def __init__(self, dim: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """RMSNorm: cheaper than LayerNorm (no mean, no bias) and as stable in practice (Llama, T5, Gopher).

    triton=True runs the fused Triton kernel (minillm.kernels.rmsnorm): one read and one write of x per pass.
    """

    def __init__(self, dim: int, eps: float = 1e-5, triton: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps
        self.triton = triton

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.triton:
            return kernels.ops.rms_norm(x, self.weight, self.eps)
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


def make_norm(cfg: ModelConfig) -> nn.Module:
    """The norm layer a config asks for. DeepNorm is LayerNorm placed post-residual with scaled inputs."""
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.n_embd, cfg.norm_eps, triton=cfg.kernels == "triton")
    return LayerNorm(cfg.n_embd, cfg.bias, cfg.norm_eps)


class MLP(nn.Module):
    """Position-wise feed-forward network: C -> ffn_hidden -> C.

    relu/gelu: w2(act(w1 x)), two matrices. swiglu/geglu: w2(act(w1 x) * w3 x), three matrices (the gated
    linear unit); config picks ffn_hidden = 8/3 C for them so the parameter count matches 4 C.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.activation = cfg.activation
        self.triton = cfg.kernels == "triton" and cfg.activation == "swiglu"  # the fused silu(a) * b kernel
        hidden = cfg.ffn_hidden
        self.w1 = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias)  # up (or gate for GLU variants)
        self.w3 = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias) if self.gated else None  # up for GLU
        self.w2 = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)  # down; a residual projection
        self.w2.is_residual_proj = True
        self.dropout = nn.Dropout(cfg.dropout)

    @property
    def gated(self) -> bool:
        return self.activation in ("swiglu", "geglu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        h = self.w1(x)  # (B, T, hidden)
        if self.activation == "relu":
            h = F.relu(h)
        elif self.activation == "gelu":
            h = F.gelu(h)
        elif self.triton:
            h = kernels.ops.swiglu(h, self.w3(x))
        elif self.activation == "swiglu":
            h = F.silu(h) * self.w3(x)
        else:  # geglu
            h = F.gelu(h) * self.w3(x)
        return self.dropout(self.w2(h))
