"""PPO for RLHF: a critic, KL-penalised rewards, GAE, and the clipped surrogate objective.

Survey §5.2 (alignment tuning: RLHF = reward model + PPO). As in InstructGPT (Ouyang et al. 2022) and Ziegler et
al. (2019): each response token is an action; its reward is -beta * (log pi(token) - log pi_ref(token)), the
per-token KL penalty that keeps the policy near the reference (SFT) model, and the reward model's score for the
whole response is added at its last token. A critic V estimates the return from each prefix; GAE (Schulman et
al. 2016) turns rewards and values into advantages; PPO (Schulman et al. 2017) maximises the clipped surrogate
min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A), ratio = pi / pi_old, for a few epochs on the same rollouts.

The critic is a separate network (`ValueModel`: a copy of a GPT whose output layer is replaced by a scalar head),
not a head on the policy's hidden states, because (1) the value loss then cannot pull on the policy's
representation (InstructGPT also used a separate value model, initialised from the reward model); (2) the
policy stays a plain GPT, so sampling, `logprobs.py` and DPO see the same model; (3) `GPT.forward` does not
expose hidden states, and a shared trunk would need changes there. The price is a second copy of the weights.

Pure functions for each piece (`kl_penalized_rewards`, `gae`, `whiten`, `ppo_policy_loss`, `ppo_value_loss`) so
each is testable by hand; `ppo_step` chains them: rollout -> rewards -> advantages -> PPO epochs. The clipped
term (`clipped_surrogate`, re-exported here) and the token entropy come from `policy_gradient.py`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn

from minillm.finetune.logprobs import logprobs_from_logits, model_logits
from minillm.finetune.policy_gradient import clipped_surrogate, masked_mean, token_entropy
from minillm.finetune.rollout import (RewardFn, RolloutConfig, _int, _number, minibatches, optimizer_step,
                                      response_logprobs, sample_rollout, score_rollout)

__all__ = ["PPOConfig", "ValueModel", "clipped_surrogate", "gae", "kl_penalized_rewards", "ppo_policy_loss",
           "ppo_step", "ppo_value_loss", "response_values", "whiten"]


@dataclass
class PPOConfig(RolloutConfig):
    """PPO hyper-parameters (defaults close to InstructGPT / TRL's PPO for small models). Sampling: RolloutConfig."""

    beta: float = 0.05  # KL penalty coefficient: reward -= beta * (log pi - log pi_ref) per token; 0 = no KL
    gamma: float = 1.0  # discount (1: the only real reward comes at the end, so do not discount it)
    lam: float = 0.95  # GAE lambda: 0 = one-step TD (low variance, biased), 1 = Monte Carlo returns
    clip: float = 0.2  # PPO ratio clip epsilon: the ratio pi / pi_old is kept within [1 - clip, 1 + clip]
    value_clip: float | None = 0.2  # clip each new value to old value +- this; None = plain squared error
    whiten_advantages: bool = True  # normalise advantages to mean 0, std 1 over the batch's response tokens
    entropy_coef: float = 0.0  # bonus entropy_coef * H(pi) per token (0 = off; > 0 costs a full-logits pass)
    epochs: int = 4  # passes over each batch of rollouts
    minibatch_size: int | None = None  # rollouts per gradient step; None = the whole batch
    grad_clip: float | None = 1.0  # max gradient norm per network; None = no clipping

    def __post_init__(self) -> None:
        super().__post_init__()
        n = type(self).__name__
        _number(n, "beta", self.beta, 0.0, hint="the KL penalty coefficient (0 turns the penalty off)")
        _number(n, "gamma", self.gamma, 0.0, 1.0)
        _number(n, "lam", self.lam, 0.0, 1.0)
        _number(n, "clip", self.clip, 0.0, 1.0, low_open=True, high_open=True,
                hint="the ratio pi/pi_old is kept within [1 - clip, 1 + clip]; 0.1-0.3 is usual")
        if self.value_clip is not None:
            _number(n, "value_clip", self.value_clip, 0.0, low_open=True, hint="or None for no value clipping")
        if not isinstance(self.whiten_advantages, bool):
            raise ValueError(f"{n}.whiten_advantages={self.whiten_advantages!r} must be True or False")
        _number(n, "entropy_coef", self.entropy_coef, 0.0)
        _int(n, "epochs", self.epochs, 1)
        if self.minibatch_size is not None:
            _int(n, "minibatch_size", self.minibatch_size, 1, "or None for the whole batch")
        if self.grad_clip is not None:
            _number(n, "grad_clip", self.grad_clip, 0.0, low_open=True, hint="or None for no clipping")


class ValueModel(nn.Module):
    """Critic V(prefix): a deep copy of a GPT with its output layer replaced by a scalar head.

    forward(ids (N, T)) -> (N, T): column t is the value of the state ids[:, :t+1]. Initialise it from the policy
    (or, as InstructGPT, from a reward model's backbone); the head starts at 0, so every first value is 0.
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.trunk = copy.deepcopy(backbone)
        width = self.trunk.lm_head.in_features
        self.trunk.lm_head = nn.Identity()  # forward then returns the final hidden states (N, T, C) as "logits"
        for p in self.trunk.parameters():
            p.requires_grad_(True)  # the backbone may be a frozen reference copy
        self.head = nn.Linear(width, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = model_logits(self.trunk, ids)  # (N, T, C)
        return self.head(h.float()).squeeze(-1)  # (N, T)


def response_values(critic: nn.Module, ids: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Value of the state before each response token: ids (N, P + R) -> (N, R).

    Response token t is chosen after reading ids[:, :P + t], whose value sits at column P - 1 + t."""
    return critic(ids)[:, prompt_len - 1:-1]


def kl_penalized_rewards(scores: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                         beta: float) -> torch.Tensor:
    """Per-token rewards (N, R): -beta * (logp - ref_logp) on every response token, plus scores (N,) at each row's
    last response token; 0 where mask is False.

    logp - ref_logp, averaged over tokens sampled from pi, estimates KL(pi || pi_ref) (the "k1" estimator): tokens
    the policy now likes more than the reference did are charged, tokens it likes less are paid."""
    if logp.shape != mask.shape or ref_logp.shape != mask.shape or scores.shape != mask.shape[:1]:
        raise ValueError(f"shapes disagree: scores {tuple(scores.shape)} must be (N,) and logp {tuple(logp.shape)}, "
                         f"ref_logp {tuple(ref_logp.shape)}, mask {tuple(mask.shape)} all (N, R)")
    if not bool(mask.any(1).all()):
        raise ValueError("a row of mask has no response token: there is nowhere to put its score")
    mask = mask.bool()
    rewards = (-beta * (logp - ref_logp)).masked_fill(~mask, 0.0)  # (N, R)
    cols = torch.arange(mask.size(1), device=mask.device)
    last = (cols * mask).argmax(1)  # (N,) index of the last response token
    return rewards.scatter_add(1, last[:, None], scores[:, None].to(rewards.dtype))


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation. rewards, values, mask (N, R) -> (advantages, returns), each (N, R).

        delta_t = r_t + gamma * V_{t+1} - V_t        (V after the last response token = 0: the episode ended)
        A_t     = sum_{s >= t} (gamma * lam)^(s - t) * delta_s,    returns_t = A_t + V_t   (the critic's target)

    The mask must be a prefix of each row (responses are left-aligned), as `sample_rollout` gives. The backward
    sum is one (R, R) matmul with weights (gamma*lam)^(s-t) for s >= t, not a Python loop over tokens."""
    if not (rewards.shape == values.shape == mask.shape) or rewards.dim() != 2:
        raise ValueError(f"rewards {tuple(rewards.shape)}, values {tuple(values.shape)} and mask "
                         f"{tuple(mask.shape)} must all be (N, R)")
    m = mask.to(values.dtype)
    v = values * m
    next_v = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], 1)  # (N, R) V_{t+1}, 0 past the end
    delta = (rewards + gamma * next_v - v) * m  # (N, R)
    R = delta.size(1)
    t = torch.arange(R, device=delta.device, dtype=delta.dtype)
    lag = t[None, :] - t[:, None]  # (R, R): s - t
    weight = torch.pow(gamma * lam, lag.clamp(min=0)).triu()  # (R, R) [t, s]: (gamma*lam)^(s-t), 0 for s < t
    adv = (delta @ weight.T) * m  # (N, R): A[n, t] = sum_s weight[t, s] delta[n, s]
    return adv, (adv + v) * m


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries (population std), 0 elsewhere. Same shape as x."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return ((x - mean) / torch.sqrt(var + eps)).masked_fill(~mask.bool(), 0.0)


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                    clip: float) -> torch.Tensor:
    """PPO's clipped policy loss: -mean over response tokens of `clipped_surrogate`. All inputs (N, R)."""
    return -masked_mean(clipped_surrogate(logp, old_logp, adv, clip), mask)


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip: float | None) -> torch.Tensor:
    """0.5 * mean over response tokens of max((V - G)^2, (V_clipped - G)^2), V_clipped = old_V + clip(V - old_V,
    -clip, clip) (as in PPO2 / TRL: the critic, too, moves only a bounded step per batch); clip None = plain MSE."""
    err = (values - returns) ** 2
    if clip is not None:
        v_clipped = old_values + (values - old_values).clamp(-clip, clip)
        err = torch.maximum(err, (v_clipped - returns) ** 2)
    return 0.5 * masked_mean(err, mask)


def _logprobs_entropy(policy: nn.Module, ids: torch.Tensor, P: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass -> (log p of each response token (N, R), entropy of pi at each response position (N, R))."""
    logits = model_logits(policy, ids)[:, P - 1:-1].float()  # (N, R, V)
    return logprobs_from_logits(logits, ids[:, P:]), token_entropy(logits)


def ppo_step(policy: nn.Module, critic: nn.Module, reference: nn.Module, policy_optimizer: torch.optim.Optimizer,
             critic_optimizer: torch.optim.Optimizer, prompt_ids: torch.Tensor, tokenizer, reward_fn: RewardFn,
             cfg: PPOConfig, generator: torch.Generator | None = None) -> dict[str, float]:
    """One PPO iteration on a batch of prompts (N, P): sample, score, shape rewards, GAE, cfg.epochs of updates.

    The optimizers hold the policy's and the critic's parameters (separately: the critic is its own network).
    Returns statistics: score (mean reward-model score), kl (mean per-token log pi_old - log pi_ref), kl_seq (its
    sum per response, averaged: the sequence KL of the reward-KL trade-off), return
    (mean per-sequence sum of KL-penalised rewards), response_len, policy_loss, value_loss, clip_frac (fraction of
    tokens where the ratio left the clip range), entropy (only with entropy_coef > 0), grad_norm."""
    if not isinstance(cfg, PPOConfig):
        raise ValueError(f"cfg must be a PPOConfig, got {type(cfg).__name__}")
    ro = sample_rollout(policy, reference, prompt_ids, cfg, generator)
    P, mask = ro.prompt_len, ro.mask
    scores = score_rollout(ro, tokenizer, reward_fn, cfg.stop_tokens)  # (N,)
    with torch.no_grad():
        old_values = response_values(critic, ro.ids, P).float().masked_fill(~mask, 0.0)  # (N, R)
        rewards = kl_penalized_rewards(scores, ro.old_logp, ro.ref_logp, mask, cfg.beta)  # (N, R)
        adv, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            adv = whiten(adv, mask)
    sums = {"policy_loss": 0.0, "value_loss": 0.0, "clip_frac": 0.0, "entropy": 0.0, "grad_norm": 0.0}
    n_updates = 0
    policy.train()
    critic.train()
    for _ in range(cfg.epochs):
        for idx in minibatches(mask.size(0), cfg.minibatch_size, generator):
            ids, m = ro.ids[idx], mask[idx]
            if cfg.entropy_coef > 0:
                logp, entropy = _logprobs_entropy(policy, ids, P)
            else:
                logp, entropy = response_logprobs(policy, ids, P), None
            loss = ppo_policy_loss(logp, ro.old_logp[idx], adv[idx], m, cfg.clip)
            sums["policy_loss"] += float(loss.detach())
            if entropy is not None:
                ent = masked_mean(entropy, m)
                loss = loss - cfg.entropy_coef * ent
                sums["entropy"] += float(ent.detach())
            sums["grad_norm"] += optimizer_step(policy_optimizer, loss, policy.parameters(), cfg.grad_clip)
            with torch.no_grad():
                ratio = torch.exp(logp.detach() - ro.old_logp[idx])
                sums["clip_frac"] += float(masked_mean(((ratio - 1).abs() > cfg.clip).float(), m))
            v_loss = ppo_value_loss(response_values(critic, ids, P).float(), old_values[idx], returns[idx], m,
                                    cfg.value_clip)
            optimizer_step(critic_optimizer, v_loss, critic.parameters(), cfg.grad_clip)
            sums["value_loss"] += float(v_loss.detach())
            n_updates += 1
    stats = {k: v / n_updates for k, v in sums.items()}
    if cfg.entropy_coef == 0:
        del stats["entropy"]
    stats.update(score=float(scores.mean()), kl=float(masked_mean(ro.old_logp - ro.ref_logp, mask)),
                 kl_seq=float((ro.old_logp - ro.ref_logp).sum(1).mean()),
                 response_len=float(ro.lengths.float().mean()), **{"return": float(rewards.sum(1).mean())})
    return stats
