"""Special tokens and token-id helpers shared by every tokenizer (Survey §4.1.2, tokenization).

Special tokens such as "<|endoftext|>" are strings that must always become exactly one id, however the
ordinary text around them is split: a document boundary must never be spelled out of smaller pieces.
Every tokenizer in minillm (`CharTokenizer`, `BPETokenizer`, the readable `ByteBPE`) therefore cuts the
text at special tokens first, with the helpers below, and only then tokenizes the pieces in between.
The remaining helpers check the inputs all tokenizers share (vocabulary sizes, id arrays, valid Unicode)
and compute the fingerprint (`sha256_of`) that a tokenizer's `hash` is made from.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

EOS_TOKEN = "<|endoftext|>"  # the end of a document: prepare, packing and generation all use this one string


def sha256_of(payload: Any) -> str:
    """Stable hex digest of a JSON-serialisable payload (sorted keys, no whitespace, UTF-8)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def check_special_tokens(special_tokens: Iterable[str]) -> tuple[str, ...]:
    """Validate special tokens: non-empty, distinct strings. Returns them as a tuple, order kept."""
    if isinstance(special_tokens, str):  # a lone string would otherwise be read as a list of characters
        raise ValueError(f"special_tokens must be a sequence of strings, got the string {special_tokens!r}; "
                         f"write ({special_tokens!r},)")
    specials = tuple(special_tokens)
    for s in specials:
        if not isinstance(s, str) or not s:
            raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
    if len(set(specials)) != len(specials):
        raise ValueError(f"special tokens must be distinct, got {specials}")
    return specials


def special_token_pattern(special_tokens: Sequence[str]) -> re.Pattern[str] | None:
    """A regex that finds special tokens in text, or None when there are none.

    Alternatives are tried left to right, so sorting longest-first makes overlapping specials
    (say "<|a|>" and "<|a|><|a|>") resolve to the longest one at each position.
    """
    if not special_tokens:
        return None
    alternatives = sorted(special_tokens, key=len, reverse=True)
    return re.compile("|".join(re.escape(s) for s in alternatives))


def split_on_special_tokens(text: str, pattern: re.Pattern[str] | None) -> Iterator[tuple[str, bool]]:
    """Yield (piece, is_special) in order; empty ordinary pieces are skipped."""
    if pattern is None:
        if text:
            yield text, False
        return
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            yield text[pos : m.start()], False
        yield m.group(), True
        pos = m.end()
    if pos < len(text):
        yield text[pos:], False


def check_vocab_size(vocab_size: int, n_special: int) -> None:
    """Byte-level BPE needs room for the 256 byte tokens and every special token."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 256 + n_special:
        raise ValueError(f"vocab_size must be an int >= {256 + n_special} "
                         f"(256 bytes + {n_special} special tokens), got {vocab_size!r}")


def as_id_array(ids: Any, vocab_size: int) -> np.ndarray:
    """Token ids (list, array or CPU tensor) as a 1-D int64 array, checked against [0, vocab_size)."""
    arr = np.asarray(ids if hasattr(ids, "__array__") else list(ids)).reshape(-1)
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"token ids must be integers, got dtype {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= vocab_size))
    if bad.size:
        raise ValueError(f"token id {int(arr[bad[0]])} is outside the vocabulary [0, {vocab_size})")
    return arr.astype(np.int64, copy=False)


def check_no_surrogates(text: str, what: str = "text") -> None:
    """Python strings may hold lone surrogates (e.g. from a bad decode); they have no UTF-8 form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} contains an unpaired surrogate U+{ord(text[e.start]):04X} at index {e.start}, which is not "
            "valid Unicode; read the source with encoding='utf-8', errors='strict' to find the bad bytes"
        ) from None
