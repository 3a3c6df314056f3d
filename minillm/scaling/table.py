"""Tables of training runs, as the scaling-law fits read them (Survey §2.1).

A scaling-law fit starts from a table with one row per finished training run: its non-embedding parameter
count N, training tokens D, training compute C and final loss L. Rows come from a sweep's JSONL (a list of
dicts), from a dict of columns, a pandas DataFrame, or plain arrays. `as_runs` turns any of these into a
validated `RunTable` so every fit checks its input the same way and fails with one clear message.

Column names are matched against short alias lists (first match wins, so a row holding both `val_loss` and
`final_loss` is fitted on `val_loss`: scaling laws are about held-out loss). Pass `loss_key=` to choose.
When no compute column is present, C = 6ND (the standard estimate for a dense transformer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from minillm.scaling.laws import check_positive

N_KEYS = ("n_params", "N", "params", "non_embedding_params")
D_KEYS = ("tokens", "D", "n_tokens")
LOSS_KEYS = ("val_loss", "loss", "final_loss", "L")
C_KEYS = ("flops", "C", "compute")
BUDGET_KEYS = ("budget", "flops_budget")  # an IsoFLOP sweep's nominal budget, when the sweep records it


@dataclass(frozen=True)
class RunTable:
    """Validated columns of a run table, all float64 arrays of the same length."""

    N: np.ndarray  # (R,) non-embedding parameters
    D: np.ndarray  # (R,) training tokens
    L: np.ndarray  # (R,) final loss, nats/token
    C: np.ndarray  # (R,) training FLOPs
    budget: np.ndarray  # (R,) nominal compute budget for IsoFLOP grouping (= C unless the table names one)

    def __len__(self) -> int:
        return int(self.N.shape[0])

    def take(self, idx) -> "RunTable":
        """The rows at integer positions `idx` (repeats allowed: bootstrap resampling uses this)."""
        idx = np.asarray(idx, dtype=np.int64)
        return RunTable(self.N[idx], self.D[idx], self.L[idx], self.C[idx], self.budget[idx])


def check_loss(name: str, x) -> np.ndarray:
    """Loss values as a float array; NaN/inf or non-positive entries are an error (a diverged run, usually)."""
    arr = np.asarray(x, dtype=np.float64)
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(f"{name} must be finite and positive; entry {i} is {float(arr.ravel()[i])!r}. "
                         "Drop diverged or unfinished runs before fitting a scaling law")
    return arr


def check_same_length(**arrays: np.ndarray) -> int:
    """The common length of 1-D arrays, or a ValueError naming the ones that differ."""
    lengths = {k: int(np.asarray(v).size) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError("mismatched lengths: " + ", ".join(f"{k} has {n}" for k, n in lengths.items())
                         + "; every run needs one value in each column")
    return next(iter(lengths.values()))


def _columns(runs) -> dict[str, np.ndarray]:
    """Column name -> values for a dict of columns, a DataFrame, or a list of row dicts."""
    if hasattr(runs, "columns") and hasattr(runs, "__getitem__"):  # pandas-like DataFrame
        return {str(c): np.asarray(runs[c]) for c in runs.columns}
    if isinstance(runs, Mapping):
        return {str(k): np.asarray(v) for k, v in runs.items()}
    if isinstance(runs, Sequence) and not isinstance(runs, (str, bytes)):
        if not runs:
            raise ValueError("the run table is empty; a scaling-law fit needs finished runs")
        if not all(isinstance(r, Mapping) for r in runs):
            raise ValueError("a run table given as a list must hold one dict per run (e.g. rows of a sweep's JSONL)")
        keys = set(runs[0])
        for i, r in enumerate(runs):
            if set(r) != keys:
                missing, extra = sorted(keys - set(r)), sorted(set(r) - keys)
                raise ValueError(f"run {i} has different keys from run 0 (missing {missing}, extra {extra}); "
                                 "every row must have the same columns")
        # numeric columns only: sweep rows also carry ragged fields (loss curves, provenance) no fit reads
        numeric = (int, float, np.number)
        return {k: np.asarray([r[k] for r in runs], dtype=float) for k in keys
                if all(isinstance(r[k], numeric) and not isinstance(r[k], bool) for r in runs)}
    raise ValueError(f"cannot read a run table from {type(runs).__name__}; pass a list of dicts, a dict of "
                     "columns, a DataFrame, or the arrays N=, D=, L=")


def _pick(cols: dict[str, np.ndarray], aliases: tuple[str, ...], what: str, key: str | None, required: bool):
    if key is not None:
        if key not in cols:
            raise ValueError(f"{what} column {key!r} not found; the table has {sorted(cols)}")
        return cols[key]
    for k in aliases:
        if k in cols:
            return cols[k]
    if required:
        raise ValueError(f"the run table has no {what} column; name it one of {', '.join(aliases)} "
                         f"(the table has {sorted(cols)})")
    return None


def as_runs(runs=None, *, N=None, D=None, L=None, C=None, loss_key: str | None = None) -> RunTable:
    """A validated `RunTable` from a table (`runs`) or from arrays (`N=`, `D=`, `L=`, optional `C=`).

    Raises ValueError for: both or neither of `runs` and arrays, a missing column, mismatched lengths,
    non-positive or non-finite N/D/C, and NaN/inf/non-positive losses.
    """
    if isinstance(runs, RunTable):
        return runs
    given = {k: v for k, v in {"N": N, "D": D, "L": L, "C": C}.items() if v is not None}
    if runs is not None and given:
        raise ValueError(f"pass either a run table or arrays, not both (got runs and {sorted(given)})")
    budget = None
    if runs is None:
        missing = [k for k in ("N", "D", "L") if k not in given]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}: pass a run table, or all of the arrays N=, D=, L=")
    else:
        cols = _columns(runs)
        N = _pick(cols, N_KEYS, "parameter-count", None, True)
        D = _pick(cols, D_KEYS, "token-count", None, True)
        L = _pick(cols, LOSS_KEYS, "loss", loss_key, True)
        C = _pick(cols, C_KEYS, "compute", None, False)
        budget = _pick(cols, BUDGET_KEYS, "budget", None, False)
    arrays = {"N": np.ravel(N), "D": np.ravel(D), "L": np.ravel(L)}
    if C is not None:
        arrays["C"] = np.ravel(C)
    if budget is not None:
        arrays["budget"] = np.ravel(budget)
    n = check_same_length(**arrays)
    if n == 0:
        raise ValueError("the run table is empty; a scaling-law fit needs finished runs")
    Nv, Dv = check_positive("N (parameters)", arrays["N"]), check_positive("D (tokens)", arrays["D"])
    Lv = check_loss("loss", arrays["L"])
    Cv = check_positive("C (FLOPs)", arrays["C"]) if C is not None else 6.0 * Nv * Dv
    Bv = check_positive("budget (FLOPs)", arrays["budget"]) if budget is not None else Cv
    return RunTable(Nv, Dv, Lv, Cv, Bv)
