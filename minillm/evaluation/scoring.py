"""Scoring a language model on task examples, and the small training helper the chapter and studies share.
Survey §2.1 (emergent abilities), §6.1 (in-context learning), §6.2 (chain-of-thought), §7.1 (evaluation by
generation and by likelihood).

- `score_examples`: ONE teacher-forced forward pass per batch gives, for every answer token, the gold
  log-probability, the argmax and the full distribution, so exact match, token accuracy, log-likelihood and Brier
  score all come from the same outputs (Schaeffer et al. 2023: the metric, not the model, makes the jump).
- `greedy_complete` / `score_generated`: the model writes its own continuation (needed for chain-of-thought,
  where the answer depends on the working the model wrote, not on the gold working).
- `icl_accuracy_by_shots`, `inverse_scaling_rates`: the chapter's two derived measurements.
- The held-out loss of a text is `minillm.evaluation.loss.heldout_loss(model, text, tokenizer=tok)`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from minillm.data.tasks.suites import TASKS, Example, extract_answer, few_shot_prompt  # noqa: F401  (few_shot_prompt: re-exported)
from minillm.evaluation import metrics as M
from minillm.model.transformer import logits_of


def _block(model) -> int | None:
    return getattr(getattr(model, "config", None), "block_size", None)


def _token_ids(tokenizer, chars: str) -> list[int]:
    """The id of each character in `chars` (each must be one token)."""
    ids = [tokenizer.encode(c) for c in chars]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"forbid_first={chars!r}: every character must be exactly one token")
    return [i[0] for i in ids]


@torch.no_grad()
def score_examples(model: torch.nn.Module, tokenizer, examples: Sequence[Example], batch_size: int = 64,
                   return_tokens: bool = False, forbid_first: str = "") -> dict[str, np.ndarray]:
    """Teacher-forced scores of each example's answer. The target is ``answer + "\\n"`` (the newline says the
    answer is over: "85" and "850" differ), conditioned on ``prompt + trace`` (for CoT examples, on the GOLD
    working; use `score_generated` for the model's own).

    forbid_first: characters the FIRST answer token may not be; its distribution is renormalised without them.
    A model trained on additions with and without working may open "37+48=" with "[" (start writing working);
    forbid_first="[" asks for its direct answer, as `greedy_complete(..., forbid_first="[")` does.

    Returns per-example (N,) arrays: exact_match, token_accuracy, logprob_mean, logprob_sum, brier, n_tokens;
    with return_tokens also (N, L) token_logprob (nan-padded), token_correct and token_mask.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if not examples:
        raise ValueError("no examples to score")
    ctx = [tokenizer.encode(e.context) for e in examples]
    tgt = [tokenizer.encode(e.answer + "\n") for e in examples]
    if any(len(c) == 0 for c in ctx):
        raise ValueError("an example has an empty prompt: the first answer token needs something to condition on")
    total = np.array([len(c) + len(t) - 1 for c, t in zip(ctx, tgt)])  # input length of each sequence
    block = _block(model)
    if block is not None and total.max() > block:
        i = int(total.argmax())
        raise ValueError(f"example {i} needs {total[i]} positions, more than the model's block_size={block}; "
                         f"use fewer shots / digits or a model with a longer context")
    N, Lt = len(examples), max(map(len, tgt))
    out = {k: np.zeros(N) for k in ("exact_match", "token_accuracy", "logprob_mean", "logprob_sum", "brier")}
    tok_lp, tok_ok = np.full((N, Lt), np.nan), np.zeros((N, Lt), dtype=bool)
    mask_all = np.zeros((N, Lt), dtype=bool)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = np.argsort(total, kind="stable")  # similar lengths together: less padding per batch
    try:
        for s in range(0, N, batch_size):
            rows = order[s:s + batch_size]
            T = int(total[rows].max())
            x = torch.zeros(len(rows), T, dtype=torch.long)        # right-padded: causal, so padding is never seen
            gold = torch.zeros(len(rows), Lt, dtype=torch.long)
            for r, i in enumerate(rows):  # one row per example (not per token): fill the padded matrices
                seq = ctx[i] + tgt[i]
                x[r, :len(seq) - 1] = torch.tensor(seq[:-1])
                gold[r, :len(tgt[i])] = torch.tensor(tgt[i])
            n_ctx = torch.tensor([len(ctx[i]) for i in rows])       # (b,)
            n_tgt = torch.tensor([len(tgt[i]) for i in rows])       # (b,)
            j = torch.arange(Lt)
            mask = j[None, :] < n_tgt[:, None]                      # (b, Lt) answer tokens
            # Answer token j is predicted at position n_ctx - 1 + j.
            pos = (n_ctx[:, None] - 1 + j[None, :]).clamp(max=T - 1)  # (b, Lt)
            logp = torch.log_softmax(logits_of(model(x.to(device))).float(), -1).cpu()  # (b, T, V)
            V = logp.shape[-1]
            sel = logp.gather(1, pos[..., None].expand(-1, -1, V))  # (b, Lt, V)
            if forbid_first:
                sel[:, 0, _token_ids(tokenizer, forbid_first)] = float("-inf")
                sel[:, 0] = torch.log_softmax(sel[:, 0], -1)  # renormalised over the allowed tokens
            lp = sel.gather(-1, gold[..., None])[..., 0]             # (b, Lt) log p(gold token)
            pred = sel.argmax(-1)                                    # (b, Lt)
            g, m, p = gold.numpy(), mask.numpy(), pred.numpy()
            # Greedy decoding writes the argmax at each step. While every earlier answer token matched the gold,
            # its context IS the teacher-forced context, so by induction greedy output == gold answer (and then
            # stops at the newline) iff every teacher-forced argmax is right: greedy EM from one pass, no decoding.
            out["exact_match"][rows] = M.exact_match_tokens(p, g, m)
            out["token_accuracy"][rows] = M.token_accuracy(p, g, m)
            out["logprob_mean"][rows], out["logprob_sum"][rows] = M.answer_logprob(lp.numpy(), m)
            out["brier"][rows] = M.brier_score(sel.exp().numpy(), g, m)
            tok_lp[rows] = np.where(m, lp.numpy(), np.nan)
            tok_ok[rows] = (p == g) & m
            mask_all[rows] = m
    finally:
        model.train(was_training)
    out["n_tokens"] = mask_all.sum(1)
    if return_tokens:
        out.update(token_logprob=tok_lp, token_correct=tok_ok, token_mask=mask_all)
    return out


@torch.no_grad()
def greedy_complete(model: torch.nn.Module, tokenizer, prompts: Sequence[str], max_new_tokens: int,
                    stop: str = "\n", batch_size: int = 64, forbid_first: str = "") -> list[str]:
    """Greedy continuation of each prompt, up to (not including) `stop` or `max_new_tokens` tokens; the first
    token is never one of the characters in `forbid_first` (e.g. "[" to ask for an answer without working).

    Prompts of equal length are decoded together in batches: no padding, so no attention mask is needed and each
    row is exactly what decoding it alone would give."""
    from minillm.generate import generate

    if isinstance(prompts, str):
        raise ValueError("prompts must be a list of strings")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be a positive int")
    stop_ids = tokenizer.encode(stop)
    if len(stop_ids) != 1:
        raise ValueError(f"stop={stop!r} must be exactly one token")
    ids = [tokenizer.encode(p) for p in prompts]
    if any(len(i) == 0 for i in ids):
        raise ValueError("an empty prompt cannot be continued: give at least one character")
    device = next(model.parameters()).device
    groups: dict[int, list[int]] = {}
    for i, x in enumerate(ids):
        groups.setdefault(len(x), []).append(i)
    out = [""] * len(prompts)
    for L, members in groups.items():
        for s in range(0, len(members), batch_size):
            rows = members[s:s + batch_size]
            idx = torch.tensor([ids[i] for i in rows], dtype=torch.long, device=device)  # (b, L)
            # a KV cache where the model offers one (minillm.GPT); any other causal LM is re-run on the prefix
            if forbid_first:  # choose the first token here, without the forbidden ones; greedy after that
                first = logits_of(model(idx))[:, -1].float()  # (b, V)
                first[:, _token_ids(tokenizer, forbid_first)] = float("-inf")
                idx = torch.cat([idx, first.argmax(-1, keepdim=True)], 1)  # (b, L + 1)
            steps = max_new_tokens - idx.shape[1] + L
            new = (generate(model, idx, steps, temperature=0.0, stop_tokens=stop_ids,
                            use_cache=hasattr(model, "make_cache")) if steps else idx)[:, L:].cpu()
            for r, i in enumerate(rows):
                text = tokenizer.decode(new[r].tolist())
                out[i] = text.split(stop, 1)[0]
    return out


def score_generated(model: torch.nn.Module, tokenizer, examples: Sequence[Example], max_new_tokens: int | None = None,
                    batch_size: int = 64, forbid_first: str = "") -> dict[str, np.ndarray]:
    """Let the model write its own continuation of each prompt (greedy), extract the answer and score it.

    For examples with working (CoT) the answer is what follows ANSWER_MARK, and a continuation without the marker
    counts as wrong. max_new_tokens defaults to 1.5x the longest gold working + answer, plus 4.
    Returns exact_match (N,), prediction (N,) object (None where no answer was found), completion (N,) object."""
    if not examples:
        raise ValueError("no examples to score")
    if max_new_tokens is None:
        max_new_tokens = int(1.5 * max(len(e.trace) + len(e.answer) + 1 for e in examples)) + 4
    comps = greedy_complete(model, tokenizer, [e.prompt for e in examples], max_new_tokens, "\n", batch_size,
                            forbid_first)
    preds = [extract_answer(c, require_marker=bool(e.trace)) for c, e in zip(comps, examples)]
    em = M.exact_match([p if p is not None else "\n" for p in preds], [e.answer for e in examples])
    return {"exact_match": em, "prediction": np.array(preds, dtype=object), "completion": np.array(comps, dtype=object)}


def icl_accuracy_by_shots(model: torch.nn.Module, tokenizer, task: str = "kv_map",
                          shots: Sequence[int] = (0, 1, 2, 4, 8), n: int = 200, seed: int = 0,
                          batch_size: int = 64, **knobs) -> list[dict]:
    """Score `n` fresh episodes of an in-context task at each number of shots. Rows: shots, n, exact_match(_se),
    token_accuracy, logprob_mean, brier, chance (guessing) and bayes (the best any reader of the prompts can do)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid names: {', '.join(TASKS)}")
    rows = []
    for k in shots:
        ex = TASKS[task].sample(n, seed, shots=k, **knobs)
        sc = score_examples(model, tokenizer, ex, batch_size)
        bayes = [e.meta["bayes"] for e in ex if "bayes" in e.meta]
        rows.append({"task": task, "shots": int(k), "n": n, **M.summarize(sc, M.METRICS),
                     "chance": TASKS[task].chance(shots=k, **knobs),
                     "bayes": float(np.mean(bayes)) if bayes else None})
    return rows


def inverse_scaling_rates(model: torch.nn.Module, tokenizer, examples: Sequence[Example],
                          batch_size: int = 64) -> dict:
    """For pattern_conflict examples: how often the model gives the instructed answer ("correct") and how often
    the in-context pattern's answer ("imitation"), both by teacher-forced greedy exact match, with the mean
    per-token log-likelihood of each. The two answers differ, so the rates sum to at most 1."""
    if any("imitation" not in e.meta for e in examples):
        raise ValueError("every example needs meta['imitation'] (use task 'pattern_conflict')")
    imit = [Example(e.prompt, e.meta["imitation"], e.task, e.meta) for e in examples]
    sc, si = score_examples(model, tokenizer, examples, batch_size), score_examples(model, tokenizer, imit, batch_size)
    out = {}
    for name, s in (("correct", sc), ("imitation", si)):
        out[name], out[name + "_se"] = M.mean_se(s["exact_match"])
        out[name + "_logprob"] = float(s["logprob_mean"].mean())
    out["n"] = len(examples)
    return out
