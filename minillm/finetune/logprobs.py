"""Per-token and per-sequence log-probabilities of a language model (Survey §5.2, alignment tuning).

Every preference method in this package scores a response y to a prompt x by the model's log-likelihood
log p(y | x) = sum_t log p(y_t | x, y_<t): DPO/IPO compare it between policy and reference (`dpo.py`),
SimPO uses its per-token mean, PPO/GRPO take ratios of per-token values (`rl.py`). This file is the one
place that computes them, always in float32 (a bf16 log-softmax loses ~3 significant digits, and DPO
subtracts two nearly equal sums of hundreds of such terms).

Alignment convention (used by every caller; read it once):

    ids            (B, T)    token ids; ids[:, 0] is never scored (nothing predicts it)
    token_logprobs (B, T-1)  column t = log p(ids[:, t+1] | ids[:, :t+1])       ("aligned to targets")
    response_mask  (B, T-1)  column t = 1 if ids[:, t+1] is a response token    ("aligned to targets")
             or    (B, T)    column t = 1 if ids[:, t] is a response token       (per-token, as chat.render
                                                                                   returns it; shifted here)

Padding must be on the right (a causal model's logits at position t do not depend on later tokens, so
right padding changes nothing as long as the mask is 0 there); left padding would shift learned or
sinusoidal positions and is not supported.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from minillm.model.transformer import logits_of

__all__ = ["logprobs_from_logits", "model_logits", "token_logprobs", "align_mask", "masked_sum", "sequence_logprob"]


def logprobs_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[..., targets] in float32: logits (B, T, V), targets (B, T) -> (B, T).

    Computed as logit[target] - logsumexp(logits) so the full (B, T, V) log-softmax is never stored.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} disagree: logits must "
                         "be (B, T, V) and targets (B, T)")
    logits = logits.float()
    picked = logits.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked - torch.logsumexp(logits, dim=-1)  # (B, T)


def _check_ids(ids: torch.Tensor) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        raise ValueError(f"ids must be a (B, T) integer tensor, got {getattr(ids, 'shape', type(ids).__name__)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"ids must hold integer token ids, got dtype {ids.dtype}")
    if ids.size(1) < 2:
        raise ValueError(f"ids need at least 2 tokens per row to score one (got T={ids.size(1)}): "
                         "log p(ids[:, t+1] | ids[:, :t+1]) needs a context and a target")


def model_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The model's next-token logits (B, T, V) for ids (B, T): `logits_of(model(ids))`, so any GPT-like
    forward(idx) -> (logits, loss), bare logits or a Hugging Face output with .logits."""
    return logits_of(model(ids))


def token_logprobs(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """ids (B, T) -> (B, T-1) float32, column t = log p(ids[:, t+1] | ids[:, :t+1]).

    Gradients flow (wrap in torch.no_grad() for a frozen reference model). One forward pass.
    """
    _check_ids(ids)
    logits = model_logits(model, ids)  # (B, T, V)
    return logprobs_from_logits(logits[:, :-1], ids[:, 1:])  # (B, T-1)


def align_mask(response_mask: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """A response mask of shape (B, T) (per token of ids) or (B, T-1) (per target) -> float (B, T-1) per target.

    A (B, T) mask is shifted by one: target column t is ids[:, t+1], so it takes response_mask[:, t+1].
    """
    B, T = ids.shape
    if response_mask.shape == (B, T):
        response_mask = response_mask[:, 1:]
    elif response_mask.shape != (B, T - 1):
        raise ValueError(f"response_mask has shape {tuple(response_mask.shape)}; for ids {tuple(ids.shape)} it must "
                         f"be ({B}, {T}) (one flag per token of ids) or ({B}, {T - 1}) (one per target ids[:, 1:])")
    return response_mask.to(device=ids.device, dtype=torch.float32)


def masked_sum(values: torch.Tensor, mask: torch.Tensor, *, average: bool = False) -> torch.Tensor:
    """Row sums of values (B, N) where mask (B, N) is 1 -> (B,); average=True divides by each row's count.

    A row with an empty mask sums to 0; averaging it raises, since a mean over no tokens is a bug upstream.
    """
    total = (values * mask).sum(-1)  # (B,)
    if not average:
        return total
    count = mask.sum(-1)  # (B,)
    if bool((count == 0).any()):
        raise ValueError("a row of response_mask is all zeros: there is no response token to average over; "
                         "check that the response is not cut off by block_size")
    return total / count


def sequence_logprob(model: nn.Module, ids: torch.Tensor, response_mask: torch.Tensor, *,
                     average: bool = False) -> torch.Tensor:
    """Sum (or with average=True the mean) of log p over the response tokens: ids (B, T) -> (B,) float32.

    response_mask: (B, T-1) aligned to targets (column t scores ids[:, t+1]) or (B, T) per token of ids
    (column t marks ids[:, t]; its first column is dropped because ids[:, 0] has no prediction). Nonzero =
    response token. average=True gives the length-normalised score SimPO uses.
    """
    lp = token_logprobs(model, ids)  # (B, T-1)
    return masked_sum(lp, align_mask(response_mask, ids), average=average)
