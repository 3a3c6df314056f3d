"""Lab 02 checks: the metrics of the emergence debate, the few-shot prompt format, and a teacher-forced scorer
(Survey §2.1 emergent abilities, §6.1 in-context learning; Schaeffer et al. 2023, "a mirage of the metric").

Every check compares the student's function with `minillm.data.tasks`'s own (`exact_match`, `token_accuracy`,
`answer_logprob`, `brier_score`, `few_shot_prompt`, `score_examples`) on hand-made cases that separate a right
answer from the usual wrong ones, plus seeded random cases. When an output is wrong, the compare functions here
also run the usual MISTAKES on the same inputs (strings stripped before comparing, padding counted as answer
tokens, a sum where a mean was asked, the Brier score without its gold-class term, a prompt without its last
separator, logits read one position late, ...); if the student's output equals one of them, the message names
that mistake instead of only saying "values differ".

The scorer (lab02_scorer.py) is graded on a real minillm GPT: one layer, 32 wide, trained for 200 steps (~2 s, once per process,
then shared by every case) on 24 fixed examples so that it answers some of them exactly and misses the others; a scorer that
reads the wrong positions gets different log-probabilities and exact matches.
"""
from __future__ import annotations

import numpy as np

from book.grading.core import Case, Check, register_check
from book.grading.diagnose import Mistake, compare_strings, diagnosing
from book.grading.lab02_scorer import (_SCORER_MISTAKES, _run_scorer, _scorer_case, _scorer_reference, compare_scores,
                                      same_scores)

# ------------------------------------------------------------------------------------------------ 1. EM, token acc


_EM_HAND = (["85", "85 ", "850", "abc", "ABC", "", " 7", "7"],
            ["85", "85", "85", "abc", "abc", "", "7", "7"])


def _em_random(seed: int) -> tuple:
    """Random digit strings; about half the predictions are the gold answer, the rest are near misses."""
    rng = np.random.default_rng(seed)
    golds = [str(int(v)) for v in rng.integers(0, 1000, size=40)]
    near = (lambda g: g + " ", lambda g: g[:-1], lambda g: g + "0", lambda g: str(int(g) + 1), lambda g: " " + g)
    preds = [g if rng.random() < 0.5 else near[int(rng.integers(0, len(near)))](g) for g in golds]
    return preds, golds


def _em_reference(preds, golds):
    from minillm.evaluation.metrics import exact_match

    return exact_match(preds, golds)


_EM_MISTAKES: tuple[Mistake, ...] = (
    (lambda p, g: [float(a.strip() == b.strip()) for a, b in zip(p, g)],
     "Exact match compares the strings exactly: '85 ' is not '85'. Do not .strip() (the model wrote the space)."),
    (lambda p, g: [float(a.lower() == b.lower()) for a, b in zip(p, g)],
     "Exact match is case-sensitive: 'ABC' is not 'abc'. Do not .lower()."),
    (lambda p, g: [float(a.startswith(b)) for a, b in zip(p, g)],
     "A prediction that merely starts with the answer ('850' for '85') is wrong: compare the whole strings."),
)


def _answers_mask(seed: int, n: int, max_len: int) -> tuple[np.random.Generator, np.ndarray]:
    """(rng, mask (n, max_len)): answers of 1..max_len tokens, right-padded; the first is one token long and the
    second full length (the extremes)."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, max_len + 1, size=n)
    lens[0], lens[1] = 1, max_len
    return rng, np.arange(max_len)[None, :] < lens[:, None]


def _padded_ids(seed: int, n: int = 12, max_len: int = 6, vocab: int = 5, pad_agree: bool = True) -> tuple:
    """(pred_ids, gold_ids, mask): answers of 1..max_len tokens, right-padded. With pad_agree the padding of
    pred and gold is equal (0), so counting padding as answer tokens inflates accuracy; else it disagrees."""
    rng, mask = _answers_mask(seed, n, max_len)
    gold = rng.integers(0, vocab, size=(n, max_len))
    pred = np.where(rng.random((n, max_len)) < 0.6, gold, rng.integers(0, vocab, size=(n, max_len)))
    pad_pred = np.zeros_like(gold) if pad_agree else np.ones_like(gold)
    return np.where(mask, pred, pad_pred), np.where(mask, gold, 0), mask


def _tokacc_reference(pred_ids, gold_ids, mask):
    from minillm.evaluation.metrics import token_accuracy

    return token_accuracy(pred_ids, gold_ids, mask)


_TOKACC_MISTAKES: tuple[Mistake, ...] = (
    (lambda p, g, m: (p == g).mean(-1),
     "Count only answer tokens: padding (mask False) is not part of the answer, even where pred == gold there."),
    (lambda p, g, m: ((p == g) & m).sum(-1) / m.shape[-1],
     "Divide by each answer's own length mask.sum(-1), not by the padded width L."),
    (lambda p, g, m: np.all((p == g) | ~m, -1).astype(float),
     "That is exact match (every token right). Token accuracy is the FRACTION of answer tokens that are right."),
)


# ------------------------------------------------------------------------------------------------ 2. logprob, Brier


def _logprob_case(seed: int, pad: float, n: int = 10, max_len: int = 5) -> tuple:
    """(token_logprobs, mask): log-probs of the gold tokens (<= 0), right-padded with `pad` (0.0 or -inf)."""
    rng, mask = _answers_mask(seed, n, max_len)
    lp = np.log(rng.uniform(0.01, 1.0, size=(n, max_len)))
    return np.where(mask, lp, pad), mask


def _logprob_reference(token_logprobs, mask):
    from minillm.evaluation.metrics import answer_logprob

    return answer_logprob(token_logprobs, mask)[0]


_LOGPROB_MISTAKES: tuple[Mistake, ...] = (
    (lambda lp, m: np.where(m, lp, 0.0).sum(-1),
     "You returned the SUM of the answer's log-probs (the log-probability of the whole answer). Return the MEAN "
     "per answer token, sum / mask.sum(-1), so answers of different lengths are comparable."),
    (lambda lp, m: np.where(m, lp, 0.0).mean(-1),
     "Divide by each answer's number of tokens mask.sum(-1), not by the padded width L."),
    (lambda lp, m: -np.where(m, lp, 0.0).sum(-1) / m.sum(-1),
     "Sign: log-likelihood is the mean of log p (<= 0); you returned the negative log-likelihood (a loss)."),
)


def _brier_case(seed: int, n: int = 6, max_len: int = 4, vocab: int = 7, sharp: bool = False) -> tuple:
    """(probs (n, L, V), gold_ids (n, L), mask): softmax distributions, right-padded answers; padding gold id 0."""
    rng, mask = _answers_mask(seed, n, max_len)
    logits = rng.standard_normal((n, max_len, vocab)) * (6.0 if sharp else 1.5)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    gold = np.where(mask, rng.integers(0, vocab, size=(n, max_len)), 0)
    return probs, gold, mask


def _brier_hand() -> tuple:
    """Certain and right (0), certain and wrong (2), uniform over 4 classes (1 - 1/4), one two-token answer."""
    probs = np.array([[[1, 0, 0, 0], [0, 0, 0, 0]],
                      [[0, 1, 0, 0], [0, 0, 0, 0]],
                      [[.25, .25, .25, .25], [0, 0, 0, 0]],
                      [[.5, .5, 0, 0], [.1, .2, .3, .4]]], dtype=np.float64)
    gold = np.array([[0, 0], [0, 0], [2, 0], [0, 3]])
    mask = np.array([[True, False], [True, False], [True, False], [True, True]])
    return probs, gold, mask


def _p_gold(p, g):
    return np.take_along_axis(p, g[..., None], -1)[..., 0]


def _masked_mean(per_tok, m):
    return np.where(m, per_tok, 0.0).sum(-1) / m.sum(-1)


_BRIER_MISTAKES: tuple[Mistake, ...] = (
    (lambda p, g, m: _masked_mean((p ** 2).sum(-1), m),
     "You summed p_j^2 over every class as if y were all zeros: the gold class contributes (1 - p_gold)^2, "
     "not p_gold^2. Brier = sum_j (p_j - y_j)^2 with y the one-hot of the gold token."),
    (lambda p, g, m: _masked_mean((p ** 2).sum(-1) - _p_gold(p, g) ** 2, m),
     "The gold class is missing: add its term (1 - p_gold)^2 to the sum over the other classes."),
    (lambda p, g, m: _masked_mean((1 - _p_gold(p, g)) ** 2, m),
     "That is the binary Brier score of the gold class alone: the multi-class score also adds p_j^2 for every "
     "wrong class j (a confident wrong guess must cost more than a spread-out one)."),
    (lambda p, g, m: _masked_mean(((p - np.eye(p.shape[-1])[g]) ** 2).mean(-1), m),
     "Sum the squared errors over the classes (sum_j), do not average them over V."),
    (lambda p, g, m: np.where(m, ((p - np.eye(p.shape[-1])[g]) ** 2).sum(-1), 0.0).sum(-1),
     "Average over the answer's tokens (divide by mask.sum(-1)); you summed them."),
    (lambda p, g, m: ((p - np.eye(p.shape[-1])[g]) ** 2).sum(-1).mean(-1),
     "Padding (mask False) is not part of the answer: average over answer tokens only."),
)


def _brier_reference(probs, gold_ids, mask):
    from minillm.evaluation.metrics import brier_score

    return brier_score(probs, gold_ids, mask)


# ------------------------------------------------------------------------------------------------ 3. few-shot prompt


def _prompt_case(kind: str, seed: int = 0) -> tuple:
    """(shots, query): lists of minillm.data.tasks.Example, as a few-shot task would build them."""
    from minillm.data.tasks.suites import MAP_SEP, QUERY_MARK, Example, make_examples

    rng = np.random.default_rng(seed)
    if kind in ("pairs", "one", "zero"):
        k = {"pairs": 4, "one": 1, "zero": 0}[kind]
        keys = ["".join(rng.choice(list("abcdefghij"), size=2)) for _ in range(k + 1)]
        shots = [Example(x + MAP_SEP, str(int(rng.integers(0, 10))), "kv_map") for x in keys[:k]]
        return shots, Example(keys[-1] + QUERY_MARK, "5", "kv_map")
    if kind == "cot":  # shots with written working: each shot is prompt + trace + answer
        ex = make_examples("addition", 3, seed, digits=2, cot=True)
        return ex[:2], ex[2]
    if kind == "instructions":  # multi-word prompts with spaces: nothing to strip or split on
        ex = make_examples("instructions", 4, seed)
        return ex[:3], ex[3]
    raise ValueError(kind)


def _prompt_reference(shots, query):
    from minillm.data.tasks.suites import few_shot_prompt

    return few_shot_prompt(shots, query)


def _body(e):
    return e.prompt + e.trace + e.answer


_PROMPT_MISTAKES: tuple[Mistake, ...] = (
    (lambda s, q: ";".join(_body(e) for e in s) + q.prompt,
     "Every shot is FOLLOWED by ';', the last one too: 'ab>3;cd>7;ef=' (the query starts after a separator)."),
    (lambda s, q: ";".join([_body(e) for e in s] + [q.prompt]),
     "A zero-shot prompt is just the query's prompt: write each shot followed by ';', then the query."),
    (lambda s, q: "".join(_body(e) + ";" for e in s) + q.prompt + q.answer,
     "The query's answer is what the model must produce: end the prompt with query.prompt, not its answer."),
    (lambda s, q: "".join(e.prompt + e.answer + ";" for e in s) + q.prompt,
     "Write each shot as prompt + trace + answer: a chain-of-thought shot shows its working (Example.trace)."),
    (lambda s, q: "".join(_body(e) + "; " for e in s) + q.prompt,
     "The separator is ';' with no space (the model reads characters: a space is a token)."),
    (lambda s, q: "".join(_body(e) + "\n" for e in s) + q.prompt,
     "Separate shots with ';', not newlines: in the training text a newline ends a document."),
    (lambda s, q: "".join(_body(e) + ";" for e in s) + q.prompt + "\n",
     "Do not end the prompt with a newline: the model would read the episode as over."),
)


# ------------------------------------------------------------------------------------------------ registration


def _register_lab02() -> None:
    from functools import partial

    register_check(Check(
        name="exact_match",
        shortcuts=("minillm.evaluation.metrics.exact_match",),
        summary="exact_match(preds, golds) -> (N,) floats: 1.0 where the prediction string equals the gold string",
        hint="Return one float per example, [float(p == g) for p, g in zip(preds, golds)] as a numpy array: "
             "no stripping, no lower-casing.",
        reference=_em_reference, compare=diagnosing(_EM_MISTAKES), atol=1e-12, rtol=0.0,
        cases=(
            Case("hand cases: spaces, case, a longer number, empty strings", lambda: _EM_HAND),
            Case("40 random answers with near misses", partial(_em_random, 0)),
            Case("one example", lambda: (["12"], ["12"])),
            Case("40 more random answers", partial(_em_random, 1)),
        ),
    ))
    register_check(Check(
        name="token_accuracy",
        shortcuts=("minillm.evaluation.metrics.token_accuracy",),
        summary="token_accuracy(pred_ids, gold_ids, mask) -> (N,) fraction of answer tokens (mask True) "
                "predicted right",
        hint="((pred_ids == gold_ids) & mask).sum(-1) / mask.sum(-1).",
        reference=_tokacc_reference, compare=diagnosing(_TOKACC_MISTAKES), atol=1e-12, rtol=0.0,
        cases=(
            Case("no padding (every answer 3 tokens)", lambda: (np.array([[1, 2, 3], [1, 0, 3], [0, 0, 0]]),
                                                                 np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3]]),
                                                                 np.ones((3, 3), dtype=bool))),
            Case("padding where pred == gold (both 0)", partial(_padded_ids, 1)),
            Case("padding where pred != gold", partial(_padded_ids, 2, pad_agree=False)),
            Case("random, longer answers", partial(_padded_ids, 3, 30, 9, 3)),
        ),
    ))
    register_check(Check(
        name="answer_logprob",
        shortcuts=("minillm.evaluation.metrics.answer_logprob",),
        summary="answer_logprob(token_logprobs, mask) -> (N,) mean log-probability per answer token (mask True)",
        hint="np.where(mask, token_logprobs, 0).sum(-1) / mask.sum(-1): a per-token mean over the answer only.",
        reference=_logprob_reference, compare=diagnosing(_LOGPROB_MISTAKES), atol=1e-12, rtol=1e-9,
        cases=(
            Case("a hand case: log(1/2) and log(1/4)", lambda: (np.log([[0.5, 0.25], [0.5, 1.0]]),
                                                                 np.array([[True, True], [True, False]]))),
            Case("answers of 1-5 tokens, padded with 0", partial(_logprob_case, 0, 0.0)),
            Case("padded with -inf (the log of a zero probability)", partial(_logprob_case, 1, float("-inf")),
                 "Padding may hold -inf or nan, and -inf * 0 is nan: select with np.where(mask, x, 0), do not "
                 "multiply by the mask."),
            Case("one-token answers", partial(_logprob_case, 2, 0.0, 8, 1)),
        ),
    ))
    register_check(Check(
        name="brier_score",
        shortcuts=("minillm.evaluation.metrics.brier_score",),
        summary="brier_score(probs, gold_ids, mask) -> (N,) mean over answer tokens of sum_j (p_j - y_j)^2",
        hint="Per token: sum over classes of (p_j - y_j)^2 with y the one-hot of the gold id (so the gold class "
             "adds (1 - p_gold)^2); then average over the answer's tokens (mask True).",
        reference=_brier_reference, compare=diagnosing(_BRIER_MISTAKES), atol=1e-12, rtol=1e-9,
        cases=(
            Case("hand cases: certain-right 0, certain-wrong 2, uniform 1 - 1/V", _brier_hand),
            Case("random distributions, padded answers", partial(_brier_case, 0)),
            Case("sharp distributions (near one-hot), V = 11", partial(_brier_case, 1, 8, 3, 11, True)),
            Case("two classes (V = 2), longer answers", partial(_brier_case, 2, 10, 6, 2)),
        ),
    ))
    register_check(Check(
        name="few_shot_prompt",
        shortcuts=("minillm.data.tasks.suites.few_shot_prompt",),
        summary="few_shot_prompt(shots, query) -> str: each shot's prompt + trace + answer followed by ';', "
                "then query.prompt",
        hint="''.join(s.prompt + s.trace + s.answer + ';' for s in shots) + query.prompt",
        reference=_prompt_reference, compare=diagnosing(_PROMPT_MISTAKES, compare_strings), atol=0.0, rtol=0.0,
        cases=(
            Case("4 key>value shots", partial(_prompt_case, "pairs")),
            Case("one shot", partial(_prompt_case, "one", 1)),
            Case("zero shots", partial(_prompt_case, "zero", 2), "With no shots the prompt is the query's prompt."),
            Case("chain-of-thought shots (with a trace)", partial(_prompt_case, "cot", 3)),
            Case("instruction shots (spaces inside)", partial(_prompt_case, "instructions", 4)),
        ),
    ))
    register_check(Check(
        name="score_answers",
        shortcuts=("minillm.evaluation.scoring.score_examples",),
        summary="score_answers(model, tokenizer, examples) -> (logprob_mean, exact_match): teacher-forced scores of "
                "answer + newline given prompt + trace, one value per example",
        hint="x = ctx + tgt[:-1]; logits = model(x)[0]; answer token j is scored by log_softmax(logits) at "
             "position len(ctx) - 1 + j; exact match = every target token (newline included) is the argmax.",
        reference=_scorer_reference, compare=diagnosing(_SCORER_MISTAKES, compare_scores, same=same_scores),
        runner=_run_scorer,
        atol=1e-4, rtol=1e-4,
        cases=(
            Case("12 additions (some answered exactly)", partial(_scorer_case, "additions")),
            Case("8 key>value episodes", partial(_scorer_case, "kv_map")),
            Case("chain-of-thought additions (condition on the trace)", partial(_scorer_case, "cot")),
            Case("answers and prompts of mixed lengths", partial(_scorer_case, "mixed lengths")),
            Case("one example", partial(_scorer_case, "one example")),
            Case("gold answers cut short ('4+7=' -> '1': right digits, then no newline)",
                 partial(_scorer_case, "cut short"), "The newline is part of the target: '1' is not '11'."),
            Case("fresh additions (mostly wrong)", partial(_scorer_case, "fresh")),
        ),
    ))


_register_lab02()  # cheap: builds Check objects only; the grading model is trained when the scorer check first runs
