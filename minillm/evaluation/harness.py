"""Evaluation primitives: perplexity, multiple-choice scoring by likelihood, exact match / F1, few-shot prompts.
Survey §7 (capacity evaluation), §7.1.1 (language modeling: perplexity), §7.1.2 (closed-book QA: EM / F1),
§7.3 (evaluation approaches: likelihood-based multiple choice as in lm-evaluation-harness), §6.1 (few-shot ICL).

- `perplexity`: sliding windows over a long text (HF's "perplexity of fixed-length models" recipe): every token
  after the first is scored exactly once, with as much left context as the window allows. The loss is
  `minillm.evaluation.loss.heldout_loss` in its full layout (max_windows=None); this wrapper only reports it.
  bits_per_byte divides by UTF-8 bytes, not tokens, so models with different tokenizers can be compared (a
  coarser tokenizer has fewer, harder tokens: per-token losses are not comparable, per-byte ones are).
- `choice_logprobs` / `score_choices`: sum of log p(continuation | context) for each choice, all choices in one
  padded forward. lm-eval-harness reports `acc` (raw sums) and `acc_norm` (divided by the continuation's
  length): raw sums favour short answers, since every extra token costs probability.
- `exact_match`: one 0/1 per example, exact string equality by default (synthetic tasks have one canonical
  answer), SQuAD-normalised with normalize=True (lowercase, no punctuation, no articles: free-text QA).
- `f1_score`: SQuAD's token F1 of the normalised answers.
- `few_shot_prompt`: demonstrations then the query, each demonstration written ``question + answer``.
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from minillm.device import model_device
from minillm.evaluation.loss import heldout_loss
from minillm.model.transformer import logits_of

NORMALIZE = ("none", "tokens", "chars")



def _block(model) -> int | None:
    return getattr(getattr(model, "config", None), "block_size", None)


# ---- perplexity ------------------------------------------------------------------------------------------------


def perplexity(model: torch.nn.Module, ids: torch.Tensor | None = None, *, text: str | None = None,
               tokenizer=None, block_size: int | None = None, stride: int | None = None,
               batch_size: int = 32) -> dict:
    """Loss of `model` on a token sequence (or on `text`, encoded with `tokenizer`), every token after the first
    scored once. Windows hold `block_size` tokens (default: the model's) and start every `stride` tokens
    (default: block_size, i.e. disjoint windows); a smaller stride gives each scored token more left context.

    Returns loss (nats/token), perplexity = exp(loss), bits_per_token, tokens (scored tokens), and, when `text`
    is given, bytes (UTF-8 bytes of the text) and bits_per_byte = total nats / ln 2 / bytes (else None).
    The loss is `heldout_loss(model, ids, length=block_size, max_windows=None, stride=stride)`."""
    if text is not None:
        if ids is not None:
            raise ValueError("give either ids or text, not both")
        if tokenizer is None:
            raise ValueError("text needs a tokenizer to encode it: perplexity(model, text=..., tokenizer=tok)")
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty str")
        ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    if ids is None:
        raise ValueError("nothing to score: give ids (a 1-D tensor of token ids) or text= with tokenizer=")
    ids = torch.as_tensor(ids, dtype=torch.long)
    loss = heldout_loss(model, ids, length=block_size, max_windows=None, stride=stride, batch_size=batch_size)
    n = ids.numel() - 1  # heldout_loss checked the shape: (T,) or (1, T), so this is the number of targets
    nbytes = len(text.encode("utf-8")) if text is not None else None
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_token": loss / math.log(2),
            "bits_per_byte": loss * n / math.log(2) / nbytes if nbytes else None, "tokens": n, "bytes": nbytes}


# ---- multiple choice by likelihood --------------------------------------------------------------------------


@torch.no_grad()
def _choice_scores(model, tokenizer, context: str, choices: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(summed log-prob, token count) of each choice as the continuation of `context`: one padded forward."""
    if not isinstance(choices, (list, tuple)) or not choices or not all(isinstance(c, str) and c for c in choices):
        raise ValueError(f"choices must be a non-empty list of non-empty strings, got {choices!r}")
    ctx = tokenizer.encode(context)
    if not ctx:
        raise ValueError("the context is empty: the first continuation token needs something to condition on")
    # Context and continuation are encoded separately (as lm-eval-harness does), so the continuation's tokens
    # are the same whatever the context; for a character tokenizer this equals encoding the joined string.
    conts = [tokenizer.encode(c) for c in choices]
    block = _block(model)
    rows, n_ctx = [], []
    for c in conts:
        seq = ctx + c
        if block is not None and len(seq) - 1 > block:
            if len(c) > block:
                raise ValueError(f"a choice has {len(c)} tokens, more than the model's context ({block})")
            seq = seq[len(seq) - 1 - block:]  # keep the end: the context's oldest tokens scroll out of view
        rows.append(seq)
        n_ctx.append(len(seq) - len(c))
    T = max(len(r) for r in rows) - 1
    x = torch.zeros(len(rows), T, dtype=torch.long)                 # (N, T) right-padded; causal, so unseen
    y = torch.full((len(rows), T), -1, dtype=torch.long)            # (N, T) targets, -1 = not a choice token
    for i, (r, k) in enumerate(zip(rows, n_ctx)):  # a loop over choices (a handful), filling the padded batch
        x[i, :len(r) - 1] = torch.tensor(r[:-1])
        y[i, k - 1:len(r) - 1] = torch.tensor(r[k:])
    was_training = model.training
    model.eval()
    try:
        logp = torch.log_softmax(logits_of(model(x.to(model_device(model)))).float(), -1).cpu()  # (N, T, V)
    finally:
        model.train(was_training)
    mask = y >= 0
    lp = logp.gather(-1, y.clamp(min=0)[..., None])[..., 0]           # (N, T)
    return (lp * mask).sum(1).double().numpy(), mask.sum(1).numpy()


def choice_logprobs(model: torch.nn.Module, tokenizer, context: str, choices: list[str]) -> np.ndarray:
    """log p(choice | context) summed over each choice's tokens, shape (n_choices,). Write the separator into
    the choices (" Paris", not "Paris") when the context does not end with it."""
    return _choice_scores(model, tokenizer, context, choices)[0]


def score_choices(model: torch.nn.Module, tokenizer, context: str, choices: list[str],
                  normalize: str = "none") -> np.ndarray:
    """Scores to rank the choices by, shape (n_choices,): the summed log-prob ("none", lm-eval's acc), divided
    by the continuation's token count ("tokens") or character count ("chars", lm-eval's acc_norm)."""
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize={normalize!r} is not valid; choose one of {', '.join(map(repr, NORMALIZE))}")
    lp, n_tok = _choice_scores(model, tokenizer, context, choices)
    if normalize == "tokens":
        return lp / n_tok
    if normalize == "chars":
        return lp / np.array([len(c) for c in choices])
    return lp


# ---- exact match and F1 ---------------------------------------------------------------------------------------


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD's normalisation: lowercase, drop punctuation and the articles a/an/the, collapse whitespace."""
    if not isinstance(s, str):
        raise ValueError(f"answers must be str, got {type(s).__name__}")
    return " ".join(_ARTICLES.sub(" ", s.lower().translate(_PUNCT)).split())


def exact_match(preds: Sequence[str], golds: Sequence[str], normalize: bool = False) -> np.ndarray:
    """EM_i = 1.0 if preds[i] == golds[i] else 0.0, shape (N,) float64. Exact string equality by default
    (synthetic tasks have one canonical answer string: "85 " is not "85"); normalize=True compares
    SQuAD-normalised answers (`normalize_answer`), for free-text QA."""
    if isinstance(preds, str) or isinstance(golds, str):
        raise ValueError("exact_match takes lists of strings (one per example), not a single string")
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} gold answers")
    if normalize:
        preds, golds = [normalize_answer(p) for p in preds], [normalize_answer(g) for g in golds]
    return np.array([float(p == g) for p, g in zip(preds, golds)], dtype=np.float64)


def f1_score(pred: str, gold: str) -> float:
    """SQuAD token F1: harmonic mean of precision and recall of the normalised words (a bag: counts matter).
    Two empty answers agree (1.0); one empty answer scores 0.0."""
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


# ---- few-shot prompts -----------------------------------------------------------------------------------------


def few_shot_prompt(examples: list[tuple[str, str]], query: str, instruction: str | None = None,
                    sep: str = "\n") -> str:
    """``[instruction + sep] + q1 + a1 + sep + q2 + a2 + sep + ... + query``.

    Each demonstration is its question followed directly by its answer, so put the answer's leading space in the
    answer (("Ada lives in", " Ashford")), as multiple-choice continuations are written. The model then continues
    the query the way the demonstrations were continued (Survey §6.1: the format is part of the prompt)."""
    if not isinstance(sep, str) or not sep:
        raise ValueError(f"sep={sep!r} must be a non-empty string (it separates the demonstrations)")
    if not isinstance(query, str):
        raise ValueError(f"query must be a str, got {type(query).__name__}")
    parts = [] if instruction is None else [instruction]
    for i, ex in enumerate(examples):
        if not (isinstance(ex, (tuple, list)) and len(ex) == 2 and all(isinstance(s, str) for s in ex)):
            raise ValueError(f"example {i} must be a (question, answer) pair of strings, got {ex!r}")
        parts.append(ex[0] + ex[1])
    parts.append(query)
    return sep.join(parts)
