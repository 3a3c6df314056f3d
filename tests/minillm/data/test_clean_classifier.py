"""Tests of minillm.data.clean.classifier: stable hashed features and the fastText-like quality classifier."""

import numpy as np
import pytest

from minillm.data.clean import QualityClassifier, hashed_features, roc_auc
from minillm.data.clean._common import codepoints
from minillm.data.clean.classifier import substring_hashes, word_spans
from minillm.data.synthetic import corpus

SPAM_WORDS = "casino cheap click here buy now free money best price discount winner deal".split()


def test_features_are_stable_across_runs_and_machines():
    # Frozen values: a change of hash would silently invalidate every saved classifier.
    assert hashed_features("ab cd", n_buckets=1000).tolist() == [665, 91, 990, 143, 134, 185, 96, 471, 663]
    assert hashed_features("中文", n_buckets=1000).tolist() == [382, 177, 984]   # 2 words, 1 bigram, no 3-gram


def test_feature_counts_and_case_folding():
    f = hashed_features("The cat sat", word_ngrams=2, char_ngrams=(3, 5))
    assert len(f) == 3 + 2 + (9 + 8 + 7)          # words, bigrams, char 3/4/5-grams of 11 characters
    assert np.array_equal(f, hashed_features("the CAT sat"))
    assert hashed_features("").tolist() == []
    assert f.min() >= 0 and f.max() < 2**18


def test_substring_hashes_depend_only_on_the_substring():
    cp = codepoints("the cat the cat 中文 the")
    starts, ends = word_spans(cp)
    assert starts.tolist() == [0, 4, 8, 12, 16, 17, 19] and ends.tolist() == [3, 7, 11, 15, 17, 18, 22]
    h = substring_hashes(cp, starts, ends)
    assert h[0] == h[2] == h[6] and h[1] == h[3] and len(set(h.tolist())) == 4
    other = codepoints("xx the")
    assert substring_hashes(other, np.array([3]), np.array([6]))[0] == h[0]


def _data(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    en = corpus("story", n, seed).docs
    zh = corpus("story_zh", n // 2, seed).docs
    pool = np.array(" ".join(en).split())

    def spam() -> str:   # keyword stuffing: half sales words, half words of real stories
        words = np.where(rng.random(40) < 0.5, rng.choice(SPAM_WORDS, 40), rng.choice(pool, 40))
        return " ".join(words.tolist())

    def garble(t: str) -> str:
        return "".join(rng.permutation(list(t)))

    clean = en + zh
    junk = [spam() for _ in range(n // 2)] + [garble(t) for t in corpus("story", n, seed + 50).docs]
    return clean + junk, np.array([1] * len(clean) + [0] * len(junk))


def test_classifier_separates_clean_text_from_spam_and_garble():
    x, y = _data(330, seed=1)                     # ~1000 training documents
    clf = QualityClassifier(seed=0).fit(x, y)  # (a few seconds on one CPU thread: speed is a benchmark's business)
    assert clf.history[-1] < clf.history[0]
    tx, ty = _data(100, seed=2)
    p = clf.predict_proba(tx)
    assert roc_auc(p, ty == 1) >= 0.99
    assert np.mean(clf.predict(tx) == ty) >= 0.95
    # Same seed, same model.
    small_x, small_y = x[:50] + x[-50:], np.r_[y[:50], y[-50:]]
    again, same = (QualityClassifier(seed=0, epochs=2).fit(small_x, small_y) for _ in range(2))
    np.testing.assert_array_equal(again.predict_proba(tx[:20]), same.predict_proba(tx[:20]))
    # Empty, emoji, combining marks and a very long single line are all scored.
    q = clf.predict_proba(["", "😀😀", "cafe\u0301", "word " * 40_000])
    assert q.shape == (4,) and np.all((q >= 0) & (q <= 1))


def test_classifier_bad_input():
    with pytest.raises(ValueError, match="not fitted"):
        QualityClassifier().predict_proba(["a"])
    with pytest.raises(ValueError, match="only one class"):
        QualityClassifier().fit(["a", "b"], [1, 1])
    with pytest.raises(ValueError, match="each 1 \\(clean\\) or 0"):
        QualityClassifier().fit(["a", "b"], [1, 2])
    with pytest.raises(ValueError, match="each 1"):
        QualityClassifier().fit(["a", "b"], [1])
    with pytest.raises(TypeError, match=r"texts\[1\] is bytes"):
        QualityClassifier().fit(["a", b"b"], [1, 0])
    with pytest.raises(ValueError, match="char_ngrams"):
        QualityClassifier(char_ngrams=(5, 3))
    with pytest.raises(ValueError, match="n_buckets"):
        QualityClassifier(n_buckets=1)
    with pytest.raises(ValueError, match="threshold"):
        QualityClassifier().fit(["a", "b"], [1, 0]).predict(["a"], threshold=2)


def test_crawl_classifier_trained_on_half_generalizes(crawl):
    texts = [p.text for p in crawl.pages]
    clean = np.array([p.quality == "clean" for p in crawl.pages])
    train = np.arange(len(texts)) % 2 == 0
    clf = QualityClassifier(seed=0).fit([t for t, m in zip(texts, train) if m], clean[train].astype(int))
    p = clf.predict_proba([t for t, m in zip(texts, train) if not m])
    assert roc_auc(p, clean[~train]) >= 0.95
