"""Language identification: which documents are in the languages we want (Survey §4.1.2, "Quality
filtering"; pipelines keep pages by language before any other filter, e.g. CCNet and the fastText langid
model behind many corpora, so that English rules are not applied to Chinese text and vice versa).

Two tools, from cheapest to most general:

* script heuristics: `script_of(text)` is the writing system of the majority of a document's letters
  (Latin, Han, Cyrillic, Greek, Arabic, Devanagari, other), computed from Unicode code point ranges with
  numpy over the whole document at once; `script_language` maps Han to "zh", Latin to "en" and anything
  else to "other". Scripts separate Chinese from English perfectly but cannot tell English from French;
* `NgramLanguageID`: a multinomial naive-Bayes classifier over character 1..3-grams, the classic method
  (Cavnar & Trenkle 1994; Dunning 1994) that fastText's langid refines. Training counts every n-gram per
  language; a document's score for language c is log P(c) + sum over its n-grams g of count(g) log P(g|c),
  with add-k smoothing so an unseen n-gram costs a finite amount.

N-grams are packed into uint64 keys (each code point + 1 in 21 bits, three of them fit in 63 bits), so a
document's n-grams are counted with np.unique and looked up with np.searchsorted: no Python loop over
characters.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from minillm.data.clean._common import HAN_RANGES, check_float, check_text, check_texts, codepoints

SCRIPTS = ("latin", "han", "cyrillic", "greek", "arabic", "devanagari", "other")
SCRIPT_LANGUAGE = {"latin": "en", "han": "zh"}   # every other script -> "other"
# (first, last code point, script) of the letter ranges we count. "other" collects letters of scripts we
# do not name (Hebrew, Thai, Hangul, kana, ...). Digits, punctuation, symbols, emoji and combining marks
# are in no range: they are not letters and do not vote.
_RANGES = [(0x41, 0x5A, "latin"), (0x61, 0x7A, "latin"), (0xAA, 0xAA, "latin"), (0xBA, 0xBA, "latin"),
           (0xC0, 0xD6, "latin"), (0xD8, 0xF6, "latin"), (0xF8, 0x24F, "latin"), (0x1E00, 0x1EFF, "latin"),
           (0x2C60, 0x2C7F, "latin"), (0xA720, 0xA7FF, "latin"), (0xFF21, 0xFF3A, "latin"),
           (0xFF41, 0xFF5A, "latin"),
           (0x370, 0x3FF, "greek"), (0x1F00, 0x1FFF, "greek"),
           (0x400, 0x52F, "cyrillic"), (0x1C80, 0x1C8F, "cyrillic"), (0x2DE0, 0x2DFF, "cyrillic"),
           (0xA640, 0xA69F, "cyrillic"),
           (0x530, 0x58F, "other"), (0x590, 0x5FF, "other"), (0x700, 0x74F, "other"), (0x780, 0x7BF, "other"),
           (0x600, 0x6FF, "arabic"), (0x750, 0x77F, "arabic"), (0x8A0, 0x8FF, "arabic"),
           (0xFB50, 0xFDFF, "arabic"), (0xFE70, 0xFEFF, "arabic"),
           (0x900, 0x97F, "devanagari"), (0xA8E0, 0xA8FF, "devanagari"),
           (0x980, 0xDFF, "other"), (0xE00, 0xEFF, "other"), (0xF00, 0xFFF, "other"), (0x1000, 0x109F, "other"),
           (0x10A0, 0x10FF, "other"), (0x1100, 0x11FF, "other"), (0x1200, 0x137F, "other"),
           (0x13A0, 0x13FF, "other"), (0x1400, 0x167F, "other"), (0x1780, 0x17FF, "other"),
           (0x1800, 0x18AF, "other"), (0x3040, 0x30FF, "other"), (0x3130, 0x318F, "other"),
           (0xAC00, 0xD7AF, "other")] + [(lo, hi, "han") for lo, hi in HAN_RANGES]
_RANGES.sort()
_STARTS = np.array([r[0] for r in _RANGES], dtype=np.uint32)
_ENDS = np.array([r[1] for r in _RANGES], dtype=np.uint32)
_LABELS = np.array([SCRIPTS.index(r[2]) for r in _RANGES], dtype=np.int64)

_BITS = 21                      # code points are < 0x110000 <= 2**21; we store cp + 1 so 0 means "none"
MAX_ORDER = 64 // _BITS         # 3 code points per uint64 key


def script_counts(text: str) -> np.ndarray:
    """(len(SCRIPTS),) int64: how many letters of `text` belong to each script of SCRIPTS."""
    cp = codepoints(check_text(text))
    idx = np.searchsorted(_STARTS, cp, side="right") - 1          # (L,) last range starting at or before cp
    inside = (idx >= 0) & (cp <= _ENDS[np.maximum(idx, 0)])
    return np.bincount(_LABELS[idx[inside]], minlength=len(SCRIPTS)).astype(np.int64)


def script_of(text: str) -> str:
    """The script of the majority of the letters of `text` (a name in SCRIPTS).

    Ties go to the script listed first in SCRIPTS; a text with no letters at all (empty, digits, emoji)
    is "other".
    """
    counts = script_counts(text)
    return SCRIPTS[int(np.argmax(counts))] if counts.sum() else "other"


def script_language(text: str) -> str:
    """"zh" for Han-script text, "en" for Latin-script text, "other" for the rest (a script-level guess)."""
    return SCRIPT_LANGUAGE.get(script_of(text), "other")


def ngram_keys(text: str, orders: Sequence[int] = (1, 2, 3)) -> np.ndarray:
    """Every character n-gram of " " + text + " " for each n in `orders`, packed into uint64 keys.

    The spaces mark the word-like boundaries of the document. Keys of different orders never collide:
    each code point is stored + 1, so a key's highest used 21-bit slot tells its order.
    """
    cp = codepoints(" " + text + " ").astype(np.uint64) + np.uint64(1)     # (L,)
    parts = []
    for n in orders:
        if len(cp) < n:
            continue
        key = np.zeros(len(cp) - n + 1, dtype=np.uint64)
        for j in range(n):                                               # n vectorized passes
            key = (key << np.uint64(_BITS)) | cp[j:len(cp) - n + 1 + j]
        parts.append(key)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


class NgramLanguageID:
    """Naive-Bayes language identifier over character n-grams (orders 1..3 by default).

    >>> lid = NgramLanguageID().fit(["the cat sat", "猫坐着"], ["en", "zh"])
    >>> lid.predict(["a cat"])
    ['en']
    """

    def __init__(self, orders: Sequence[int] = (1, 2, 3), k: float = 0.5):
        orders = tuple(orders)
        if not orders or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_ORDER
                             for n in orders) or len(set(orders)) != len(orders):
            raise ValueError(f"orders must be distinct ints in 1..{MAX_ORDER}, got {orders!r}")
        self.orders = orders
        self.k = check_float(k, "k", 0.0, 1e6, lo_open=True)   # add-k smoothing; k > 0 keeps logs finite
        self.classes_: list[str] = []
        self.vocab_: np.ndarray | None = None        # (V,) sorted uint64 n-gram keys seen in training
        self.log_theta_: np.ndarray | None = None    # (V, C) log P(n-gram | class)
        self.log_unseen_: np.ndarray | None = None   # (C,) log P(an unseen n-gram | class)
        self.log_prior_: np.ndarray | None = None    # (C,) log P(class)

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "NgramLanguageID":
        """Count n-grams per label. Needs at least two distinct labels and one label per text."""
        texts = check_texts(texts)
        try:
            labels = None if isinstance(labels, str) else list(labels)
        except TypeError:
            labels = None
        if labels is None or len(labels) != len(texts):
            raise ValueError(f"labels must be a list with one label per text ({len(texts)} texts)")
        if any(not isinstance(lab, str) for lab in labels):
            raise TypeError("labels must be str language names such as 'en'")
        self.classes_ = sorted(set(labels))
        if len(self.classes_) < 2:
            raise ValueError(f"need at least two languages to tell apart, got only {self.classes_}")
        per_class = []
        for c in self.classes_:
            keys = np.concatenate([ngram_keys(t, self.orders) for t, lab in zip(texts, labels) if lab == c])
            per_class.append(np.unique(keys, return_counts=True))
        vocab = np.unique(np.concatenate([u for u, _ in per_class]))
        counts = np.zeros((len(vocab), len(self.classes_)), dtype=np.float64)      # (V, C)
        for j, (u, n) in enumerate(per_class):
            counts[np.searchsorted(vocab, u), j] = n
        denom = counts.sum(axis=0) + self.k * (len(vocab) + 1)                    # (C,) +1: unseen bucket
        self.vocab_ = vocab
        self.log_theta_ = np.log(counts + self.k) - np.log(denom)
        self.log_unseen_ = np.log(self.k) - np.log(denom)
        n_docs = np.array([labels.count(c) for c in self.classes_], dtype=np.float64)
        self.log_prior_ = np.log(n_docs / n_docs.sum())
        return self

    def _check_fitted(self) -> None:
        if self.vocab_ is None:
            raise ValueError("this NgramLanguageID is not fitted yet: call fit(texts, labels) first")

    def log_scores(self, texts: Sequence[str]) -> np.ndarray:
        """(D, C) log P(class) + log P(text | class), up to a per-document constant; columns = classes_."""
        self._check_fitted()
        texts = check_texts(texts)
        out = np.empty((len(texts), len(self.classes_)))
        for i, t in enumerate(texts):
            keys, counts = np.unique(ngram_keys(t, self.orders), return_counts=True)
            pos = np.minimum(np.searchsorted(self.vocab_, keys), len(self.vocab_) - 1)
            known = self.vocab_[pos] == keys
            out[i] = (counts[known] @ self.log_theta_[pos[known]]
                      + counts[~known].sum() * self.log_unseen_ + self.log_prior_)
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(D, C) posterior probabilities of each language (columns in the order of classes_)."""
        s = self.log_scores(texts)
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable language of each text."""
        return [self.classes_[j] for j in np.argmax(self.log_scores(texts), axis=1)]
