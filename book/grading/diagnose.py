"""Diagnosing wrong answers in lab checks: when a student's output differs from the reference, run the usual
mistakes on the same inputs and, if the output equals one of them, name that mistake and how to fix it.

Used by labs whose exercises have well-known wrong answers (lab 02: metrics, prompts, the scorer).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from book.grading.core import Case, Check, _Mismatch, compare_numbers

Mistake = tuple[Callable[..., Any], str]  # (a function computing the mistaken output from the case's args, advice)


def _as_array(x: Any) -> np.ndarray:
    """float64 array of numbers, tuples/lists of them, numpy arrays or torch tensors (nested one level)."""
    if torch.is_tensor(x):
        return x.detach().cpu().numpy().astype(np.float64)
    if isinstance(x, (tuple, list)) and any(torch.is_tensor(v) for v in x):
        return np.asarray([_as_array(v) for v in x], dtype=np.float64)
    return np.asarray(x, dtype=np.float64)


def _same(got: Any, wrong: Any) -> bool:
    if isinstance(got, str) or isinstance(wrong, str):
        return got == wrong
    try:
        a, b = _as_array(got), _as_array(wrong)
    except (TypeError, ValueError):
        return False
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True))


def diagnosing(mistakes: Sequence[Mistake], compare: Callable = compare_numbers, *, runner: Callable | None = None,
               same: Callable[[Any, Any], bool] | None = None) -> Callable:
    """A compare function: `compare`, and on a mismatch, name the first mistake whose output the student matched.

    The case's arguments are rebuilt with `case.make()` (cases build fresh, seeded inputs), so the mistakes run on
    exactly what the student's function saw; with `runner`, each mistake runs through it as the student's function
    did (runner(fn, *args)). `same` decides "equal outputs" (default: numbers/arrays/strings, `_same`)."""
    same = _same if same is None else same

    def compare_and_diagnose(got, expected, spec: Check, case: Case) -> float:
        try:
            return compare(got, expected, spec, case)
        except _Mismatch as err:
            for wrong, advice in mistakes:
                try:
                    mistaken = runner(wrong, *case.make()) if runner else wrong(*case.make())
                except Exception:  # a mistake that cannot run on these inputs is simply not this one
                    continue
                if same(got, mistaken) and not same(expected, mistaken):
                    raise _Mismatch(f"{err}; your output equals what this common mistake gives", advice) from None
            raise

    return compare_and_diagnose


def compare_strings(got: Any, expected: str, spec: Check, case: Case) -> float:
    """Exact string equality; on a mismatch, show where the two strings first differ."""
    if not isinstance(got, str):
        raise _Mismatch(f"expected a str, got {type(got).__name__}", "Return the prompt as one string.")
    if got != expected:
        i = next((k for k, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        raise _Mismatch(f"the prompt differs from the reference at character {i}: got {got!r}, expected {expected!r}",
                        case.hint)
    return 0.0
