"""Scoring a cleaning stage against ground truth (Survey §4.1.2: every filter trades wrongly kept junk
against wrongly dropped good text; our synthetic crawl knows which page is which, so we can measure both).

Convention: the positive class is *junk* (what a filter should drop). precision = share of dropped pages
that really were junk; recall = share of junk pages that were dropped. A filter that drops nothing has
precision 0 by convention here (0/0 -> 0, as scikit-learn's zero_division=0), and so does its F1.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import rankdata


def _bool_vector(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of booleans, got shape {a.shape}")
    if a.dtype != bool:
        if a.size and not (np.issubdtype(a.dtype, np.number) and np.isin(a, (0, 1)).all()):
            raise ValueError(f"{name} must hold booleans (or 0/1), got dtype {a.dtype}")
        a = a.astype(bool)
    return a


def precision_recall(predicted_junk: Sequence[bool], true_junk: Sequence[bool]) -> dict[str, float]:
    """{precision, recall, f1, tp, fp, fn, tn} of a filter's drops against the true junk labels."""
    pred, true = _bool_vector(predicted_junk, "predicted_junk"), _bool_vector(true_junk, "true_junk")
    if len(pred) != len(true):
        raise ValueError(f"predicted_junk has {len(pred)} entries but true_junk has {len(true)}: "
                         f"pass one prediction per document")
    if len(pred) == 0:
        raise ValueError("predicted_junk and true_junk are empty: nothing to score")
    tp, fp = int(np.sum(pred & true)), int(np.sum(pred & ~true))
    fn, tn = int(np.sum(~pred & true)), int(np.sum(~pred & ~true))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random negative
    (ties count one half), computed from ranks (Mann-Whitney U)."""
    s = np.asarray(scores, dtype=np.float64)
    y = _bool_vector(positive, "positive")
    if s.shape != y.shape:
        raise ValueError(f"scores has shape {s.shape} but positive has {y.shape}: pass one score per label")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite numbers")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs both positive and negative examples")
    ranks = rankdata(s)                                    # average ranks for ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _cell(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return "nan" if math.isnan(v) else f"{float(v):.3f}"
    return str(v)


def stage_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """An aligned text table, one row per mapping; columns are the keys in order of first appearance
    (a missing value prints as ""). Numbers are right-aligned (floats with 3 decimals), text left-aligned.

    >>> print(stage_table([{"stage": "heuristic", "f1": 0.8125, "dropped": 120}]))
    stage         f1  dropped
    heuristic  0.812      120
    """
    if isinstance(rows, Mapping) or not all(isinstance(r, Mapping) for r in rows):
        raise TypeError("rows must be a list of dicts (one dict per table row)")
    if not rows:
        raise ValueError("rows is empty: pass at least one row")
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_cell(r[c]) if c in r else "" for c in cols] for r in rows]
    numeric = [all(isinstance(r.get(c), (int, float, np.number)) and not isinstance(r.get(c), bool)
                   for r in rows if c in r) for c in cols]
    widths = [max(len(str(c)), *(len(row[j]) for row in cells)) for j, c in enumerate(cols)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line([str(c) for c in cols])] + [line(row) for row in cells])
