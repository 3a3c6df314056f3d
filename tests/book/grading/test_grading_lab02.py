"""Lab 02 checks (Survey §2.1, the emergence metrics): minillm.evaluation's own functions pass, and each typical
mistake fails with the hint that names it (the checks recognise a mistake by recomputing it on the same inputs)."""
import numpy as np
import pytest
import torch

from book import grading
from minillm.evaluation.metrics import exact_match, token_accuracy
from minillm.data.tasks.suites import few_shot_prompt
from book.grading.lab02 import _brier_reference, _logprob_reference
from book.grading.lab02_scorer import _scorer_reference, scorer_variant


def _mean(lp, m):
    return np.where(m, lp, 0.0).sum(-1) / m.sum(-1)


def _times_mask(lp, m):  # the mistake: -inf padding * 0 = nan (numpy warns; the point is what the check says)
    with np.errstate(invalid="ignore"):
        return lp * m


def _one_hot(p, g):
    return np.eye(p.shape[-1])[g]


WRONG = [
    # exact match
    ("exact_match", lambda p, g: np.array([float(a.strip() == b.strip()) for a, b in zip(p, g)]), "Do not .strip()"),
    ("exact_match", lambda p, g: np.array([float(a.lower() == b.lower()) for a, b in zip(p, g)]), "case-sensitive"),
    ("exact_match", lambda p, g: np.array([float(a.startswith(b)) for a, b in zip(p, g)]), "merely starts with"),
    ("exact_match", lambda p, g: float(np.mean([a == b for a, b in zip(p, g)])), "output shape ()"),
    # token accuracy
    ("token_accuracy", lambda p, g, m: (p == g).mean(-1), "padding (mask False) is not part of the answer"),
    ("token_accuracy", lambda p, g, m: ((p == g) & m).sum(-1) / p.shape[1], "not by the padded width L"),
    ("token_accuracy", lambda p, g, m: np.all((p == g) | ~m, -1).astype(float), "That is exact match"),
    # answer log-likelihood
    ("answer_logprob", lambda lp, m: np.where(m, lp, 0).sum(-1), "You returned the SUM"),
    ("answer_logprob", lambda lp, m: np.where(m, lp, 0).mean(-1), "not by the padded width L"),
    ("answer_logprob", lambda lp, m: -_mean(lp, m), "negative log-likelihood"),
    ("answer_logprob", lambda lp, m: _times_mask(lp, m).sum(-1) / m.sum(-1), "-inf * 0 is nan"),
    # Brier
    ("brier_score", lambda p, g, m: _mean((p ** 2).sum(-1), m), "(1 - p_gold)^2, not p_gold^2"),
    ("brier_score", lambda p, g, m: _mean((p ** 2).sum(-1) - np.take_along_axis(p, g[..., None], -1)[..., 0] ** 2, m),
     "The gold class is missing"),
    ("brier_score", lambda p, g, m: _mean((1 - np.take_along_axis(p, g[..., None], -1)[..., 0]) ** 2, m),
     "binary Brier score"),
    ("brier_score", lambda p, g, m: _mean(((p - _one_hot(p, g)) ** 2).mean(-1), m), "do not average them over V"),
    ("brier_score", lambda p, g, m: ((p - _one_hot(p, g)) ** 2).sum(-1).mean(-1), "average over answer tokens only"),
    # few-shot prompt
    ("few_shot_prompt", lambda s, q: ";".join(e.prompt + e.trace + e.answer for e in s) + q.prompt,
     "FOLLOWED by ';', the last one too"),
    ("few_shot_prompt", lambda s, q: "".join(e.prompt + e.answer + ";" for e in s) + q.prompt, "Example.trace"),
    ("few_shot_prompt", lambda s, q: "".join(e.prompt + e.trace + e.answer + "; " for e in s) + q.prompt,
     "with no space"),
    ("few_shot_prompt", lambda s, q: "".join(e.text for e in s) + q.prompt, "not newlines"),
    ("few_shot_prompt", lambda s, q: few_shot_prompt(s, q) + q.answer, "not its answer"),
    # the teacher-forced scorer
    ("score_answers", lambda *a: scorer_variant(*a, late=True), "Off by one"),
    ("score_answers", lambda *a: (scorer_variant(*a, late=True)[0], _scorer_reference(*a)[1]), "Off by one"),
    ("score_answers", lambda *a: scorer_variant(*a, newline=False), "The target is answer + '\\n'"),
    ("score_answers", lambda *a: (_scorer_reference(*a)[0], scorer_variant(*a, newline=False)[1]),
     "The target is answer + '\\n'"),
    ("score_answers", lambda *a: scorer_variant(*a, trace=False), "prompt + trace"),
    ("score_answers", lambda *a: scorer_variant(*a, reduce="sum"), "not the sum"),
    ("score_answers", lambda *a: _scorer_reference(*a)[0], "expected a pair"),
    ("score_answers", lambda m, t, e: [p.data.add_(0.01) for p in m.parameters()] and _scorer_reference(m, t, e),
     "changed the model's weights"),
]


@pytest.mark.parametrize("name, fn", [
    ("exact_match", exact_match), ("token_accuracy", token_accuracy), ("answer_logprob", _logprob_reference),
    ("brier_score", _brier_reference), ("few_shot_prompt", few_shot_prompt), ("score_answers", _scorer_reference),
    ("score_answers", scorer_variant),  # the lab's per-example loop (the solution's shape) matches score_examples
    ("score_answers", lambda *a: tuple(torch.tensor(v) for v in scorer_variant(*a))),  # tensors are fine too
])
def test_right_answers_pass(name, fn, capsys):
    grading.check(name, fn)
    assert f"PASS {name}" in capsys.readouterr().out


@pytest.mark.parametrize("name, fn, message", WRONG, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WRONG)])
def test_wrong_answers_fail_with_the_right_hint(name, fn, message, capsys):
    with pytest.raises(AssertionError):
        grading.check(name, fn)
    out = capsys.readouterr().out
    assert f"FAIL {name}" in out and message in out, out


def test_the_grading_model_separates_right_from_wrong_answers():
    """The scorer check is only worth something if the model answers some examples exactly and misses others,
    and if a scorer reading the wrong positions gets different numbers."""
    from minillm.evaluation.scoring import score_examples
    from book.grading.lab02_scorer import _scorer_case

    em, differs = [], []
    for kind in ("additions", "kv_map", "mixed lengths"):
        model, tok, ex = _scorer_case(kind)
        em += score_examples(model, tok, ex)["exact_match"].tolist()
        late, right = scorer_variant(model, tok, ex, late=True)[0], _scorer_reference(model, tok, ex)[0]
        differs.append(not np.allclose(late, right))
    assert 0.2 < np.mean(em) < 0.8 and all(differs)


def test_a_stub_reports_not_implemented():
    def stub(*args):
        raise NotImplementedError("write it")

    for name in ("exact_match", "brier_score", "score_answers"):
        with pytest.raises(NotImplementedError, match=f"not implemented yet: {name}"):
            grading.check(name, stub)


def test_scorer_diagnosis_tolerates_fp32_rounding():
    """A right log-prob computed another way (a batch, not a loop; two threads, not one) differs by ~1e-6; the
    diagnosis of an exact-match mistake must still recognise it (it failed at OMP_NUM_THREADS=2 before)."""
    from book.grading.lab02_scorer import same_scores

    lp, em = np.array([-0.65, -1.37, -3.99]), np.array([0.0, 1.0, 0.0])
    assert same_scores((lp + 3e-6, em), (lp, em))
    assert not same_scores((lp, em), (lp, 1 - em))            # a different exact match is a different mistake
    assert not same_scores((lp + 1e-3, em), (lp, em))         # so is a log-prob off by more than the check allows
    assert not same_scores((lp,), (lp, em))
