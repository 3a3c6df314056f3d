"""MinHash shingling and signatures (minillm.data.dedup.minhash, Survey §4.1.2), against Python references."""
import time
import zlib

import numpy as np
import pytest

from minillm.data.dedup import (MAX_HASH, MERSENNE_PRIME, estimate_jaccard, jaccard, minhash_signatures,
                                permutations, shingle_hashes, shingle_spans, shingles)
from minillm.data.synthetic import corpus

FILLER = ["zork", "quill", "mote", "fen", "grue", "lumen", "brack", "tine"]  # words the stories never use


def ref_shingles(text, n, unit):
    units = text.split() if unit == "word" else list(text)
    if not units:
        return set()
    join = " ".join if unit == "word" else "".join
    return {join(units[i:i + n]) for i in range(max(len(units) - n + 1, 1))}


def ref_signature(hashes, a, b):
    return [min((int(ai) * int(x) + int(bi)) % MERSENNE_PRIME for x in hashes) if len(hashes) else MAX_HASH
            for ai, bi in zip(a, b)]


def edit(text, rate, rng):
    """Replace a fraction `rate` of the words with filler words."""
    words = text.split()
    for i in np.flatnonzero(rng.random(len(words)) < rate):
        words[i] = FILLER[rng.integers(len(FILLER))]
    return " ".join(words)


@pytest.mark.parametrize("text, n, unit", [
    ("the cat sat on the mat and the cat sat on the hat", 3, "word"),
    ("  spaced \t out\n\nwords  here ", 2, "word"),
    ("short", 5, "word"),
    ("", 5, "word"), ("   \n", 3, "word"), ("", 3, "char"),
    ("从前有一座山，山里有一座庙。庙里有个老和尚。", 5, "char"),
    ("naïve café — emoji 🙂🙂 ok", 4, "char"),
    ("ab", 5, "char"),
])
def test_shingles_and_hashes_match_reference(text, n, unit):
    expect = ref_shingles(text, n, unit)
    assert set(shingles(text, n, unit)) == expect and len(shingles(text, n, unit)) == len(expect)
    h = shingle_hashes(text, n, unit)
    assert h.dtype == np.uint64
    assert h.tolist() == sorted({zlib.crc32(s.encode("utf-8")) for s in expect})


def test_word_shingles_ignore_layout_and_pad_short():
    assert np.array_equal(shingle_hashes("a b c d e f"), shingle_hashes(" a  b\nc\td e   f "))
    assert shingles("one two", 5) == ["one two"]
    buf, s, e = shingle_spans("one two", 5, pad_short=False)
    assert len(s) == 0 and len(e) == 0


def test_permutations():
    a, b = permutations(64, seed=7)
    assert a.dtype == b.dtype == np.uint64 and a.shape == b.shape == (64,)
    assert a.min() >= 1 and a.max() < MERSENNE_PRIME and b.max() < MERSENNE_PRIME
    assert a.max() > 2**30 and b.max() > 2**30  # drawn from the whole residue range
    a2, b2 = permutations(64, seed=7)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    assert not np.array_equal(a, permutations(64, seed=8)[0])
    rng = np.random.default_rng(7)  # documented draw order: a, then b
    assert np.array_equal(a, rng.integers(1, MERSENNE_PRIME, 64, dtype=np.uint64))
    assert np.array_equal(b, rng.integers(0, MERSENNE_PRIME, 64, dtype=np.uint64))


@pytest.mark.parametrize("chunk", [1, 5, 64, 1024])
def test_signatures_equal_python_reference(chunk):
    rng = np.random.default_rng(0)
    hash_sets = [rng.integers(0, 2**32, size=k, dtype=np.uint64) for k in [0, 3, 1, 0, 17, 40, 2, 0, 9]]
    hash_sets.append(np.array([2**32 - 1, 0], dtype=np.uint64))  # extreme inputs
    a, b = permutations(32, seed=3)
    sig = minhash_signatures(hash_sets, a, b, chunk=chunk)
    assert sig.shape == (len(hash_sets), 32) and sig.dtype == np.uint64
    assert sig.tolist() == [ref_signature(h, a, b) for h in hash_sets]


def test_signatures_on_text_equal_reference_and_single_doc():
    docs = corpus("story", 40, seed=2).docs + ["", "x"]
    hashes = [shingle_hashes(d, 3) for d in docs]
    a, b = permutations(16)
    sig = minhash_signatures(hashes, a, b, chunk=50)
    assert sig.tolist() == [ref_signature(h, a, b) for h in hashes]
    single = minhash_signatures([hashes[2]], a, b)
    assert single.shape == (1, 16) and np.array_equal(single[0], sig[2])
    assert (minhash_signatures([hashes[-2]], a, b) == MAX_HASH).all()  # an empty document


def test_signature_hand_computation():
    # "a b c" with n=2 has two shingles, "a b" and "b c".
    x1, x2 = 2154585299, 4113420828
    assert shingle_hashes("a b c", 2).tolist() == [x1, x2]
    M = 2**31 - 1
    assert MERSENNE_PRIME == M
    a = np.array([3, M - 1, M - 1, M - 1], dtype=np.uint64)
    b = np.array([7, 0, 1, M - 1], dtype=np.uint64)
    sig = minhash_signatures([np.array([x1, x2], dtype=np.uint64)], a, b)[0]
    assert sig[0] == min((3 * x1 + 7) % M, (3 * x2 + 7) % M) == (3 * x1 + 7) - 3 * M
    assert sig[1] == min((M - 1) * x1 % M, (M - 1) * x2 % M)
    # x = 2^32 - 1 = 2M + 1, so a x + b = a + b (mod M): a + b = M gives 0, a + b = 2M - 2 gives M - 2
    # (values at the edges of the final conditional subtraction).
    edge = minhash_signatures([np.array([2**32 - 1], dtype=np.uint64), np.array([1], dtype=np.uint64)], a, b)
    assert edge[0, 2] == 0 and edge[0, 3] == M - 2
    assert edge[1, 2] == 0  # (M - 1) * 1 + 1 == M exactly


def test_estimated_jaccard_close_to_exact():
    rng = np.random.default_rng(1)
    stories = corpus("story", 1600, seed=5).docs
    bases = [" ".join(stories[i:i + 8]) for i in range(0, 1600, 8)]  # 200 documents of ~300 words
    others = [edit(t, rate, rng) for t, rate in zip(bases, rng.uniform(0.0, 0.5, len(bases)))]
    ha = [shingle_hashes(t) for t in bases]
    hb = [shingle_hashes(t) for t in others]
    a, b = permutations(256, seed=1)
    est = estimate_jaccard(minhash_signatures(ha, a, b), minhash_signatures(hb, a, b))  # (200,)
    exact = np.array([jaccard(x, y) for x, y in zip(ha, hb)])
    assert exact.min() < 0.2 and exact.max() > 0.9  # the pairs span the whole range
    err = np.abs(est - exact)
    assert err.max() < 0.1 and err.mean() < 0.04


def test_jaccard_exact():
    assert jaccard([1, 2, 3], [2, 3, 4, 4]) == 0.5
    assert jaccard([], []) == 1.0 and jaccard([1], []) == 0.0
    a, b = shingle_hashes("x y z w"), shingle_hashes("x y z w")
    assert jaccard(a, b) == 1.0
    s1, s2 = ref_shingles("a b c d e f g", 2, "word"), ref_shingles("a b c d x f g", 2, "word")
    assert jaccard(shingle_hashes("a b c d e f g", 2), shingle_hashes("a b c d x f g", 2)) == \
        len(s1 & s2) / len(s1 | s2)
    assert estimate_jaccard(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 0])) == 0.5


def test_chinese_near_duplicate_by_char_shingles():
    zh = corpus("story_zh", 200, seed=0).docs
    doc = "".join(zh[:20])
    copy = doc.replace("。", "！", 2)  # two punctuation marks changed
    other = "".join(zh[100:120])
    h = [shingle_hashes(t, 5, "char") for t in (doc, copy, other)]
    a, b = permutations(128)
    sig = minhash_signatures(h, a, b)
    assert jaccard(h[0], h[1]) > 0.9 and jaccard(h[0], h[2]) < 0.5
    assert estimate_jaccard(sig[0], sig[1]) > 0.85 and estimate_jaccard(sig[0], sig[2]) < 0.5


def test_long_single_line_linear_time():
    rng = np.random.default_rng(0)
    a, b = permutations(128)

    def best(n_words):
        text = " ".join(rng.choice(FILLER, n_words))
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            minhash_signatures([shingle_hashes(text), shingle_hashes(text, 5, "char")], a, b)
            times.append(time.perf_counter() - t0)
        return min(times)

    small, big = best(6_250), best(100_000)
    assert big < 2.0
    assert big / small < 120  # 16x the words: linear ~16 idle, quadratic >= 256; room for a busy CI machine


@pytest.mark.parametrize("call, err", [
    (lambda: shingle_hashes("a b", n=0), ValueError),
    (lambda: shingle_hashes("a b", unit="token"), ValueError),
    (lambda: shingle_hashes(b"a b"), TypeError),
    (lambda: shingle_hashes("a\ud800b", unit="char"), ValueError),
    (lambda: permutations(0), ValueError),
    (lambda: permutations(8, seed=1.5), TypeError),
    (lambda: minhash_signatures([], *permutations(4)), ValueError),
    (lambda: minhash_signatures(np.zeros((2, 3), dtype=np.uint64), *permutations(4)), TypeError),
    (lambda: minhash_signatures([np.array([2**40], dtype=np.uint64)], *permutations(4)), ValueError),
    (lambda: minhash_signatures([np.array([-1])], *permutations(4)), ValueError),
    (lambda: minhash_signatures([np.array([1.5])], *permutations(4)), ValueError),
    (lambda: minhash_signatures([np.array([1])], np.array([0, 1]), np.array([0, 1])), ValueError),
    (lambda: minhash_signatures([np.array([1])], np.array([2**31 - 1]), np.array([0])), ValueError),
    (lambda: minhash_signatures([np.array([1])], np.array([1, 2]), np.array([1])), ValueError),
    (lambda: estimate_jaccard(np.zeros(3), np.zeros(4)), ValueError),
])
def test_bad_input(call, err):
    with pytest.raises(err):
        call()
