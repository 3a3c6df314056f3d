"""Evaluation primitives: perplexity, multiple-choice scoring by likelihood, exact match / F1, few-shot prompts.
Survey §7 (capacity evaluation), §7.1.1 (language modeling: perplexity), §7.1.2 (closed-book QA: EM / F1),
§7.3 (evaluation approaches: likelihood-based multiple choice as in lm-evaluation-harness), §6.1 (few-shot ICL).

- `perplexity`: sliding windows over a long text (HF's "perplexity of fixed-length models" recipe): every token
  after the first is scored exactly once, with as much left context as the window allows. bits_per_byte divides
  by UTF-8 bytes, not tokens, so models with different tokenizers can be compared (a coarser tokenizer has
  fewer, harder tokens: per-token losses are not comparable, per-byte ones are).
- `choice_logprobs` / `score_choices`: sum of log p(continuation | context) for each choice, all choices in one
  padded forward. lm-eval-harness reports `acc` (raw sums) and `acc_norm` (divided by the continuation's
  length): raw sums favour short answers, since every extra token costs probability.
- `exact_match`, `f1_score`: SQuAD's answer normalisation (lowercase, no punctuation, no articles).
- `few_shot_prompt`: demonstrations then the query, each demonstration written ``question + answer``.
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter

import numpy as np
import torch

NORMALIZE = ("none", "tokens", "chars")


def _logits(model, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out[0] if isinstance(out, tuple) else out  # minillm GPT returns (logits, loss)


def _device(model) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _block(model) -> int | None:
    return getattr(getattr(model, "config", None), "block_size", None)


# ---- perplexity ------------------------------------------------------------------------------------------------


def _window_starts(n_targets: int, block: int, stride: int) -> torch.Tensor:
    """Start offsets of windows of `block` inputs over a sequence with n_targets + 1 tokens. The last window is
    moved back to end exactly at the end, so every window is full length (one batch, no padding)."""
    last = n_targets - block
    starts = list(range(0, last, stride)) + [last]
    return torch.tensor(sorted(set(starts)), dtype=torch.long)


@torch.no_grad()
def perplexity(model: torch.nn.Module, ids: torch.Tensor | None = None, *, text: str | None = None,
               tokenizer=None, block_size: int | None = None, stride: int | None = None,
               batch_size: int = 32) -> dict:
    """Loss of `model` on a token sequence (or on `text`, encoded with `tokenizer`), every token after the first
    scored once. Windows hold `block_size` tokens (default: the model's) and start every `stride` tokens
    (default: block_size, i.e. disjoint windows); a smaller stride gives each scored token more left context.

    Returns loss (nats/token), perplexity = exp(loss), bits_per_token, tokens (scored tokens), and, when `text`
    is given, bytes (UTF-8 bytes of the text) and bits_per_byte = total nats / ln 2 / bytes (else None)."""
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
    if ids.dim() == 2 and ids.size(0) == 1:
        ids = ids[0]
    if ids.dim() != 1:
        raise ValueError(f"ids must be one sequence (T,) or (1, T), got shape {tuple(ids.shape)}")
    n = ids.numel() - 1  # the first token has no context, so it is not predicted
    if n < 1:
        raise ValueError(f"need at least 2 tokens to score one prediction, got {ids.numel()}")
    block = block_size or _block(model) or n
    if not isinstance(block, int) or block < 1:
        raise ValueError(f"block_size={block!r} must be a positive int")
    limit = _block(model)
    if limit is not None and block > limit:
        raise ValueError(f"block_size={block} is longer than the model's context ({limit}); use block_size<={limit}")
    block = min(block, n)
    stride = block if stride is None else stride
    if not isinstance(stride, int) or not 1 <= stride <= block:
        raise ValueError(f"stride={stride!r} must be an int in [1, block_size={block}] (overlap, never gaps)")
    starts = _window_starts(n, block, stride)                        # (W,)
    j = torch.arange(block)
    pos = starts[:, None] + j[None, :]                               # (W, block) input positions
    # Target t (predicted from position t-1) is scored in the first window that contains it: those past the
    # previous window's end. Window k ends at starts[k] + block, so together they score 1..n exactly once.
    prev_end = torch.cat([torch.zeros(1, dtype=torch.long), starts[:-1] + block])  # (W,)
    score = (pos + 1) > prev_end[:, None]                            # (W, block)
    device, total = _device(model), 0.0
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(starts), batch_size):  # a loop over batches of windows, not over tokens
            p, m = pos[s:s + batch_size], score[s:s + batch_size]
            logits = _logits(model, ids[p].to(device)).float()        # (b, block, V)
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[p + 1].to(device),
                                                    reduction="none")  # (b, block)
            total += float(nll[m.to(device)].double().sum())
    finally:
        model.train(was_training)
    scored = int(score.sum())
    assert scored == n, (scored, n)  # every token once: a bug here would silently bias the loss
    loss = total / n
    nbytes = len(text.encode("utf-8")) if text is not None else None
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_token": loss / math.log(2),
            "bits_per_byte": total / math.log(2) / nbytes if nbytes else None, "tokens": n, "bytes": nbytes}


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
        logp = torch.log_softmax(_logits(model, x.to(_device(model))).float(), -1).cpu()  # (N, T, V)
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


def exact_match(pred: str, gold: str, normalize: bool = True) -> float:
    """1.0 if the prediction equals the gold answer (after `normalize_answer` unless normalize=False), else 0.0."""
    if normalize:
        return float(normalize_answer(pred) == normalize_answer(gold))
    if not isinstance(pred, str) or not isinstance(gold, str):
        raise ValueError("pred and gold must be str")
    return float(pred == gold)


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
