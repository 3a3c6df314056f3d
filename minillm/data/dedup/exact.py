"""Exact de-duplication at document, line and sentence level (Survey §4.1.2, "De-duplication").

The survey lists de-duplication at three granularities: sentence, document and dataset. This module does
the exact (hash equality) kinds:

* document level: `exact_dedup` keeps the first occurrence of each document, comparing a hash of its
  normalized text (NFKC, case-folded, whitespace collapsed), so copies that differ only in case, spacing
  or Unicode form count as copies;
* line level across documents: `line_dedup` drops lines that occur in many different documents. In a web
  crawl such lines are boilerplate (navigation, cookie banners, "all rights reserved") that survived
  extraction; a model trained on them learns to repeat them;
* sentence level inside one document: `repeated_lines_within` drops repeated lines and sentences, the
  low-quality repetition that the survey notes can make training unstable and outputs repetitive.

Near duplicates (a few words edited) need MinHash and LSH: see `minhash.py` and `lsh.py`.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from minillm.data.dedup._checks import check_int, check_text, check_texts, encode_utf8


@dataclass(frozen=True)
class DedupResult:
    """Which documents to keep, and which earlier document each removed one copies."""

    keep: np.ndarray          # (D,) bool: True for the first occurrence of each distinct document
    duplicate_of: np.ndarray  # (D,) int64: index of the kept copy, -1 where keep is True

    @property
    def n_removed(self) -> int:
        return int((~self.keep).sum())


def normalize_for_hash(text: str) -> str:
    """Canonical form for equality tests: NFKC, case-folded, runs of whitespace collapsed to one space.

    NFKC folds compatibility characters (full-width letters, ligatures, non-breaking spaces) onto their
    plain forms; casefold() is the Unicode-aware lower(); collapsing whitespace ignores layout.
    """
    check_text(text)
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _digest(text: str, i: int) -> bytes:
    # 128-bit blake2b: a collision between two different documents is astronomically unlikely (~D^2/2^129).
    return hashlib.blake2b(encode_utf8(text, f"texts[{i}]"), digest_size=16).digest()


def exact_dedup(texts: Sequence[str], normalize: bool = True) -> DedupResult:
    """Keep the first occurrence of each document; the rest point to it in `duplicate_of`.

    normalize=True compares `normalize_for_hash(text)`, so case, whitespace and Unicode-form variants are
    duplicates; normalize=False compares the exact UTF-8 bytes. Cost: one hash per document.
    """
    texts = check_texts(texts)
    first: dict[bytes, int] = {}
    duplicate_of = np.full(len(texts), -1, dtype=np.int64)  # (D,)
    for i, t in enumerate(texts):
        key = _digest(normalize_for_hash(t) if normalize else t, i)
        j = first.setdefault(key, i)
        if j != i:
            duplicate_of[i] = j
    return DedupResult(keep=duplicate_of < 0, duplicate_of=duplicate_of)


def line_dedup(texts: Sequence[str], min_docs: int = 3) -> tuple[list[str], np.ndarray]:
    """Drop every line that occurs in at least `min_docs` different documents (crawl boilerplate).

    Lines are split on "\\n" and compared after `normalize_for_hash`; blank lines are never counted or
    dropped. A line repeated inside one document counts once for that document (repetition inside a
    document is `repeated_lines_within`'s job). Returns the new texts (remaining lines joined by "\\n")
    and the number of lines removed from each document, shape (D,) int64.
    """
    texts = check_texts(texts)
    check_int(min_docs, "min_docs", minimum=2)  # 1 would delete every line of every document
    lines = [t.split("\n") for t in texts]
    keys = [[normalize_for_hash(line) for line in doc] for doc in lines]
    # Document frequency of each non-blank line: how many documents contain it at least once.
    df = Counter(k for doc in keys for k in set(doc) if k)
    common = {k for k, c in df.items() if c >= min_docs}
    new_texts, removed = [], np.zeros(len(texts), dtype=np.int64)  # removed: (D,)
    for i, (doc, ks) in enumerate(zip(lines, keys)):
        kept = [line for line, k in zip(doc, ks) if k not in common]
        removed[i] = len(doc) - len(kept)
        new_texts.append("\n".join(kept))
    return new_texts, removed


# A sentence: text up to and including a run of terminators (Latin .!? or CJK 。！？), plus the whitespace
# after it; the last piece of a line may have no terminator. Abbreviations and decimals ("3.14") are split
# too: harmless here, since a piece is only dropped when an identical piece appeared earlier.
_SENTENCE = re.compile(r"[^.!?。！？]*(?:[.!?。！？]+|$)\s*")


def repeated_lines_within(text: str) -> str:
    """Drop repeated lines and sentences inside one document, keeping each first occurrence.

    Each line is cut into sentences; a sentence whose normalized form (`normalize_for_hash`) was already
    seen earlier in the document is dropped, and a line left with no sentence is dropped whole. Blank
    lines are kept. Works for English and Chinese punctuation.
    """
    check_text(text)
    seen: set[str] = set()
    out_lines = []
    for line in text.split("\n"):
        if not line.strip():
            out_lines.append(line)
            continue
        kept, dropped = [], False
        for m in _SENTENCE.finditer(line):
            piece = m.group()
            key = normalize_for_hash(piece)
            if not key:
                kept.append(piece)  # leading whitespace of the line
            elif key in seen:
                dropped = True
            else:
                seen.add(key)
                kept.append(piece)
        new_line = "".join(kept)
        if dropped:
            new_line = new_line.rstrip()  # the separator before a dropped last sentence
        if new_line.strip():
            out_lines.append(new_line)
    return "\n".join(out_lines)
