"""Predictable scaling and the uncertainty of a fit (Survey §2.1, "predictable scaling").

Survey §2.1 points out a practical use of scaling laws: the GPT-4 report fitted L(C) = E + k C^-γ (a
power law plus an irreducible loss E) to runs using up to 10,000x less compute, and predicted the final loss
of the full run before it finished. `fit_power_law` is that fit; `predict_largest` replays the experiment
on your own table: hold out the most expensive run(s), fit on the rest, and report predicted vs measured.

A fitted exponent without an error bar is a guess. `bootstrap` resamples the runs with replacement, refits
each resample, and reports percentile intervals: if the interval for α is [0.2, 0.5], the sweep cannot tell
Kaplan's allocation from Chinchilla's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from minillm.scaling.laws import check_positive
from minillm.scaling.table import as_runs, check_loss, check_same_length


@dataclass(frozen=True)
class PowerLawFit:
    """y = E + k x^-gamma (E = 0 when fitted without offset)."""

    E: float  # asymptote (irreducible loss) as x -> infinity
    k: float
    gamma: float
    rms_log_error: float  # root-mean-square of log(y_pred / y) on the fitted points
    n_points: int

    def predict(self, x):
        x = check_positive("x", x)
        return self.E + np.exp(np.log(self.k) - self.gamma * np.log(x))  # log space: k may be huge when x is


def fit_power_law(x, y, with_offset: bool = True) -> PowerLawFit:
    """Fit y = E + k x^-γ (or y = k x^-γ) by least squares on log y, so every point counts by its relative error.

    Without offset this is a straight line in log-log space. With offset, E is profiled over a grid in
    [0, min y) (for fixed E the rest is again a straight line), then all three are refined together.
    """
    x = check_positive("x", np.ravel(x))
    y = check_loss("y", np.ravel(y))
    n = check_same_length(x=x, y=y)
    need = 3 if with_offset else 2
    if n < need:
        raise ValueError(f"fitting y = {'E + ' if with_offset else ''}k x^-gamma has {need} parameters and needs at "
                         f"least {need} points; got {n}")
    if np.unique(x).size < 2:
        raise ValueError("all x values are equal; a power law needs at least 2 distinct x")
    lx = np.log(x)
    x_ref = float(np.exp(lx.mean()))  # work with x / x_ref ~ 1 so the optimiser sees well-scaled numbers
    u = lx - np.log(x_ref)  # (n,)
    ly = np.log(y)

    def line(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form least squares target ≈ c - γ u for each row of target (..., n)."""
        um = u - u.mean()
        slope = (target - target.mean(-1, keepdims=True)) @ um / (um @ um)
        return -slope, target.mean(-1) - slope * u.mean()  # (γ, c)

    if not with_offset:
        gamma, c = line(ly)
        E = 0.0
    else:
        ymin = y.min()
        E_grid = ymin * np.concatenate([[0.0], 1.0 - np.logspace(0, -4, 200)[1:]])  # (J,) from 0 up to ymin(1 - 1e-4)
        g, cc = line(np.log(y[None, :] - E_grid[:, None]))  # (J,), (J,)
        pred = np.log(E_grid[:, None] + np.exp(cc[:, None] - g[:, None] * u))  # (J, n)
        j = int(np.argmin(((pred - ly) ** 2).sum(-1)))

        def resid(p):
            return np.log(p[0] + np.exp(p[1] - p[2] * u)) - ly

        upper_E = ymin * (1 - 1e-12)
        x0 = np.array([min(E_grid[j], upper_E * (1 - 1e-9)), cc[j], g[j]])
        res = least_squares(resid, x0, bounds=([0.0, -np.inf, -np.inf], [upper_E, np.inf, np.inf]), xtol=1e-14, ftol=1e-14)
        E, c, gamma = (float(v) for v in res.x)
    k = math.exp(c + gamma * math.log(x_ref))  # back to the caller's x units
    pred = np.log(E + np.exp(c - gamma * u))
    return PowerLawFit(E=float(E), k=k, gamma=float(gamma), rms_log_error=float(np.sqrt(np.mean((pred - ly) ** 2))), n_points=n)


@dataclass(frozen=True)
class ScalingPrediction:
    """Predicted vs measured loss for held-out runs, from a power law fitted on the cheaper ones."""

    C: np.ndarray  # (H,) compute of the held-out runs
    predicted: np.ndarray  # (H,)
    measured: np.ndarray  # (H,)
    rel_error: np.ndarray  # (H,) (predicted - measured) / measured
    fit: PowerLawFit
    compute_ratio: float  # largest held-out C / largest C used for the fit


def predict_largest(runs=None, *, C=None, L=None, holdout: str | int = "largest", with_offset: bool = True,
                    loss_key: str | None = None) -> ScalingPrediction:
    """GPT-4-style predictable scaling: fit L(C) on all but the `holdout` most expensive runs, predict those.

    Pass a run table (`runs`, compute from its flops column or 6ND) or the arrays `C=` and `L=`.
    holdout: "largest" (the single most expensive run) or a positive number of most expensive runs.
    """
    if runs is not None:
        if C is not None or L is not None:
            raise ValueError("pass either a run table or the arrays C= and L=, not both")
        t = as_runs(runs, loss_key=loss_key)
        C, L = t.C, t.L
    elif C is None or L is None:
        raise ValueError("pass a run table, or both arrays C= (FLOPs) and L= (loss)")
    C, L = check_positive("C (FLOPs)", np.ravel(C)), check_loss("loss", np.ravel(L))
    check_same_length(C=C, L=L)
    if holdout == "largest":
        h = 1
    elif isinstance(holdout, int) and not isinstance(holdout, bool) and holdout >= 1:
        h = holdout
    else:
        raise ValueError(f"holdout={holdout!r} must be 'largest' or a positive number of runs to hold out")
    order = np.argsort(C, kind="stable")
    fit_idx, test_idx = order[:-h], order[-h:]
    if fit_idx.size == 0 or C[fit_idx].max() >= C[test_idx].min():
        raise ValueError(f"holding out {h} run(s) leaves no cheaper runs to fit on; the held-out runs must use "
                         "strictly more compute than every fitted run")
    fit = fit_power_law(C[fit_idx], L[fit_idx], with_offset=with_offset)
    pred = fit.predict(C[test_idx])
    measured = L[test_idx]
    return ScalingPrediction(C=C[test_idx], predicted=pred, measured=measured, rel_error=(pred - measured) / measured,
                             fit=fit, compute_ratio=float(C[test_idx].max() / C[fit_idx].max()))


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile confidence intervals of a fit's parameters over bootstrap resamples of the runs."""

    estimate: dict[str, float]  # the fit on all runs
    samples: dict[str, np.ndarray]  # name -> (n,) refits on resamples
    lower: dict[str, float]
    upper: dict[str, float]
    level: float

    def interval(self, name: str) -> tuple[float, float]:
        if name not in self.lower:
            raise ValueError(f"no bootstrap interval for {name!r}; have {sorted(self.lower)}")
        return self.lower[name], self.upper[name]


def _scalars(result: Any, params: Sequence[str] | None) -> dict[str, float]:
    """Named numbers of a fit result (a dataclass or a dict)."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        items = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    elif isinstance(result, Mapping):
        items = dict(result)
    else:
        raise ValueError(f"fit_fn returned {type(result).__name__}; it must return a dataclass or a dict of numbers")
    if params is None:  # every float field except the objective value
        return {k: float(v) for k, v in items.items() if isinstance(v, (float, np.floating)) and k != "loss"}
    missing = [p for p in params if p not in items]
    if missing:
        raise ValueError(f"fit result has no {missing}; it has {sorted(items)}")
    return {p: float(items[p]) for p in params}


def bootstrap(runs, fit_fn: Callable[[Any], Any], n: int = 200, seed: int = 0, level: float = 0.95,
              params: Sequence[str] | None = None) -> BootstrapResult:
    """Refit `fit_fn` on `n` resamples (with replacement) of `runs`; percentile intervals at `level`.

    runs: a run table (rows are resampled) or a list of items such as training curves (items are resampled).
    fit_fn: e.g. `fit_chinchilla`, `fit_isoflop`, `fit_envelope`, or your own; it must return a dataclass
    or a dict. params: which numbers to report (default: every float field except `loss`).
    """
    if not (isinstance(n, int) and n >= 2):
        raise ValueError(f"n={n!r} must be an integer >= 2 resamples (a few hundred for stable 95% intervals)")
    if not (0 < level < 1):
        raise ValueError(f"level={level!r} must be strictly between 0 and 1, e.g. 0.95")
    # A list (rows of a sweep's JSONL, or training curves) is resampled item by item and handed to fit_fn as a
    # list; any other table is validated once and resampled by rows.
    is_items = isinstance(runs, (list, tuple))
    data = list(runs) if is_items else as_runs(runs)
    size = len(data)
    if size < 2:
        raise ValueError(f"bootstrap needs at least 2 runs to resample; got {size}")
    estimate = _scalars(fit_fn(data), params)
    rng = np.random.default_rng(seed)
    samples = {k: np.empty(n) for k in estimate}
    for i in range(n):  # each replicate is a full refit; the loop is the method
        idx = rng.integers(0, size, size)
        sub = [data[j] for j in idx] if is_items else data.take(idx)  # type: ignore[union-attr]
        try:
            vals = _scalars(fit_fn(sub), list(estimate))
        except ValueError as e:
            raise RuntimeError(f"bootstrap replicate {i} (seed={seed}) failed to fit: {e}. Resampling can drop the "
                               "points a fit needs; use more runs, or a fit_fn that tolerates repeated rows") from e
        for k, v in vals.items():
            samples[k][i] = v
    q = 100 * np.array([(1 - level) / 2, (1 + level) / 2])
    lower = {k: float(np.percentile(v, q[0])) for k, v in samples.items()}
    upper = {k: float(np.percentile(v, q[1])) for k, v in samples.items()}
    return BootstrapResult(estimate, samples, lower, upper, float(level))

