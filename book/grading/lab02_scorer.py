"""Lab 02's scorer check: a teacher-forced scorer graded on a real tiny GPT (Survey §2.1, §6.1).

The grading model is one layer, 32 wide, trained for 200 steps (~2 s, once per process, then shared by every
case) on 24 fixed examples, so that it answers some exactly and misses others: a scorer that reads the wrong
positions gets different log-probabilities and exact matches. The mistakes below (logits read one position
late, no newline in the target, the trace ignored, a sum for a mean) are named when a student's output equals
theirs.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from book.grading.core import Case, Check, _Mismatch
from book.grading.diagnose import Mistake, _as_array

# ------------------------------------------------------------------------------------------------ 4. the scorer


_SCORER_STATE: dict[str, Any] = {}


def _scorer_examples() -> list:
    """The 24 examples the grading model memorises: 1-2 digit additions, kv_map episodes, CoT additions."""
    from minillm.data.tasks.suites import make_examples

    return (make_examples("addition", 12, 3, digits=(1, 2))
            + make_examples("kv_map", 8, 4, shots=(1, 2, 3), n_keys=3, key_len=(1, 2))
            + make_examples("addition", 4, 5, digits=2, cot=True))


def _grading_model() -> tuple:
    """(model, tokenizer): the tiny GPT trained for 200 steps on `_scorer_examples()` (trained once, then the same
    objects every call, so a case's inputs compare equal). It gets about 10 of the examples exactly right and the
    rest partly, so exact match and log-probs both depend on reading the right logits. `_run_scorer` restores its
    weights and mode if a student's function changes them."""
    from minillm import GPT, ModelConfig
    from minillm.data.tasks.pretraining import emergence_tokenizer

    if "model" not in _SCORER_STATE:
        tok = emergence_tokenizer()
        cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)
        ids = torch.tensor(tok.encode("".join(e.text for e in _scorer_examples())))
        with torch.random.fork_rng():  # leave the student's global RNG where it was
            torch.manual_seed(0)
            model = GPT(cfg)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
            g = torch.Generator().manual_seed(0)
            for _ in range(200):
                start = torch.randint(0, len(ids) - 33, (16,), generator=g)
                x = ids[start[:, None] + torch.arange(33)]  # (16, 33) windows of the examples' text
                loss = model(x[:, :-1], x[:, 1:])[1]
                opt.zero_grad()
                loss.backward()
                opt.step()
        _SCORER_STATE.update(model=model.eval(), tokenizer=tok,
                             state={k: v.detach().clone() for k, v in model.state_dict().items()})
    return _SCORER_STATE["model"], _SCORER_STATE["tokenizer"]


def _run_scorer(fn, model, tokenizer, examples):
    """Call the student's scorer; fail if it changed the shared grading model's weights (then restore them)."""
    try:
        return fn(model, tokenizer, examples)
    finally:
        changed = any(not torch.equal(v, _SCORER_STATE["state"][k]) for k, v in model.state_dict().items())
        model.load_state_dict(_SCORER_STATE["state"])
        model.eval()
        if changed:
            raise _Mismatch("your function changed the model's weights",
                            "Scoring only reads the model: run it under torch.no_grad() and never step an optimizer.")


def _scorer_case(kind: str) -> tuple:
    """(model, tokenizer, examples) for one case; examples are the memorised ones or fresh draws."""
    from minillm.data.tasks.suites import Example, make_examples

    ex = _scorer_examples()
    cut = [Example(e.prompt, e.answer[:-1], e.task) for e in ex[:12] if len(e.answer) > 1]  # "4+7=" -> "1"
    examples = {"additions": lambda: ex[:12], "kv_map": lambda: ex[12:20], "cot": lambda: ex[20:],
                "mixed lengths": lambda: [ex[0], ex[14], ex[21], ex[5], ex[13]], "one example": lambda: [ex[4]],
                "cut short": lambda: cut + ex[8:12],
                "fresh": lambda: make_examples("addition", 6, 77, digits=(1, 2, 3))}[kind]()
    return (*_grading_model(), examples)


def _scorer_reference(model, tokenizer, examples):
    from minillm.evaluation.scoring import score_examples

    s = score_examples(model, tokenizer, examples)
    return s["logprob_mean"], s["exact_match"]


@torch.no_grad()
def scorer_variant(model, tokenizer, examples, *, late: bool = False, newline: bool = True, trace: bool = True,
                   reduce: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """The teacher-forced scorer with one of the usual mistakes switched on (the right one with the defaults):
    late = read the logits AT each answer token instead of one position before it; newline = False drops the
    terminating newline from the target; trace = False conditions CoT examples on the prompt alone; reduce="sum"."""
    lps, ems = [], []
    for e in examples:
        ctx = tokenizer.encode(e.prompt + (e.trace if trace else ""))
        tgt = tokenizer.encode(e.answer + ("\n" if newline else ""))
        seq = ctx + tgt
        logits = model(torch.tensor([seq]))[0][0].float()        # (T, V), the whole sequence
        logp = torch.log_softmax(logits, -1)
        pos = torch.arange(len(tgt)) + len(ctx) - (0 if late else 1)
        pos = pos.clamp(max=len(seq) - 1)
        gold = torch.tensor(tgt)
        lp = logp[pos, gold]                                      # (L,)
        lps.append(float(lp.sum() if reduce == "sum" else lp.mean()))
        ems.append(float((logp[pos].argmax(-1) == gold).all()))
    return np.array(lps), np.array(ems)


def _component(i: int, **mistake) -> Callable:
    """The mistaken scorer's output with the other component (log-probs or EM) left as the reference's, so a
    student who made one mistake in one output is recognised."""

    def run(model, tokenizer, examples):
        right = scorer_variant(model, tokenizer, examples)
        wrong = scorer_variant(model, tokenizer, examples, **mistake)
        return tuple(wrong[k] if k == i else right[k] for k in range(2))

    return run


_LATE = ("Off by one: the logits at position t predict token t+1. Answer token j sits at input position "
         "len(ctx) + j, so it is scored by the logits at position len(ctx) - 1 + j (the last context token "
         "predicts the first answer token).")
_NEWLINE = ("The target is answer + '\\n': the newline says the answer is over ('85' and '850' differ), so it is "
            "scored too (it counts in the mean, and must be the argmax for exact match).")
_TRACE = "For chain-of-thought examples condition on prompt + trace (Example.context), not on the prompt alone."
_SUM = ("Return the MEAN log-prob per target token (newline included), not the sum over the answer's tokens.")
_SCORER_MISTAKES: tuple[Mistake, ...] = (
    (lambda *a: scorer_variant(*a, late=True), _LATE),
    (_component(0, late=True), _LATE), (_component(1, late=True), _LATE),
    (lambda *a: scorer_variant(*a, newline=False), _NEWLINE),
    (_component(0, newline=False), _NEWLINE), (_component(1, newline=False), _NEWLINE),
    (lambda *a: scorer_variant(*a, trace=False), _TRACE),
    (_component(0, reduce="sum"), _SUM),
    (lambda *a: scorer_variant(*a, reduce="sum", late=True), _LATE + " (And return the mean, not the sum.)"),
)


def same_scores(got: Any, wrong: Any) -> bool:
    """A student's scores equal a mistake's: exact matches equal, log-probs within the check's own tolerance (1e-4).
    Two right ways to compute a log-prob (one batch, or one example at a time) differ by fp32 rounding, which
    grows with the thread count; the diagnosis must not hinge on it."""
    try:
        (g_lp, g_em), (w_lp, w_em) = (tuple(_as_array(v) for v in x) for x in (got, wrong))
    except (TypeError, ValueError):
        return False
    return (g_lp.shape == w_lp.shape and g_em.shape == w_em.shape and bool(np.array_equal(g_em, w_em))
            and bool(np.allclose(g_lp, w_lp, rtol=1e-4, atol=1e-4)))


def compare_scores(got: Any, expected: tuple, spec: Check, case: Case) -> float:
    """(logprob_mean (N,), exact_match (N,)) within tolerance, each part with its own message."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise _Mismatch(f"expected a pair (logprob_mean, exact_match), got {type(got).__name__}",
                        "Return two arrays of one value per example: (log-likelihood per token, exact match).")
    worst = 0.0
    for name, g, e in zip(("logprob_mean", "exact_match"), got, expected):
        try:
            have, want = _as_array(g), np.asarray(e, dtype=np.float64)
        except (TypeError, ValueError):
            raise _Mismatch(f"{name}: expected numbers, got {type(g).__name__}") from None
        if have.shape != want.shape:
            raise _Mismatch(f"{name} has shape {have.shape}, expected {want.shape} (one value per example)")
        if not np.allclose(have, want, rtol=spec.rtol, atol=spec.atol):
            i = int(np.argmax(np.abs(have - want)))
            raise _Mismatch(f"{name} differs from the reference at example {i}: got {have[i]:.6g}, "
                            f"expected {want[i]:.6g}", case.hint)
        worst = max(worst, float(np.max(np.abs(have - want))))
    return worst
