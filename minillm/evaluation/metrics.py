"""Metrics for task answers, each a pure function of model outputs. Survey §2.1 and Schaeffer et al. 2023
("Are Emergent Abilities of Large Language Models a Mirage?").

The mirage argument in one line: if a model gets each of L answer tokens right with probability p, exact match
is about p**L, so a smooth rise of p with scale looks like a sudden jump under exact match for long answers,
while per-token metrics (token accuracy, log-likelihood, Brier score) stay smooth. To test that on our own
models we score the SAME outputs with every metric below.

Per-token inputs are padded (N, L) arrays with a boolean mask (N, L) that is True on answer tokens; L may vary
per example. Every function returns one value per example (N,); aggregate with `mean_se` / `summarize`.
`exact_match` (string answers; raw by default, as these metrics need) is `minillm.evaluation.harness.exact_match`,
re-exported here.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from minillm.evaluation.harness import exact_match  # noqa: F401  (re-exported: one definition, in harness.py)


def _mask(mask, shape) -> np.ndarray:
    m = np.ones(shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != tuple(shape):
        raise ValueError(f"mask has shape {m.shape}, expected {tuple(shape)} (one flag per answer token)")
    if not m.any(axis=-1).all():
        raise ValueError("every example needs at least one answer token (a row of the mask is all False)")
    return m


def exact_match_tokens(pred_ids, gold_ids, mask=None) -> np.ndarray:
    """EM_i = prod_t [pred_it == gold_it] over answer tokens t: every token right. (N,) float."""
    pred, gold = np.asarray(pred_ids), np.asarray(gold_ids)
    m = _mask(mask, gold.shape)
    return np.all((pred == gold) | ~m, axis=-1).astype(np.float64)


def token_accuracy(pred_ids, gold_ids, mask=None) -> np.ndarray:
    """acc_i = (1/L_i) sum_t [pred_it == gold_it]: the fraction of answer tokens whose (teacher-forced) argmax
    is the gold token. pred_ids, gold_ids (N, L) ints. (N,) float."""
    pred, gold = np.asarray(pred_ids), np.asarray(gold_ids)
    if pred.shape != gold.shape:
        raise ValueError(f"pred_ids {pred.shape} and gold_ids {gold.shape} must have the same shape")
    m = _mask(mask, gold.shape)
    return ((pred == gold) & m).sum(-1) / m.sum(-1)


def answer_logprob(token_logprobs, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """(mean_i, sum_i) with sum_i = sum_t log p(gold_it | prefix) (nats; log of the answer's probability) and
    mean_i = sum_i / L_i (per-token log-likelihood, comparable across answer lengths). token_logprobs (N, L)."""
    lp = np.asarray(token_logprobs, dtype=np.float64)
    m = _mask(mask, lp.shape)
    total = np.where(m, lp, 0.0).sum(-1)
    return total / m.sum(-1), total


def brier_score(probs, gold_ids, mask=None) -> np.ndarray:
    """Multi-class Brier score per answer token, averaged over the answer's tokens:
        B_i = (1/L_i) sum_t sum_j (p_itj - y_itj)^2,   y_it = one-hot of the gold token.
    0 for a certain correct prediction, 2 for a certain wrong one, 1 - 1/V for uniform over V classes.
    probs (N, L, V), gold_ids (N, L). (N,) float; lower is better."""
    p = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(gold_ids)
    if p.ndim != 3 or p.shape[:2] != gold.shape:
        raise ValueError(f"probs must be (N, L, V) and gold_ids (N, L); got {p.shape} and {gold.shape}")
    m = _mask(mask, gold.shape)
    g = np.clip(gold, 0, p.shape[-1] - 1)  # padding may hold any id; masked out below
    p_gold = np.take_along_axis(p, g[..., None], -1)[..., 0]          # (N, L)
    per_tok = (p ** 2).sum(-1) - 2 * p_gold + 1                       # = sum_j (p_j - y_j)^2, expanded
    return np.where(m, per_tok, 0.0).sum(-1) / m.sum(-1)


def binomial_se(successes) -> float:
    """Standard error of a success rate: sqrt(p (1 - p) / n), p = mean of the 0/1 outcomes."""
    x = np.asarray(successes, dtype=np.float64)
    if x.size == 0:
        raise ValueError("binomial_se of no outcomes")
    p = x.mean()
    return math.sqrt(p * (1 - p) / x.size)


def bootstrap_se(values, n_boot: int = 1000, seed: int = 0) -> float:
    """Standard deviation of the mean over `n_boot` resamples (with replacement) of the examples."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_se of no values")
    if not isinstance(n_boot, int) or n_boot < 2:
        raise ValueError(f"n_boot={n_boot!r} must be an int >= 2")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))  # (n_boot, N)
    return float(x[idx].mean(1).std(ddof=1))


def mean_se(values, method: str = "auto", n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(mean, standard error). method: "binomial" (0/1 outcomes), "sem" (std / sqrt(n)), "bootstrap", or
    "auto" (binomial when every value is 0 or 1, else sem)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("mean_se of no values")
    if method == "auto":
        method = "binomial" if np.isin(x, (0.0, 1.0)).all() else "sem"
    if method == "binomial":
        return float(x.mean()), binomial_se(x)
    if method == "sem":
        return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else 0.0
    if method == "bootstrap":
        return float(x.mean()), bootstrap_se(x, n_boot, seed)
    raise ValueError(f"method={method!r}: choose 'auto', 'binomial', 'sem' or 'bootstrap'")


METRICS = ("exact_match", "token_accuracy", "logprob_mean", "logprob_sum", "brier")


def summarize(scores: Mapping[str, np.ndarray], metrics: Sequence[str] = METRICS, method: str = "auto") -> dict:
    """{metric: mean, metric + "_se": standard error} for each metric present in `scores` (per-example arrays)."""
    out = {}
    for k in metrics:
        if k in scores:
            out[k], out[k + "_se"] = mean_se(scores[k], method)
    if not out:
        raise ValueError(f"scores has none of the metrics {list(metrics)}; keys: {sorted(scores)}")
    return out
