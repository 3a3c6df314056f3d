"""Lab 01 checks: the Chinchilla approach-3 objective and fit, compute-optimal allocation (Survey §2.1)."""
from __future__ import annotations

from book.grading.core import Case, Check, compare_numbers, register_check

# ------------------------------------------------------------------------------------------------
# Lab 01 checks (Survey §2.1, scaling laws): the Chinchilla objective, its fit, compute-optimal allocation


def _synthetic_runs(seed: int, noise: float, law=(1.8, 400.0, 1500.0, 0.35, 0.3)) -> tuple:
    """(N, D, L), tuples of floats, of a small IsoFLOP-style sweep whose losses follow a known Chinchilla law, plus seeded
    multiplicative noise: 3 budgets x 6 sizes, sizes spread around each budget's optimum."""
    import numpy as np

    E, A, B, alpha, beta = law
    rng = np.random.default_rng(seed)
    N = np.concatenate([np.geomspace(3e6, 3e8, 6) * f for f in (1.0, 3.0, 10.0)])  # (18,)
    C = np.repeat([1e17, 1e18, 1e19], 6)  # (18,) budgets, FLOPs
    D = C / (6 * N)
    L = (E + A / N**alpha + B / D**beta) * np.exp(noise * rng.standard_normal(N.size))
    return tuple(N.tolist()), tuple(D.tolist()), tuple(L.tolist())  # plain floats: cases compare with ==


def _huber_reference(params, N, D, L):
    import numpy as np

    from minillm.scaling import huber_objective

    N, D, L = (np.asarray(x, dtype=np.float64) for x in (N, D, L))
    obj, _ = huber_objective(np.asarray(params, dtype=np.float64), np.log(N), np.log(D), np.log(L), 1e-3)
    return float(obj)


_FIT_CACHE: dict[bytes, tuple] = {}


def _fit_reference(N, D, L):
    """minillm's approach-3 fit, cached: a fit takes seconds and a check may be run many times in a lab."""
    import numpy as np

    from minillm.scaling import fit_chinchilla

    key = np.asarray([N, D, L], dtype=np.float64).tobytes()
    if key not in _FIT_CACHE:
        f = fit_chinchilla(N=N, D=D, L=L, n_polish=2)
        _FIT_CACHE[key] = (f.E, f.A, f.B, f.alpha, f.beta)
    return _FIT_CACHE[key]


def _allocation_reference(C, E, A, B, alpha, beta):
    from minillm.scaling import ChinchillaLaw, chinchilla_allocation

    return chinchilla_allocation(C, ChinchillaLaw(E=E, A=A, B=B, alpha=alpha, beta=beta))


def _params_at(law, shift: float) -> tuple:
    """(a, b, e, alpha, beta) of a law, with a, b, e moved by `shift` (0: the true parameters)."""
    import math as m

    E, A, B, alpha, beta = law
    return (m.log(A) + shift, m.log(B) - shift, m.log(E) + shift / 2, alpha, beta)


_LAW = (1.8, 400.0, 1500.0, 0.35, 0.3)


def _register_lab01() -> None:
    register_check(Check(
        name="huber_log_loss",
        shortcuts=("minillm.scaling.huber_objective",),
        summary="huber_log_loss(params=(a, b, e, alpha, beta), N, D, L): mean Huber (delta=1e-3) of log L_pred - log L",
        hint="log L_pred = logsumexp([a - alpha log N, b - beta log D, e]); r = log L_pred - log L; "
             "Huber(r) = r^2 / 2 where |r| <= delta, else delta (|r| - delta / 2); return the mean over runs.",
        reference=_huber_reference, compare=compare_numbers, atol=1e-12, rtol=1e-6,
        cases=(
            Case("the true parameters, noisy runs (residuals inside delta)",
                 lambda: (_params_at(_LAW, 0.0), *_synthetic_runs(0, 3e-4)),
                 "Small residuals are in the quadratic part: r^2 / 2, not r^2."),
            Case("parameters far off (residuals beyond delta: the linear part)",
                 lambda: (_params_at(_LAW, 0.5), *_synthetic_runs(1, 3e-4)),
                 "Large residuals count linearly: delta * (|r| - delta / 2). Residuals are in LOG space."),
            Case("a mix of both regimes", lambda: ((5.5, 7.0, 0.5, 0.33, 0.31), *_synthetic_runs(2, 2e-3))),
            Case("a large model term (a = 800: exp(a) overflows)",
                 lambda: ((800.0, 7.0, 0.5, 40.0, 0.3), *_synthetic_runs(3, 1e-3)),
                 "Do not compute exp(a) / N^alpha directly: take logsumexp of the three log-terms."),
        ),
    ))
    register_check(Check(
        name="fit_chinchilla_simple",
        shortcuts=("minillm.scaling.fit_chinchilla",),
        summary="fit_chinchilla_simple(N, D, L) -> (E, A, B, alpha, beta) minimising your huber_log_loss",
        hint="Minimise huber_log_loss over (a, b, e, alpha, beta) with scipy.optimize.minimize from the best "
             "few points of a small grid of starts; return E = exp(e), A = exp(a), B = exp(b), alpha, beta.",
        reference=_fit_reference, compare=compare_numbers, atol=1e-3, rtol=0.03,
        cases=(
            Case("18 runs exactly on a known law", lambda: _synthetic_runs(10, 0.0),
                 "Return E, A, B (not their logs e, a, b), then alpha, beta, in that order."),
            Case("the same runs with 0.1% noise", lambda: _synthetic_runs(11, 1e-3),
                 "If you land elsewhere, try more starting points or a tighter tolerance."),
            Case("a law with alpha > beta", lambda: _synthetic_runs(12, 1e-3, (2.0, 900.0, 300.0, 0.45, 0.25))),
            Case("a law with a low floor (E = 0.5)", lambda: _synthetic_runs(13, 1e-3, (0.5, 200.0, 2000.0, 0.3, 0.35))),
        ),
    ))
    register_check(Check(
        name="compute_optimal",
        shortcuts=("minillm.scaling.chinchilla_allocation",),
        summary="compute_optimal(C, E, A, B, alpha, beta) -> (N_opt, D_opt) minimising L under C = 6 N D",
        hint="N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = (C/6)^(alpha/(alpha+beta)) / G, "
             "G = (alpha A / (beta B))^(1/(alpha+beta)).",
        reference=_allocation_reference, compare=compare_numbers, atol=0.0, rtol=1e-6,
        cases=(
            Case("Chinchilla's law at Gopher's budget (5.76e23 FLOPs)", lambda: (5.76e23, 1.69, 406.4, 410.7, 0.34, 0.28)),
            Case("an array of budgets, Besiroglu et al.'s refit",
                 lambda: ((1e18, 1e20, 1e22, 1e24), 1.82, 482.01, 2085.43, 0.3478, 0.3658),
                 "C may be a list of budgets: convert it with np.asarray(C, dtype=float) and use numpy operations."),
            Case("alpha != beta (0.5 vs 0.2): which exponent goes where",
                 lambda: (1e21, 1.5, 300.0, 900.0, 0.5, 0.2),
                 "N grows with exponent beta/(alpha+beta): a larger beta (data term falls faster) favours the model."),
            Case("a tiny budget (1e15 FLOPs)", lambda: (1e15, 1.69, 406.4, 410.7, 0.34, 0.28)),
        ),
    ))


_register_lab01()
