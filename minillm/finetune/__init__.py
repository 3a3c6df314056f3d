"""Adaptation of pretrained LLMs. Survey §5: instruction tuning (§5.1), alignment tuning (§5.2: RLHF with a
reward model and PPO, and non-RL methods such as DPO), parameter-efficient (§5.3) and memory-efficient (§5.4)
adaptation.

    chat.py         chat template with special tokens; ChatTemplate.render(messages) -> (ids, loss_mask)
    sft.py          instruction data from the synthetic worlds, JSONL loaders, packing with response-only targets,
                    `train_sft` (§5.1) through the library's one training step (minillm.train.step)
    loop.py         `optimize`, the fine-tuning loop SFT, DPO and the reward model share (checkpoints, exact resume)
    sft_loop.py     the SFT micro-step (summed response NLL / constant / grad-accum steps, backward), a packed
                    (prompt, response) dataset with seeded batches, and a Trainer-free SFT loop a reader holds in mind
    recipe.py       finetune_run: a run folder + a JSONL -> a LoRA-tuned run (chat tokens added, one conversation
                    per row, merged or as an adapter); what `python -m minillm finetune` runs
    logprobs.py     per-token and per-sequence log-probabilities (float32) shared by DPO, PPO and GRPO
    dpo.py          DPO / IPO / SimPO losses and a DPO loop (§5.2, non-RL alignment)
    reward.py       reward model (GPT backbone + scalar head) and the Bradley-Terry loss (§5.2, RLHF step 2)
    rollout.py      sampling responses with old / reference log-probs; the reward interface
                    RewardFn = callable(responses: list[str], prompts: list[str]) -> tensor (N,)
    policy_gradient.py  the losses RL homework is built from, over (B, T) log-probs: REINFORCE with and without a
                    baseline, the clipped PPO/GRPO surrogate, group-normalised rewards (GRPO, Dr. GRPO), masked
                    mean / sum over a constant, token entropy, one gradient-accumulation micro-step
    verifiable.py   verifiable rewards (RLVR): exact match of a parsed answer, a format reward, their weighted sum,
                    the gold of an arithmetic prompt
    ppo.py          PPO as in InstructGPT: a value model (critic), KL-penalized rewards, GAE, the clipped objective
    grpo.py         GRPO as in DeepSeekMath: group-relative advantages, the k3 KL estimate
    peft.py         LoRA, adapters, prefix and prompt tuning (§5.3)
    quant.py        weight-only int8/int4 post-training quantization (§5.4)
    preferences.py  a synthetic judge with a known hidden reward; preference pairs with label noise (§5.2)

A minimal GRPO loop (a policy GPT, its tokenizer, equal-length prompts stacked into prompt_ids (B, P)):

    reference = frozen_copy(policy)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    cfg = GRPOConfig(max_new_tokens=16, stop_tokens=(tokenizer.token_to_id("\\n"),))
    for _ in range(steps):
        stats = grpo_step(policy, reference, opt, prompt_ids, tokenizer, reward_fn, cfg)
"""
from minillm.finetune.chat import (ASSISTANT, CHAT_TOKENS, END, ROLE_TAGS, SYSTEM, USER, ChatTemplate, as_messages,
                                   chat_tokenizer, check_messages, pad_batch, pair_fields, render_text)
from minillm.finetune.sft import (IGNORE, JSONL_SHAPES, SFT_TASKS, TASK_TEMPLATES, Conversation, example_to_conversation,
                                  instruction_data, load_jsonl, pack, problem_key, response_accuracy,
                                  sft_batches, sft_loss, task_templates, train_sft)
from minillm.finetune.loop import epoch_sampler, optimize
from minillm.finetune.recipe import FINETUNE_DEFAULTS, add_chat_tokens, finetune_run, train_new_token_rows
from minillm.finetune.policy_gradient import (PG_KINDS, PG_NORMALIZE, group_normalized_rewards, grpo_microbatch_step, masked_normalize,
                                              policy_gradient_loss, token_entropy)
from minillm.finetune.sft_loop import EOS_TOKEN, PackedSFTDataset, sft_microbatch_step, train_sft_loop
from minillm.finetune.verifiable import arithmetic_gold, combine_rewards, exact_match_reward, format_reward
from minillm.finetune.logprobs import (align_mask, logprobs_from_logits, masked_sum, model_logits, sequence_logprob,
                                       token_logprobs)
from minillm.finetune.dpo import LOSSES, dpo_loss, ipo_loss, pair_logprobs, simpo_loss, train_dpo
from minillm.finetune.reward import RewardModel, bradley_terry_loss, pair_rewards, reward_accuracy, train_reward_model
from minillm.finetune.rollout import (RewardFn, Rollout, RolloutConfig, char_count_reward, frozen_copy, masked_mean,
                                      response_logprobs, response_mask, sample_rollout, score_rollout)
from minillm.finetune.ppo import (PPOConfig, ValueModel, clipped_surrogate, gae, kl_penalized_rewards,
                                  ppo_policy_loss, ppo_step, ppo_value_loss, response_values, whiten)
from minillm.finetune.grpo import GRPOConfig, group_advantages, grpo_loss, grpo_step, k3_kl
from minillm.finetune.peft import (Adapter, LoRAConfig, LoRALinear, PEFTReport, PrefixAttention, PromptTuning,
                                   apply_adapters, apply_lora, apply_prefix_tuning, lora_state_dict, merge_lora,
                                   peft_report, trainable_parameters)
from minillm.finetune.quant import (QuantEmbedding, QuantLinear, QuantReport, QuantizedWeight, dequantize,
                                    model_bytes, pack_int4, quantize_model, quantize_tensor, unpack_int4)
from minillm.finetune.preferences import (CORRECT_BONUS, HARMFUL, HARM_PENALTY, KINDS, POLITE, STYLE_BONUS,
                                          HiddenReward, answer_for, make_candidate, make_preference_pairs,
                                          perturb_answer, reward_model_agreement, user_text)

__all__ = ["FINETUNE_DEFAULTS", "add_chat_tokens", "finetune_run", "train_new_token_rows", "JSONL_SHAPES", 
    "ASSISTANT", "CHAT_TOKENS", "END", "ROLE_TAGS", "SYSTEM", "USER", "ChatTemplate", "as_messages",
    "chat_tokenizer", "check_messages", "pad_batch", "pair_fields", "render_text",
    "IGNORE", "SFT_TASKS", "TASK_TEMPLATES", "Conversation", "example_to_conversation", "instruction_data",
    "load_jsonl", "optimize", "pack", "problem_key", "response_accuracy", "sft_batches", "sft_loss",
    "task_templates", "train_sft", "epoch_sampler",
    "PG_KINDS", "PG_NORMALIZE", "group_normalized_rewards", "grpo_microbatch_step", "masked_normalize", "policy_gradient_loss", "token_entropy",
    "EOS_TOKEN", "PackedSFTDataset", "sft_microbatch_step", "train_sft_loop",
    "arithmetic_gold", "combine_rewards", "exact_match_reward", "format_reward",
    "align_mask", "logprobs_from_logits", "masked_sum", "model_logits", "sequence_logprob", "token_logprobs",
    "LOSSES", "dpo_loss", "ipo_loss", "pair_logprobs", "simpo_loss", "train_dpo",
    "RewardModel", "bradley_terry_loss", "pair_rewards", "reward_accuracy", "train_reward_model",
    "RewardFn", "Rollout", "RolloutConfig", "char_count_reward", "frozen_copy", "masked_mean", "response_logprobs",
    "response_mask", "sample_rollout", "score_rollout",
    "PPOConfig", "ValueModel", "clipped_surrogate", "gae", "kl_penalized_rewards", "ppo_policy_loss", "ppo_step",
    "ppo_value_loss", "response_values", "whiten",
    "GRPOConfig", "group_advantages", "grpo_loss", "grpo_step", "k3_kl",
    "Adapter", "LoRAConfig", "LoRALinear", "PEFTReport", "PrefixAttention", "PromptTuning", "apply_adapters",
    "apply_lora", "apply_prefix_tuning", "lora_state_dict", "merge_lora", "peft_report", "trainable_parameters",
    "QuantEmbedding", "QuantLinear", "QuantReport", "QuantizedWeight", "dequantize", "model_bytes", "pack_int4",
    "quantize_model", "quantize_tensor", "unpack_int4",
    "CORRECT_BONUS", "HARMFUL", "HARM_PENALTY", "KINDS", "POLITE", "STYLE_BONUS", "HiddenReward", "answer_for",
    "make_candidate", "make_preference_pairs", "perturb_answer", "reward_model_agreement", "user_text",
]
