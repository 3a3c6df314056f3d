"""Scaling laws: the published laws, compute-optimal allocation, and fitting your own runs (Survey §2.1).

    laws.py         Kaplan's KM laws and the Chinchilla law as formulas, published constants (`PUBLISHED_FITS`),
                    and compute-optimal allocation of a FLOP budget between parameters and tokens (C = 6ND)
    table.py        reading a table of runs (list of dicts, dict of columns, DataFrame, arrays) with validation
    fits.py         Hoffmann et al.'s three approaches: training-curve envelope, IsoFLOP parabolas, parametric fit
    predictable.py  GPT-4-style loss prediction from small runs, and bootstrap confidence intervals
    knowledge.py    bits of facts a trained model stores (a knowledge-capacity measure)
    sweep.py        plan an IsoFLOP / grid sweep of model shapes, run each through the Trainer, resumable JSONL

Units throughout: N in (non-embedding) parameters, D in tokens, C in FLOPs, loss in nats/token.
"""

from minillm.scaling.fits import (
                                  AllocationFit,
                                  ChinchillaFit,
                                  fit_chinchilla,
                                  fit_envelope,
                                  fit_isoflop,
                                  huber_objective,
)
from minillm.scaling.knowledge import knowledge_bits, model_scorer
from minillm.scaling.laws import (
                                  FLOPS_PER_PARAM_TOKEN,
                                  NAMED_BUDGETS,
                                  PF_DAY,
                                  PUBLISHED_FITS,
                                  Budget,
                                  ChinchillaLaw,
                                  PublishedFit,
                                  allocation_at_budgets,
                                  chinchilla_allocation,
                                  chinchilla_exponents,
                                  km_allocation,
                                  km_loss,
                                  km_loss_c,
                                  km_loss_d,
                                  km_loss_n,
                                  published_fit,
                                  tokens_per_param,
)
from minillm.scaling.predictable import (
                                  BootstrapResult,
                                  PowerLawFit,
                                  ScalingPrediction,
                                  bootstrap,
                                  fit_power_law,
                                  predict_largest,
)
from minillm.scaling.sweep import SweepConfig, default_sweep, load_sweep, model_ladder, plan, run_sweep
from minillm.scaling.table import RunTable, as_runs

__all__ = [
    "FLOPS_PER_PARAM_TOKEN", "NAMED_BUDGETS", "Budget", "allocation_at_budgets", "chinchilla_allocation",
    "chinchilla_exponents", "km_allocation", "tokens_per_param",
    "AllocationFit", "ChinchillaFit", "fit_chinchilla", "fit_envelope", "fit_isoflop", "huber_objective",
    "PF_DAY", "PUBLISHED_FITS", "ChinchillaLaw", "PublishedFit", "km_loss", "km_loss_c", "km_loss_d", "km_loss_n",
    "published_fit",
    "BootstrapResult", "PowerLawFit", "ScalingPrediction", "bootstrap", "fit_power_law", "predict_largest",
    "knowledge_bits", "model_scorer",
    "RunTable", "as_runs",
    "SweepConfig", "default_sweep", "load_sweep", "model_ladder", "plan", "run_sweep",
]
