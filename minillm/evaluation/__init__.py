"""Evaluating language models: held-out loss, answer metrics, likelihood scoring, benchmarks and their leaks.
Survey §7 (capacity evaluation): §7.1.1 (language modeling: loss, perplexity), §7.1.2 (closed-book QA: EM / F1),
§7.1.3 (reasoning), §7.3 (benchmarks and evaluation approaches, benchmark leakage); §6.1 (few-shot prompts).

    loss.py           `heldout_loss`: THE held-out loss (nats/token, pure cross-entropy from the logits) over
                      evenly spread windows (what the studies report) or every token once (max_windows=None);
                      prefix_len for prefix LMs and encoder-decoders, per_position for length extrapolation
    metrics.py        per-example metrics of the same outputs (exact match, token accuracy, answer log-prob, Brier)
                      and their standard errors (Schaeffer et al. 2023: the metric, not the model, makes the jump)
    harness.py        perplexity (and bits per byte) over a text, multiple-choice scoring by likelihood
                      (lm-eval's acc / acc_norm), exact_match / f1_score, few-shot prompts of (question, answer)
    answers.py        the final answer of a free-form response: the number of a GSM8K-style solution ("#### 42",
                      else the last number), the letter an MMLU-style response chose; None when there is none
    scoring.py        teacher-forced scoring of task examples (one forward pass gives every metric), greedy
                      completion, in-context accuracy by number of shots, inverse-scaling rates
    benchmarks.py     benchmark suites built from our own generators (facts_mc, arithmetic, story_cloze) and the
                      harness that runs them
    contamination.py  which benchmark items a training text holds (n-gram overlap), and text that leaks them

One name means something else elsewhere in the package:
- `few_shot_prompt` here is harness's ((question, answer) string pairs + a query); the in-context tasks'
  builder of the same name (shots of `Example`s) is `minillm.data.tasks.few_shot_prompt`.
"""
from minillm.evaluation.loss import heldout_loss
from minillm.evaluation.metrics import (METRICS, answer_logprob, binomial_se, bootstrap_se, brier_score,
                                        exact_match_tokens, mean_se, summarize, token_accuracy)
from minillm.evaluation.harness import (NORMALIZE, choice_logprobs, exact_match, f1_score, few_shot_prompt,
                                        normalize_answer, perplexity, score_choices)
from minillm.evaluation.answers import numbers_match, parse_choice, parse_number, score_numeric
from minillm.evaluation.scoring import (greedy_complete, icl_accuracy_by_shots, inverse_scaling_rates, score_examples,
                                        score_generated)
from minillm.evaluation.benchmarks import (KINDS, SHOT_STREAM, TASKS, Arithmetic, EvalTask, FactsMC, Item, StoryCloze,
                                           evaluate_suite, get_task, register_task, run_benchmark, score_items)
from minillm.evaluation.contamination import contaminated_text, contamination_report

__all__ = [
    "heldout_loss",
    "METRICS", "answer_logprob", "binomial_se", "bootstrap_se", "brier_score", "exact_match_tokens", "mean_se",
    "summarize", "token_accuracy",
    "NORMALIZE", "choice_logprobs", "exact_match", "f1_score", "few_shot_prompt", "normalize_answer", "perplexity",
    "score_choices",
    "numbers_match", "parse_choice", "parse_number", "score_numeric",
    "greedy_complete", "icl_accuracy_by_shots", "inverse_scaling_rates", "score_examples", "score_generated",
    "KINDS", "SHOT_STREAM", "TASKS", "Arithmetic", "EvalTask", "FactsMC", "Item", "StoryCloze", "evaluate_suite",
    "get_task", "register_task", "run_benchmark", "score_items",
    "contaminated_text", "contamination_report",
]
