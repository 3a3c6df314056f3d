"""Metrics of minillm.evaluation.metrics on hand-computed cases."""
import math

import numpy as np
import pytest

from minillm.evaluation.metrics import (answer_logprob, binomial_se, bootstrap_se, brier_score, exact_match, exact_match_tokens, mean_se, summarize, token_accuracy)


def test_exact_match():
    assert exact_match(["85", "8", "85 "], ["85", "85", "85"]).tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="predictions"):
        exact_match(["1"], ["1", "2"])
    with pytest.raises(ValueError, match="lists"):
        exact_match("85", "85")


def test_exact_match_is_defined_once():
    from minillm.evaluation import harness

    assert exact_match is harness.exact_match  # the raw metric here and SQuAD's (normalize=True) are one function
    assert exact_match(["The 85."], ["85"]).tolist() == [0.0]
    assert exact_match(["The 85."], ["85"], normalize=True).tolist() == [1.0]


def test_token_accuracy_and_exact_match_tokens_with_padding():
    pred = np.array([[1, 2, 3], [1, 9, 0], [4, 0, 0]])
    gold = np.array([[1, 2, 3], [1, 2, 7], [5, 7, 7]])
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=bool)  # padding differs but is masked out
    assert token_accuracy(pred, gold, mask).tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert exact_match_tokens(pred, gold, mask).tolist() == [1.0, 0.0, 0.0]
    assert token_accuracy(pred[:1], gold[:1]).tolist() == [1.0]
    with pytest.raises(ValueError, match="at least one answer token"):
        token_accuracy(pred, gold, np.zeros_like(mask))


def test_answer_logprob_of_known_distribution():
    lp = np.log(np.array([[0.5, 0.25, 0.9], [0.1, 0.0 + 1.0, 123.0]]))
    mask = np.array([[1, 1, 0], [1, 1, 0]], dtype=bool)
    mean, total = answer_logprob(lp, mask)
    assert total == pytest.approx([math.log(0.125), math.log(0.1)])
    assert mean == pytest.approx([math.log(0.125) / 2, math.log(0.1) / 2])


def test_brier_hand_cases():
    V = 5
    onehot = np.eye(V)[[2]][None]                       # (1, 1, V): certain and right
    uniform = np.full((1, 1, V), 1 / V)
    assert brier_score(onehot, [[2]]).tolist() == pytest.approx([0.0])
    assert brier_score(onehot, [[0]]).tolist() == pytest.approx([2.0])      # certain and wrong
    assert brier_score(uniform, [[4]]).tolist() == pytest.approx([1 - 1 / V])
    p = np.array([[[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]]])                       # two answer tokens
    expected = ((0.3 ** 2 + 0.2 ** 2 + 0.1 ** 2) + (0.2 ** 2 + 0.5 ** 2 + 0.7 ** 2)) / 2
    assert brier_score(p, [[0, 2]]).tolist() == pytest.approx([expected])
    assert brier_score(p, [[0, 2]], [[True, False]]).tolist() == pytest.approx([0.14])
    with pytest.raises(ValueError, match=r"\(N, L, V\)"):
        brier_score(p[0], [[0, 2]])


def test_standard_errors():
    assert binomial_se([1, 0, 1, 0]) == pytest.approx(0.25)
    assert mean_se([1, 0, 1, 0]) == pytest.approx((0.5, 0.25))                  # auto -> binomial
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert mean_se(x) == pytest.approx((2.5, x.std(ddof=1) / 2))               # auto -> sem
    big = np.random.default_rng(0).normal(size=2000)
    m, se = mean_se(big, "bootstrap", n_boot=400)
    assert se == pytest.approx(big.std() / math.sqrt(big.size), rel=0.15)
    assert bootstrap_se(big, 200, seed=1) == bootstrap_se(big, 200, seed=1)
    with pytest.raises(ValueError, match="method"):
        mean_se(x, "magic")


def test_summarize():
    s = summarize({"exact_match": np.array([1.0, 0.0]), "logprob_mean": np.array([-1.0, -3.0]), "other": [5]})
    assert s["exact_match"] == 0.5 and s["exact_match_se"] == pytest.approx(math.sqrt(0.25 / 2))
    assert s["logprob_mean"] == -2.0 and "other" not in s
    with pytest.raises(ValueError, match="none of the metrics"):
        summarize({"x": [1.0]})
