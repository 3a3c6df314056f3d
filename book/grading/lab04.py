"""Lab 04 checks: rotary position embedding and a mixture-of-experts router with its balancing loss
(Survey §4.2.2 position embeddings, §4.2.1 mixture-of-experts). Forward and backward are both compared."""
from __future__ import annotations

import torch

from book.grading.core import Case, Check, register_check


def _randn(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _rope_reference(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    from minillm.model.position import apply_rope  # imported here: keeps `import book.grading` light

    return apply_rope(x, positions, theta)


def _gates_reference(router_logits: torch.Tensor, k: int) -> torch.Tensor:
    from minillm.model.moe import top_k_routing

    weights, index, probs = top_k_routing(router_logits, k)
    return torch.zeros_like(probs).scatter(1, index, weights)  # (N, E): the chosen experts' gates, else 0


def _balance_reference(router_probs: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
    from minillm.model.moe import load_balancing_loss

    return load_balancing_loss(router_probs, expert_index)


def _probs_and_index(seed: int, n: int, e: int, k: int, skew: float = 0.0) -> tuple:
    """Router probabilities (N, E) and the top-k expert index (N, k) they imply; skew > 0 favours expert 0."""
    logits = _randn(seed, n, e)
    logits[:, 0] += skew
    probs = torch.softmax(logits, dim=-1)
    return probs, probs.topk(k, dim=-1).indices


def _register_lab04() -> None:
    register_check(Check(
        name="apply_rope",
        shortcuts=("minillm.model.position.apply_rope",),
        summary="apply_rope(x (..., T, D), positions (T,), theta) -> x with each pair (x[2i], x[2i+1]) rotated by "
                "positions * theta^(-2i/D)",
        hint="angles = positions[:, None] * theta ** (-arange(0, D, 2) / D) is (T, D/2); with e = x[..., 0::2] and "
             "o = x[..., 1::2]: (e cos - o sin, e sin + o cos), interleaved back into pairs (stack on a new last "
             "axis, then flatten the last two).",
        reference=_rope_reference, atol=1e-5, rtol=1e-5,
        cases=(
            Case("(2, 3, 5, 8) heads, positions 0..4", lambda: (_randn(0, 2, 3, 5, 8), torch.arange(5), 10000.0),
                 grad=True),
            Case("positions 100..106 (a later window)", lambda: (_randn(1, 1, 2, 7, 16), torch.arange(100, 107), 10000.0),
                 "Positions are given, not 0..T-1: use them as they are.", grad=True),
            Case("theta = 500 (fast rotations)", lambda: (_randn(2, 4, 6, 4), torch.arange(6), 500.0),
                 "The frequency of pair i is theta^(-2i/D): i counts pairs, 2i counts dimensions.", grad=True),
            Case("a single position and head_dim 2", lambda: (_randn(3, 1, 1, 2), torch.tensor([3]), 10000.0),
                 "Adjacent pairs (x[0], x[1]) rotate together; this is not the rotate-half layout.", grad=True),
        ),
    ))
    register_check(Check(
        name="moe_gates",
        shortcuts=("minillm.model.moe.top_k_routing",),
        summary="moe_gates(router_logits (N, E), k) -> (N, E) gates: the top-k experts' weights, 0 elsewhere",
        hint="probs = softmax(logits); take the top k; for k = 1 the gate is the probability itself (Switch), for "
             "k > 1 the chosen probabilities renormalised to sum 1 (GShard); scatter them into zeros of shape (N, E).",
        reference=_gates_reference, atol=1e-6, rtol=1e-5,
        cases=(
            Case("top-2 of 4 experts, 10 tokens", lambda: (_randn(10, 10, 4), 2), grad=True),
            Case("top-1 of 8 experts (Switch)", lambda: (_randn(11, 12, 8), 1),
                 "With k = 1 do not renormalise: a gate of exactly 1 would give the router no gradient.", grad=True),
            Case("top-4 of 4 (every expert)", lambda: (_randn(12, 5, 4), 4), grad=True),
            Case("large logits (|x| up to 60)", lambda: (_randn(13, 6, 3, scale=20.0), 2),
                 "Use a stable softmax (subtract the row max) or torch.softmax.", grad=True),
        ),
    ))
    register_check(Check(
        name="load_balancing_loss",
        shortcuts=("minillm.model.moe.load_balancing_loss",),
        summary="load_balancing_loss(router_probs (N, E), expert_index (N, k)) -> E * sum_e f_e * P_e",
        hint="f_e = (number of tokens whose top-k includes e) / (N k), a count with no gradient; P_e = mean over "
             "tokens of router_probs[:, e]; return E * (f * P).sum(). Uniform routing gives exactly 1.",
        reference=_balance_reference, atol=1e-6, rtol=1e-5,
        cases=(
            Case("top-1 of 4 experts, 16 tokens", lambda: _probs_and_index(20, 16, 4, 1), grad=True),
            Case("top-2 of 8 experts", lambda: _probs_and_index(21, 32, 8, 2),
                 "f counts token-slots: divide by N * k, so that f sums to 1.", grad=True),
            Case("a collapsed router (expert 0 takes almost everything)", lambda: _probs_and_index(22, 16, 4, 1, 6.0),
                 "The loss grows toward E when one expert takes all tokens with high probability.", grad=True),
            Case("one token", lambda: _probs_and_index(23, 1, 3, 2), grad=True),
        ),
    ))


_register_lab04()  # cheap: builds Check objects only; tensors are made when a check runs
