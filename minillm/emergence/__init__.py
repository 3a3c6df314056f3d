"""Emergent abilities (chapter 02). Survey §2.1: in-context learning, instruction following and step-by-step
reasoning, said to appear only above some scale; and Schaeffer et al. 2023's claim that the jump is made by
discontinuous metrics such as exact match, not by the models.

    task_base.py Example, the prompt marks, few_shot_prompt, extract_answer, the TaskGenerator base
    tasks.py     arithmetic (with written working) and in-context pattern tasks; the registry (TASKS, make_examples)
    instructions.py  instruction families with held-out phrasings; the inverse-scaling probe
    mixture.py   pretraining text: stories + task examples at controlled character rates; the fixed tokenizer
    metrics.py   exact match, token accuracy, answer log-likelihood, Brier score; standard errors
    scoring.py   teacher-forced scoring in one pass per batch, greedy generation, ICL-by-shots, train_lm
    studies.py   the chapter's size sweep and studies (ModelZoo: train once, evaluate many); zoo_cache.py shares
                 trained models between processes; plots.py their figures and widget
"""
from .metrics import (METRICS, answer_logprob, binomial_se, bootstrap_se, brier_score, exact_match,
                      exact_match_tokens, mean_se, summarize, token_accuracy)
from .mixture import (ALPHABET, EVAL_STREAM, TRAIN_STREAM, Mixture, emergence_tokenizer, eval_examples,
                      pretraining_mixture, stream_seed)
from .scoring import (greedy_complete, heldout_loss, icl_accuracy_by_shots, inverse_scaling_rates, score_examples,
                      score_generated, train_lm)
from .studies import (SWEEP_TASKS, THRESHOLDS, EmergenceRun, ModelZoo, appearance_table, base_rates, cot_study,
                      icl_by_shots, instruction_study, inverse_scaling_study, predictability, size_sweep)
from .tasks import (ANSWER_MARK, FAMILIES, HELDOUT_PER_FAMILY, MAP_SEP, QUERY_MARK, SHOT_SEP, TASKS, TRACE_OPEN,
                    Addition, Example, Instructions, KVMap, Linear, Multiplication, PatternConflict, TaskGenerator,
                    addition_trace, extract_answer, few_shot_prompt, make_examples, multiplication_trace, templates)

__all__ = [
    "METRICS", "answer_logprob", "binomial_se", "bootstrap_se", "brier_score", "exact_match", "exact_match_tokens",
    "mean_se", "summarize", "token_accuracy",
    "ALPHABET", "EVAL_STREAM", "TRAIN_STREAM", "Mixture", "emergence_tokenizer", "eval_examples",
    "pretraining_mixture", "stream_seed",
    "greedy_complete", "heldout_loss", "icl_accuracy_by_shots", "inverse_scaling_rates", "score_examples",
    "score_generated", "train_lm",
    "ANSWER_MARK", "FAMILIES", "HELDOUT_PER_FAMILY", "MAP_SEP", "QUERY_MARK", "SHOT_SEP", "TASKS", "TRACE_OPEN",
    "Addition",    "Example", "Instructions", "KVMap", "Linear", "Multiplication", "PatternConflict", "TaskGenerator",
    "addition_trace", "extract_answer", "few_shot_prompt", "make_examples", "multiplication_trace", "templates",
]

__all__ += ["SWEEP_TASKS", "THRESHOLDS", "EmergenceRun", "ModelZoo", "appearance_table", "base_rates", "cot_study",
            "icl_by_shots", "instruction_study", "inverse_scaling_study", "predictability", "size_sweep"]
