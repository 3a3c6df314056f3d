"""Mixture-of-experts feed-forward layer: many MLPs, each token uses only k of them.

Survey §4.2.1 (mainstream architectures: mixture-of-experts, as in Switch Transformer and GLaM) scales the
parameter count without scaling the compute per token: the dense MLP of a block is replaced by E expert
MLPs and a learned router that sends each token to its top-k experts. Parameters grow E times; FLOPs per
token grow only k times (plus the tiny router).

Three pieces, each a plain function that reads like its equation (lab 04 uses them as references):
- `top_k_routing`: softmax router probabilities, the k largest per token, renormalised to sum to 1
  (GShard, Lepikhin et al. 2020; Mixtral). With k=1 the weight is always 1, so the router then learns only
  from the auxiliary losses below (Switch instead scales by the raw probability).
- `load_balancing_loss`: E · Σ_e f_e · P_e (Switch Transformer, Fedus et al. 2021, eq. 4). Without it the
  router collapses onto a few experts that then get all the training; it is 1 when routing is uniform.
- `router_z_loss`: mean(logsumexp(logits)^2) (ST-MoE, Zoph et al. 2022): keeps router logits small, which
  keeps the softmax out of its saturated, round-off-sensitive range.

`MoE` is the module a `Block` uses when `ModelConfig.n_expert > 0`. Each expert has a capacity of
ceil(capacity_factor · N · k / E) token slots per forward (N tokens in the batch); tokens past it are
dropped in token order (earlier tokens win), contribute 0 from that expert, and pass through the block on
the residual connection alone (Switch). capacity_factor=None never drops. Capacity depends on the whole
batch, so with dropping a token's output depends on other tokens; use None where outputs must match
token by token (KV-cache decoding vs a full forward).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm.config import ModelConfig
from minillm.model.layers import MLP, softmax

# ---------------------------------------------------------------------------------------------------------
# Functional forms: one equation each.


def top_k_routing(router_logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """router_logits (N, E) -> (weights (N, k), expert_index (N, k), probs (N, E)).

    probs = softmax(logits); expert_index = the k most probable experts, most probable first. weights: for
    k = 1 the chosen expert's probability itself (Switch Transformer), so the LM loss trains the router through
    the gate; for k > 1 the chosen probabilities renormalised to sum to 1 per token (GShard, Mixtral).
    Renormalising a single weight would make it exactly 1 and cut the router off from the LM loss.
    """
    if not 1 <= k <= router_logits.size(-1):
        raise ValueError(f"k={k} must be between 1 and the number of experts {router_logits.size(-1)}")
    probs = softmax(router_logits.float(), dim=-1)  # (N, E); fp32: a bf16 softmax over experts is coarse
    top_p, expert_index = probs.topk(k, dim=-1)  # (N, k) each
    weights = top_p if k == 1 else top_p / top_p.sum(dim=-1, keepdim=True)
    return weights, expert_index, probs


def load_balancing_loss(router_probs: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
    """Switch/GShard auxiliary loss E · Σ_e f_e · P_e for router_probs (N, E) and expert_index (N, k).

    f_e: fraction of token-slots routed to e (tokens whose top-k includes e, divided by k), a count with no
    gradient. P_e: mean router probability of e, differentiable. Their dot product is smallest when routing
    is uniform, where the loss equals 1; E · makes that value independent of the number of experts.
    """
    n_expert = router_probs.size(-1)
    f = F.one_hot(expert_index, n_expert).float().sum(dim=1).mean(dim=0) / expert_index.size(-1)  # (E,)
    p = router_probs.float().mean(dim=0)  # (E,)
    return n_expert * (f * p).sum()


def router_z_loss(router_logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2 for router_logits (N, E)."""
    return torch.logsumexp(router_logits.float(), dim=-1).pow(2).mean()


def expert_capacity(n_tokens: int, n_expert: int, k: int, capacity_factor: float | None) -> int:
    """Token slots each expert may take in one forward: ceil(factor · N · k / E), or N · k (no limit)."""
    if capacity_factor is None:
        return n_tokens * k
    return math.ceil(capacity_factor * n_tokens * k / n_expert)


# ---------------------------------------------------------------------------------------------------------
# The module used by the model.


class MoE(nn.Module):
    """E expert MLPs behind a top-k router: (B, T, C) -> (B, T, C). Same interface as `MLP`.

    After each forward: `aux_loss` and `z_loss` (scalars in the autograd graph, which GPT adds to its loss)
    and `stats()` (load per expert, dropped fraction, both losses as floats).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.n_expert < 1:
            raise ValueError(f"MoE needs ModelConfig.n_expert >= 1, got {cfg.n_expert}; use MLP for a dense layer")
        self.n_expert, self.top_k, self.capacity_factor = cfg.n_expert, cfg.expert_top_k, cfg.capacity_factor
        self.router = nn.Linear(cfg.n_embd, cfg.n_expert, bias=False)  # a logit per expert
        self.experts = nn.ModuleList(MLP(cfg) for _ in range(cfg.n_expert))
        self.aux_loss: torch.Tensor | None = None
        self.z_loss: torch.Tensor | None = None
        self._stats: dict[str, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        shape, E, k = x.shape, self.n_expert, self.top_k
        xf = x.reshape(-1, shape[-1])  # (N, C): routing is per token, batch and time alike
        N = xf.size(0)
        logits = self.router(xf)  # (N, E)
        weights, expert_index, probs = top_k_routing(logits, k)  # (N, k), (N, k), (N, E)
        self.aux_loss = load_balancing_loss(probs, expert_index)
        self.z_loss = router_z_loss(logits)

        # Slot s = token s // k, its (s % k)-th choice. A stable sort by expert groups the slots of each
        # expert and keeps token order inside a group, so "the first `capacity` of each group" is exactly
        # "dropped in token order".
        slot_expert = expert_index.reshape(-1)  # (N*k,)
        slot_weight = weights.reshape(-1)  # (N*k,)
        order = torch.argsort(slot_expert, stable=True)  # (N*k,) slots grouped by expert
        counts = torch.bincount(slot_expert, minlength=E)  # (E,) slots routed to each expert
        capacity = expert_capacity(N, E, k, self.capacity_factor)
        kept = counts.clamp(max=capacity)  # (E,)

        out = torch.zeros_like(xf)  # (N, C); dropped slots add nothing here
        start = 0
        for e, (n_routed, n_kept) in enumerate(zip(counts.tolist(), kept.tolist())):  # one sync per layer
            slots = order[start:start + n_kept]  # (n_kept,) the earliest tokens win
            start += n_routed
            # An expert with no tokens still runs, on a (0, C) slice: its parameters then join the graph and
            # get a zero gradient instead of none. DDP needs that (a parameter without a gradient makes it
            # raise at the next step), and so does agreement with DDP: all ranks' zeros all-reduce to zero,
            # so one process must step the optimizer with a zero gradient too (AdamW decays and moves it by
            # momentum), not skip the parameter. An empty matmul costs a launch, not FLOPs.
            tokens = slots // k  # (n_kept,)
            y = self.experts[e](xf[tokens]) * slot_weight[slots, None]  # (n_kept, C)
            out.index_add_(0, tokens, y.to(out.dtype))

        n_slots = N * k
        self._stats = {"load": counts.detach().float() / n_slots,
                       "dropped": (n_slots - kept.sum()).float() / n_slots,
                       "aux_loss": self.aux_loss.detach(), "z_loss": self.z_loss.detach()}
        return out.reshape(shape)

    def stats(self) -> dict:
        """From the last forward: "load" (E,) fraction of token-slots routed to each expert (before capacity),
        "dropped" fraction of token-slots dropped by capacity, "aux_loss" and "z_loss" (unweighted floats)."""
        if self._stats is None:
            raise RuntimeError("MoE.stats() reads the last forward pass: run the model on a batch first")
        s = self._stats
        return {"load": s["load"].cpu(), "dropped": float(s["dropped"]),
                "aux_loss": float(s["aux_loss"]), "z_loss": float(s["z_loss"])}

    def expert_params(self) -> int:
        """Parameters of one expert (all experts have the same shape)."""
        return sum(p.numel() for p in self.experts[0].parameters())
