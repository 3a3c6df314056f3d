"""Scaling laws: the published laws, compute-optimal allocation, and fitting your own runs (Survey §2.1).

- `laws`: Kaplan's KM laws and the Chinchilla law as formulas; published constants in `PUBLISHED_FITS`.
- `allocation`: how to split a FLOP budget between parameters and tokens (closed form under C = 6ND).
- `table`: reading a table of runs (list of dicts, dict of columns, DataFrame, arrays) with validation.
- `fits`: Hoffmann et al.'s three approaches: training-curve envelope, IsoFLOP parabolas, parametric fit.
- `predictable`: GPT-4-style loss prediction from small runs, and bootstrap confidence intervals.
- `studies`: data far past 20 tokens/param; `knowledge`: bits of facts stored per parameter.
- `plots`, `study_plots`: chapter 01's figures and widget (matplotlib imported only when drawing).

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
from .knowledge import knowledge_bits, knowledge_capacity, model_scorer
from .studies import data_scaling_curve, improvement_per_decade
from .table import RunTable, as_runs

__all__ = [
    "FLOPS_PER_PARAM_TOKEN", "NAMED_BUDGETS", "Budget", "allocation_at_budgets", "chinchilla_allocation",
    "chinchilla_exponents", "km_allocation", "tokens_per_param",
    "AllocationFit", "ChinchillaFit", "fit_chinchilla", "fit_envelope", "fit_isoflop", "huber_objective",
    "PF_DAY", "PUBLISHED_FITS", "ChinchillaLaw", "PublishedFit", "km_loss", "km_loss_c", "km_loss_d", "km_loss_n",
    "published_fit",
    "BootstrapResult", "PowerLawFit", "ScalingPrediction", "bootstrap", "fit_power_law", "predict_largest",
    "knowledge_bits", "knowledge_capacity", "model_scorer", "data_scaling_curve", "improvement_per_decade",
    "RunTable", "as_runs",
]
