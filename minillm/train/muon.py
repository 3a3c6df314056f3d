"""Muon: momentum, orthogonalised, for the hidden weight matrices; AdamW for everything else.

Survey §4.3.1 names Adam/AdamW as the LLM optimizer; Muon (Jordan et al., 2024; Liu et al., "Muon is Scalable for
LLM Training", 2025) is today's strongest alternative for the matrices inside the blocks. Its update for a weight
matrix W with gradient G, at every step:

    M ← μ·M + (1 − μ)·G                      momentum (μ = 0.95), as SGD's
    U = μ·M + (1 − μ)·G                       Nesterov: look one momentum step ahead
    O ≈ orthogonalise(U)                      U = A·S·Bᵀ (SVD)  →  O ≈ A·Bᵀ: every singular value set to ~1
    W ← W·(1 − lr·λ) − lr · 0.2·√max(m, n) · O

Why orthogonalise: the raw (momentum) gradient of a matrix is dominated by a few directions (a few large singular
values); Adam only rescales it coordinate by coordinate. Setting every singular value to ~1 gives the rare
directions as large a step as the common ones. `orthogonalise` never computes an SVD: five Newton-Schulz steps
X ← a·X + b·(XXᵀ)X + c·(XXᵀ)²X (a quintic with a, b, c chosen to push all singular values towards 1 fast) cost a
few small matmuls. The factor 0.2·√max(m, n) (Liu et al.) makes the update's RMS about AdamW's, so one learning
rate, one schedule and one weight decay serve both halves of the model.

What stays on AdamW: embeddings (a row is a lookup, not a linear map: "directions" mean nothing there), the output
head, and the 1-D norm gains and biases. `muon_param_groups` makes that split; `Muon` runs both updates in one
optimizer, so the Trainer, the lr schedule, clipping and checkpoints see a single object.

Matrices of the same shape are orthogonalised together in one batched matmul chain (all the layers' q, k, v, o
at once): on a CPU that is what makes Muon's step cost close to AdamW's for a small model. Whole matrices are
needed, so Muon is not offered with FSDP (sharded parameters): use `parallel="ddp"` or none.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from minillm.train.optim import AdamW, param_groups

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Jordan et al.'s quintic: steep at 0, lands singular values in ~[0.7, 1.2]


def orthogonalise(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """≈ A·Bᵀ for g = A·S·Bᵀ: every singular value of each matrix in g (..., m, n) pushed to ~1 by Newton-Schulz.

    Works on a batch of matrices of one shape. Computes in bf16 on CUDA (tensor cores; the iteration is robust to
    it) and in fp32 elsewhere (CPUs are slow at bf16 matmuls).
    """
    a, b, c = NS_COEFFICIENTS
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    wide = x.size(-2) <= x.size(-1)
    if not wide:  # iterate on the wide orientation: X Xᵀ is then the smaller Gram matrix
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)  # Frobenius norm ≥ spectral norm: all singular values ≤ 1
    for _ in range(steps):
        gram = x @ x.mT  # (..., m, m)
        x = a * x + (b * gram + c * gram @ gram) @ x
    if not wide:
        x = x.mT
    return x.to(g.dtype)


class Muon(AdamW):
    """Muon on the param groups marked `muon=True`, minillm's AdamW on the others (build them with
    `muon_param_groups`). Muon groups take `momentum`, `nesterov`, `ns_steps`; AdamW groups take `betas`, `eps`.
    Every group has its own `lr` and `weight_decay`, so the Trainer's schedule sets them all alike.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.1, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"Muon: momentum={momentum!r} must be in [0, 1)")
        if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or ns_steps < 1:
            raise ValueError(f"Muon: ns_steps={ns_steps!r} must be a positive integer (5 is the usual)")
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        for group in self.param_groups:
            group.setdefault("muon", False)
            group.setdefault("momentum", momentum)
            group.setdefault("nesterov", nesterov)
            group.setdefault("ns_steps", ns_steps)
            if group["muon"] and any(p.dim() != 2 for p in group["params"]):
                shapes = sorted({tuple(p.shape) for p in group["params"] if p.dim() != 2})
                raise ValueError(f"Muon: a muon=True group holds parameters of shapes {shapes}; Muon updates "
                                 "2-D weight matrices only. Put the others in an AdamW group (muon_param_groups "
                                 "does this split)")

    _sparse_hint = None  # (as before: no sparse check here)

    def _init_state(self, group: dict, p: torch.Tensor) -> None:
        if group["muon"]:
            self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        else:
            super()._init_state(group, p)

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        if group["muon"]:
            self._muon_update(group, params)
        else:
            super()._update(group, params, grads)

    def _muon_update(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
        grads = [p.grad for p in params]
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        torch._foreach_lerp_(bufs, grads, 1.0 - mu)  # M ← μ·M + (1 − μ)·G
        updates = torch._foreach_lerp(grads, bufs, mu) if group["nesterov"] else bufs  # μ·M + (1 − μ)·G
        if wd != 0.0:
            torch._foreach_mul_(params, 1.0 - lr * wd)  # decoupled weight decay, as AdamW's
        by_shape: dict[tuple, list[int]] = {}
        for i, p in enumerate(params):
            by_shape.setdefault((tuple(p.shape), p.device, p.dtype), []).append(i)
        for (shape, _, _), idx in by_shape.items():
            ortho = orthogonalise(torch.stack([updates[i] for i in idx]), group["ns_steps"])  # (k, m, n)
            scale = -lr * 0.2 * math.sqrt(max(shape))  # update RMS ≈ AdamW's (Liu et al., 2025)
            for j, i in enumerate(idx):
                params[i].add_(ortho[j], alpha=scale)


def muon_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """`param_groups` (decay / no decay) with the decayed hidden matrices moved into a `muon=True` group.

    Hidden matrices: 2-D weights that are neither an `nn.Embedding` table nor the output head (`model.lm_head`,
    tied or not). Those two and every 1-D parameter keep AdamW.
    """
    head = getattr(model, "lm_head", None)
    skip = {id(head.weight)} if isinstance(head, nn.Linear) else set()
    groups = []
    for g in param_groups(model, weight_decay):
        if g["weight_decay"] == 0.0:
            groups.append({**g, "muon": False})
            continue
        keep = [(p, n) for p, n in zip(g["params"], g["param_names"]) if p.dim() == 2 and id(p) not in skip]
        rest = [(p, n) for p, n in zip(g["params"], g["param_names"]) if not (p.dim() == 2 and id(p) not in skip)]
        for pairs, muon in ((keep, True), (rest, False)):
            if pairs:
                groups.append({"params": [p for p, _ in pairs], "param_names": [n for _, n in pairs],
                               "weight_decay": weight_decay, "muon": muon})
    return groups
