"""Input checks shared by the de-duplication modules (Survey §4.1.2).

Every public function of `minillm.data.dedup` validates its arguments here, so a wrong call fails at once
with one message that names the argument, what was wrong and what to do, instead of deep inside numpy.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from minillm.data.clean._common import check_text, check_texts  # noqa: F401  (re-exported: one definition)

UNITS = ("word", "char")


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """An int (Python or numpy, not a bool) >= minimum, returned as a Python int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_unit(unit: Any) -> str:
    """'word' (whitespace-split words) or 'char' (Unicode code points)."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}; use 'char' for Chinese and other "
                         "languages written without spaces")
    return unit


def check_threshold(threshold: Any) -> float:
    """A Jaccard threshold strictly between 0 and 1."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a float, got {type(threshold).__name__}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must satisfy 0 < threshold < 1 (a Jaccard similarity), got {threshold}")
    return float(threshold)


def encode_utf8(text: str, name: str = "text") -> bytes:
    """UTF-8 bytes of text; a lone surrogate (not encodable) is an error, not silently replaced."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name} is not valid Unicode ({e.reason} at position {e.start}); "
                         "clean it with text.encode('utf-8', 'replace').decode('utf-8')") from None
