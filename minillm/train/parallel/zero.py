"""ZeRO stage 1, written to be read: each rank keeps Adam's moments for only 1/N of the parameters.

Survey §4.3.2 (ZeRO): in plain data parallelism every rank stores the full optimizer state, and for Adam that is
the largest part of model state: 8 of the 16 bytes per parameter (fp32 m and v; see `precision.memory_estimate`).
ZeRO (Rajbhandari et al. 2020) removes the redundancy in stages:
  stage 1  partition the optimizer state     (this file)       optimizer bytes / N
  stage 2  ... and the gradients             (reduce-scatter instead of all-reduce)
  stage 3  ... and the parameters themselves (= FSDP, see fsdp.py)

`ZeroOneAdamW` flattens each parameter group into one vector of P numbers, padded to a multiple of N, and rank r
owns the contiguous slice [r·S, (r+1)·S), S = ceil(P / N). One step:
  1. all-reduce the flat gradient and divide by N (the data-parallel average; replaces DDP's all-reduce);
  2. update only the owned slice with minillm's `AdamW` (its moments exist only for that slice);
  3. all-gather the updated slices so every rank again holds all parameters.
Stage 2 would reduce-scatter in step 1 (each rank only needs its slice's gradient); all-reduce is kept here
because it equals reduce-scatter + all-gather and leaves the full averaged gradient in .grad, which is easier
to inspect. The math per element is AdamW's, so the result equals unsharded AdamW on the averaged gradient.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist

from minillm.train.optim import AdamW


class ZeroOneAdamW(torch.optim.Optimizer):
    """AdamW whose state is sharded over `world_size` ranks (ZeRO-1). Use on a model that is *not* DDP-wrapped:
    the gradient all-reduce happens in `step`.

    params: parameters or param groups (e.g. `param_groups(model, wd)`), identical on every rank.
    Hyperparameters (lr, betas, eps, weight_decay) are read from `param_groups` at every step, so schedules that
    set group["lr"] work as usual. Frozen parameters (requires_grad=False when the optimizer is built, e.g. a LoRA
    base) are left out of the flat shards and never touched, as torch.optim.AdamW skips them; pass
    `model.parameters()` as you would to AdamW. Every trainable parameter must have a gradient at `step` (a missing
    one is an error: plain AdamW would skip it, which a flat shard cannot), and unfreezing a parameter later needs
    a new optimizer (the shard layout is fixed here). `state_dict()` holds this rank's shard only.
    """

    def __init__(self, params, world_size: int, rank: int, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        for name, v in (("world_size", world_size), ("rank", rank)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"ZeroOneAdamW: {name}={v!r} must be an int")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"ZeroOneAdamW: need world_size >= 1 and 0 <= rank < world_size, "
                             f"got world_size={world_size}, rank={rank}")
        if world_size > 1:
            if not dist.is_initialized():
                raise RuntimeError("ZeroOneAdamW: world_size > 1 needs a process group (init_distributed / spawn)")
            if (dist.get_world_size(), dist.get_rank()) != (world_size, rank):
                raise ValueError(f"ZeroOneAdamW: world_size={world_size}, rank={rank} do not match the process "
                                 f"group (world_size={dist.get_world_size()}, rank={dist.get_rank()})")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.world_size, self.rank = world_size, rank
        # One flat shard per group: a leaf tensor that the inner AdamW updates and keeps m and v for. Only the
        # parameters trainable now are laid out in it; a group with none gets an empty shard and is skipped.
        self._trainable: list[list[torch.Tensor]] = [[p for p in g["params"] if p.requires_grad]
                                                     for g in self.param_groups]
        if not any(self._trainable):
            raise ValueError("ZeroOneAdamW: every parameter is frozen (requires_grad=False); there is nothing to train")
        self._shards: list[torch.Tensor] = []
        for params in self._trainable:
            numel = sum(p.numel() for p in params)
            size = math.ceil(numel / world_size)  # S; the padding (≤ N−1 zeros) keeps all slices equal for gather
            ref = params[0] if params else self.param_groups[0]["params"][0]
            self._shards.append(torch.zeros(size, dtype=ref.dtype, device=ref.device))
        self._inner = AdamW([{"params": [s], **self._hyper(g)} for s, g in zip(self._shards, self.param_groups)])

    @staticmethod
    def _hyper(group: dict) -> dict:
        return {k: group[k] for k in ("lr", "betas", "eps", "weight_decay")}

    def _flat(self, tensors: list[torch.Tensor], shard_size: int) -> torch.Tensor:
        """Concatenate into one vector of length N·S (P values + zero padding)."""
        flat = torch.cat([t.reshape(-1) for t in tensors])  # (P,)
        return torch.nn.functional.pad(flat, (0, shard_size * self.world_size - flat.numel()))  # (N·S,)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        N, r = self.world_size, self.rank
        for group, params, shard, inner_group in zip(self.param_groups, self._trainable, self._shards,
                                                     self._inner.param_groups):
            S = shard.numel()
            unfrozen = [i for i, p in enumerate(group["params"]) if p.requires_grad and
                        not any(p is q for q in params)]
            if unfrozen:
                raise RuntimeError(f"ZeroOneAdamW: parameters {unfrozen} of a group were frozen when the optimizer was "
                                   "built and now require grad; the flat shards cannot grow, so build a new "
                                   "ZeroOneAdamW after unfreezing")
            if not params:
                shard.grad = torch.zeros_like(shard)  # an empty group: nothing to update, keeps the inner step uniform
                continue
            missing = [i for i, p in enumerate(group["params"]) if p.requires_grad and p.grad is None]
            if missing:
                raise RuntimeError(f"ZeroOneAdamW: parameters {missing} of a group have no gradient; every "
                                   "parameter must take part in the loss (or leave it out of the optimizer)")
            grad = self._flat([p.grad for p in params], S)  # (N·S,)
            if N > 1:
                dist.all_reduce(grad, op=dist.ReduceOp.SUM)
                grad.div_(N)  # average over ranks: each rank's loss is a mean over its share of the batch
                # Keep the averaged gradient visible in .grad, as DDP would leave it.
                offset = 0
                for p in params:
                    p.grad.copy_(grad[offset:offset + p.numel()].view_as(p))
                    offset += p.numel()
            shard.copy_(self._flat(params, S)[r * S:(r + 1) * S])  # this rank's slice of the current weights
            shard.grad = grad[r * S:(r + 1) * S].clone()  # (S,)
            inner_group.update(self._hyper(group))
        self._inner.step()  # AdamW on the shards only: m and v exist for S numbers per group, not P
        for params, shard in zip(self._trainable, self._shards):
            S = shard.numel()
            if not params:
                shard.grad = None
                continue
            full = torch.empty(S * N, dtype=shard.dtype, device=shard.device)  # (N·S,)
            if N > 1:
                dist.all_gather(list(full.chunk(N)), shard)  # rank k's slice lands in full[k·S:(k+1)·S]
            else:
                full.copy_(shard)
            offset = 0
            for p in params:
                p.copy_(full[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
            shard.grad = None
        return loss

    def state_bytes(self) -> int:
        """Bytes of optimizer state this rank holds (moments and step counters): ≈ 1/world_size of AdamW's."""
        return sum(t.numel() * t.element_size() for st in self._inner.state.values() for t in st.values()
                   if isinstance(t, torch.Tensor))

    def state_dict(self) -> dict:
        """This rank's shard of the state (each rank saves its own file, as sharded checkpoints do)."""
        return {"world_size": self.world_size, "rank": self.rank, "inner": self._inner.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        got = (state_dict.get("world_size"), state_dict.get("rank"))
        if got != (self.world_size, self.rank):
            raise ValueError(f"ZeroOneAdamW: state of (world_size, rank)={got} cannot be loaded into "
                             f"({self.world_size}, {self.rank}); the shards would not line up")
        self._inner.load_state_dict(state_dict["inner"])
