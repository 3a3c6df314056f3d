"""Fitting scaling laws to your own runs: Hoffmann et al.'s three approaches (Survey §2.1).

Chinchilla estimated the compute-optimal model size three ways, and each is a different lesson in
measurement:

1. **Training-curve envelope** (`fit_envelope`): train several sizes, each for long, and record loss along
   the way. At every FLOP count, the model with the lowest loss *so far* is the best use of that compute;
   the sizes on this lower envelope give N_opt(C). Fit N_opt ∝ C^a, D_opt ∝ C^b in log space.
2. **IsoFLOP profiles** (`fit_isoflop`): for each of a few fixed budgets, train several sizes that all spend
   exactly that budget. Loss against log N is a valley; a parabola through it locates N_opt(C).
3. **Parametric fit** (`fit_chinchilla`): fit L = E + A/N^α + B/D^β to all runs at once, then minimise it
   under C = 6ND in closed form (`laws.chinchilla_allocation`). Following the paper, the fit minimises a Huber loss
   (δ = 1e-3, robust to a few bad runs) between log predicted and log observed loss, with
   log L = LSE(a - α log N, b - β log D, e), A = e^a, B = e^b, E = e^e, using L-BFGS from a grid of starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

from minillm.scaling.laws import ChinchillaLaw, check_positive
from minillm.scaling.table import C_KEYS, D_KEYS, LOSS_KEYS, N_KEYS, as_runs, check_loss, check_same_length

N_CHINCHILLA_PARAMS = 5  # E, A, B, alpha, beta


def fit_loglog(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares of log y = slope * log x + log coef; returns (slope, coef), i.e. y ≈ coef * x^slope."""
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(np.exp(intercept))


@dataclass(frozen=True)
class AllocationFit:
    """N_opt = n_coef * C^a and D_opt = d_coef * C^b, fitted to measured optima (approaches 1 and 2)."""

    a: float  # exponent of N_opt in C (Chinchilla: ~0.5, Kaplan: 0.73)
    b: float  # exponent of D_opt in C
    n_coef: float
    d_coef: float
    C: np.ndarray  # (K,) compute of each measured optimum, FLOPs
    n_opt: np.ndarray  # (K,) measured optimal sizes
    d_opt: np.ndarray  # (K,) measured optimal token counts
    method: str  # "envelope" (approach 1) or "isoflop" (approach 2)

    def predict(self, C):
        """(N_opt, D_opt) at compute C, extrapolated along the fitted power laws."""
        C = check_positive("C", C)
        return self.n_coef * C**self.a, self.d_coef * C**self.b


def _fit_allocation(C, n_opt, d_opt, method: str) -> AllocationFit:
    if np.unique(C).size < 2:
        raise ValueError(f"{method}: the optima span {np.unique(C).size} compute value(s); fitting N_opt ∝ C^a needs "
                         "at least 2 distinct budgets (3 or more to see whether a power law fits at all)")
    a, n_coef = fit_loglog(C, n_opt)
    b, d_coef = fit_loglog(C, d_opt)
    return AllocationFit(a, b, n_coef, d_coef, np.asarray(C), np.asarray(n_opt), np.asarray(d_opt), method)


# ---------------------------------------------------------------- approach 1: lower envelope of training curves

def _curve(i: int, c: Mapping) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(N, tokens, loss, flops) of one training curve, validated and sorted by tokens."""
    if not isinstance(c, Mapping):
        raise ValueError(f"curve {i} must be a dict with a parameter count and arrays of tokens and loss")

    def get(aliases, what):
        for k in aliases:
            if k in c:
                return c[k]
        raise ValueError(f"curve {i} has no {what}; name it one of {', '.join(aliases)} (it has {sorted(c)})")

    N = float(check_positive(f"curve {i} N", get(N_KEYS, "parameter count")))
    tokens = np.ravel(check_positive(f"curve {i} tokens", get(D_KEYS, "tokens array")))
    loss = np.ravel(check_loss(f"curve {i} loss", get(LOSS_KEYS, "loss array")))
    flops_given = next((c[k] for k in C_KEYS if k in c), None)
    flops = 6.0 * N * tokens if flops_given is None else np.ravel(check_positive(f"curve {i} flops", flops_given))
    check_same_length(tokens=tokens, loss=loss, flops=flops)
    if tokens.size < 2:
        raise ValueError(f"curve {i} has {tokens.size} point(s); a training curve needs at least 2")
    order = np.argsort(flops)
    return N, tokens[order], loss[order], flops[order]


def fit_envelope(curves: Sequence[Mapping], n_grid: int = 64) -> AllocationFit:
    """Approach 1: N_opt(C) and D_opt(C) from the lower envelope of training curves.

    `curves`: one dict per model, e.g. {"n_params": 1e7, "tokens": [...], "loss": [...]} (optional "flops",
    else 6 N tokens). Curves are interpolated (linear in log C) onto a shared log-spaced FLOP grid; at each
    grid point the model with the lowest loss wins. Grid points won by the smallest or largest model are
    dropped: there the true optimum may lie outside the sizes that were trained.
    """
    if isinstance(curves, (str, bytes, Mapping)) or not isinstance(curves, Sequence):
        raise ValueError("curves must be a list of dicts, one training curve per model size")
    if n_grid < 2:
        raise ValueError(f"n_grid={n_grid} must be at least 2")
    parsed = [_curve(i, c) for i, c in enumerate(curves)]
    if len(parsed) < 3:
        raise ValueError(f"approach 1 needs training curves of at least 3 model sizes; got {len(parsed)}")
    sizes = np.array([p[0] for p in parsed])  # (R,)
    lo = min(p[3][0] for p in parsed)
    hi = max(p[3][-1] for p in parsed)
    log_grid = np.linspace(np.log(lo), np.log(hi), n_grid)  # (G,)
    loss = np.full((len(parsed), n_grid), np.inf)  # (R, G): inf where a model never reached that compute
    tokens = np.full((len(parsed), n_grid), np.nan)
    for r, (_, tok, l, fl) in enumerate(parsed):  # loop over models, not over points
        lf = np.log(fl)
        inside = (log_grid >= lf[0]) & (log_grid <= lf[-1])
        loss[r, inside] = np.interp(log_grid[inside], lf, l)
        tokens[r, inside] = np.exp(np.interp(log_grid[inside], lf, np.log(tok)))
    winner = np.argmin(loss, axis=0)  # (G,)
    interior = (sizes[winner] > sizes.min()) & (sizes[winner] < sizes.max())
    if np.unique(sizes[winner[interior]]).size < 2:
        raise ValueError("approach 1: fewer than 2 intermediate model sizes ever lie on the loss envelope, so "
                         "N_opt(C) cannot be traced; train a wider range of sizes, or train each longer")
    g = np.flatnonzero(interior)
    C = np.exp(log_grid[g])
    return _fit_allocation(C, sizes[winner[g]], tokens[winner[g], g], "envelope")


# ---------------------------------------------------------------- approach 2: IsoFLOP profiles

def group_budgets(budget: np.ndarray, rtol: float = 0.01) -> np.ndarray:
    """Group ids for runs whose budgets agree within relative `rtol` (budgets computed as 6ND jitter a little)."""
    order = np.argsort(budget)
    log_b = np.log(budget[order])
    new_group = np.concatenate([[False], np.diff(log_b) > np.log1p(rtol)])
    ids = np.empty(budget.size, dtype=np.int64)
    ids[order] = np.cumsum(new_group)
    return ids


def _parabola_min(x: np.ndarray, y: np.ndarray, where: str) -> tuple[float, float]:
    """(x*, y*) at the vertex of the least-squares parabola through (x, y); the vertex must be a minimum
    inside the sampled x range, else the profile did not bracket the optimum."""
    c2, c1, c0 = np.polyfit(x, y, 2)
    if c2 <= 0:
        raise ValueError(f"{where}: loss vs log size is not convex (no minimum); the sizes tried do not form a valley, "
                         "add sizes on both sides of the optimum")
    xs = -c1 / (2 * c2)
    if not (x.min() <= xs <= x.max()):
        raise ValueError(f"{where}: the fitted optimum exp({xs:.2f}) lies outside the sizes tried "
                         f"[{np.exp(x.min()):.3g}, {np.exp(x.max()):.3g}]; extend the profile past it")
    return float(xs), float(c0 - c1 * c1 / (4 * c2))


def fit_isoflop(runs=None, *, N=None, D=None, L=None, C=None, loss_key: str | None = None,
                rtol: float = 0.01) -> AllocationFit:
    """Approach 2: a parabola of loss vs log N per compute budget gives N_opt(C); likewise vs log D for D_opt(C).

    Runs are grouped by their `budget` column if the table has one, else by C (budgets within `rtol` of
    each other are one profile). Each budget needs at least 3 runs, since a parabola has 3 coefficients.
    """
    t = as_runs(runs, N=N, D=D, L=L, C=C, loss_key=loss_key)
    ids = group_budgets(t.budget, rtol)
    Cs, n_opt, d_opt = [], [], []
    for g in range(ids.max() + 1):  # loop over budgets (a handful), not over runs
        m = ids == g
        c = float(np.exp(np.log(t.budget[m]).mean()))
        where = f"IsoFLOP budget {c:.3g} FLOPs"
        if m.sum() < 3:
            raise ValueError(f"{where} has {int(m.sum())} run(s); a parabola needs at least 3 sizes per budget")
        log_n, _ = _parabola_min(np.log(t.N[m]), t.L[m], where)
        log_d, _ = _parabola_min(np.log(t.D[m]), t.L[m], where + " (loss vs log tokens)")
        Cs.append(c), n_opt.append(np.exp(log_n)), d_opt.append(np.exp(log_d))
    return _fit_allocation(np.array(Cs), np.array(n_opt), np.array(d_opt), "isoflop")


# ---------------------------------------------------------------- approach 3: parametric fit

@dataclass(frozen=True)
class ChinchillaFit(ChinchillaLaw):
    """A Chinchilla law fitted to runs: adds the final objective and how many runs it was fitted on."""

    loss: float  # mean Huber loss of log-residuals at the optimum
    n_runs: int


def huber_objective(theta: np.ndarray, log_n, log_d, log_l, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean Huber(log L_pred - log L) and its gradient, for one or many parameter vectors at once.

    theta: (..., 5) = (a, b, e, alpha, beta). Returns objective (...,) and gradient (..., 5).
    """
    a, b, e, al, be = np.moveaxis(theta, -1, 0)  # each (...,)
    z = np.stack([a[..., None] - al[..., None] * log_n,  # (..., 3, R): log of each of the three loss terms
                  b[..., None] - be[..., None] * log_d,
                  np.broadcast_to(e[..., None], a.shape + log_n.shape)], axis=-2)
    r = logsumexp(z, axis=-2) - log_l  # (..., R) residual in log space
    absr = np.abs(r)
    obj = np.where(absr <= delta, 0.5 * r**2, delta * (absr - 0.5 * delta)).mean(-1)
    h = np.clip(r, -delta, delta) / r.shape[-1]  # (..., R) dHuber/dr, averaged
    w = softmax(z, axis=-2)  # (..., 3, R): d LSE / d z
    grad = np.stack([(h * w[..., 0, :]).sum(-1), (h * w[..., 1, :]).sum(-1), (h * w[..., 2, :]).sum(-1),
                     -(h * w[..., 0, :] * log_n).sum(-1), -(h * w[..., 1, :] * log_d).sum(-1)], axis=-1)
    return obj, grad


# The paper's initialisation grid for approach 3 (Hoffmann et al. 2022): 4,500 starts. Evaluating the objective
# on all of them is one vectorized call; L-BFGS then polishes only the best few (`n_polish`), which finds
# the same optimum far faster than running L-BFGS from every start.
DEFAULT_GRID = {
    "a": np.arange(0.0, 26.0, 5.0), "b": np.arange(0.0, 26.0, 5.0), "e": np.arange(-1.0, 1.01, 0.5),
    "alpha": np.arange(0.0, 2.01, 0.5), "beta": np.arange(0.0, 2.01, 0.5),
}


def fit_chinchilla(runs=None, *, N=None, D=None, L=None, loss_key: str | None = None, delta: float = 1e-3,
                   grid: Mapping[str, Sequence[float]] | None = None, n_polish: int = 8) -> ChinchillaFit:
    """Approach 3: fit L(N, D) = E + A/N^α + B/D^β to runs by Huber loss on log L (L-BFGS-B, grid of starts)."""
    t = as_runs(runs, N=N, D=D, L=L, loss_key=loss_key)
    if len(t) < N_CHINCHILLA_PARAMS:
        raise ValueError(f"approach 3 fits {N_CHINCHILLA_PARAMS} parameters (E, A, B, alpha, beta) and needs at least "
                         f"{N_CHINCHILLA_PARAMS} runs; got {len(t)}")
    if np.unique(t.N).size < 2 or np.unique(t.D).size < 2:
        raise ValueError(f"approach 3 needs at least 2 distinct model sizes and 2 distinct token counts (got "
                         f"{np.unique(t.N).size} and {np.unique(t.D).size}); otherwise A/N^α or B/D^β is not identifiable")
    if not (delta > 0):
        raise ValueError(f"delta={delta} must be positive")
    if n_polish < 1:
        raise ValueError(f"n_polish={n_polish} must be at least 1")
    grid = DEFAULT_GRID if grid is None else grid
    keys = ("a", "b", "e", "alpha", "beta")
    if set(grid) != set(keys) or any(len(grid[k]) == 0 for k in keys):
        raise ValueError(f"grid must give a non-empty list of starting values for each of {keys}; got keys {sorted(grid)}")
    log_n, log_d, log_l = np.log(t.N), np.log(t.D), np.log(t.L)
    starts = np.stack(np.meshgrid(*[np.asarray(grid[k], dtype=np.float64) for k in keys], indexing="ij"), -1).reshape(-1, 5)
    obj, _ = huber_objective(starts, log_n, log_d, log_l, delta)  # (S,)
    best_starts = starts[np.argsort(obj)[:n_polish]]
    bounds = [(None, None)] * 3 + [(0.0, None)] * 2  # exponents stay non-negative: loss must not grow with scale
    best = None
    for x0 in best_starts:
        res = minimize(huber_objective, x0, args=(log_n, log_d, log_l, delta), jac=True, method="L-BFGS-B",
                       bounds=bounds, options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12})
        if best is None or res.fun < best.fun:
            best = res
    if not np.all(np.isfinite(best.x)):
        raise RuntimeError("approach 3: the optimiser returned non-finite parameters; check the runs for outliers")
    a, b, e, alpha, beta = best.x
    return ChinchillaFit(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha),
                         beta=float(beta), loss=float(best.fun), n_runs=len(t))

