"""Lab 03 checks (Survey §4.1.2): each passes on a right answer and fails, with a message that points at the
mistake, on the stub and on a typical wrong answer."""
import itertools
from collections import Counter

import numpy as np
import pytest

from book import grading
from minillm.data.dedup import MAX_HASH, MERSENNE_PRIME, lsh_candidate_pairs


def minhash_loop(hash_sets, a, b):  # a plain per-document answer: right, just slower
    out = np.full((len(hash_sets), len(a)), MAX_HASH, dtype=np.uint64)
    for d, h in enumerate(hash_sets):
        if len(h):
            out[d] = ((np.asarray(h, dtype=np.uint64)[:, None] * a + b) % np.uint64(MERSENNE_PRIME)).min(axis=0)
    return out


def minhash_float(hash_sets, a, b):  # typical mistake: float arithmetic loses the low bits
    out = minhash_loop(hash_sets, a, b).astype(np.float64)
    return out


def minhash_no_empty(hash_sets, a, b):  # typical mistake: reduceat on an empty slice
    lengths = np.array([len(h) for h in hash_sets])
    flat = np.concatenate([np.asarray(h, dtype=np.uint64) for h in hash_sets])
    hashed = (flat[:, None] * a + b) % np.uint64(MERSENNE_PRIME)
    starts = np.minimum(np.concatenate([[0], np.cumsum(lengths)[:-1]]), len(flat) - 1)
    return np.minimum.reduceat(hashed, starts, axis=0)


def lsh_partial_band(signatures, bands, rows):  # typical mistake: one equal row is enough
    pairs = set()
    for col in range(signatures.shape[1]):
        for i, j in itertools.combinations(range(len(signatures)), 2):
            if signatures[i, col] == signatures[j, col]:
                pairs.add((i, j))
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)


def dup_lines_right(text):
    lines = [s for s in (x.strip() for x in text.split("\n")) if s]
    return sum(c - 1 for c in Counter(lines).values()) / len(lines) if lines else 0.0


def dup_lines_unstripped(text):  # typical mistake: blank lines and spaces count
    lines = text.split("\n")
    return sum(c - 1 for c in Counter(lines).values()) / len(lines)


def junk_right(texts):
    stop = {"the", "a", "and", "to", "of", "in", "was", "she", "he", "is"}
    out = []
    for t in texts:
        words = t.split()
        mean_len = sum(map(len, words)) / max(len(words), 1)
        out.append(dup_lines_right(t) > 0.3 or len(words) < 30 or sum(w.lower() in stop for w in words) < 3
                   or not 3 <= mean_len <= 10)
    return out


def test_registry_lists_the_lab03_checks():
    assert {"minhash_signatures", "lsh_candidate_pairs", "dup_line_fraction", "junk_filter"} <= set(grading.list_checks())


@pytest.mark.parametrize("name, fn", [
    ("minhash_signatures", minhash_loop), ("lsh_candidate_pairs", lsh_candidate_pairs),
    ("dup_line_fraction", dup_lines_right), ("junk_filter", junk_right),
])
def test_right_answers_pass(name, fn, capsys):
    grading.check(name, fn)
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("name, fn, message", [
    ("minhash_signatures", minhash_float, "not an integer type"),
    ("minhash_signatures", minhash_no_empty, "empty document"),
    ("lsh_candidate_pairs", lsh_partial_band, "shape"),
    ("dup_line_fraction", dup_lines_unstripped, "blank lines"),
    ("junk_filter", lambda texts: [True] * len(texts), "precision"),
    ("junk_filter", lambda texts: [False] * len(texts), "recall"),
    ("junk_filter", lambda texts: [True], "decisions for"),
])
def test_wrong_answers_fail_with_a_pointer(name, fn, message, capsys):
    with pytest.raises(AssertionError):
        grading.check(name, fn)
    assert message in capsys.readouterr().out


def test_stub_says_not_implemented():
    def stub(*args):
        raise NotImplementedError("write me")
    with pytest.raises(NotImplementedError, match="not implemented yet: minhash_signatures"):
        grading.check("minhash_signatures", stub)


def test_junk_filter_check_exposes_no_oracle():
    """A filter that asks the grader for the answer finds nothing to ask: the truth is made after it returns."""
    import book.grading.lab03 as lab03
    from book.grading import CHECKS

    spec = CHECKS["junk_filter"]
    assert not hasattr(lab03, "_truth_for")
    texts = spec.cases[0].make()[0]
    assert spec.reference(texts) == len(texts)  # the reference says how many decisions, not which

    def cheat(texts):  # everything the grader's module holds while a filter runs
        held = [v for v in vars(lab03).values() if isinstance(v, dict)]
        truths = [t for d in held for t in d.values() if isinstance(t, tuple) and len(t) == 2]
        assert not truths, "the grader keeps (texts, truth) pairs a filter could read"
        return [False] * len(texts)

    with pytest.raises(AssertionError, match="recall"):
        grading.check("junk_filter", cheat)
