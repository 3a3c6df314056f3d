"""Lab 00 checks: softmax, cross-entropy and a causal attention head (Survey §4.2.2, §4.2.3)."""
from __future__ import annotations

import torch

from book.grading.core import Case, Check, register_check

# ------------------------------------------------------------------------------------------------
# Lab 00 checks: softmax, cross-entropy, a causal attention head


def _randn(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _with_masked(seed: int, *shape: int) -> torch.Tensor:
    """Random logits with about a third of the entries set to -inf (never a whole row along dim -1)."""
    x = _randn(seed, *shape)
    drop = torch.rand(*shape, generator=torch.Generator().manual_seed(seed + 1)) < 1 / 3
    drop[..., 0] = False  # keep one finite entry per row: an all -inf row has no defined softmax
    return x.masked_fill(drop, float("-inf"))


def _softmax_reference(x: torch.Tensor, dim: int) -> torch.Tensor:
    from minillm.model.layers import softmax  # imported here: keeps `import book.grading` light

    return softmax(x, dim)


def _cross_entropy_reference(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    from minillm.model.layers import cross_entropy

    return cross_entropy(logits, targets)


def _attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    from minillm.model.attention import scaled_dot_product_attention

    T = q.shape[-2]
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T), True = may attend (key <= query)
    return scaled_dot_product_attention(q, k, v, mask=causal)


_STABLE = "exp() overflows for large inputs: subtract the maximum along `dim` first (softmax is shift-invariant)."


def _register_lab00() -> None:
    register_check(Check(
        name="softmax",
        shortcuts=("minillm.model.layers.softmax",
                   "torch.softmax",
                   "torch.nn.functional.softmax", "torch.Tensor.softmax", "torch.special.softmax"),
        summary="softmax(x, dim): exp(x) normalized to sum to 1 along dim; stable for large inputs",
        hint="softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m) with m = x.max(dim, keepdim=True).values.",
        reference=_softmax_reference,
        cases=(
            Case("random (4, 7), dim=-1", lambda: (_randn(0, 4, 7), -1)),
            Case("random (2, 3, 5), dim=1 (not the last dim)", lambda: (_randn(1, 2, 3, 5), 1),
                 "Reduce along `dim` and keep it (keepdim=True) so the result broadcasts back."),
            Case("random (6, 4), dim=0, with gradients", lambda: (_randn(2, 6, 4), 0), grad=True),
            Case("a single element along dim (3, 1)", lambda: (_randn(3, 3, 1), -1)),
            Case("large logits (|x| up to ~1e4)", lambda: (_randn(4, 3, 8, scale=1000.0) + 5000.0, -1), _STABLE),
            Case("-inf entries (masked positions)", lambda: (_with_masked(5, 4, 9), -1),
                 "exp(-inf) = 0, so masked entries must come out exactly 0 and not turn into nan.", grad=True),
        ),
    ))
    register_check(Check(
        name="cross_entropy",
        shortcuts=("minillm.model.layers.cross_entropy",
                   "torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss"),
        summary="cross_entropy(logits (..., V), targets (...)): mean of -log softmax(logits)[target]",
        hint="loss = mean(logsumexp(logits, -1) - logits[target]); flatten leading dims, then average all.",
        reference=_cross_entropy_reference,
        cases=(
            Case("logits (8, 10), targets (8,)",
                 lambda: (_randn(10, 8, 10), torch.randint(10, (8,), generator=torch.Generator().manual_seed(11))),
                 grad=True),
            Case("logits (2, 5, 11), targets (2, 5): mean over batch AND time",
                 lambda: (_randn(12, 2, 5, 11), torch.randint(11, (2, 5), generator=torch.Generator().manual_seed(13))),
                 "The loss is one scalar: the mean over every position, as F.cross_entropy on flattened inputs.",
                 grad=True),
            Case("large logits (|x| up to ~1e4)",
                 lambda: (_randn(14, 4, 6, scale=1000.0), torch.tensor([0, 5, 2, 3])),
                 "log(softmax(x)) underflows to log(0) = -inf; use log-sum-exp with the max subtracted."),
            Case("a confident correct prediction (loss close to 0)",
                 lambda: (torch.tensor([[20.0, 0.0, 0.0], [0.0, 0.0, 20.0]]), torch.tensor([0, 2]))),
            Case("a single position, vocabulary of 1 (loss exactly 0)",
                 lambda: (_randn(15, 1, 1), torch.tensor([0]))),
        ),
    ))
    register_check(Check(
        name="attention_head",
        shortcuts=("minillm.model.attention.scaled_dot_product_attention",
                   "torch.nn.functional.scaled_dot_product_attention"),
        summary="attention_head(q, k, v): softmax(q k^T / sqrt(d) + causal mask) v for (B, T, D) or (B, H, T, D)",
        hint="scores = q @ k.transpose(-2, -1) / sqrt(q.shape[-1]); set scores above the diagonal to -inf "
             "(torch.tril of ones gives the allowed positions); weights = softmax(scores, -1); return weights @ v.",
        reference=_attention_reference,
        cases=(
            Case("(B, T, D) = (2, 5, 8)", lambda: (_randn(20, 2, 5, 8), _randn(21, 2, 5, 8), _randn(22, 2, 5, 8)),
                 "Position t may only attend to positions <= t: mask the upper triangle of the scores.", grad=True),
            Case("with heads (B, H, T, D) = (2, 3, 6, 4)",
                 lambda: (_randn(23, 2, 3, 6, 4), _randn(24, 2, 3, 6, 4), _randn(25, 2, 3, 6, 4)),
                 "Use k.transpose(-2, -1) (the last two dims) so extra leading dims just broadcast.", grad=True),
            Case("a single position T = 1", lambda: (_randn(26, 1, 1, 4), _randn(27, 1, 1, 4), _randn(28, 1, 1, 4)),
                 "With one position the head must return v unchanged."),
            Case("values with another width (D_v = 3, D_qk = 16)",
                 lambda: (_randn(29, 2, 4, 16), _randn(30, 2, 4, 16), _randn(31, 2, 4, 3)),
                 "Scale by sqrt of the query/key width q.shape[-1], not of v's width."),
            Case("large scores (|q|, |k| ~ 30)",
                 lambda: (_randn(32, 1, 7, 8, scale=30.0), _randn(33, 1, 7, 8, scale=30.0), _randn(34, 1, 7, 8)),
                 "Use your numerically stable softmax, and mask with -inf, not by multiplying weights by 0."),
        ),
    ))


_register_lab00()  # cheap: builds small Python objects only; inputs are created when a check runs
