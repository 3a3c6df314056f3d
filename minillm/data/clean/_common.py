"""Shared pieces of the cleaning stages (Survey §4.1.2, "Quality filtering"): input checks, code points,
Han detection and the FilterResult every filter returns.

Every public function of `minillm.data.clean` validates its arguments here, so a wrong call fails at once
with one message naming the argument, what was wrong and what to do, instead of deep inside numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# CJK Unified Ideographs: Extension A, the main block, Compatibility Ideographs, Extensions B..G.
HAN_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F))
# ASCII whitespace plus the Unicode spaces a web page carries (NBSP, ideographic space, line separators).
SPACE_CODEPOINTS = np.array([0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                             0x2028, 0x2029, 0x202F, 0x205F, 0x3000], dtype=np.uint32)


def _bytes_hint(value: Any) -> str:
    return "; decode bytes first with .decode('utf-8')" if isinstance(value, (bytes, bytearray)) else ""


def check_text(text: Any, name: str = "text") -> str:
    """One str document (TypeError otherwise)."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be str, got {type(text).__name__}{_bytes_hint(text)}")
    return text


def check_texts(texts: Any, name: str = "texts") -> list[str]:
    """A non-empty list of str documents (any iterable of str is accepted and copied into a list)."""
    if isinstance(texts, (str, bytes, bytearray)):
        raise TypeError(f"{name} must be a list of str documents, not a single {type(texts).__name__}; "
                        f"wrap one document in a list: [{name}]")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"{name} must be a list of str documents, got {type(texts).__name__}") from None
    if not texts:
        raise ValueError(f"{name} is empty: pass at least one document")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] is {type(t).__name__}, not str{_bytes_hint(t)}")
    return texts


def check_int(value: Any, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """An int (not a bool) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        hi = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{name} must be >= {minimum}{hi}, got {value}")
    return int(value)


def check_float(value: Any, name: str, lo: float = -math.inf, hi: float = math.inf,
                lo_open: bool = False) -> float:
    """A finite real number in [lo, hi] (or (lo, hi] with lo_open)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo):
        raise ValueError(f"{name} must be a finite number in {'(' if lo_open else '['}{lo}, {hi}], got {value!r}")
    return v


def codepoints(text: str) -> np.ndarray:
    """The Unicode code points of `text`, shape (L,), uint32, without a Python loop over characters.

    "surrogatepass" lets a lone surrogate (invalid but possible in a Python str) through as its own value
    instead of raising deep inside the encoder.
    """
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def is_han(cp: np.ndarray) -> np.ndarray:
    """(L,) bool: which code points are Chinese characters (CJK ideographs)."""
    out = np.zeros(cp.shape, dtype=bool)
    for lo, hi in HAN_RANGES:
        out |= (cp >= lo) & (cp <= hi)
    return out


def is_space(cp: np.ndarray) -> np.ndarray:
    """(L,) bool: which code points are whitespace."""
    return np.isin(cp, SPACE_CODEPOINTS)


@dataclass(frozen=True)
class FilterResult:
    """What a filter decided for each document.

    keep[i] is True when document i passes; reasons[i] names the rules it failed (empty when kept);
    scores, when the filter computes one number per document (keyword hits, P(clean), perplexity), holds it.
    """

    keep: np.ndarray                      # (D,) bool
    reasons: list[list[str]]              # D lists of failed rule names
    scores: np.ndarray | None = None      # (D,) float64, or None

    def __post_init__(self):
        keep = np.asarray(self.keep)
        if keep.dtype != bool or keep.ndim != 1:
            raise ValueError(f"keep must be a 1-D bool array, got dtype {keep.dtype} and shape {keep.shape}")
        if len(self.reasons) != len(keep):
            raise ValueError(f"need one reasons list per document: {len(keep)} documents, "
                             f"{len(self.reasons)} reasons")
        if self.scores is not None and np.shape(self.scores) != keep.shape:
            raise ValueError(f"scores must have shape {keep.shape}, got {np.shape(self.scores)}")
        object.__setattr__(self, "keep", keep)

    @property
    def drop(self) -> np.ndarray:
        """(D,) bool: the documents the filter removes (predicted junk)."""
        return ~self.keep

    @property
    def keep_rate(self) -> float:
        return float(self.keep.mean()) if len(self.keep) else math.nan
