"""Scaling laws: the published laws, compute-optimal allocation, and fitting your own runs (Survey §2.1).

- `laws`: Kaplan's KM laws and the Chinchilla law as formulas; published constants in `PUBLISHED_FITS`.
- `allocation`: how to split a FLOP budget between parameters and tokens (closed form under C = 6ND).
- `table`: reading a table of runs (list of dicts, dict of columns, DataFrame, arrays) with validation.
- `fits`: Hoffmann et al.'s three approaches: training-curve envelope, IsoFLOP parabolas, parametric fit.
- `predictable`: GPT-4-style loss prediction from small runs, and bootstrap confidence intervals.

Units throughout: N in (non-embedding) parameters, D in tokens, C in FLOPs, loss in nats/token.
"""

from .allocation import (
    FLOPS_PER_PARAM_TOKEN,
    NAMED_BUDGETS,
    Budget,
    allocation_at_budgets,
    chinchilla_allocation,
    chinchilla_exponents,
    km_allocation,
    tokens_per_param,
)
from .fits import AllocationFit, ChinchillaFit, fit_chinchilla, fit_envelope, fit_isoflop, huber_objective
from .laws import (
    PF_DAY,
    PUBLISHED_FITS,
    ChinchillaLaw,
    PublishedFit,
    km_loss,
    km_loss_c,
    km_loss_d,
    km_loss_n,
    published_fit,
)
from .predictable import BootstrapResult, PowerLawFit, ScalingPrediction, bootstrap, fit_power_law, predict_largest
from .table import RunTable, as_runs

__all__ = [
    "FLOPS_PER_PARAM_TOKEN", "NAMED_BUDGETS", "Budget", "allocation_at_budgets", "chinchilla_allocation",
    "chinchilla_exponents", "km_allocation", "tokens_per_param",
    "AllocationFit", "ChinchillaFit", "fit_chinchilla", "fit_envelope", "fit_isoflop", "huber_objective",
    "PF_DAY", "PUBLISHED_FITS", "ChinchillaLaw", "PublishedFit", "km_loss", "km_loss_c", "km_loss_d", "km_loss_n",
    "published_fit",
    "BootstrapResult", "PowerLawFit", "ScalingPrediction", "bootstrap", "fit_power_law", "predict_largest",
    "RunTable", "as_runs",
]
