"""Adaptation of pretrained LLMs (chapter 06). Survey §5: instruction tuning (§5.1), alignment tuning (§5.2:
RLHF with a reward model and PPO, and non-RL methods such as DPO), parameter-efficient (§5.3) and
memory-efficient (§5.4) adaptation.

    chat.py      chat template with special tokens; ChatTemplate.render(messages) -> (ids, loss_mask)
    sft.py       instruction data from the synthetic worlds, JSONL loaders, packing with response-only targets,
                 the minimal training loop `optimize` and `train_sft` (§5.1)
    logprobs.py  per-token and per-sequence log-probabilities (float32) shared by DPO, PPO and GRPO
    dpo.py       DPO / IPO / SimPO losses and a minimal DPO loop (§5.2, non-RL alignment)
    reward.py    reward model (GPT backbone + scalar head) and the Bradley-Terry loss (§5.2, RLHF step 2)
    rl.py        PPO (value model, GAE, KL penalty, clipping) and GRPO; rollout.py / rl_ppo.py / rl_grpo.py
    peft.py      LoRA, adapters, prefix and prompt tuning (§5.3)
    quant.py     weight-only int8/int4 post-training quantization (§5.4)
    studies_peft.py  PEFT comparison, LoRA rank sweep, quantization cost (§5.3, §5.4)
    preferences.py   a synthetic judge with a known hidden reward, preference pairs with label noise (§5.2)
    studies_align.py SFT -> reward model -> DPO / GRPO / PPO measured on the hidden reward; the KL sweep
    studies_sft.py   instruction diversity vs count, task mixing, pretraining data in SFT, tuned vs untuned (§5.1)
    studies_knowledge.py  SFT elicits known facts; SFT on unknown facts teaches guessing (§5.1)

Names load lazily on first use (`minillm.finetune.dpo_loss` imports dpo.py then): importing the package does no
work, and a submodule is only imported when one of its names is asked for.
"""
from __future__ import annotations

import importlib
from typing import Any

_MODULES = {  # submodule -> its public names (each module's __all__)
    "chat": "SYSTEM USER ASSISTANT END CHAT_TOKENS ROLE_TAGS ChatTemplate chat_tokenizer check_messages render_text "
            "as_messages pair_fields pad_batch",
    "sft": "IGNORE TASK_TEMPLATES SFT_TASKS Conversation task_templates example_to_conversation problem_key "
           "instruction_data load_jsonl pack sft_batches sft_loss optimize train_sft response_accuracy",
    "logprobs": "logprobs_from_logits model_logits token_logprobs align_mask masked_sum sequence_logprob",
    "dpo": "LOSSES dpo_loss ipo_loss simpo_loss pair_logprobs train_dpo",
    "reward": "RewardModel bradley_terry_loss reward_accuracy pair_rewards train_reward_model",
    "rl": "RewardFn Rollout RolloutConfig char_count_reward frozen_copy masked_mean response_logprobs response_mask "
          "sample_rollout score_rollout PPOConfig ValueModel clipped_surrogate gae kl_penalized_rewards "
          "ppo_policy_loss ppo_step ppo_value_loss response_values whiten GRPOConfig group_advantages grpo_loss "
          "grpo_step k3_kl",
    "peft": "LoRAConfig LoRALinear apply_lora merge_lora lora_state_dict Adapter apply_adapters PrefixAttention "
            "apply_prefix_tuning PromptTuning PEFTReport trainable_parameters peft_report",
    "quant": "quantize_tensor dequantize pack_int4 unpack_int4 QuantizedWeight QuantLinear QuantEmbedding QuantReport "
             "quantize_model model_bytes",
    "studies_peft": "PEFT_METHODS PEFTStudyConfig pretrain_base pretraining_text apply_method sft_task peft_comparison "
                    "lora_trainable_count lora_rank_sweep quantization_cost study_config",
    "preferences": "POLITE HARMFUL CORRECT_BONUS STYLE_BONUS HARM_PENALTY KINDS user_text answer_for HiddenReward "
                   "perturb_answer make_candidate make_preference_pairs reward_model_agreement",
    "studies_align": "AlignSetup prepare_alignment learned_reward_fn evaluate_policy run_rl sft_then_align "
                     "kl_sweep",
    "studies_sft": "SFTStudyConfig sft_study_config finetune_copy diversity_vs_count mixing_study pretrain_mix_data "
                   "pretrain_mix_study big_base tuned_vs_untuned",
    "studies_knowledge": "KNOWLEDGE_ATTRIBUTES knowledge_world knowledge_text knowledge_base fact_conversations "
                         "knowledge_study",
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names.split()}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'minillm.finetune' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
