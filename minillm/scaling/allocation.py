"""Compute-optimal allocation: how to split a FLOP budget between model size and data (Survey §2.1).

Training a dense transformer costs about C = 6ND FLOPs (2ND forward, 4ND backward). For a fixed C, a bigger
model means fewer tokens, so there is a best split. The two laws of Survey §2.1 disagree about it:

- **Chinchilla** (Hoffmann et al. 2022): minimising L = E + A/N^α + B/D^β subject to C = 6ND has a closed
  form, N_opt = G (C/6)^a and D_opt = G^-1 (C/6)^b with a = β/(α+β), b = α/(α+β),
  G = (αA / (βB))^(1/(α+β)) (survey eq. (3)). With α ≈ β both exponents are near 1/2: grow model and data
  together.
- **KM** (Kaplan et al. 2020): N_opt ∝ C^0.73 and D_opt ∝ C^0.27, i.e. put most extra compute into the model.

Derivation of the closed form (worth doing once by hand): substitute D = C/(6N), set dL/dN = 0, which gives
αA N^-α = βB (C/6)^-β N^β, so N^(α+β) = (αA/(βB)) (C/6)^β.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .laws import PF_DAY, ChinchillaLaw, PublishedFit, _params, check_positive, published_fit

FLOPS_PER_PARAM_TOKEN = 6.0  # C ≈ 6ND: 2 FLOPs per parameter per token forward, 4 backward


def _as_law(law: ChinchillaLaw | PublishedFit | str) -> ChinchillaLaw:
    if isinstance(law, ChinchillaLaw):
        return law
    row = published_fit(law) if isinstance(law, str) else law
    return row.law()


def chinchilla_exponents(law: ChinchillaLaw | PublishedFit | str) -> tuple[float, float, float]:
    """(a, b, G) of the closed form: N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b."""
    law = _as_law(law)
    if law.alpha <= 0 or law.beta <= 0:
        raise ValueError(f"compute-optimal allocation needs alpha > 0 and beta > 0 (got alpha={law.alpha}, beta={law.beta}): "
                         "with a zero exponent one resource does not lower the loss, so it should get nothing")
    s = law.alpha + law.beta
    G = (law.alpha * law.A / (law.beta * law.B)) ** (1.0 / s)
    return law.beta / s, law.alpha / s, G


def chinchilla_allocation(C, law: ChinchillaLaw | PublishedFit | str = "hoffmann2022_approach3"):
    """Compute-optimal (N_opt, D_opt) for C FLOPs under a Chinchilla-form law (a fit or a published name)."""
    C = check_positive("C", C)
    a, b, G = chinchilla_exponents(law)
    x = C / FLOPS_PER_PARAM_TOKEN
    return G * x**a, x**b / G


def km_allocation(C, fit: str | PublishedFit = "kaplan2020_allocation"):
    """Kaplan's compute-efficient (N_opt, D_opt) for C FLOPs: N = 1.3e9 C^0.73, D = 2e10 C^0.27 with C in PF-days.

    Kaplan fitted N and D separately along the compute-efficient frontier (models stopped well before
    convergence), so 6 N_opt D_opt is not exactly C; the exponents are the lesson, not the prefactors.
    """
    p = _params(fit, "km_allocation")
    c_pf_days = check_positive("C", C) / PF_DAY
    return p["N_e"] * c_pf_days ** p["p_N"], p["D_e"] * c_pf_days ** p["p_D"]


def tokens_per_param(C, fit: ChinchillaLaw | PublishedFit | str = "hoffmann2022_approach3"):
    """D_opt / N_opt at compute C. Under a Chinchilla law it changes with C as (C/6)^(b-a) / G^2."""
    n, d = chinchilla_allocation(C, fit)
    return d / n


@dataclass(frozen=True)
class Budget:
    """A named training budget, with where its FLOP count comes from."""

    name: str
    flops: float
    source: str

    def __post_init__(self) -> None:
        check_positive(f"Budget {self.name!r} flops", self.flops)


NAMED_BUDGETS: tuple[Budget, ...] = (
    Budget("GPT-3 175B", 3.14e23, "Brown et al. 2020, Table D.1 (reported; 6 x 175e9 x 300e9 = 3.15e23)"),
    Budget("Gopher / Chinchilla", 5.76e23, "Hoffmann et al. 2022: Gopher's budget, used to size Chinchilla"),
    Budget("LLaMA-65B", FLOPS_PER_PARAM_TOKEN * 65e9 * 1.4e12, "6ND with N = 65e9, D = 1.4e12 (Touvron et al. 2023)"),
    Budget("Llama 2 70B", FLOPS_PER_PARAM_TOKEN * 70e9 * 2.0e12, "6ND with N = 70e9, D = 2.0e12 (Touvron et al. 2023b)"),
)


def allocation_at_budgets(law: ChinchillaLaw | PublishedFit | str = "hoffmann2022_approach3",
                          budgets: tuple[Budget, ...] = NAMED_BUDGETS) -> list[dict]:
    """One row per budget: the law's compute-optimal N, D, tokens/param and loss, plus Kaplan's N and D.

    Everything is computed from the constants, so swapping `law` (say, for the Besiroglu et al. refit or
    your own sweep's fit) shows how much the prescription moves.
    """
    law = _as_law(law)
    if not budgets:
        raise ValueError("budgets is empty; pass at least one Budget (or use NAMED_BUDGETS)")
    C = np.array([b.flops for b in budgets], dtype=np.float64)
    n, d = chinchilla_allocation(C, law)
    loss = law.predict(n, d)
    n_km, d_km = km_allocation(C)
    return [
        {"name": b.name, "flops": float(C[i]), "n_opt": float(n[i]), "d_opt": float(d[i]),
         "tokens_per_param": float(d[i] / n[i]), "loss": float(loss[i]),
         "n_opt_kaplan": float(n_km[i]), "d_opt_kaplan": float(d_km[i]), "source": b.source}
        for i, b in enumerate(budgets)
    ]
