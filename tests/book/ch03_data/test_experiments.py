"""Tests of book.ch03_data.studies_experiments and minillm.data.mixture: the training experiments of chapter 03.
(The recipe itself, book.runs.Run, is tested in tests/book/test_runs.py; the held-out loss in
tests/minillm/evaluation/test_loss.py.)"""
import numpy as np
import pytest

from book.ch03_data.studies_experiments import (duplication_study, raw_vs_clean, repeated_mixture, shipped_duplication,
                                                train_on_texts)
from minillm.data.mixture import MixingLaw, fit_mixing_law, mixture_docs, simplex_grid
from book.ch03_data.studies_mixture import mixture_sweep
from minillm.data.synthetic import corpus
from book.runs import Run

TINY = Run(n_layer=1, n_embd=16, n_head=1, block_size=32, batch_size=4, steps=20, eval_windows=8)


def test_train_on_texts_learns_and_reports():
    docs = corpus("story", 60, 1).docs
    held = corpus("story", 20, 2).docs
    res = train_on_texts(docs, {"held": held, "same": docs[:10]}, TINY)
    assert set(res["losses"]) == {"held", "same"}
    first = res["history"][0]["loss"]
    assert res["losses"]["held"] < first  # it learned something in 20 steps
    assert res["epochs"] == pytest.approx(TINY.tokens / res["train_chars"])


@pytest.mark.parametrize("train, evals, err, match", [
    ([], {"a": ["x" * 100]}, ValueError, "no non-empty"),
    ("a string", {"a": ["x"]}, TypeError, "list of str"),
    (["ok" * 100, 3], {"a": ["x"]}, TypeError, r"train_docs\[1\]"),
    (["ok" * 100], {}, ValueError, "eval_sets is empty"),
    (["ab"], {"a": ["x" * 100]}, ValueError, "fewer than one window"),
])
def test_train_on_texts_bad_input(train, evals, err, match):
    with pytest.raises(err, match=match):
        train_on_texts(train, evals, TINY)


def test_repeated_mixture_shares():
    docs = [f"doc {i} " + "x" * 90 for i in range(400)]
    out = repeated_mixture(docs, 20_000, 0.5, n_repeated=5, seed=0)
    rep = set(docs[:5])
    rep_chars = sum(len(d) + 1 for d in out if d in rep)
    total = sum(len(d) + 1 for d in out)
    assert 0.4 < rep_chars / total < 0.6
    fresh = [d for d in out if d not in rep]
    assert len(fresh) == len(set(fresh))  # fresh documents are distinct
    assert repeated_mixture(docs, 20_000, 0.5, 5, seed=0) == out  # seeded
    assert not rep & set(repeated_mixture(docs, 20_000, 0.0, 5))
    with pytest.raises(ValueError, match="more unique_docs"):
        repeated_mixture(docs[:50], 20_000, 0.1, 5)
    with pytest.raises(ValueError, match="dup_share"):
        repeated_mixture(docs, 20_000, 1.0, 5)


def test_duplication_study_rows():
    rows = duplication_study((0.0, 0.8), n_repeated=3, run=TINY, n_eval_docs=20)
    assert [r["dup_share"] for r in rows] == [0.0, 0.8]
    assert rows[1]["distinct_chars"] < 0.7 * rows[0]["distinct_chars"]
    for r in rows:
        assert r["excess"] == pytest.approx(r["val_loss"] - r["floor"]) and r["excess"] > 0


def test_raw_vs_clean_shapes():
    clean = corpus("story", 60, 1).docs
    raw = clean + ["BUY CHEAP casino click here!!! $$$ " * 5] * 30
    res = raw_vs_clean(raw, clean, {"held": corpus("story", 10, 2).docs}, TINY)
    assert set(res["raw"]) == set(res["clean"]) == {"held"}
    assert res["clean_minus_raw"]["held"] == pytest.approx(res["clean"]["held"] - res["raw"]["held"])


def test_simplex_grid():
    g = simplex_grid(3, 4)
    assert len(g) == 3 and all(abs(sum(w) - 1) < 1e-12 and min(w) >= 0.25 for w in g)
    assert len(simplex_grid(3, 4, min_count=0)) == 15
    with pytest.raises(ValueError, match="steps"):
        simplex_grid(3, 2)


def test_mixture_docs_follow_weights():
    pools = {"a": ["a" * 99] * 300, "b": ["b" * 49] * 600}
    docs = mixture_docs((3, 1), pools, 20_000)
    chars = {k: sum(len(d) + 1 for d in docs if d[0] == k) for k in "ab"}
    assert chars["a"] / (chars["a"] + chars["b"]) == pytest.approx(0.75, abs=0.02)
    with pytest.raises(ValueError, match="pool has"):
        mixture_docs((1, 0), pools, 100_000)
    with pytest.raises(ValueError, match="non-negative"):
        mixture_docs((1, -1), pools, 1000)


def test_fit_mixing_law_recovers_a_known_law():
    names = ("en", "zh", "math")
    law = MixingLaw("en", names, c=0.5, k=2.0, t=(-3.0, 0.5, 0.0), rmse=0.0)
    grid = simplex_grid(3, 6)
    rows = [{"weights": dict(zip(names, w)), "loss": {"en": float(law.predict(w)[0])}} for w in grid]
    fit = fit_mixing_law(rows, "en")
    assert fit.rmse < 1e-6
    probe = np.array([[0.2, 0.3, 0.5], [0.7, 0.1, 0.2]])
    np.testing.assert_allclose(fit.predict(probe), law.predict(probe), rtol=1e-5)
    with pytest.raises(ValueError, match="not one of"):
        fit_mixing_law(rows, "fr")
    with pytest.raises(ValueError, match="cannot fit"):
        fit_mixing_law(rows[:3], "en")


def test_mixture_sweep_tiny():
    rows = mixture_sweep(simplex_grid(2, 2), TINY, domains={"english": "story", "arithmetic": "arithmetic"})
    assert len(rows) == 1 and set(rows[0]["excess"]) == {"english", "arithmetic"}
    assert all(v > 0 for v in rows[0]["excess"].values())


def test_shipped_duplication_keys_rows_by_percent():
    rows = shipped_duplication()["rows"]
    assert rows and all(r["repeats_pct"] == round(100 * r["dup_share"]) for r in rows)
    assert len({r["repeats_pct"] for r in rows}) == len(rows)  # one row per share: a selector picks one
