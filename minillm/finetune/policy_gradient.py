"""Policy-gradient building blocks: per-token losses, group-normalised rewards, masked averages, token entropy.

Survey §5.2 (alignment tuning: RLHF and RL from a reward signal). A response y = (y_1..y_T) sampled from the policy
pi gets a reward R; the gradient of E[R] is E[R * grad log pi(y)] (REINFORCE, Williams 1992). Every loss below is
per token, over the (B, T) log-probs logp[b, t] = log pi(y_bt | x_b, y_b<t) of the sampled tokens:

    "reinforce"           loss_t = -R * logp_t                        no baseline: unbiased, high variance
    "reinforce_baseline"  loss_t = -A * logp_t,  A = R - baseline      same expectation, lower variance
    "clip"                loss_t = -min(rho_t * A, clip(rho_t, 1 - eps, 1 + eps) * A),  rho_t = pi / pi_old
                                                                       PPO / GRPO: a bounded step off pi_old

Rewards and advantages are constants of the loss (detached here: the gradient never flows into a reward model or
a baseline), and so is old_logp, the behaviour policy's log-probs: passing logp itself gives rho = 1 with gradient
A * grad logp, the single-update (on-policy) case.

Conventions differ between papers in two places: the baseline's scale and how per-token losses are averaged.

    method                       advantage of response i         std                 token aggregation
    PPO (InstructGPT)            GAE per token, whitened         population, batch   mean over the batch's tokens
    GRPO (Shao et al. 2024)      (r_i - mean_g) / (std_g + eps)  Bessel, per group   mean per response, then mean
    DAPO (Yu et al. 2025)        as GRPO                         Bessel, per group   mean over the batch's tokens
    Dr. GRPO (Liu et al. 2025)   r_i - mean_g                    none                sum per response / a constant

Dr. GRPO drops the std (it up-weights prompts that are nearly always right or wrong) and the per-response mean
(it favours long wrong answers, whose per-token penalty it dilutes); a fixed constant (the generation budget)
keeps every token's weight equal. `grpo_microbatch_step` offers "mean" (GRPO) and "constant" (Dr. GRPO).
"""
from __future__ import annotations

import math

import torch

__all__ = ["PG_KINDS", "PG_NORMALIZE", "clipped_surrogate", "group_normalized_rewards", "grpo_microbatch_step",
           "masked_mean", "masked_normalize", "policy_gradient_loss", "token_entropy"]

PG_KINDS = ("reinforce", "reinforce_baseline", "clip")
PG_NORMALIZE = ("mean", "constant")
_INPUTS = {"reinforce": ("rewards",), "reinforce_baseline": ("advantages",), "clip": ("advantages", "old_logp")}


def _positive(name: str, value, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
        raise ValueError(f"{name}={value!r} must be a positive finite number{': ' + hint if hint else ''}")


def _bool_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mask as bool (nonzero = keep), after checking it has x's shape (a broadcast would count the wrong tokens)."""
    if not isinstance(mask, torch.Tensor) or mask.shape != x.shape:
        raise ValueError(f"mask {tuple(getattr(mask, 'shape', ()))} must have the shape of x {tuple(x.shape)}: one "
                         "flag per token (True = a response token)")
    return mask if mask.dtype == torch.bool else mask != 0


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dim, in float32: (..., V) -> (...), e.g. (B, T, V) -> (B, T).

    H = logsumexp(z) - sum_v softmax(z)_v * z_v, computed after shifting z by its max (H is shift-invariant), as
    log(s) + sum_v e_v * (-z_v) / s with e = exp(z - max), s = sum e: both terms are >= 0, so nothing cancels and
    logits of size 1e4 give the one-hot (or tied-argmax) limit, not the rounding error of two 1e4-sized numbers.
    One exp pass: neither the log-softmax nor a second copy of the probabilities is materialised (the naive
    -(p * log p).sum() holds both). A -inf logit (a masked token) contributes 0; a row with no finite logit has
    no distribution and gives nan.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() < 1 or not logits.dtype.is_floating_point:
        raise TypeError(f"logits must be a floating-point tensor (..., V), got "
                        f"{getattr(logits, 'dtype', type(logits).__name__)} {tuple(getattr(logits, 'shape', ()))}")
    z = logits.float()
    z = z - z.amax(-1, keepdim=True).detach()  # (..., V) <= 0: exp cannot overflow; detached as H ignores shifts
    e = torch.exp(z)  # (..., V)
    s = e.sum(-1)  # (...) in [1, V]
    z = torch.where(torch.isneginf(z), 0.0, z)  # e = 0 there; 0 * -inf would be nan (and so would its gradient)
    return torch.log(s) - (e * z).sum(-1) / s  # (...)


def group_normalized_rewards(rewards: torch.Tensor, group_size: int, *, normalize_by_std: bool = True,
                             eps: float = 1e-6) -> tuple[torch.Tensor, dict[str, float]]:
    """Group-relative advantages: rewards (B * G,), the G samples of each prompt adjacent -> (advantages (B * G,),
    stats).

    With normalize_by_std (GRPO): (r - group mean) / (group std + eps), the std Bessel-corrected (divide by G - 1)
    as torch.std and TRL; without (Dr. GRPO): r - group mean. A group of equal rewards gets exactly 0 either way
    (it teaches nothing; with eps = 0 it would be 0/0). stats: reward_mean (over all samples), reward_std (the
    mean within-group std) and zero_std_frac (the fraction of equal-reward groups; DAPO re-samples those).
    """
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 2:
        raise ValueError(f"group_size={group_size!r} must be an integer >= 2 (a group baseline needs two samples)")
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards {tuple(getattr(rewards, 'shape', ()))} must be 1-D with a length divisible by "
                         f"group_size={group_size} (B prompts x G samples, each prompt's samples adjacent)")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < math.inf:
        raise ValueError(f"eps={eps!r} must be a finite number >= 0 (added to the group std)")
    r = rewards.detach().float().view(-1, group_size)  # (B, G)
    if not bool(torch.isfinite(r).all()):
        raise ValueError(f"rewards hold non-finite values {rewards.tolist()}: every reward must be a real number")
    std = r.std(1, keepdim=True)  # (B, 1) Bessel-corrected
    flat = r.amax(1, keepdim=True) == r.amin(1, keepdim=True)  # (B, 1): exact, unlike std == 0 after rounding
    adv = r - r.mean(1, keepdim=True)  # (B, G)
    if normalize_by_std:
        adv = adv / (std + eps)
    stats = {"reward_mean": float(r.mean()), "reward_std": float(std.mean()),
             "zero_std_frac": float(flat.float().mean())}
    return adv.masked_fill(flat, 0.0).view(-1), stats


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, clip: float) -> torch.Tensor:
    """Per-token PPO objective (to maximise): min(ratio * A, clip(ratio, 1-clip, 1+clip) * A), ratio = exp(logp -
    old_logp). The min is pessimistic: clipping removes the incentive to move the ratio further in the direction
    the advantage favours, but never hides a loss. Shapes broadcast; returns their common shape."""
    ratio = torch.exp(logp - old_logp)
    return torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)


def _per_sequence(x: torch.Tensor, name: str, logp: torch.Tensor) -> torch.Tensor:
    """A reward or advantage of shape (B,), (B, 1) or (B, T) -> a constant broadcastable against logp (B, T)."""
    B, T = logp.shape
    if not isinstance(x, torch.Tensor) or x.shape not in ((B,), (B, 1), (B, T)):
        raise ValueError(f"{name} {tuple(getattr(x, 'shape', ()))} must be ({B},) or ({B}, 1) (one per response, "
                         f"given to each of its tokens) or ({B}, {T}) (one per token) for logp {(B, T)}")
    x = x.detach().to(logp.dtype)
    return x[:, None] if x.dim() == 1 else x


def policy_gradient_loss(logp: torch.Tensor, kind: str, *, rewards: torch.Tensor | None = None,
                         advantages: torch.Tensor | None = None, old_logp: torch.Tensor | None = None,
                         clip: float = 0.2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token loss (B, T) to minimise for logp (B, T), and meta; formulas in the module docstring.

    kind "reinforce" takes rewards, "reinforce_baseline" advantages, "clip" advantages and old_logp (B, T);
    rewards and advantages are (B,) or (B, 1) (one per response) or (B, T). An input the kind does not use is an
    error, not ignored. meta for "clip": ratio (B, T) and clipped (B, T) bool, True where clipping holds the
    gradient at 0 (ratio > 1 + clip with A > 0, or ratio < 1 - clip with A < 0); the loss is not masked here.
    """
    if not isinstance(logp, torch.Tensor) or logp.dim() != 2 or not logp.dtype.is_floating_point:
        raise ValueError(f"logp must be a (B, T) float tensor of the sampled tokens' log-probs, got "
                         f"{getattr(logp, 'dtype', type(logp).__name__)} {tuple(getattr(logp, 'shape', ()))}")
    if kind not in PG_KINDS:
        raise ValueError(f"kind={kind!r} is not valid; choose one of {', '.join(PG_KINDS)}")
    given = {"rewards": rewards, "advantages": advantages, "old_logp": old_logp}
    missing = [n for n in _INPUTS[kind] if given[n] is None]
    unused = [n for n, v in given.items() if v is not None and n not in _INPUTS[kind]]
    if missing or unused:
        raise ValueError(f"kind={kind!r} takes {' and '.join(_INPUTS[kind])}; missing: {missing or 'none'}, given "
                         f"but unused: {unused or 'none'} (reinforce: rewards; reinforce_baseline, clip: advantages)")
    if kind == "reinforce":
        return -_per_sequence(rewards, "rewards", logp) * logp, {}
    adv = _per_sequence(advantages, "advantages", logp)  # (B, 1) or (B, T)
    if kind == "reinforce_baseline":
        return -adv * logp, {}
    if not isinstance(old_logp, torch.Tensor) or old_logp.shape != logp.shape:
        raise ValueError(f"old_logp {tuple(getattr(old_logp, 'shape', ()))} must have logp's shape "
                         f"{tuple(logp.shape)}: the sampling policy's log-prob of each token")
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0 < clip < 1:
        raise ValueError(f"clip={clip!r} must be a number in (0, 1): the ratio is kept within [1 - clip, 1 + clip]")
    old = old_logp.detach().to(logp.dtype)
    per_token = -clipped_surrogate(logp, old, adv, clip)  # (B, T)
    with torch.no_grad():
        ratio = torch.exp(logp - old)  # (B, T)
        clipped = ((ratio > 1 + clip) & (adv > 0)) | ((ratio < 1 - clip) & (adv < 0))  # (B, T)
    return per_token, {"ratio": ratio, "clipped": clipped}


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over the positions where mask is True (nonzero), over all of them or along `dim`.

    No position at all (an all-masked row, or mask) gives 0, not 0/0 = nan: such a row has no tokens to learn
    from, so it contributes no gradient, and one empty response keeps the batch's loss finite. Values at masked
    positions never enter (not even a nan or inf there). mask must have x's shape.
    """
    m = _bool_mask(x, mask)
    kept = torch.where(m, x, 0.0)  # not x * m: nan * 0 = nan
    if dim is None:
        return kept.sum() / m.sum().clamp(min=1)
    return kept.sum(dim) / m.sum(dim).clamp(min=1)


def masked_normalize(x: torch.Tensor, mask: torch.Tensor, constant: float, dim: int | None = None) -> torch.Tensor:
    """Sum of x where mask is True (over all positions or along `dim`) divided by a fixed constant.

    Dr. GRPO's per-token normalisation: with constant = the generation budget (max new tokens), every token has
    weight 1 / constant whatever its response's length. An all-masked row sums to 0 (no tokens, no gradient).
    """
    _positive("constant", constant, "the normaliser, e.g. the maximum response length in tokens")
    kept = torch.where(_bool_mask(x, mask), x, 0.0)
    return (kept.sum() if dim is None else kept.sum(dim)) / constant


def grpo_microbatch_step(logp: torch.Tensor, response_mask: torch.Tensor, grad_accum_steps: int, kind: str, *,
                         rewards: torch.Tensor | None = None, advantages: torch.Tensor | None = None,
                         old_logp: torch.Tensor | None = None, clip: float = 0.2, normalize: str = "mean",
                         constant: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One micro-batch of a policy-gradient update: per-token loss, aggregate, / grad_accum_steps, backward().

    normalize "mean": each response's masked mean, then the mean over responses (GRPO); "constant": each
    response's masked sum / constant, then the mean over responses (Dr. GRPO). Dividing by grad_accum_steps makes
    k micro-steps of B responses accumulate the gradient of one step on their k * B responses. Returns the loss
    that was back-propagated (detached) and the meta of `policy_gradient_loss`, plus clip_frac (the fraction of
    response tokens whose gradient clipping zeroed) for kind "clip". Call optimizer.step() after the k-th.
    """
    if isinstance(grad_accum_steps, bool) or not isinstance(grad_accum_steps, int) or grad_accum_steps < 1:
        raise ValueError(f"grad_accum_steps={grad_accum_steps!r} must be an integer >= 1 (micro-steps per "
                         "optimizer step)")
    if normalize not in PG_NORMALIZE:
        raise ValueError(f"normalize={normalize!r} is not valid; choose one of {', '.join(PG_NORMALIZE)}")
    if (normalize == "constant") != (constant is not None):
        raise ValueError(f"constant={constant!r} with normalize={normalize!r}: 'constant' needs a constant (e.g. "
                         "the max response length) and 'mean' takes none")
    if not isinstance(logp, torch.Tensor) or not logp.requires_grad:
        raise RuntimeError("logp does not require grad, so backward() has nothing to update: compute it from the "
                           "policy with gradients enabled (not under torch.no_grad())")
    per_token, meta = policy_gradient_loss(logp, kind, rewards=rewards, advantages=advantages, old_logp=old_logp,
                                           clip=clip)  # (B, T)
    if normalize == "mean":
        per_response = masked_mean(per_token, response_mask, dim=1)  # (B,)
    else:
        per_response = masked_normalize(per_token, response_mask, constant, dim=1)  # (B,)
    loss = per_response.mean() / grad_accum_steps
    loss.backward()
    if "clipped" in meta:
        meta["clip_frac"] = masked_mean(meta["clipped"].float(), response_mask)
    return loss.detach(), meta
