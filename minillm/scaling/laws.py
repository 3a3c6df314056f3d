"""Scaling laws as formulas, and the published fits carried as data (Survey §2.1, scaling laws).

Survey §2.1 presents two families of laws that predict a language model's test loss (nats per token) from
how much it is scaled:

- **KM scaling law** (Kaplan et al. 2020, survey eq. (1)). Each resource alone, when the other two are not
  the bottleneck, gives a pure power law: L(N) = (N_c/N)^α_N for N non-embedding parameters,
  L(D) = (D_c/D)^α_D for D training tokens, L(C) = (C_c/C)^α_C for training compute C (compute-efficiently
  spent). Kaplan also joins N and D into one law, L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D, which
  tends to L(N) when data is unlimited and to L(D) when the model is unlimited.
- **Chinchilla scaling law** (Hoffmann et al. 2022, survey eq. (2)): L(N, D) = E + A/N^α + B/D^β. E is the
  irreducible loss (the entropy of text itself); the two other terms are what a finite model and a finite
  dataset cost on top of it. Because E is explicit, this form can be minimised under a compute budget
  (see `minillm.scaling.laws`).

Units, one convention for the whole package: N in parameters, D in tokens, C in FLOPs. Kaplan's compute
constant is published in PF-days (1 PF-day = 10^15 FLOP/s x 86,400 s = 8.64e19 FLOPs); the functions below
take FLOPs and convert, so no caller mixes units by accident.

Compute-optimal allocation: how to split a FLOP budget between model size and data.


Training a dense transformer costs about C = 6ND FLOPs (2ND forward, 4ND backward). For a fixed C, a bigger
model means fewer tokens, so there is a best split. The two laws of Survey §2.1 disagree about it:

- **Chinchilla** (Hoffmann et al. 2022, eq. (4)): minimising L = E + A/N^α + B/D^β subject to C = 6ND has a
  closed form, N_opt = G (C/6)^a and D_opt = G^-1 (C/6)^b with a = β/(α+β), b = α/(α+β),
  G = (αA / (βB))^(1/(α+β)). With α ≈ β both exponents are near 1/2: grow model and data together.
  The survey's eq. (3) prints a = α/(α+β), b = β/(α+β): swapped. The derivation below settles it (N's
  exponent carries β, the *data* exponent), and so do the paper's numbers: approach 3's α = 0.34, β = 0.28 give
  a = 0.45, b = 0.55 here, as Hoffmann et al. report (0.46, 0.54); the survey's version would give 0.55, 0.45.
- **KM** (Kaplan et al. 2020): N_opt ∝ C^0.73 and D_opt ∝ C^0.27, i.e. put most extra compute into the model.

What N counts differs between the two papers, and the published constants only hold with their own count:
Kaplan's N (and C) leave out the embedding parameters; Hoffmann et al.'s N, and the Besiroglu et al. refit of
it, count *total* parameters, embeddings included (each PublishedFit's `units` says which). At small scale
embeddings are a large share of a model, so the two counts grow at different rates, and Pearce & Song (2024,
"Reconciling Kaplan and Chinchilla scaling laws", arXiv:2406.12907) show that this, with Kaplan's small models,
explains much of the gap between Kaplan's 0.73 and Chinchilla's ~0.5. Porian et al. (2024, "Resolving
discrepancies in compute-optimal scaling of language models", arXiv:2406.19146) reproduce Kaplan's exponent and
remove it by correcting three things: the last layer's FLOPs, which Kaplan's compute leaves out, an overlong
warm-up for small models, and optimizer settings not tuned per scale. The two laws also come from different
corpora and tokenizers, so their losses (nats per token) are not on one scale: compare their allocations, or
each law relative to itself, not their absolute losses.

Derivation of the closed form (worth doing once by hand): substitute D = C/(6N), set dL/dN = 0, which gives
αA N^-α = βB (C/6)^-β N^β, so N^(α+β) = (αA/(βB)) (C/6)^β.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

PF_DAY = 1e15 * 86_400  # FLOPs in one petaflop/s-day: Kaplan's unit of compute

# The parameter names each functional form needs (PublishedFit.__post_init__ checks them).
FORMS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "km_n": ("alpha_N", "N_c"),  # L(N) = (N_c/N)^alpha_N
    "km_d": ("alpha_D", "D_c"),  # L(D) = (D_c/D)^alpha_D
    "km_cmin": ("alpha_C", "C_c_pf_days"),  # L(C_min) = (C_c/C_min)^alpha_C, C in PF-days
    "km_nd": ("alpha_N", "alpha_D", "N_c", "D_c"),  # L(N, D) = [(N_c/N)^(aN/aD) + D_c/D]^aD
    "km_allocation": ("N_e", "p_N", "D_e", "p_D"),  # N_opt = N_e C^p_N, D_opt = D_e C^p_D, C in PF-days
    "chinchilla": ("E", "A", "B", "alpha", "beta"),  # L(N, D) = E + A/N^alpha + B/D^beta
})

KAPLAN_2020 = "Kaplan et al. 2020, 'Scaling Laws for Neural Language Models', arXiv:2001.08361"
HOFFMANN_2022 = "Hoffmann et al. 2022, 'Training Compute-Optimal Large Language Models', arXiv:2203.15556"
BESIROGLU_2024 = "Besiroglu et al. 2024, 'Chinchilla Scaling: A replication attempt', arXiv:2404.10102"


@dataclass(frozen=True)
class PublishedFit:
    """One row of `PUBLISHED_FITS`: a law's constants exactly as a paper reports them."""

    name: str  # key in PUBLISHED_FITS
    form: str  # one of FORMS: which formula the params plug into
    params: Mapping[str, float]  # the constants, named as in FORMS[form]
    source: str  # citation: paper and where in it
    units: str = "N: non-embedding parameters, D: tokens, L: nats/token"  # Kaplan's; the Chinchilla rows count total N
    note: str = ""

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"PublishedFit {self.name!r}: form={self.form!r} is unknown; choose one of {', '.join(FORMS)}")
        need = set(FORMS[self.form])
        if set(self.params) != need:
            raise ValueError(f"PublishedFit {self.name!r}: form {self.form!r} needs params {sorted(need)}, got {sorted(self.params)}")
        bad = {k: v for k, v in self.params.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)}
        if bad:
            raise ValueError(f"PublishedFit {self.name!r}: params must be positive finite numbers, got {bad}")
        # Read-only view: a notebook that edits a published constant should make its own fit, not mutate this one.
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def law(self) -> "ChinchillaLaw":
        """The Chinchilla-form law of this row (only for form='chinchilla')."""
        if self.form != "chinchilla":
            raise ValueError(f"{self.name!r} has form {self.form!r}; only 'chinchilla' rows give a ChinchillaLaw")
        p = self.params
        return ChinchillaLaw(E=p["E"], A=p["A"], B=p["B"], alpha=p["alpha"], beta=p["beta"])


_ROWS = (
    PublishedFit("kaplan2020_N", "km_n", {"alpha_N": 0.076, "N_c": 8.8e13},
                 KAPLAN_2020 + ", eq. (1.1); survey eq. (1)",
                 note="models trained to convergence (early-stopped) on enough data"),
    PublishedFit("kaplan2020_D", "km_d", {"alpha_D": 0.095, "D_c": 5.4e13},
                 KAPLAN_2020 + ", eq. (1.2); survey eq. (1)",
                 note="large models trained on D tokens with early stopping"),
    PublishedFit("kaplan2020_Cmin", "km_cmin", {"alpha_C": 0.050, "C_c_pf_days": 3.1e8},
                 KAPLAN_2020 + ", eq. (1.3); survey eq. (1)",
                 units="C_min: PF-days (1 PF-day = 8.64e19 FLOPs), L: nats/token",
                 note="compute spent optimally (model size, batch, steps all chosen for the budget)"),
    PublishedFit("kaplan2020_ND", "km_nd", {"alpha_N": 0.076, "alpha_D": 0.103, "N_c": 6.4e13, "D_c": 1.8e13},
                 KAPLAN_2020 + ", eq. (1.5) with the joint fit of Table 2",
                 note="the joint fit's alpha_D and D_c differ from the single-variable L(D) row; Kaplan fitted them separately"),
    PublishedFit("kaplan2020_allocation", "km_allocation", {"N_e": 1.3e9, "p_N": 0.73, "D_e": 2e10, "p_D": 0.27},
                 KAPLAN_2020 + ", Section 6.1 and Appendix A (compute-efficient frontier, C_min in PF-days)",
                 units="C_min: PF-days; N_opt: non-embedding parameters; D_opt: tokens",
                 note="N and D were fitted separately, so 6 N_opt D_opt is only roughly C"),
    PublishedFit("hoffmann2022_approach3", "chinchilla", {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
                 HOFFMANN_2022 + ", Section 3.3 (approach 3, parametric fit); survey eq. (2)",
                 units="N: total parameters (embeddings included), D: tokens, L: nats/token (MassiveText, SentencePiece)",
                 note="N counts all parameters, unlike Kaplan's non-embedding N; a different corpus and tokenizer "
                      "than Kaplan's, so the two laws' losses are not on one scale"),
    PublishedFit("besiroglu2024_refit", "chinchilla", {"E": 1.82, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658},
                 BESIROGLU_2024 + " (refit of Hoffmann's approach 3 on data reconstructed from its Figure 4)",
                 units="N: total parameters (embeddings included), D: tokens, L: nats/token (MassiveText, SentencePiece)",
                 note="the replication finds Hoffmann's rounded approach-3 constants inconsistent with approaches 1 and 2; "
                      "N counts all parameters, as in Hoffmann et al."),
)
PUBLISHED_FITS: Mapping[str, PublishedFit] = MappingProxyType({row.name: row for row in _ROWS})


def published_fit(name: str) -> PublishedFit:
    """The row of `PUBLISHED_FITS` called `name`, with an error listing the names when it is unknown."""
    if name not in PUBLISHED_FITS:
        raise ValueError(f"no published fit named {name!r}; choose one of {', '.join(PUBLISHED_FITS)}")
    return PUBLISHED_FITS[name]


def check_positive(name: str, x) -> np.ndarray:
    """`x` as a float array, or a ValueError naming the first entry that is not a positive finite number."""
    arr = np.asarray(x, dtype=np.float64)
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(f"{name} must be positive and finite; entry {i} is {float(arr.ravel()[i])!r}")
    return arr


def _params(fit: str | PublishedFit, form: str) -> Mapping[str, float]:
    row = published_fit(fit) if isinstance(fit, str) else fit
    if row.form != form:
        raise ValueError(f"fit {row.name!r} has form {row.form!r}, but this law needs form {form!r}")
    return row.params


def km_loss_n(N, fit: str | PublishedFit = "kaplan2020_N"):
    """Kaplan's L(N) = (N_c/N)^α_N: loss of an N-parameter model (non-embedding) given ample data."""
    p = _params(fit, "km_n")
    return (p["N_c"] / check_positive("N", N)) ** p["alpha_N"]


def km_loss_d(D, fit: str | PublishedFit = "kaplan2020_D"):
    """Kaplan's L(D) = (D_c/D)^α_D: loss of a large model trained (early-stopped) on D tokens."""
    p = _params(fit, "km_d")
    return (p["D_c"] / check_positive("D", D)) ** p["alpha_D"]


def km_loss_c(C, fit: str | PublishedFit = "kaplan2020_Cmin"):
    """Kaplan's L(C_min) = (C_c/C_min)^α_C, with C in FLOPs (converted to the paper's PF-days inside)."""
    p = _params(fit, "km_cmin")
    c_pf_days = check_positive("C", C) / PF_DAY
    return (p["C_c_pf_days"] / c_pf_days) ** p["alpha_C"]


def km_loss(N, D, fit: str | PublishedFit = "kaplan2020_ND"):
    """Kaplan's joint L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D (eq. 1.5): the data term adds to the model term
    inside the bracket, so a model is data-starved once D_c/D is comparable to (N_c/N)^(α_N/α_D)."""
    p = _params(fit, "km_nd")
    N, D = check_positive("N", N), check_positive("D", D)
    return ((p["N_c"] / N) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / D) ** p["alpha_D"]


@dataclass(frozen=True)
class ChinchillaLaw:
    """L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022). The allocation formulas are below.

    N is whatever the runs it was fitted to counted: the published Chinchilla fits count total parameters,
    the book's sweeps report non-embedding N (`n_params`) and total N (`n_params_total`)."""

    E: float  # irreducible loss (nats/token): the entropy of the text, reached only as N, D -> infinity
    A: float  # scale of the finite-model penalty
    B: float  # scale of the finite-data penalty
    alpha: float  # how fast the model penalty falls with N
    beta: float  # how fast the data penalty falls with D

    def __post_init__(self) -> None:
        for name in ("E", "A", "B", "alpha", "beta"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float, np.floating)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{type(self).__name__}.{name}={v!r} must be a non-negative finite number")
        if self.alpha + self.beta <= 0:
            raise ValueError("alpha + beta must be positive: with both zero the loss does not depend on N or D")

    def predict(self, N, D):
        """Predicted loss for N parameters trained on D tokens (broadcasts over arrays)."""
        N, D = check_positive("N", N), check_positive("D", D)
        return self.E + self.A / N**self.alpha + self.B / D**self.beta

    def allocation(self, C):
        """Compute-optimal (N_opt, D_opt) for C FLOPs under C = 6ND (closed form, `chinchilla_allocation` below)."""
        return chinchilla_allocation(C, self)

    def tokens_per_param(self, C):
        """D_opt / N_opt at compute C: Chinchilla's famous ~20 is this number at its own budget."""
        n, d = self.allocation(C)
        return d / n


# ---- compute-optimal allocation

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
