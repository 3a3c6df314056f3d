"""Tests of minillm.data.clean.filter_metrics and FilterResult."""
import itertools

import numpy as np
import pytest

from minillm.data.clean import FilterResult, precision_recall, roc_auc, stage_table


def test_precision_recall_exact():
    pred = [True, True, False, False, True, False]
    true = [True, False, True, False, True, False]
    m = precision_recall(pred, true)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 2)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    m = precision_recall(np.array([1, 0, 0]), np.array([1, 1, 0]))         # 0/1 arrays work too
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))


def test_precision_recall_zero_division_is_zero():
    m = precision_recall([False, False], [True, False])       # drops nothing
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    m = precision_recall([True, False], [False, False])       # no junk at all
    assert m["recall"] == 0.0 and m["fp"] == 1


def test_precision_recall_bad_input():
    with pytest.raises(ValueError, match="has 2 entries but true_junk has 3"):
        precision_recall([True, False], [True, False, True])
    with pytest.raises(ValueError, match="empty"):
        precision_recall([], [])
    with pytest.raises(ValueError, match="booleans"):
        precision_recall([0.5, 1], [True, False])
    with pytest.raises(ValueError, match="1-D"):
        precision_recall([[True]], [[True]])


def test_roc_auc_matches_pair_counting():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 40).astype(float)            # many ties
    y = rng.random(40) < 0.4
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0)
             for (a, ya), (b, yb) in itertools.product(zip(scores, y), repeat=2) if ya and not yb]
    assert roc_auc(scores, y) == pytest.approx(np.mean(pairs))
    assert roc_auc([0.1, 0.9], [False, True]) == 1.0
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_auc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="finite"):
        roc_auc([np.nan, 0.2], [True, False])


def test_stage_table_exact():
    rows = [{"stage": "heuristic", "f1": 0.8125, "dropped": 1200},
            {"stage": "keyword", "f1": float("nan"), "note": "x"}]
    assert stage_table(rows) == ("stage         f1  dropped  note\n"
                                 "heuristic  0.812    1,200\n"
                                 "keyword      nan           x")
    with pytest.raises(ValueError, match="empty"):
        stage_table([])
    with pytest.raises(TypeError, match="list of dicts"):
        stage_table({"a": 1})


def test_filter_result_checks_shapes():
    r = FilterResult(keep=np.array([True, False]), reasons=[[], ["x"]], scores=np.array([0.0, 1.0]))
    assert r.drop.tolist() == [False, True] and r.keep_rate == 0.5
    with pytest.raises(ValueError, match="one reasons list per document"):
        FilterResult(keep=np.array([True]), reasons=[])
    with pytest.raises(ValueError, match="bool"):
        FilterResult(keep=np.array([1, 0]), reasons=[[], []])
    with pytest.raises(ValueError, match="scores must have shape"):
        FilterResult(keep=np.array([True]), reasons=[[]], scores=np.zeros(2))
