"""Dataset-level decontamination by n-gram overlap (minillm.data.dedup.decontam, Survey §4.1.2)."""
import time

import numpy as np
import pytest

from minillm.data.dedup import decontaminate, ngram_keys, ngram_overlap, normalize_for_hash
from minillm.data.synthetic import corpus


def ref_ngrams(text, n, unit="word"):
    units = normalize_for_hash(text).split() if unit == "word" else list(normalize_for_hash(text))
    join = " ".join if unit == "word" else "".join
    return {join(units[i:i + n]) for i in range(len(units) - n + 1)}


def contaminated_set(seed=0):
    """Training docs (facts) with eval passages (stories) planted into some of them, case/spacing changed."""
    train = [" ".join(corpus("facts", 600, seed=seed).docs[3 * i:3 * i + 3]) for i in range(200)]
    stories = corpus("story", 400, seed=seed + 1).docs
    evals = [" ".join(stories[4 * i:4 * i + 4]) for i in range(30)]
    evals = [e for e in evals if len(e.split()) >= 30][:12]
    rng = np.random.default_rng(seed)
    planted = sorted(rng.choice(len(train), size=len(evals), replace=False).tolist())
    for doc, e in zip(planted, evals):
        w = e.split()
        excerpt = " ".join(w[5:25]).upper()  # 20 words of the passage, upper-cased
        half = len(train[doc]) // 2
        train[doc] = train[doc][:half] + "\n  " + excerpt + "  \n" + train[doc][half:]
    return train, evals, planted


def test_finds_planted_passages_and_nothing_else():
    train, evals, planted = contaminated_set()
    r = decontaminate(train, evals)
    assert np.flatnonzero(~r.keep).tolist() == planted
    assert r.matched[planted].min() >= 1 and r.eval_too_short == 0
    assert np.array_equal(ngram_overlap(train, evals), ~r.keep)
    # matched counts equal a Python set reference.
    eval_grams = set().union(*(ref_ngrams(e, 13) for e in evals))
    assert r.matched.tolist() == [len(ref_ngrams(t, 13) & eval_grams) for t in train]
    assert r.eval_ngrams == len(eval_grams)


def test_normalization_and_min_matches():
    train, evals, planted = contaminated_set(seed=1)
    assert not ngram_overlap(train, evals, normalize=False).any()  # the planted copies are upper-cased
    # Each planted 20-word excerpt holds 20 - 13 + 1 = 8 of the eval set's 13-grams.
    assert decontaminate(train, evals).matched[planted].tolist() == [8] * len(planted)
    assert np.flatnonzero(~decontaminate(train, evals, min_matches=8).keep).tolist() == planted
    assert decontaminate(train, evals, min_matches=9).keep.all()


def test_unrelated_corpora_have_no_hits():
    train = corpus("facts", 300, seed=4).docs
    evals = [" ".join(corpus("story", 200, seed=5).docs)]
    assert not ngram_overlap(train, evals).any()


def test_chinese_char_ngrams():
    zh = corpus("story_zh", 300, seed=2).docs
    evals = ["".join(zh[:5])]
    train = ["".join(zh[100 + 3 * i:103 + 3 * i]) for i in range(40)]
    train[17] = train[17] + evals[0][3:30] + train[18]   # 27 characters of the eval passage
    r = decontaminate(train, evals, n=20, unit="char")
    assert np.flatnonzero(~r.keep).tolist() == [17] and r.matched[17] == 27 - 20 + 1


def test_short_eval_texts_are_counted_not_hidden():
    r = decontaminate(["a b c d e f", ""], ["a b c", "", "b c d e"], n=4)
    assert r.eval_too_short == 2 and r.matched.tolist() == [1, 0] and r.keep.tolist() == [False, True]


def test_ngram_keys():
    k = ngram_keys("a b c d a b c", n=3)
    assert k.dtype == np.uint64 and len(k) == 4 and np.all(np.diff(k.astype(np.float64)) > 0)
    assert len(ngram_keys("a b", n=3)) == 0 and len(ngram_keys("", n=3)) == 0
    assert np.array_equal(ngram_keys("x  y\nz", 2), ngram_keys("x y z", 2))


def test_long_single_line_linear_time():
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(50)])

    def best(n_words):
        text = " ".join(rng.choice(vocab, n_words))
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            decontaminate([text], [text[:2000]])
            times.append(time.perf_counter() - t0)
        return min(times)

    small, big = best(6_250), best(100_000)
    assert big < 2.0 and big / small < 120  # 16x the words: linear ~18 idle, quadratic >= 256


@pytest.mark.parametrize("call, err", [
    (lambda: decontaminate([], ["a"]), ValueError),
    (lambda: decontaminate(["a"], []), ValueError),
    (lambda: decontaminate(["a"], "eval text"), TypeError),
    (lambda: decontaminate([b"a"], ["a"]), TypeError),
    (lambda: decontaminate(["a"], ["a"], n=0), ValueError),
    (lambda: decontaminate(["a"], ["a"], unit="line"), ValueError),
    (lambda: decontaminate(["a"], ["a"], min_matches=0), ValueError),
])
def test_bad_input(call, err):
    with pytest.raises(err):
        call()
