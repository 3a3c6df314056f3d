"""Exact document, line and sentence de-duplication (minillm.data.dedup.exact, Survey §4.1.2)."""
import time

import numpy as np
import pytest

from minillm.data.dedup import exact_dedup, line_dedup, normalize_for_hash, repeated_lines_within
from minillm.data.synthetic import corpus


def test_normalize_for_hash_nfkc_case_whitespace():
    assert normalize_for_hash("  Hello\t\nWORLD  ") == "hello world"
    assert normalize_for_hash("ＡＢＣ\u00a0ﬁne") == "abc fine"   # full-width letters, NBSP, ligature
    assert normalize_for_hash("Straße") == "strasse"            # casefold, not lower
    assert normalize_for_hash("") == ""


def test_exact_dedup_keeps_first_occurrence():
    texts = ["a b", "c", "a b", "d", "c", "a b"]
    r = exact_dedup(texts)
    assert r.keep.tolist() == [True, True, False, True, False, False]
    assert r.duplicate_of.tolist() == [-1, -1, 0, -1, 1, 0]
    assert r.n_removed == 3
    assert r.keep.dtype == bool and r.duplicate_of.dtype == np.int64


def test_exact_dedup_normalization_switch():
    texts = ["The cat  sat.", "the CAT sat.", "ｔｈｅ cat\nsat.", "The cat sat!"]
    assert exact_dedup(texts).duplicate_of.tolist() == [-1, 0, 0, -1]
    assert exact_dedup(texts, normalize=False).keep.all()


def test_exact_dedup_matches_set_reference_on_corpus():
    docs = corpus("story", 2000, seed=3).docs  # short stories repeat naturally
    r = exact_dedup(docs, normalize=False)
    assert r.keep.sum() == len(set(docs))
    first = {}
    for i, d in enumerate(docs):
        first.setdefault(d, i)
    assert r.duplicate_of.tolist() == [-1 if first[d] == i else first[d] for i, d in enumerate(docs)]


def test_exact_dedup_empty_docs_are_duplicates_of_each_other():
    r = exact_dedup(["", "x", "  ", ""])
    assert r.duplicate_of.tolist() == [-1, -1, 0, 0]


@pytest.mark.parametrize("bad, err", [([], ValueError), ("abc", TypeError), (["a", b"b"], TypeError),
                                      (["a", None], TypeError), (5, TypeError), (["\ud800"], ValueError)])
def test_exact_dedup_bad_input(bad, err):
    with pytest.raises(err):
        exact_dedup(bad)


def test_line_dedup_removes_lines_in_k_docs_and_nothing_else():
    nav, foot = "Home | About | Contact", "© all rights reserved"
    texts = [f"{nav}\nstory one\n{foot}", f"{nav}\nstory two\nstory two", f"home |  about | contact\nthree\n{foot}",
             f"four\n{foot}", "five\n\nsix"]
    new, removed = line_dedup(texts, min_docs=3)
    assert new == ["story one", "story two\nstory two", "three", "four", "five\n\nsix"]
    assert removed.tolist() == [2, 1, 2, 1, 0]
    # With k = 4 only the footer (in 3 docs) and nav (3 docs) survive.
    new4, removed4 = line_dedup(texts, min_docs=4)
    assert new4 == texts and removed4.sum() == 0


def test_line_dedup_reference_on_corpus():
    rng = np.random.default_rng(0)
    docs = corpus("story", 300, seed=1).docs
    boiler = [f"menu item {i}" for i in range(6)]
    texts = ["\n".join(list(rng.choice(boiler, size=2, replace=False)) + [d]) for d in docs]
    new, removed = line_dedup(texts, min_docs=3)
    doc_freq = {}
    for t in texts:
        for line in set(t.split("\n")):
            doc_freq[line] = doc_freq.get(line, 0) + 1
    for t, nt, k in zip(texts, new, removed):
        expect = [line for line in t.split("\n") if doc_freq[line] < 3]
        assert nt == "\n".join(expect) and k == len(t.split("\n")) - len(expect)
    assert removed.sum() > 2 * len(texts)  # every menu line, and the short stories told 3+ times


def test_line_dedup_bad_min_docs():
    with pytest.raises(ValueError, match="min_docs"):
        line_dedup(["a"], min_docs=1)
    with pytest.raises(TypeError):
        line_dedup(["a"], min_docs=2.5)


def test_repeated_lines_within():
    text = "Buy now! Buy now! Great deal.\nGreat deal.\n\nNew line here. buy  NOW!\nend"
    assert repeated_lines_within(text) == "Buy now! Great deal.\n\nNew line here.\nend"
    assert repeated_lines_within("no repeats. at all") == "no repeats. at all"
    assert repeated_lines_within("") == ""


def test_repeated_lines_within_chinese():
    assert repeated_lines_within("今天下雨。今天下雨。我们在家！\n今天下雨。") == "今天下雨。我们在家！"


def test_long_single_line_is_linear():
    rng = np.random.default_rng(0)
    words = np.array(["alpha", "beta", "gamma", "delta", "eps"])

    def best(n_words):
        text = " ".join(rng.choice(words, n_words)) + "."
        t = []
        for _ in range(5):
            t0 = time.perf_counter()
            exact_dedup([text, text])
            line_dedup([text, text, text])
            repeated_lines_within(text)
            t.append(time.perf_counter() - t0)
        return min(t)

    # 16x the text: quadratic time gives a ratio of 256 or more; linear measured ~30 on an idle 2-core machine
    # (cache effects) and must not fail on a busy one (a load spike during the large run only), hence 120.
    small, big = best(12_500), best(200_000)
    assert big < 1.0
    assert big / small < 120
