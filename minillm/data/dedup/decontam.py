"""Dataset-level de-duplication: remove training documents that overlap an evaluation set (Survey §4.1.2).

If a benchmark's test passages are in the pre-training data, the benchmark measures memorization, not
ability. GPT-3 removed every training document sharing a 13-gram with any benchmark example (Brown et al.,
2020, appendix C); later models use similar n-gram matching. Here the eval set's n-grams are hashed once
into a sorted array of 64-bit keys, then all training n-grams are looked up at once with np.isin.

Words are whitespace-split (n ~ 13); Chinese and other text without spaces uses unit="char" with n ~ 20
(about as many characters as 13 English words carry meaning). Texts are normalized first (NFKC,
case-folded, whitespace collapsed), so a copy with different case or spacing still matches. An eval text
shorter than n units has no n-gram and cannot be detected: `DecontamResult.eval_too_short` counts them,
so lower n if it is not 0.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from minillm.data.dedup._checks import check_int, check_texts, check_unit
from minillm.data.dedup.exact import normalize_for_hash
from minillm.data.dedup.minhash import shingle_spans


@dataclass(frozen=True)
class DecontamResult:
    """Which training documents survive decontamination, and how much of each matched the eval set."""

    keep: np.ndarray     # (D,) bool: False for documents sharing >= min_matches n-grams with the eval set
    matched: np.ndarray  # (D,) int64: distinct n-grams of each training document found in the eval set
    eval_ngrams: int     # distinct n-grams in the eval set
    eval_too_short: int  # eval texts with fewer than n units (undetectable at this n)

    @property
    def n_removed(self) -> int:
        return int((~self.keep).sum())


def ngram_keys(text: str, n: int = 13, unit: str = "word") -> np.ndarray:
    """Sorted distinct 64-bit keys (blake2b of the UTF-8 bytes) of the full n-grams of text, shape (K,).

    A text with fewer than n units has no full n-gram and gives an empty array. 64 bits, not the 32 of
    MinHash's crc32: here one collision is a false contamination hit, and an eval set holds millions of
    n-grams (expected false hits per document ~ #train n-grams x #eval n-grams / 2^64, negligible).
    """
    buf, starts, ends = shingle_spans(text, n, unit, pad_short=False)
    if not len(starts):
        return np.empty(0, dtype=np.uint64)
    view, blake = memoryview(buf), hashlib.blake2b
    digests = b"".join(blake(view[s:e], digest_size=8).digest() for s, e in zip(starts.tolist(), ends.tolist()))
    return np.unique(np.frombuffer(digests, dtype="<u8").astype(np.uint64))  # (K,)


def _keys(texts: list[str], n: int, unit: str, normalize: bool) -> list[np.ndarray]:
    return [ngram_keys(normalize_for_hash(t) if normalize else t, n, unit) for t in texts]


def decontaminate(train_texts: Sequence[str], eval_texts: Sequence[str], n: int = 13, unit: str = "word",
                  normalize: bool = True, min_matches: int = 1) -> DecontamResult:
    """Flag training documents that share at least `min_matches` distinct n-grams with any eval text."""
    train_texts = check_texts(train_texts, "train_texts")
    eval_texts = check_texts(eval_texts, "eval_texts")
    check_int(n, "n")
    check_unit(unit)
    check_int(min_matches, "min_matches")
    eval_keys = _keys(eval_texts, n, unit, normalize)
    eval_set = np.unique(np.concatenate(eval_keys))                                     # (E,) sorted
    train_keys = _keys(train_texts, n, unit, normalize)
    doc_of = np.repeat(np.arange(len(train_keys)), [len(k) for k in train_keys])       # (T,) document of each key
    hit = np.isin(np.concatenate(train_keys), eval_set, assume_unique=False)            # (T,) one sorted lookup
    matched = np.bincount(doc_of[hit], minlength=len(train_texts)).astype(np.int64)     # (D,)
    return DecontamResult(keep=matched < min_matches, matched=matched, eval_ngrams=int(eval_set.size),
                          eval_too_short=sum(len(k) == 0 for k in eval_keys))


def ngram_overlap(train_texts: Sequence[str], eval_texts: Sequence[str], n: int = 13, unit: str = "word",
                  normalize: bool = True) -> np.ndarray:
    """(D,) bool: True for training documents sharing any n-gram with the eval set (GPT-3's 13-gram test)."""
    return ~decontaminate(train_texts, eval_texts, n, unit, normalize).keep
