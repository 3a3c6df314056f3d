"""GRPO: group-relative policy optimisation, PPO without a critic.

Survey §5.2 (alignment tuning, RL from a reward signal). GRPO (Shao et al. 2024, DeepSeekMath) samples G responses
per prompt and uses the group as its own baseline: the advantage of sample i is its reward standardised within
the group,

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps),

given to every token of response i. No value network is trained (half the memory of PPO's policy + critic), and
the baseline is exact for the prompt at hand rather than a learned guess. The policy maximises PPO's clipped
surrogate with these advantages minus beta times a per-token KL to the reference model, estimated with
Schulman's "k3" estimator as in DeepSeekMath:

    k3 = pi_ref / pi - log(pi_ref / pi) - 1   (>= 0 always; unbiased for KL(pi || pi_ref) under samples of pi)

The KL is a loss term here, not part of the reward as in PPO (`ppo.kl_penalized_rewards`). The advantages and
the clipped term are `policy_gradient.group_normalized_rewards` and `policy_gradient.clipped_surrogate`, whose
docstring compares the conventions of GRPO, DAPO and Dr. GRPO.

Conventions (documented because implementations differ):
- std is the Bessel-corrected sample std (divide by G - 1), as torch.std and TRL's GRPOTrainer; so rewards
  [1, 0, 0, 1] give A = +-0.5 / sqrt(1/3) = +-0.866 (with eps = 0), not +-1.
- eps = 1e-4 (TRL). A group whose rewards are all equal gets A = 0: it teaches nothing (`zero_std_frac` counts
  them; DAPO re-samples such groups).
- loss_agg = "sequence" (DeepSeekMath): mean over each response's tokens, then over responses; "token" (DAPO,
  Dr. GRPO): mean over all tokens of the batch, so long responses are not down-weighted per token.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from minillm.finetune.policy_gradient import clipped_surrogate, group_normalized_rewards, masked_mean
from minillm.finetune.rollout import (RewardFn, RolloutConfig, _int, _number, minibatches, optimizer_step,
                                      response_logprobs, sample_rollout, score_rollout)

__all__ = ["GRPOConfig", "group_advantages", "grpo_loss", "grpo_step", "k3_kl"]

LOSS_AGGS = ("sequence", "token")


@dataclass
class GRPOConfig(RolloutConfig):
    """GRPO hyper-parameters (defaults as DeepSeekMath where it gives them). Sampling: RolloutConfig."""

    group_size: int = 4  # G responses sampled per prompt (DeepSeekMath: 64); >= 2 for a group std
    beta: float = 0.04  # weight of the k3 KL-to-reference loss term (DeepSeekMath: 0.04); 0 = no KL
    clip: float = 0.2  # PPO ratio clip epsilon
    eps: float = 1e-4  # added to the group std in the advantage denominator
    loss_agg: str = "sequence"  # sequence (DeepSeekMath) | token (DAPO); see the module docstring
    epochs: int = 1  # updates per batch of rollouts (DeepSeekMath's mu; 1 = strictly on-policy, ratio = 1)
    minibatch_size: int | None = None  # responses per gradient step; None = all of them
    grad_clip: float | None = 1.0  # max gradient norm; None = no clipping

    def __post_init__(self) -> None:
        super().__post_init__()
        n = type(self).__name__
        _int(n, "group_size", self.group_size, 2, "group-relative advantages need at least 2 samples per prompt")
        _number(n, "beta", self.beta, 0.0, hint="the KL coefficient (0 turns the KL term off)")
        _number(n, "clip", self.clip, 0.0, 1.0, low_open=True, high_open=True,
                hint="the ratio pi/pi_old is kept within [1 - clip, 1 + clip]; 0.1-0.3 is usual")
        _number(n, "eps", self.eps, 0.0, low_open=True)
        if self.loss_agg not in LOSS_AGGS:
            raise ValueError(f"{n}.loss_agg={self.loss_agg!r} is not valid; choose one of {', '.join(LOSS_AGGS)}")
        _int(n, "epochs", self.epochs, 1)
        if self.minibatch_size is not None:
            _int(n, "minibatch_size", self.minibatch_size, 1, "or None for the whole batch")
        if self.grad_clip is not None:
            _number(n, "grad_clip", self.grad_clip, 0.0, low_open=True, hint="or None for no clipping")


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """rewards (B * G,), the G samples of each prompt adjacent -> advantages (B * G,): (r - group mean) /
    (group sample std + eps), std Bessel-corrected (see the module docstring); 0 for a group of equal rewards.
    GRPO's defaults for `policy_gradient.group_normalized_rewards` (which also returns the group statistics)."""
    return group_normalized_rewards(rewards, group_size, normalize_by_std=True, eps=eps)[0]


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref): exp(ref - logp) - (ref - logp) - 1 >= 0. Same shape as inputs."""
    log_ratio = ref_logp - logp
    return torch.expm1(log_ratio) - log_ratio  # expm1: exp(x) - 1 without cancellation when pi ~ pi_ref


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, adv: torch.Tensor,
              mask: torch.Tensor, clip: float, beta: float, loss_agg: str = "sequence") -> torch.Tensor:
    """GRPO loss: -(clipped surrogate with A_i on every token of response i - beta * k3 KL), averaged per
    `loss_agg`. logp, old_logp, ref_logp, mask (N, R); adv (N,)."""
    if loss_agg not in LOSS_AGGS:
        raise ValueError(f"loss_agg={loss_agg!r} is not valid; choose one of {', '.join(LOSS_AGGS)}")
    if adv.shape != mask.shape[:1]:
        raise ValueError(f"adv {tuple(adv.shape)} must be (N,): one advantage per response (mask is "
                         f"{tuple(mask.shape)})")
    per_token = clipped_surrogate(logp, old_logp, adv[:, None], clip) - beta * k3_kl(logp, ref_logp)  # (N, R)
    if loss_agg == "token":
        return -masked_mean(per_token, mask)
    return -masked_mean(per_token, mask, dim=1).mean()


def grpo_step(policy: nn.Module, reference: nn.Module, optimizer: torch.optim.Optimizer, prompt_ids: torch.Tensor,
              tokenizer, reward_fn: RewardFn, cfg: GRPOConfig,
              generator: torch.Generator | None = None) -> dict[str, float]:
    """One GRPO iteration: G = cfg.group_size samples per prompt of prompt_ids (B, P), group advantages, updates.

    Returns statistics: score (mean reward), score_std (mean within-group std), zero_std_frac (groups with equal
    rewards: no signal), kl (mean per-token k3 at sampling time), kl_seq (mean over responses of the summed
    log pi_old - log pi_ref, comparable with PPO's), response_len, loss, clip_frac, grad_norm."""
    if not isinstance(cfg, GRPOConfig):
        raise ValueError(f"cfg must be a GRPOConfig, got {type(cfg).__name__}")
    G = cfg.group_size
    if isinstance(prompt_ids, torch.Tensor) and prompt_ids.dim() == 2:
        prompt_ids = prompt_ids.repeat_interleave(G, 0)  # (B * G, P): the samples of a prompt are adjacent
    ro = sample_rollout(policy, reference, prompt_ids, cfg, generator)
    P, mask = ro.prompt_len, ro.mask
    scores = score_rollout(ro, tokenizer, reward_fn, cfg.stop_tokens)  # (B * G,)
    adv, groups = group_normalized_rewards(scores, G, normalize_by_std=True, eps=cfg.eps)  # (B * G,)
    sums = {"loss": 0.0, "clip_frac": 0.0, "grad_norm": 0.0}
    n_updates = 0
    policy.train()
    for _ in range(cfg.epochs):
        for idx in minibatches(mask.size(0), cfg.minibatch_size, generator):
            m = mask[idx]
            logp = response_logprobs(policy, ro.ids[idx], P)
            loss = grpo_loss(logp, ro.old_logp[idx], ro.ref_logp[idx], adv[idx], m, cfg.clip, cfg.beta, cfg.loss_agg)
            sums["grad_norm"] += optimizer_step(optimizer, loss, policy.parameters(), cfg.grad_clip)
            sums["loss"] += float(loss.detach())
            with torch.no_grad():
                ratio = torch.exp(logp.detach() - ro.old_logp[idx])
                sums["clip_frac"] += float(masked_mean(((ratio - 1).abs() > cfg.clip).float(), m))
            n_updates += 1
    stats = {k: v / n_updates for k, v in sums.items()}
    stats.update(score=groups["reward_mean"], score_std=groups["reward_std"], zero_std_frac=groups["zero_std_frac"],
                 kl=float(masked_mean(k3_kl(ro.old_logp, ro.ref_logp), mask)),
                 kl_seq=float((ro.old_logp - ro.ref_logp).sum(1).mean()),
                 response_len=float(ro.lengths.float().mean()))
    return stats
