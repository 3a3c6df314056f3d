"""Section 2 of the capstone: size the model with chapter 01's law before pretraining it.

Survey §2.1 (scaling laws: Chinchilla's IsoFLOP profiles, approach 2, and predictable scaling as in the GPT-4
report). A small IsoFLOP sweep on the capstone's own token stream: for each of a few compute budgets C, every
ladder shape that spends C in a sensible number of steps is trained with the pretraining recipe itself (the modern
architecture, its lr, warmup and WSD decay run to each run's own end, same batch, context and seed), and scored on
the same held-out windows as the pretrain. Loss against log N is a valley per budget; `minillm.scaling.fits.
fit_isoflop` fits a parabola through each, giving N_opt(C) and D_opt(C) as power laws in C. The valley floors
L*(C) get a power law too, L*(C) = k C^-gamma, which predicts the pretrain's final loss at its own budget: an
EXTRAPOLATION past the largest swept budget (by the factor `Allocation.extrapolation`), to be checked against the
run (`prediction_vs_result`).

N here is every parameter (Chinchilla's count), not Kaplan's non-embedding N: with a 4096-token vocabulary the
tied embedding is also the output layer, a matmul every token pays for, so it belongs in C = 6ND.

minillm.scaling.sweep.run_sweep trains only its synthetic char corpora with a GPT-2 block (SweepConfig names a
corpus, not a token array, and shape_counts builds the default architecture), so the loop is written here with
minillm.Trainer (through studies_pretrain.fit_recipe).

Measured at laptop (12 runs, batch 4 x 128, 8.3M tokens in all; 587 s on a shared 2-core CPU with one thread at
load ~6, so an idle machine should take ~2-3 minutes, not measured idle): the 5e11 and 1e12 budgets have valleys
with optima at N ~ 92k and ~129k parameters; the 2.5e11 budget's lowest loss is its smallest model (51k), so its
valley lies left of the ladder and the fit leaves it out. N_opt ∝ C^0.49 (Chinchilla: ~0.5); at the pretrain's 7e12
FLOPs N_opt ~ 336k, so the pretrain is (2, 64, 2) with 363k parameters (100k of them outside the embedding), and the
predicted held-out loss is 4.98 nats/token (L* ∝ C^-0.056, extrapolated 7x past the largest budget); the run
measured 5.06 (1.6% above). At V=4096 the compute-optimal model for a CPU's minutes is tiny and mostly
embedding: the vocabulary table is the model.

    rows = isoflop_sweep("laptop")                  # one row per run
    alloc = allocation(rows, pretrain_config("laptop").flops_budget)
    shape = pick_shape(alloc, sizing_config("laptop").shapes)
    prediction_vs_result(rows, pretrain_modern("laptop"))
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from minillm.evaluation.loss import heldout_loss
from minillm.model.transformer import GPT
from minillm.presets import by_size, size_profile
from minillm.scaling.fits import fit_isoflop, fit_loglog
from minillm.scaling.predictable import fit_power_law
from book.ch09_capstone.studies_pretrain import (PretrainResult, Shape, capstone_data, fit_recipe,
                                                 pretrain_config)

__all__ = ["SizingConfig", "sizing_config", "plan_runs", "isoflop_sweep", "Allocation", "allocation", "pick_shape",
           "prediction_vs_result"]

ROW_KEYS = ("budget", "n_layer", "n_embd", "n_head", "n_params", "n_params_total", "flops_per_token", "steps",
            "tokens", "flops", "heldout_loss", "seconds")


@dataclass(frozen=True)
class SizingConfig:
    """The sweep of a profile: the ladder of shapes, the budgets, and the step range a run must fall in."""

    shapes: tuple[Shape, ...]  # (n_layer, n_embd, n_head), smallest first
    budgets: tuple[float, ...]  # FLOPs
    min_steps: int  # fewer steps and the run is mostly warmup: the shape is left out of that budget
    max_steps: int  # more and the run is far from the valley anyway (and slow): left out too

    def __post_init__(self) -> None:
        if not self.shapes or any(len(s) != 3 or min(s) < 1 or s[1] % s[2] for s in self.shapes):
            raise ValueError(f"SizingConfig.shapes={self.shapes!r} must be (n_layer, n_embd, n_head) triples with "
                             f"n_embd divisible by n_head")
        if len(self.budgets) < 2 or any(not (b > 0 and math.isfinite(b)) for b in self.budgets):
            raise ValueError(f"SizingConfig.budgets={self.budgets!r} needs at least 2 positive FLOP counts (a power "
                             f"law in C needs two budgets; three show whether it is one)")
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(f"SizingConfig: need 1 <= min_steps={self.min_steps} <= max_steps={self.max_steps}")


def sizing_config(size: str | None = None, **changes) -> SizingConfig:
    """laptop: 3 budgets a factor 2 apart x 4 shapes each (min/max steps slide a window of 4 shapes along the
    ladder with the budget), 8.3M tokens in all (~2-3 minutes on an idle 2-core CPU, estimated); the pretrain's
    budget (7e12) lies 7x past the largest. The ladder starts at width 12: at V=4096 the optimum for these budgets
    is ~0.1M parameters. ci: 3 budgets x 4-5 tiny shapes, seconds. gpu: unmeasured."""
    base = by_size(
        ci=dict(shapes=((1, 16, 1), (1, 32, 1), (2, 32, 2)), budgets=(3e9, 6e9), min_steps=8, max_steps=90),
        laptop=dict(shapes=((1, 12, 1), (1, 16, 1), (1, 24, 1), (1, 32, 1), (2, 48, 2), (2, 64, 2), (3, 96, 3)),
                    budgets=(2.5e11, 5e11, 1e12), min_steps=450, max_steps=3000),
        gpu=dict(shapes=((2, 128, 2), (4, 192, 3), (4, 256, 4), (6, 320, 5), (6, 384, 6), (8, 512, 8)),
                 budgets=(6e13, 2e14, 6e14), min_steps=100, max_steps=8000),
        size=size)
    return SizingConfig(**{**base, **changes})


def plan_runs(size: str | None = None, cfg: SizingConfig | None = None) -> list[dict]:
    """The sweep's runs (no training): {"budget", "shape", "steps", "flops_per_token"}, by budget then size."""
    size = size or size_profile()
    cfg = cfg or sizing_config(size)
    pcfg = pretrain_config(size)
    runs = []
    for budget in sorted(cfg.budgets):
        for shape in cfg.shapes:
            fpt = pcfg.flops_per_token("modern", shape)
            steps = round(budget / (fpt * pcfg.tokens_per_step))
            if cfg.min_steps <= steps <= cfg.max_steps:
                runs.append({"budget": budget, "shape": tuple(shape), "steps": steps, "flops_per_token": fpt})
    per_budget = {b: sum(r["budget"] == b for r in runs) for b in cfg.budgets}
    thin = {b: n for b, n in per_budget.items() if n < 3}
    if thin:
        raise ValueError(f"budgets {sorted(thin)} get fewer than 3 shapes within {cfg.min_steps}-{cfg.max_steps} "
                         f"steps ({thin}); a parabola needs 3: add shapes or move the budgets")
    return runs


def isoflop_sweep(size: str | None = None, cfg: SizingConfig | None = None, progress: bool = False) -> list[dict]:
    """Train every run of `plan_runs` with the modern recipe; one row each (ROW_KEYS): N non-embedding and total,
    D = steps x tokens per step, C = FLOPs per token x D, the held-out loss (the pretrain's windows), seconds."""
    size = size or size_profile()
    pcfg = pretrain_config(size)
    data = capstone_data(size)
    rows = []
    for run in plan_runs(size, cfg):
        rcfg = replace(pcfg, shape=run["shape"])
        t0 = time.perf_counter()
        # eval_interval=0: one Trainer evaluation at the end only; the score is heldout_loss below
        model, trainer = fit_recipe(rcfg, "modern", run["steps"], eval_interval=0, log_interval=run["steps"])
        seconds = time.perf_counter() - t0
        n_layer, n_embd, n_head = run["shape"]
        tokens = run["steps"] * trainer.tokens_per_step
        rows.append({"budget": run["budget"], "n_layer": n_layer, "n_embd": n_embd, "n_head": n_head,
                     "n_params": model.num_params(), "n_params_total": model.num_params(non_embedding=False),
                     "flops_per_token": run["flops_per_token"], "steps": run["steps"], "tokens": tokens,
                     "flops": float(run["flops_per_token"] * tokens),
                     "heldout_loss": heldout_loss(model, data.heldout_mix, max_windows=pcfg.heldout_windows),
                     "seconds": seconds})
        if progress:
            r = rows[-1]
            print(f"C={r['budget']:.2g} L{n_layer}-C{n_embd} N={r['n_params_total']:,} D={tokens:,} "
                  f"({r['steps']} steps): held-out {r['heldout_loss']:.4f} in {seconds:.1f} s", flush=True)
    return rows


# ============================================================================================== the fit


@dataclass(frozen=True)
class Allocation:
    """The sweep's answer for one budget: N_opt, D_opt and the predicted loss there, with how they were found."""

    budget: float  # FLOPs asked about
    n_opt: float  # parameters (all of them), N_opt = n_coef C^a
    d_opt: float  # tokens
    l_opt: float  # predicted held-out loss (nats/token) of the compute-optimal model: k budget^-gamma
    a: float  # N_opt ∝ C^a
    b: float  # D_opt ∝ C^b
    k: float
    gamma: float  # L*(C) = k C^-gamma, through the valley floors
    minima: tuple  # per swept budget: {"budget", "n_opt", "d_opt", "l_opt", "bracketed" (used by the fit if True)}
    extrapolation: float  # budget / the largest budget the fit used (> 1: predicting past the data)
    method: str  # "parabola" (fit_isoflop on the bracketed budgets) or "lowest run" (see note)
    note: str = ""


def _table(rows: Sequence[Mapping]) -> list[dict]:
    if not rows:
        raise ValueError("no sweep rows: run isoflop_sweep first")
    missing = [k for k in ROW_KEYS if k not in rows[0]]
    if missing:
        raise ValueError(f"rows lack {missing}: pass the rows isoflop_sweep returns")
    return [{"N": r["n_params_total"], "D": r["tokens"], "L": r["heldout_loss"], "C": r["flops"],
             "budget": r["budget"]} for r in rows]


def _valley(points: Sequence[Mapping]) -> tuple[float, float] | None:
    """(log N*, L*) at the vertex of the least-squares parabola of L against log N (fit_isoflop's fit), or None when
    the sizes tried do not bracket a valley: the parabola is not convex or its vertex lies outside them."""
    x = np.log([t["N"] for t in points])  # (S,)
    y = np.array([t["L"] for t in points])  # (S,)
    c2, c1, c0 = np.polyfit(x, y, 2)
    if c2 <= 0 or not x.min() <= -c1 / (2 * c2) <= x.max():
        return None
    return float(-c1 / (2 * c2)), float(c0 - c1 * c1 / (4 * c2))


def allocation(rows: Sequence[Mapping], budget: float) -> Allocation:
    """N_opt, D_opt and the predicted loss at `budget` FLOPs from the sweep's rows.

    fit_isoflop places each budget's optimum at the vertex of a parabola in log N (and in log D); the power laws in C
    go through those optima. A budget whose valley the ladder does not bracket (the lowest loss sits at an end of
    the sizes tried) has no vertex to give: it is left out of the fit and `note` names it (its minimum is listed with
    bracketed=False). With fewer than two bracketed budgets, each budget's lowest run stands in for its optimum
    (method "lowest run", as happens with ci's tiny runs): a coarser answer, never a hidden one."""
    if not (budget > 0 and math.isfinite(budget)):
        raise ValueError(f"budget={budget!r} must be a positive FLOP count")
    table = _table(rows)
    budgets = sorted({t["budget"] for t in table})
    by = {b: [t for t in table if t["budget"] == b] for b in budgets}
    small = [b for b in budgets if len(by[b]) < 3]
    if small:
        raise ValueError(f"budgets {small} have fewer than 3 runs; a parabola needs 3 sizes per budget")
    valleys = {b: _valley(by[b]) for b in budgets}
    kept = [b for b in budgets if valleys[b] is not None]
    left_out = [b for b in budgets if valleys[b] is None]
    fit, why = None, f"only {len(kept)} of {len(budgets)} budgets have a bracketed valley"
    if len(kept) >= 2:
        try:
            fit = fit_isoflop([t for b in kept for t in by[b]])
        except ValueError as e:  # e.g. the loss-vs-tokens parabola of a budget is not bracketed
            why = f"fit_isoflop refused the sweep ({e})"
    lowest = {b: min(by[b], key=lambda t: t["L"]) for b in budgets}
    unbracketed = [{"budget": b, "n_opt": float(lowest[b]["N"]), "d_opt": float(lowest[b]["D"]),
                    "l_opt": float(lowest[b]["L"]), "bracketed": False} for b in left_out]
    if fit is not None:
        method = "parabola"
        note = "" if not left_out else (f"budgets {', '.join(f'{b:.2g}' for b in left_out)} left out of the fit: "
                                        f"the lowest loss lies at an end of the ladder, so no valley is bracketed")
        fitted = [{"budget": b, "n_opt": float(n), "d_opt": float(d), "l_opt": valleys[b][1], "bracketed": True}
                  for b, n, d in zip(kept, fit.n_opt, fit.d_opt)]
        a, b_exp, n_coef, d_coef = fit.a, fit.b, fit.n_coef, fit.d_coef
    else:
        method, note = "lowest run", f"{why}; each budget's lowest run stands in for its optimum"
        fitted, unbracketed = [{**m, "bracketed": False} for m in unbracketed], []
        fitted += [{"budget": b, "n_opt": float(lowest[b]["N"]), "d_opt": float(lowest[b]["D"]),
                    "l_opt": float(lowest[b]["L"]), "bracketed": False} for b in kept]
        fitted.sort(key=lambda m: m["budget"])
        cs = np.array(budgets)
        a, n_coef = fit_loglog(cs, np.array([m["n_opt"] for m in fitted]))
        b_exp, d_coef = fit_loglog(cs, np.array([m["d_opt"] for m in fitted]))
    law = fit_power_law([m["budget"] for m in fitted], [m["l_opt"] for m in fitted], with_offset=False)
    minima = tuple(sorted(fitted + unbracketed, key=lambda m: m["budget"]))
    return Allocation(budget=float(budget), n_opt=n_coef * budget ** a, d_opt=d_coef * budget ** b_exp,
                      l_opt=float(law.predict(budget)), a=a, b=b_exp, k=law.k, gamma=law.gamma, minima=minima,
                      extrapolation=budget / max(m["budget"] for m in fitted), method=method, note=note)


def pick_shape(alloc: Allocation, shapes: Sequence[Shape], size: str | None = None) -> Shape:
    """The shape of `shapes` whose total parameter count is nearest N_opt in log (the pretrain's shape)."""
    pcfg = pretrain_config(size)

    def n_total(shape: Shape) -> int:
        with torch.device("meta"):
            return GPT(pcfg.model_config("modern", shape)).num_params(non_embedding=False)
    return tuple(min(shapes, key=lambda s: abs(math.log(n_total(s) / alloc.n_opt))))


def prediction_vs_result(sizing_rows: Sequence[Mapping], result: PretrainResult) -> dict:
    """The law's prediction at the pretrain's own FLOPs beside what the run measured (same held-out windows)."""
    alloc = allocation(sizing_rows, result.flops)
    return {"flops": result.flops, "predicted_loss": alloc.l_opt, "actual_loss": result.heldout_loss,
            "error": result.heldout_loss - alloc.l_opt, "rel_error": (result.heldout_loss - alloc.l_opt) / alloc.l_opt,
            "n_opt": alloc.n_opt, "n_params_total": result.n_params_total, "d_opt": alloc.d_opt,
            "tokens": result.tokens, "extrapolation": alloc.extrapolation, "method": alloc.method}
