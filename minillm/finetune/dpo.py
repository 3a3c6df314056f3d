"""Direct preference optimisation and two cheap relatives (Survey §5.2, alignment tuning without RL).

RLHF fits a reward model and then maximises it with PPO under a KL penalty to a reference model. DPO (Rafailov et
al. 2023) solves that KL-regularised problem in closed form: the optimal policy satisfies
r(x, y) = beta * log(pi(y|x) / pi_ref(y|x)) + const, so the Bradley-Terry likelihood of the preferences can be
written, and maximised, directly in terms of the policy's log-probabilities:

    DPO    loss = -log sigmoid( beta * [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))] )
    IPO    loss = ( [(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))] - 1/(2 beta) )^2   (Azar et al.)
    SimPO  loss = -log sigmoid( beta * [mean log pi(y_w) - mean log pi(y_l)] - gamma )               (Meng et al.)

IPO regresses the log-ratio margin to a finite target instead of pushing it to infinity (DPO overfits when
preferences are deterministic); SimPO needs no reference model, length-normalises (per-token mean log-prob) and
asks for a margin gamma. Inputs are sequence log-probs of the response tokens (`logprobs.sequence_logprob`).
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm.config import TrainConfig
from minillm.device import resolve_device
from minillm.finetune.chat import ChatTemplate
from minillm.finetune.logprobs import align_mask, masked_sum, token_logprobs

__all__ = ["LOSSES", "dpo_loss", "ipo_loss", "simpo_loss", "pair_logprobs", "train_dpo"]

LOSSES = ("dpo", "ipo", "simpo")


def _check_beta(beta: float) -> None:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
        raise ValueError(f"beta={beta!r} must be a positive number (DPO typically 0.1; SimPO 2.0)")


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"the log-prob tensors must have one shape (B,), got {shapes}")


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1,
             label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO from sequence log-probs (B,) each -> (mean loss, chosen_rewards (B,), rejected_rewards (B,)).

    The implicit rewards beta * (log pi - log ref) are returned detached, for logging (reward accuracy, margin).
    label_smoothing eps > 0 assumes a fraction eps of the labels are flipped (conservative DPO).
    """
    _check_beta(beta)
    _check_same_shape(policy_chosen=policy_chosen, policy_rejected=policy_rejected, ref_chosen=ref_chosen,
                      ref_rejected=ref_rejected)
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing={label_smoothing!r} must be in [0, 0.5)")
    chosen = policy_chosen - ref_chosen        # (B,) log pi/ref of the preferred response
    rejected = policy_rejected - ref_rejected  # (B,)
    logits = beta * (chosen - rejected)         # (B,) the Bradley-Terry logit of the implicit reward
    loss = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return loss.mean(), (beta * chosen).detach(), (beta * rejected).detach()


def ipo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IPO: the log-ratio margin regressed to 1/(2 beta) (beta plays IPO's tau). Same returns as `dpo_loss`."""
    _check_beta(beta)
    _check_same_shape(policy_chosen=policy_chosen, policy_rejected=policy_rejected, ref_chosen=ref_chosen,
                      ref_rejected=ref_rejected)
    chosen, rejected = policy_chosen - ref_chosen, policy_rejected - ref_rejected  # (B,) each
    loss = (chosen - rejected - 1.0 / (2.0 * beta)).pow(2)
    return loss.mean(), (beta * chosen).detach(), (beta * rejected).detach()


def simpo_loss(policy_chosen_avg: torch.Tensor, policy_rejected_avg: torch.Tensor, beta: float = 2.0,
               gamma: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimPO from per-token MEAN log-probs (B,) (`sequence_logprob(..., average=True)`), no reference model.
    Rewards are beta * mean log-prob; gamma >= 0 is the target margin between them."""
    _check_beta(beta)
    _check_same_shape(policy_chosen_avg=policy_chosen_avg, policy_rejected_avg=policy_rejected_avg)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma < 0:
        raise ValueError(f"gamma={gamma!r} must be a non-negative number (the reward margin SimPO asks for)")
    chosen, rejected = beta * policy_chosen_avg, beta * policy_rejected_avg  # (B,) each
    loss = -F.logsigmoid(chosen - rejected - gamma)
    return loss.mean(), chosen.detach(), rejected.detach()


def pair_logprobs(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                  average: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence log-probs of a `ChatTemplate.preference_batch`: ids/mask (2B, T), chosen rows first ->
    (chosen (B,), rejected (B,)); one forward pass for both halves."""
    lp = masked_sum(token_logprobs(model, ids), align_mask(mask, ids), average=average)  # (2B,)
    B = ids.size(0) // 2
    return lp[:B], lp[B:]


def train_dpo(policy: nn.Module, ref: nn.Module | None, pairs: Sequence, template: ChatTemplate,
              cfg: TrainConfig, *, beta: float = 0.1, loss: str = "dpo", gamma: float = 0.5,
              label_smoothing: float = 0.0) -> list[dict]:
    """Fine-tune `policy` on preference pairs ({"prompt", "chosen", "rejected"}; prompt a str or messages).

    ref: the frozen reference (usually a copy of the SFT model); None only for loss="simpo". Its log-probs are
    computed once up front (it never changes). Logs loss, reward accuracy (share of pairs whose implicit reward
    prefers the chosen response) and the mean reward margin. Returns `sft.optimize`'s history.
    """
    from minillm.finetune.loop import epoch_sampler, optimize  # the shared minimal loop

    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not valid; choose one of {', '.join(LOSSES)}")
    if ref is None and loss != "simpo":
        raise ValueError(f"loss={loss!r} needs the reference model `ref` (only 'simpo' works without one)")
    if not len(pairs):
        raise ValueError("no preference pairs to train on")
    if cfg.batch_size > len(pairs):
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the {len(pairs)} preference pairs")
    device = resolve_device(cfg.device)
    block = getattr(getattr(policy, "config", None), "block_size", None)
    ids, mask, _ = template.preference_batch(pairs, max_len=block)  # (2N, T), chosen rows first
    N = len(pairs)
    policy.to(device)
    ref_c = ref_r = torch.zeros(N)
    if ref is not None:
        ref.to(device).eval()
        with torch.no_grad():
            parts = [pair_logprobs(ref, *_rows(ids, mask, torch.arange(s, min(s + 64, N)), N, device))
                     for s in range(0, N, 64)]  # chunks of 64 pairs keep the reference pass's memory bounded
        ref_c, ref_r = (torch.cat([p[i] for p in parts]).cpu() for i in (0, 1))
    draw = epoch_sampler(N, cfg.batch_size, cfg.seed)

    def pair_loss(model: nn.Module, idx: torch.Tensor):
        """loss_fn for the shared step: one micro-batch is the indices (b,) of b preference pairs."""
        pc, pr = pair_logprobs(model, *_rows(ids, mask, idx, N, device), average=loss == "simpo")
        if loss == "simpo":
            value, rc, rr = simpo_loss(pc, pr, beta, gamma)
        else:
            fn = dpo_loss if loss == "dpo" else ipo_loss
            kw = {"label_smoothing": label_smoothing} if loss == "dpo" else {}
            value, rc, rr = fn(pc, pr, ref_c[idx].to(device), ref_r[idx].to(device), beta, **kw)
        return value, {"reward_acc": (rc > rr).float().mean(), "margin": (rc - rr).mean()}

    return optimize(policy, cfg, batches=(draw() for _ in itertools.count()), loss_fn=pair_loss)


def _rows(ids: torch.Tensor, mask: torch.Tensor, idx: torch.Tensor, N: int, device) -> tuple[torch.Tensor, ...]:
    """The chosen rows idx and their rejected partners idx + N, as one (2b, T') batch cropped to its longest row."""
    rows = torch.cat([idx, idx + N])
    T = int(mask[rows].nonzero()[:, 1].max()) + 1  # last response token: everything after it is padding
    return ids[rows, :T].to(device), mask[rows, :T].to(device)
