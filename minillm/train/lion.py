"""Lion: one momentum buffer and sign updates (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms").

Survey §4.3.1 trains LLMs with Adam/AdamW; Lion is an alternative found by a program search, which keeps half of
Adam's optimizer state. For every parameter θ with gradient g, at every step:

    u = sign(β1·m + (1 − β1)·g)           the update: only the SIGN of an interpolation of momentum and gradient
    θ ← θ·(1 − lr·λ) − lr·u               decoupled weight decay (as AdamW's), then a step of exactly lr per entry
    m ← β2·m + (1 − β2)·g                 momentum, updated AFTER the step with its own (slower) rate β2

What it keeps: one buffer m per parameter (AdamW keeps two, m and v), so its state is 1x the parameters' bytes
instead of 2x. Why it works: the sign gives every coordinate a step of the same size lr, which is what Adam's
division by √v approximates; without v there is no per-coordinate scale to estimate. Because every entry moves by
the full lr, Lion's lr is usually 3-10x smaller than AdamW's, and its λ 3-10x larger to keep lr·λ the same.

The betas: β1 = 0.9 and β2 = 0.99 are the paper's defaults. β2 here is the momentum's decay, not Adam's second-moment
rate, so `build_optimizer` passes TrainConfig.beta1 as β1 (the same "how much of the past" knob as Adam's β1) and
always uses `LION_BETA2` for β2: TrainConfig.beta2 = 0.95 is tuned for Adam's v and would shorten Lion's memory.

Vectorised with `torch._foreach_*` ops (one launch per operation for a whole param group). State key:
`exp_avg` (as torch's Adam names its first moment), so `state_dict()` round-trips.
"""
from __future__ import annotations

import torch

from minillm.train.optim import GroupedOptimizer

__all__ = ["Lion", "LION_BETA2"]

LION_BETA2 = 0.99  # Chen et al.'s default decay of Lion's momentum


class Lion(GroupedOptimizer):
    """Lion (see the module docstring for the rule). Param groups take `lr`, `betas` and `weight_decay`."""

    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, LION_BETA2),
                 weight_decay: float = 0.0):
        if not lr >= 0.0:
            raise ValueError(f"Lion: lr={lr!r} must be >= 0")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Lion: betas={betas!r} must be two numbers in [0, 1) (the paper uses (0.9, 0.99))")
        if not weight_decay >= 0.0:
            raise ValueError(f"Lion: weight_decay={weight_decay!r} must be >= 0")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    _sparse_hint = "use dense embeddings"

    def _init_state(self, group: dict, p: torch.Tensor) -> None:
        # m starts at 0, so the first update is sign((1 − β1)·g) = sign(g)
        self.state[p]["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        updates = torch._foreach_lerp(exp_avgs, grads, 1.0 - beta1)  # β1·m + (1 − β1)·g, a new list
        updates = torch._foreach_sign(updates)  # u ∈ {−1, 0, +1} per entry
        if wd != 0.0:
            torch._foreach_mul_(params, 1.0 - lr * wd)  # θ ← θ(1 − lr·λ)
        torch._foreach_add_(params, updates, alpha=-lr)  # θ ← θ − lr·u
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta2)  # m ← β2·m + (1 − β2)·g, after the step
