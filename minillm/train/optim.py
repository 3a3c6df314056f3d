"""AdamW, weight-decay parameter groups, learning-rate schedules and gradient clipping.

Survey §4.3.1 (optimization setting): LLMs are trained with Adam/AdamW (β1 = 0.9, β2 = 0.95, ε = 1e-8),
a learning rate that warms up linearly and then decays (cosine down to ~10% of the peak), weight decay 0.1 and
gradient clipping at a global norm of 1.0 for stability. This module writes each of those pieces out:

- `AdamW`: the update rule in ~20 lines of tensor math, numerically equal to `torch.optim.AdamW`.
- `SGDW` and `build_optimizer`: the optimizers to compare it with (SGD, Adam + L2, Adafactor, Lion, Muon).
- `param_groups`: which parameters get weight decay, and why.
- `lr_at`: warmup + cosine / WSD (warmup-stable-decay) / linear / constant schedules.
- `clip_grad_norm_`: global-norm clipping, equal to `torch.nn.utils.clip_grad_norm_`.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from minillm.config import OPTIMIZERS, TrainConfig


class GroupedOptimizer(torch.optim.Optimizer):
    """The step every optimizer here shares: evaluate the closure, then for each param group with gradients, create
    missing state (`_init_state`) and update the group in vectorised ops (`_update`). Subclasses write only those two.
    `_sparse_hint` set: sparse gradients are refused with that advice."""

    _sparse_hint: str | None = None

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if self._sparse_hint is not None and any(g.is_sparse for g in grads):
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients; {self._sparse_hint}")
            for p in params:  # lazy state init, once per parameter (a loop over tensors, not over elements)
                if not self.state[p]:
                    self._init_state(group, p)
            self._update(group, params, grads)
        return loss

    def _init_state(self, group: dict, p: torch.Tensor) -> None:
        """Fill self.state[p] before p's first update (called only while it is empty)."""

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        raise NotImplementedError


class AdamW(GroupedOptimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), written to be read.

    For every parameter θ with gradient g, at step t = 1, 2, ...:

        θ ← θ · (1 − lr·λ)                       decoupled weight decay: shrink θ, outside the gradient
        m ← β1·m + (1 − β1)·g                    first moment: a running mean of the gradient
        v ← β2·v + (1 − β2)·g²                   second moment: a running mean of its square
        m̂ = m / (1 − β1ᵗ),  v̂ = v / (1 − β2ᵗ)    bias correction: m and v start at 0, so early means are too small
        θ ← θ − lr · m̂ / (√v̂ + ε)                each coordinate's step is ~lr, whatever its gradient scale

    "Decoupled" is the difference from Adam + L2: in Adam the decay term λθ would be added to g and then divided by
    √v̂, so parameters with large gradients would be decayed less. AdamW decays all of them at the same rate.

    The arithmetic is the same sequence of operations as torch's implementation (including `lerp` for the first
    moment), so results agree to float rounding. It is vectorised with `torch._foreach_*` ops: one kernel launch
    per operation for the whole parameter list instead of one per tensor. State keys match torch's
    (`step`, `exp_avg`, `exp_avg_sq`), so `state_dict()` round-trips and can even be loaded into torch's AdamW.
    AMSGrad, `maximize` and sparse gradients are not supported (LLM training does not use them).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        if not lr >= 0.0:
            raise ValueError(f"AdamW: lr={lr!r} must be >= 0")
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"AdamW: betas={betas!r} must be two numbers in [0, 1)")
        if not eps > 0.0:
            raise ValueError(f"AdamW: eps={eps!r} must be > 0 (it keeps the division finite when v is 0)")
        if not weight_decay >= 0.0:
            raise ValueError(f"AdamW: weight_decay={weight_decay!r} must be >= 0")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    _sparse_hint = "use torch.optim.SparseAdam"

    def _init_state(self, group: dict, p: torch.Tensor) -> None:
        # step lives on the CPU as a float32 scalar tensor, exactly like torch's AdamW state.
        self.state[p]["step"] = torch.tensor(0.0, dtype=torch.float32)
        self.state[p]["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        self.state[p]["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        states = [self.state[p] for p in params]
        steps = [s["step"] for s in states]
        exp_avgs = [s["exp_avg"] for s in states]
        exp_avg_sqs = [s["exp_avg_sq"] for s in states]

        torch._foreach_add_(steps, 1.0)  # t ← t + 1
        if wd != 0.0:
            torch._foreach_mul_(params, 1.0 - lr * wd)  # θ ← θ(1 − lr·λ)
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)  # m ← m + (1−β1)(g − m) = β1·m + (1−β1)·g
        torch._foreach_mul_(exp_avg_sqs, beta2)  # v ← β2·v ...
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)  # ... + (1−β2)·g²

        # Bias corrections are scalars per tensor; step is on the CPU, so .item() costs no device sync.
        ts = [s.item() for s in steps]
        step_sizes = [-lr / (1.0 - beta1**t) for t in ts]  # −lr / (1 − β1ᵗ): folds m̂'s correction into lr
        bc2_sqrt = [(1.0 - beta2**t) ** 0.5 for t in ts]  # √(1 − β2ᵗ)
        denom = torch._foreach_sqrt(exp_avg_sqs)  # √v
        torch._foreach_div_(denom, bc2_sqrt)  # √v / √(1 − β2ᵗ) = √v̂
        torch._foreach_add_(denom, eps)  # √v̂ + ε
        torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)  # θ ← θ − lr·m̂ / (√v̂ + ε)


class SGDW(GroupedOptimizer):
    """SGD with (Nesterov) momentum and decoupled weight decay: the optimizer before Adam, kept for comparison.

    For every parameter θ with gradient g (momentum μ, buffer b; b = g at the first step, as torch's SGD):

        b ← μ·b + g                          momentum: a running sum of past gradients
        u = g + μ·b  (Nesterov)  or  u = b    Nesterov looks one momentum step ahead
        θ ← θ·(1 − lr·λ) − lr·u               decay decoupled from u, as AdamW's (SGDW, Loshchilov & Hutter 2019)

    Its state is one buffer per parameter (1x the parameters' bytes). Unlike Adam it has no per-coordinate scale:
    every coordinate moves by lr times its (smoothed) gradient, so parameters with small gradients barely move and
    the best lr is far larger than Adam's. With weight_decay=0 it equals `torch.optim.SGD(momentum, nesterov)`.
    """

    def __init__(self, params, lr: float = 1e-1, momentum: float = 0.9, nesterov: bool = True,
                 weight_decay: float = 0.0):
        if not lr >= 0.0:
            raise ValueError(f"SGDW: lr={lr!r} must be >= 0")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGDW: momentum={momentum!r} must be in [0, 1)")
        if nesterov and momentum == 0.0:
            raise ValueError("SGDW: nesterov=True needs momentum > 0 (it looks one momentum step ahead)")
        if not weight_decay >= 0.0:
            raise ValueError(f"SGDW: weight_decay={weight_decay!r} must be >= 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))

    def _update(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        fresh = [p for p in params if "momentum_buffer" not in self.state[p]]
        for p in fresh:  # first step: b = g (torch's convention), so the first update is g (1 + μ) under Nesterov
            self.state[p]["momentum_buffer"] = p.grad.detach().clone()
        fresh_ids = {id(p) for p in fresh}
        old = [p for p in params if id(p) not in fresh_ids]
        if old:
            bufs = [self.state[p]["momentum_buffer"] for p in old]
            torch._foreach_mul_(bufs, mu)  # b ← μ·b ...
            torch._foreach_add_(bufs, [p.grad for p in old])  # ... + g
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        updates = torch._foreach_add(grads, bufs, alpha=mu) if group["nesterov"] else bufs  # g + μ·b
        if wd != 0.0:
            torch._foreach_mul_(params, 1.0 - lr * wd)  # θ ← θ(1 − lr·λ)
        torch._foreach_add_(params, updates, alpha=-lr)  # θ ← θ − lr·u


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split parameters into a decayed and a non-decayed group for AdamW.

    Weight decay pulls weights toward 0, acting as a prior that keeps the *matrices* that mix features small
    (and the logits well scaled). It is left off for:
      - biases and norm gains (1-D): they shift/scale single features; decaying a norm's gain toward 0 would
        fight the normalization itself, and there are too few of them to overfit;
      - embeddings (`nn.Embedding` tables, token and learned position): each row is only updated when its token
        appears, so decay would keep shrinking rare tokens' rows between their rare gradient updates.
    A tied output head shares the token-embedding tensor; `named_parameters()` yields a shared tensor once, so it
    is counted once and (being the embedding) not decayed.

    Returns torch param-group dicts with a `param_names` list each (torch >= 2.6 stores them in state_dict).
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay!r} must be >= 0")
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = ([], []), ([], [])
    for name, p in model.named_parameters():  # deduplicates shared (tied) tensors
        if not p.requires_grad:
            continue
        bucket = decay if p.dim() >= 2 and id(p) not in embedding_ids else no_decay
        bucket[0].append(p)
        bucket[1].append(name)
    if not decay[0] and not no_decay[0]:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    groups = [
        {"params": decay[0], "param_names": decay[1], "weight_decay": weight_decay},
        {"params": no_decay[0], "param_names": no_decay[1], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device | str | None = None):
    """The optimizer `cfg.optimizer` names. Every choice keeps `param_groups(model, cfg.weight_decay)`'s split (no
    decay on embeddings, norms, biases); what each keeps as state per parameter is in brackets.

    - 'adamw': minillm's readable `AdamW` (cfg's lr, betas, eps; decoupled decay) [m, v: 2x the parameters].
    - 'torch_adamw': torch's AdamW, with its fused single-kernel CUDA implementation when training on CUDA
      (fastest there; the math is the same) [2x].
    - 'muon': `train.muon.Muon` on the hidden matrices and AdamW (cfg's betas) on embeddings, the output head,
      norms and biases [1x on the matrices, 2x on the rest].
    - 'sgd': `SGDW`, Nesterov momentum 0.9 (fixed: the classic setting; cfg's betas are Adam's), decoupled decay
      [1x].
    - 'adam': `torch.optim.Adam` with L2 decay: λθ is added to the gradient before the division by √v̂, so
      parameters with large gradients are decayed less -- the contrast AdamW's docstring draws [2x].
    - 'adafactor': `torch.optim.Adafactor` (Shazeer & Stern, 2018): the second moment of a matrix is factored into
      a row and a column mean (m + n numbers for m × n), no first moment. Its lr is a RELATIVE step: each step
      moves a tensor by about min(lr, 1/√t) × its own RMS, so good values (~1e-2 to 1e-1) are not AdamW's; its
      β2 follows its own schedule 1 − t^−0.8 (cfg's betas and eps are unused); decay is decoupled, θ·(1 − lr·λ),
      with that relative lr [~0 on matrices, 1x on vectors].
    - 'lion': `train.lion.Lion`, betas (cfg.beta1, LION_BETA2 = 0.99), decoupled decay [m: 1x].
    """
    kwargs = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "muon":
        from minillm.train.muon import Muon, muon_param_groups  # muon.py builds on this module's AdamW

        return Muon(muon_param_groups(model, cfg.weight_decay), **kwargs)
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return AdamW(groups, **kwargs)
    if cfg.optimizer == "torch_adamw":
        fused = torch.device(device).type == "cuda" if device is not None else None
        return torch.optim.AdamW(groups, fused=fused or None, **kwargs)
    if cfg.optimizer == "sgd":
        return SGDW(groups, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, **kwargs)  # each group's weight_decay is Adam's L2 term
    if cfg.optimizer == "adafactor":
        return torch.optim.Adafactor(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "lion":
        from minillm.train.lion import LION_BETA2, Lion  # lion.py builds on this module's GroupedOptimizer

        return Lion(groups, lr=cfg.lr, betas=(cfg.beta1, LION_BETA2), weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer={cfg.optimizer!r} is not valid; choose one of {', '.join(OPTIMIZERS)}")


def lr_at(step: int, cfg: TrainConfig, *, wsd_shape: str = "linear") -> float:
    """Learning rate for optimizer step `step` (0-based) under `cfg`'s schedule.

    Warmup (all schedules): lr·(step+1)/warmup_steps for step < warmup_steps, so the very first step is small but
    not wasted, and step warmup_steps−1 reaches the peak `lr`. Large random-init gradients make early Adam steps
    unreliable; warmup keeps them small while Adam's moment estimates settle.

    After warmup, with W = warmup_steps and S = max_steps, the decay runs from `lr` at step W to `min_lr` at the
    last step S−1 (progress p = (step − W) / (S − 1 − W)):
      - cosine:   min_lr + (lr − min_lr)·(1 + cos(π p))/2      (GPT-3, Chinchilla, Llama)
      - linear:   lr + (min_lr − lr)·p
      - constant: lr
      - wsd:      constant `lr` until the last ceil(decay_frac·S) steps, then decay to min_lr over them, linearly
                  or with `wsd_shape='sqrt'`: min_lr + (lr − min_lr)(1 − √p) (MiniCPM, Hägele et al. 2024).
                  The stable phase lets one run be continued or branched off at any point.
    Steps past the end stay at the final value, so plotting a few steps beyond max_steps is safe.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step={step!r} must be a non-negative integer (0-based optimizer step)")
    if wsd_shape not in ("linear", "sqrt"):
        raise ValueError(f"wsd_shape={wsd_shape!r} is not valid; choose linear or sqrt")
    lr, min_lr, W, S = cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.max_steps
    if step < W:
        return lr * (step + 1) / W
    if cfg.schedule == "constant":
        return lr
    start = W
    if cfg.schedule == "wsd":
        start = max(W, S - math.ceil(cfg.decay_frac * S))
        if step < start:
            return lr
    p = min(1.0, (step - start) / max(1, S - 1 - start))  # decay progress in [0, 1]
    if cfg.schedule == "cosine":
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))
    if cfg.schedule == "linear" or (cfg.schedule == "wsd" and wsd_shape == "linear"):
        return lr + (min_lr - lr) * p
    if cfg.schedule == "wsd":  # 1 − sqrt decay: drops quickly at first, then flattens into min_lr
        return min_lr + (lr - min_lr) * (1.0 - math.sqrt(p))
    raise ValueError(f"schedule={cfg.schedule!r} is not valid; choose cosine, wsd, linear or constant")


def lr_curve(cfg: TrainConfig, *, wsd_shape: str = "linear") -> list[float]:
    """`[lr_at(s, cfg) for s in range(cfg.max_steps)]`: the whole schedule, ready to plot."""
    return [lr_at(s, cfg, wsd_shape=wsd_shape) for s in range(cfg.max_steps)]


def _grads(params: torch.Tensor | Iterable[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(params, torch.Tensor):
        params = [params]
    return [p.grad for p in params if p.grad is not None]


def clip_grad_norm_(params: torch.Tensor | Iterable[torch.Tensor], max_norm: float | None) -> torch.Tensor:
    """Scale all gradients together so their global L2 norm is at most `max_norm`; return the norm before.

    The global norm treats every gradient entry of the model as one long vector: ‖g‖ = √(Σ_tensors ‖g_i‖²).
    Scaling all tensors by the same factor keeps the update's direction and only shortens it, which is what
    guards against the loss spikes Survey §4.3.1 mentions. `max_norm=None` only measures the norm (for logging).
    The norm stays a 0-d tensor on the gradients' device: reading it with .item() would force a device sync.
    Matches `torch.nn.utils.clip_grad_norm_` (same 1e-6 guard in the divisor).
    """
    if max_norm is not None and not max_norm > 0:
        raise ValueError(f"max_norm={max_norm!r} must be positive (or None to only measure the norm)")
    grads = _grads(params)
    if not grads:
        return torch.tensor(0.0)
    # One norm per tensor in a single vectorised call, grouped by device (foreach ops need one device).
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for g in grads:
        by_device.setdefault(g.device, []).append(g)
    device = grads[0].device
    norms = [n.to(device) for gs in by_device.values() for n in torch._foreach_norm(gs, 2.0)]
    total = torch.linalg.vector_norm(torch.stack(norms), 2.0)  # √(Σ‖g_i‖²)
    if max_norm is not None:
        # min(1, max_norm / ‖g‖) computed on the device: no Python branch, so no sync.
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for gs in by_device.values():
            torch._foreach_mul_(gs, coef.to(gs[0].device))
    return total
