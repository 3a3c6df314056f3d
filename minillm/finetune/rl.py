"""Reinforcement learning from a reward signal: PPO and GRPO (Survey §5.2, alignment tuning: RLHF).

One import point for the RL pieces, which live in three files:

    rollout.py  RolloutConfig, sample_rollout (responses + old/reference log-probs), the reward interface
                RewardFn = callable(responses: list[str], prompts: list[str]) -> tensor (N,), score_rollout
    rl_ppo.py   PPO as in InstructGPT: ValueModel (critic), kl_penalized_rewards, gae, whiten, ppo_policy_loss,
                ppo_value_loss, PPOConfig, ppo_step
    rl_grpo.py  GRPO as in DeepSeekMath: group_advantages, k3_kl, grpo_loss, GRPOConfig, grpo_step

A minimal GRPO loop (a policy GPT, its tokenizer, equal-length prompts stacked into prompt_ids (B, P)):

    reference = frozen_copy(policy)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    cfg = GRPOConfig(max_new_tokens=16, stop_tokens=(tokenizer.token_to_id("\\n"),))
    for _ in range(steps):
        stats = grpo_step(policy, reference, opt, prompt_ids, tokenizer, reward_fn, cfg)
"""
from __future__ import annotations

from .rl_grpo import GRPOConfig, group_advantages, grpo_loss, grpo_step, k3_kl
from .rl_ppo import (PPOConfig, ValueModel, clipped_surrogate, gae, kl_penalized_rewards, ppo_policy_loss, ppo_step,
                     ppo_value_loss, response_values, whiten)
from .rollout import (RewardFn, Rollout, RolloutConfig, char_count_reward, frozen_copy, masked_mean, response_logprobs,
                      response_mask, sample_rollout, score_rollout)

__all__ = [
    "RewardFn", "Rollout", "RolloutConfig", "char_count_reward", "frozen_copy", "masked_mean", "response_logprobs",
    "response_mask", "sample_rollout", "score_rollout",
    "PPOConfig", "ValueModel", "clipped_surrogate", "gae", "kl_penalized_rewards", "ppo_policy_loss", "ppo_step",
    "ppo_value_loss", "response_values", "whiten",
    "GRPOConfig", "group_advantages", "grpo_loss", "grpo_step", "k3_kl",
]
