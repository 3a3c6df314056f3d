"""Tests for minillm.scaling: published laws, compute-optimal allocation, the three fitting approaches,
predictable scaling, bootstrap intervals, and the errors for bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from minillm.scaling import (
    NAMED_BUDGETS,
    PF_DAY,
    PUBLISHED_FITS,
    ChinchillaLaw,
    PublishedFit,
    allocation_at_budgets,
    as_runs,
    bootstrap,
    chinchilla_allocation,
    chinchilla_exponents,
    fit_chinchilla,
    fit_envelope,
    fit_isoflop,
    fit_power_law,
    km_allocation,
    km_loss,
    km_loss_c,
    km_loss_d,
    km_loss_n,
    predict_largest,
    published_fit,
    tokens_per_param,
)
from minillm.scaling.fits import huber_objective

HOFFMANN = PUBLISHED_FITS["hoffmann2022_approach3"].law()
BESIROGLU = PUBLISHED_FITS["besiroglu2024_refit"].law()
TRUE = ChinchillaLaw(E=1.8, A=300.0, B=900.0, alpha=0.32, beta=0.30)  # a "known" law for synthetic runs
SMALL_GRID = {"a": [0.0, 5.0, 10.0], "b": [0.0, 5.0, 10.0], "e": [0.0, 0.5], "alpha": [0.5], "beta": [0.5]}


def numeric_optimum(law: ChinchillaLaw, C: float) -> tuple[float, float]:
    """N, D minimising L(N, C/(6N)), found by a 1-D search over log N (independent of the closed form)."""
    f = lambda log_n: law.E + law.A * math.exp(-law.alpha * log_n) + law.B * (C / (6 * math.exp(log_n))) ** -law.beta
    res = minimize_scalar(f, bounds=(math.log(1e3), math.log(C / 6 / 1e3)), method="bounded",
                          options={"xatol": 1e-10})
    n = math.exp(res.x)
    return n, C / (6 * n)


def synthetic_grid(law: ChinchillaLaw, noise: float, seed: int, n_sizes: int = 8, n_tokens: int = 8):
    rng = np.random.default_rng(seed)
    N = np.repeat(np.logspace(7, 10, n_sizes), n_tokens)
    D = np.tile(np.logspace(8, 11, n_tokens), n_sizes)
    L = law.predict(N, D) * np.exp(rng.normal(0.0, noise, N.size))
    return N, D, L


# ---------------------------------------------------------------- published laws

def test_published_constants_are_the_papers():
    p = PUBLISHED_FITS
    assert dict(p["kaplan2020_N"].params) == {"alpha_N": 0.076, "N_c": 8.8e13}
    assert dict(p["kaplan2020_D"].params) == {"alpha_D": 0.095, "D_c": 5.4e13}
    assert dict(p["kaplan2020_Cmin"].params) == {"alpha_C": 0.050, "C_c_pf_days": 3.1e8}
    assert dict(p["kaplan2020_ND"].params) == {"alpha_N": 0.076, "alpha_D": 0.103, "N_c": 6.4e13, "D_c": 1.8e13}
    assert (HOFFMANN.E, HOFFMANN.A, HOFFMANN.B, HOFFMANN.alpha, HOFFMANN.beta) == (1.69, 406.4, 410.7, 0.34, 0.28)
    assert (BESIROGLU.E, BESIROGLU.A, BESIROGLU.B, BESIROGLU.alpha, BESIROGLU.beta) == (1.82, 482.01, 2085.43, 0.3478, 0.3658)
    assert all(row.source and row.name == name for name, row in p.items())
    with pytest.raises(TypeError):
        p["kaplan2020_N"].params["N_c"] = 1.0  # read-only: published constants are not edited in place


def test_km_laws_at_sample_points():
    # At N = N_c (D = D_c, C = C_c) each single-resource law is exactly 1 nat/token, by construction.
    assert km_loss_n(8.8e13) == pytest.approx(1.0)
    assert km_loss_d(5.4e13) == pytest.approx(1.0)
    assert km_loss_c(3.1e8 * 8.64e19) == pytest.approx(1.0)
    assert PF_DAY == 8.64e19
    # Elsewhere: the power law written out by hand.
    assert km_loss_n(1.5e9) == pytest.approx((8.8e13 / 1.5e9) ** 0.076, rel=1e-12)  # ~2.30 at GPT-2 XL size
    assert km_loss_n(1.5e9) == pytest.approx(2.3037, abs=1e-3)
    assert km_loss_d(3e11) == pytest.approx((5.4e13 / 3e11) ** 0.095, rel=1e-12)
    assert km_loss_c(PF_DAY) == pytest.approx(3.1e8**0.05, rel=1e-12)  # one PF-day
    # Vectorised, and 10x the model lowers the loss by the factor 10^-0.076.
    ratio = km_loss_n(np.array([1e8, 1e9]))
    assert ratio[1] / ratio[0] == pytest.approx(10**-0.076)


def test_km_joint_law_limits():
    N, D = 1e9, 1e10
    expected = ((6.4e13 / N) ** (0.076 / 0.103) + 1.8e13 / D) ** 0.103
    assert km_loss(N, D) == pytest.approx(expected, rel=1e-12)
    # Unlimited data -> the model-only law with the joint fit's constants; unlimited model -> the data-only law.
    assert km_loss(N, 1e30) == pytest.approx((6.4e13 / N) ** 0.076, rel=1e-6)
    assert km_loss(1e40, D) == pytest.approx((1.8e13 / D) ** 0.103, rel=1e-6)


# ---------------------------------------------------------------- allocation

@pytest.mark.parametrize("law", [HOFFMANN, BESIROGLU, TRUE])
@pytest.mark.parametrize("C", [1e18, 5.76e23, 1e26])
def test_closed_form_allocation_equals_numeric_minimum(law, C):
    n, d = chinchilla_allocation(C, law)
    n_num, d_num = numeric_optimum(law, C)
    assert n == pytest.approx(n_num, rel=1e-5)
    assert d == pytest.approx(d_num, rel=1e-5)
    assert 6 * n * d == pytest.approx(C, rel=1e-12)


def test_allocation_at_chinchilla_budget():
    C = 5.76e23
    # Hoffmann's approach-3 constants: N ≈ 3.2e10, D ≈ 3.0e12 (about 93 tokens per parameter). The issue's
    # numbers hold; note Chinchilla itself (70B, 1.4T) came from approaches 1 and 2, not from this fit.
    n, d = chinchilla_allocation(C, "hoffmann2022_approach3")
    assert n == pytest.approx(3.2e10, rel=0.01) and d == pytest.approx(3.0e12, rel=0.01)
    assert (n, d) == pytest.approx(numeric_optimum(HOFFMANN, C), rel=1e-5)
    # Besiroglu et al.'s refit: N ≈ 7.2e10, D ≈ 1.33e12, ~18 tokens/param: close to Chinchilla's own 70B / 1.4T.
    n, d = chinchilla_allocation(C, "besiroglu2024_refit")
    assert n == pytest.approx(7.22e10, rel=0.01) and d == pytest.approx(1.33e12, rel=0.01)
    assert 15 < tokens_per_param(C, BESIROGLU) < 25
    a, b, G = chinchilla_exponents(HOFFMANN)
    assert (a, b) == pytest.approx((0.28 / 0.62, 0.34 / 0.62))
    assert G == pytest.approx((0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62))


def test_law_methods_and_budget_table():
    C = np.array([1e20, 1e22])
    n, d = HOFFMANN.allocation(C)
    assert np.allclose(HOFFMANN.tokens_per_param(C), d / n)
    rows = allocation_at_budgets("hoffmann2022_approach3")
    assert [r["name"] for r in rows] == [b.name for b in NAMED_BUDGETS]
    llama = next(r for r in rows if r["name"] == "LLaMA-65B")
    assert llama["flops"] == pytest.approx(6 * 65e9 * 1.4e12)
    n, d = chinchilla_allocation(llama["flops"], HOFFMANN)
    assert llama["n_opt"] == pytest.approx(n) and llama["loss"] == pytest.approx(HOFFMANN.predict(n, d))
    assert llama["n_opt_kaplan"] > 10 * llama["n_opt"]  # Kaplan puts far more of the budget into parameters


def test_km_allocation_exponents_and_prefactors():
    n1, d1 = km_allocation(PF_DAY)  # C_min = 1 PF-day gives the prefactors
    assert (n1, d1) == pytest.approx((1.3e9, 2e10))
    n10, d10 = km_allocation(10 * PF_DAY)
    assert n10 / n1 == pytest.approx(10**0.73) and d10 / d1 == pytest.approx(10**0.27)


# ---------------------------------------------------------------- fitting

def test_approach3_recovers_known_law():
    N, D, L = synthetic_grid(TRUE, noise=0.003, seed=0)
    fit = fit_chinchilla(N=N, D=D, L=L)
    assert fit.n_runs == 64
    assert abs(fit.alpha - TRUE.alpha) < 0.02 and abs(fit.beta - TRUE.beta) < 0.02
    assert fit.E == pytest.approx(TRUE.E, abs=0.05)
    # The fit's own allocation at a big budget stays close to the truth's (exponents matter most there).
    assert fit.allocation(1e22)[0] == pytest.approx(TRUE.allocation(1e22)[0], rel=0.25)
    assert np.allclose(fit.predict(N, D), L, rtol=0.02)


def test_approach3_reads_sweep_rows_and_prefers_val_loss():
    N, D, L = synthetic_grid(TRUE, noise=0.0, seed=0, n_sizes=4, n_tokens=4)
    rows = [{"n_params": n, "tokens": d, "flops": 6 * n * d, "val_loss": l, "final_loss": l + 0.5}
            for n, d, l in zip(N, D, L)]
    from_rows = fit_chinchilla(rows, grid=SMALL_GRID, n_polish=1)
    from_arrays = fit_chinchilla(N=N, D=D, L=L, grid=SMALL_GRID, n_polish=1)
    assert from_rows == from_arrays
    assert as_runs(rows, loss_key="final_loss").L == pytest.approx(L + 0.5)


def test_huber_gradient_matches_finite_differences():
    N, D, L = synthetic_grid(TRUE, noise=0.01, seed=1, n_sizes=3, n_tokens=3)
    args = (np.log(N), np.log(D), np.log(L), 1e-3)
    theta = np.array([5.5, 6.5, 0.6, 0.3, 0.35])
    _, grad = huber_objective(theta, *args)
    eps = 1e-6
    num = [(huber_objective(theta + eps * e, *args)[0] - huber_objective(theta - eps * e, *args)[0]) / (2 * eps)
           for e in np.eye(5)]
    assert np.allclose(grad, num, rtol=1e-4, atol=1e-10)


def test_approach2_isoflop_recovers_exponents():
    rng = np.random.default_rng(0)
    rows = []
    for C in np.logspace(18, 21, 4):
        n0, _ = chinchilla_allocation(C, TRUE)
        for n in n0 * np.logspace(-0.6, 0.6, 7):  # sizes bracketing the optimum, as an IsoFLOP sweep would
            d = C / (6 * n)
            rows.append({"n_params": n, "tokens": d, "loss": float(TRUE.predict(n, d) * np.exp(rng.normal(0, 1e-3)))})
    fit = fit_isoflop(rows)
    a, b, _ = chinchilla_exponents(TRUE)
    assert len(fit.C) == 4 and fit.method == "isoflop"
    assert abs(fit.a - a) < 0.02 and abs(fit.b - b) < 0.02
    assert fit.predict(1e20)[0] == pytest.approx(chinchilla_allocation(1e20, TRUE)[0], rel=0.1)


def test_approach1_envelope_recovers_exponents():
    tokens = np.logspace(7, 12, 80)
    curves = [{"n_params": n, "tokens": tokens, "loss": TRUE.predict(n, tokens)} for n in np.logspace(6, 9, 25)]
    fit = fit_envelope(curves)
    a, b, _ = chinchilla_exponents(TRUE)
    assert fit.method == "envelope"
    assert abs(fit.a - a) < 0.03 and abs(fit.b - b) < 0.03


def test_bootstrap_interval_contains_truth_and_is_seeded():
    N, D, L = synthetic_grid(TRUE, noise=0.005, seed=3, n_sizes=6, n_tokens=6)
    fit_fn = lambda runs: fit_chinchilla(runs, grid=SMALL_GRID, n_polish=1)
    res = bootstrap({"N": N, "D": D, "L": L}, fit_fn, n=25, seed=0, params=["alpha", "beta", "E"])
    for name in ("alpha", "beta"):
        lo, hi = res.interval(name)
        assert lo <= getattr(TRUE, name) <= hi and hi - lo < 0.15
        assert lo <= res.estimate[name] <= hi
    mean_fn = lambda runs: {"m": float(np.mean(runs.L))}
    r1 = bootstrap({"N": N, "D": D, "L": L}, mean_fn, n=50, seed=7)
    r2 = bootstrap({"N": N, "D": D, "L": L}, mean_fn, n=50, seed=7)
    assert np.array_equal(r1.samples["m"], r2.samples["m"])


def test_power_law_fit_and_predictable_scaling():
    C = np.logspace(15, 19, 9)
    exact = 1.7 + 50.0 * C**-0.1
    fit = fit_power_law(C, exact)
    assert (fit.E, fit.k, fit.gamma) == pytest.approx((1.7, 50.0, 0.1), rel=1e-4)
    no_offset = fit_power_law(C, 3.0 * C**-0.05, with_offset=False)
    assert (no_offset.E, no_offset.k, no_offset.gamma) == pytest.approx((0.0, 3.0, 0.05), rel=1e-9)
    # GPT-4 style: fit on runs up to 1e19 FLOPs, predict a run with 100x more compute.
    rng = np.random.default_rng(0)
    C_all = np.append(C, 1e21)
    L_all = (1.7 + 50.0 * C_all**-0.1) * np.exp(rng.normal(0, 0.002, C_all.size))
    pred = predict_largest(C=C_all, L=L_all)
    assert pred.compute_ratio == pytest.approx(100.0)
    assert abs(pred.rel_error[0]) < 0.01
    rows = [{"n_params": 1e6, "tokens": c / 6e6, "loss": l} for c, l in zip(C_all, L_all)]  # C from 6ND
    assert predict_largest(rows, holdout=2).predicted.shape == (2,)


# ---------------------------------------------------------------- errors

def _rows(n=6):
    N, D, L = synthetic_grid(TRUE, 0.0, 0, n_sizes=3, n_tokens=3)
    return N[:n], D[:n], L[:n]


@pytest.mark.parametrize("bad, match", [
    ({"N": [1e7, -1.0, 1e8, 1e9, 1e9]}, r"N \(parameters\) must be positive and finite; entry 1"),
    ({"D": [1e9, 1e9, 0.0, 1e9, 1e9]}, r"D \(tokens\) must be positive and finite; entry 2"),
    ({"L": [3.0, float("nan"), 3.0, 3.0, 3.0]}, r"loss must be finite and positive; entry 1 is nan.*diverged"),
    ({"L": [3.0, 3.0, 3.0, float("inf"), 3.0]}, r"entry 3 is inf"),
    ({"C": [1e18, 1e18, 1e18, 1e18, -1e18]}, r"C \(FLOPs\) must be positive"),
    ({"L": [3.0, 3.0, 3.0, 3.0]}, r"mismatched lengths: N has 5, D has 5, L has 4"),
])
def test_bad_columns_are_named(bad, match):
    cols = {"N": [1e7, 1e8, 1e8, 1e9, 1e9], "D": [1e9, 1e10, 1e9, 1e10, 1e11], "L": [3.0, 2.8, 2.9, 2.6, 2.5]}
    cols.update(bad)
    with pytest.raises(ValueError, match=match):
        fit_isoflop(**cols)  # validation is shared by every fit (as_runs)


def test_table_errors():
    with pytest.raises(ValueError, match="needs at least 5 runs; got 4"):
        fit_chinchilla(*(), N=_rows(4)[0], D=_rows(4)[1], L=_rows(4)[2])
    with pytest.raises(ValueError, match="no parameter-count column; name it one of n_params"):
        as_runs([{"tokens": 1e9, "loss": 3.0}])
    with pytest.raises(ValueError, match="run 1 has different keys"):
        as_runs([{"N": 1, "D": 1, "L": 1}, {"N": 1, "D": 1}])
    with pytest.raises(ValueError, match="either a run table or arrays, not both"):
        as_runs([{"N": 1, "D": 1, "L": 1}], N=[1])
    with pytest.raises(ValueError, match="missing D, L"):
        as_runs(N=[1.0])
    with pytest.raises(ValueError, match="loss column 'eval' not found"):
        as_runs({"N": [1.0], "D": [1.0], "L": [1.0]}, loss_key="eval")
    with pytest.raises(ValueError, match="empty"):
        as_runs([])
    N, D, L = _rows(6)
    with pytest.raises(ValueError, match="2 distinct model sizes"):
        fit_chinchilla(N=np.full(6, 1e8), D=D, L=L)


def test_isoflop_errors():
    C = 1e20
    n = np.array([1e8, 3e8, 1e9])
    base = {"n_params": list(n) + [1e8, 1e9], "tokens": list(C / (6 * n)) + [1e9, 1e9]}
    base["flops"] = [C, C, C, 6e17, 6e18]  # the second budget (6e17) has one run, the third (6e18) one run
    base["loss"] = [3.0, 2.9, 3.0, 3.1, 3.2]
    with pytest.raises(ValueError, match=r"IsoFLOP budget 6e\+17 FLOPs has 1 run\(s\); a parabola needs at least 3"):
        fit_isoflop(base)
    with pytest.raises(ValueError, match="not convex"):
        fit_isoflop({"n_params": n, "tokens": C / (6 * n), "loss": [3.0, 3.2, 3.0]})
    with pytest.raises(ValueError, match="outside the sizes tried"):
        fit_isoflop({"n_params": n, "tokens": C / (6 * n), "loss": [3.0, 2.9, 2.85]})
    with pytest.raises(ValueError, match="at least 2 distinct budgets"):
        fit_isoflop({"n_params": n, "tokens": C / (6 * n), "loss": [3.0, 2.9, 3.0]})


def test_envelope_and_power_law_errors():
    tokens = np.logspace(7, 9, 5)
    with pytest.raises(ValueError, match="at least 3 model sizes; got 2"):
        fit_envelope([{"n_params": 1e6, "tokens": tokens, "loss": np.ones(5)}] * 2)
    with pytest.raises(ValueError, match="curve 0 has no tokens array"):
        fit_envelope([{"n_params": 1e6, "loss": np.ones(5)}] * 3)
    with pytest.raises(ValueError, match="mismatched lengths: tokens has 5, loss has 4"):
        fit_envelope([{"n_params": 1e6, "tokens": tokens, "loss": np.ones(4)}] * 3)
    with pytest.raises(ValueError, match="needs at least 3 points; got 2"):
        fit_power_law([1.0, 2.0], [3.0, 2.0])
    with pytest.raises(ValueError, match="x must be positive and finite; entry 0"):
        fit_power_law([0.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="holdout=0 must be 'largest' or a positive number"):
        predict_largest(C=[1.0, 2.0, 3.0, 4.0], L=[4.0, 3.0, 2.5, 2.2], holdout=0)
    with pytest.raises(ValueError, match="leaves no cheaper runs"):
        predict_largest(C=[1.0, 2.0, 4.0, 4.0], L=[4.0, 3.0, 2.5, 2.2])


def test_law_and_bootstrap_errors():
    with pytest.raises(ValueError, match="no published fit named 'kaplan'; choose one of"):
        published_fit("kaplan")
    with pytest.raises(ValueError, match="has form 'chinchilla', but this law needs form 'km_n'"):
        km_loss_n(1e9, fit="hoffmann2022_approach3")
    with pytest.raises(ValueError, match=r"needs params \['A', 'B', 'E', 'alpha', 'beta'\], got \['E'\]"):
        PublishedFit("x", "chinchilla", {"E": 1.0}, "nowhere")
    with pytest.raises(ValueError, match="form='power' is unknown"):
        PublishedFit("x", "power", {"E": 1.0}, "nowhere")
    with pytest.raises(ValueError, match="alpha > 0 and beta > 0"):
        chinchilla_allocation(1e20, ChinchillaLaw(E=1.0, A=1.0, B=1.0, alpha=0.0, beta=0.3))
    with pytest.raises(ValueError, match="C must be positive and finite; entry 0"):
        chinchilla_allocation(0.0)
    with pytest.raises(ValueError, match="ChinchillaLaw.E=nan"):
        ChinchillaLaw(E=float("nan"), A=1.0, B=1.0, alpha=0.3, beta=0.3)
    N, D, L = _rows(6)
    with pytest.raises(ValueError, match="n=1 must be an integer >= 2"):
        bootstrap({"N": N, "D": D, "L": L}, fit_chinchilla, n=1)
    def fussy(runs):  # a fit that cannot handle repeated rows, which resampling with replacement produces
        if len(np.unique(np.stack([runs.N, runs.D], 1), axis=0)) < len(runs):
            raise ValueError("repeated run")
        return {"m": 1.0}

    with pytest.raises(RuntimeError, match=r"bootstrap replicate 0 \(seed=0\) failed to fit: repeated run"):
        bootstrap({"N": N, "D": D, "L": L}, fussy, n=2, seed=0)


def test_as_runs_reads_sweep_rows_with_ragged_fields():
    from minillm.scaling import as_runs
    rows = [dict(run_id=f"r{i}", n_params=1e4 * (i + 1), tokens=1e6, val_loss=1.0 + 0.1 * i,
                 curve=[[1, 2.0]] * (i + 1), provenance={"host": "x"}) for i in range(3)]
    t = as_runs(rows)
    assert list(t.N) == [1e4, 2e4, 3e4] and list(t.L) == [1.0, 1.1, 1.2]
