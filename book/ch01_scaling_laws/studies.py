"""Data scaling far past Chinchilla's 20 tokens/param. Survey §2.1 (scaling laws; "LLaMA-style" over-training
of small models). The knowledge-capacity study, the other one the survey raises, is in `knowledge.py`.

`data_scaling_curve`: one fixed small model trained on the story corpus (char level, the laptop sweep's data,
context, batch and width-rule lr) for 5 to 320 tokens per parameter. Chinchilla's optimum is ~20; LLaMA-2 7B
saw ~300. Each length is a *separate run with its own cosine schedule annealed to its end* (the Chinchilla
lesson: a run evaluated half-way through a longer cosine has not yet annealed, so it looks worse than a run of
that length would). For contrast, the longest run is also evaluated along the way (rows with
schedule="mid_run"): the gap between the two curves is the schedule caveat, measured.
`improvement_per_decade` then says how much loss each 10x of data still buys, and what share of the remaining
gap to the corpus's exact entropy floor it closes.

`check_shape` and `train_shape` are shared with `knowledge.py`. Threads are left to the caller
(bench/scaling_studies.py uses one).
"""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from typing import Any

from book.runs import Run, train


def check_shape(n_layer: Any, n_embd: Any, n_head: Any) -> tuple[int, int, int]:
    """(n_layer, n_embd, n_head) as positive ints with n_embd divisible by n_head, else ValueError."""
    for name, v in (("n_layer", n_layer), ("n_embd", n_embd), ("n_head", n_head)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name}={v!r} must be a positive int")
    if n_embd % n_head:
        raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
    return n_layer, n_embd, n_head


def train_shape(shape: tuple[int, int, int], splits, vocab_size: int, block_size: int, batch_size: int,
                steps: int, lr: float, seed: int, eval_batches: int, eval_interval: int = 0, hooks: Any = None,
                device: str = "auto"):
    """A GPT of `shape` and its Trainer (not yet fitted), from the book's one recipe (`book.runs.train`) with the
    sweep's settings: warm-up round(5%) of the steps, cosine to lr/10, 16 history rows, Trainer evaluations of
    eval_batches random batches every eval_interval steps (0: at the end only)."""
    n_layer, n_embd, n_head = shape
    run = Run(n_layer=n_layer, n_embd=n_embd, n_head=n_head, block_size=block_size, batch_size=batch_size,
              steps=steps, lr=lr, warmup=max(1, round(0.05 * steps)), seed=seed, device=device)
    out = train(run, splits, vocab_size=vocab_size, hooks=hooks, fit=False, eval_batches=eval_batches,
                eval_interval=eval_interval, log_interval=max(1, steps // 16))
    return out.model, out.trainer


# ============================================================================================ 1. data scaling


def data_scaling_curve(n_layer: int = 1, n_embd: int = 48, n_head: int = 1,
                       tokens_per_param: Sequence[float] = (5, 10, 20, 40, 80, 160, 320), *, sweep=None,
                       mid_run: bool = True, progress: bool = False) -> list[dict]:
    """Held-out loss of one model shape trained for each `tokens_per_param` (× non-embedding N) tokens.

    `sweep` (a SweepConfig; default: the laptop sweep's) fixes the corpus, context, batch, lr rule, seed.
    Returns rows sorted by tokens: tokens, tokens_per_param, steps, val_loss, floor, excess (= val_loss -
    floor), seconds, schedule ("own_cosine": a run of exactly that length; "mid_run": the longest run
    evaluated part-way, if `mid_run`). The shape's n_params / n_params_total are in every row.
    """
    from minillm.scaling.sweep import prepare_data, shape_counts, default_sweep

    shape = check_shape(n_layer, n_embd, n_head)
    tpp = sorted(float(t) for t in tokens_per_param)
    if not tpp or any(not (t > 0 and math.isfinite(t)) for t in tpp) or len(set(tpp)) != len(tpp):
        raise ValueError(f"tokens_per_param={tuple(tokens_per_param)!r} must be distinct positive numbers")
    cfg = sweep if sweep is not None else default_sweep("laptop")
    splits, vocab, floor = prepare_data(cfg)
    n_params, n_total, _ = shape_counts(shape, vocab, cfg.block_size)
    tps = cfg.tokens_per_step
    steps_of = [max(2, round(t * n_params / tps)) for t in tpp]
    if len(set(steps_of)) != len(steps_of):
        raise ValueError(f"tokens_per_param={tpp} round to repeated step counts {steps_of} for N={n_params}: "
                         f"space the values further apart or use a bigger model")
    if steps_of[-1] * tps > len(splits.train):
        # More than one epoch would measure repetition (Survey §4.1.3), not fresh data: say so, do not hide it.
        raise ValueError(f"the longest run needs {steps_of[-1] * tps:,} tokens but the corpus has "
                         f"{len(splits.train):,}: raise sweep.n_docs or lower max(tokens_per_param)")
    lr = cfg.lr_for_width(n_embd)
    base = dict(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_params=n_params, n_params_total=n_total,
                floor=floor, lr=lr)
    rows: list[dict] = []
    for i, steps in enumerate(steps_of):
        longest = i == len(steps_of) - 1
        mid: list[dict] = []
        hooks = {"on_eval": lambda tr, row: mid.append(dict(row))} if (longest and mid_run) else None
        eval_interval = max(1, steps // 48) if hooks else 0
        _, trainer = train_shape(shape, splits, vocab, cfg.block_size, cfg.batch_size, steps, lr, cfg.train_seed,
                            cfg.eval_batches, eval_interval, hooks, cfg.device)
        t0 = time.perf_counter()
        history = trainer.fit()
        seconds = time.perf_counter() - t0
        val = history[-1]["val_loss"]
        tokens = steps * tps
        rows.append({**base, "schedule": "own_cosine", "steps": steps, "tokens": tokens,
                     "tokens_per_param": tokens / n_params, "val_loss": val, "excess": val - floor,
                     "seconds": round(seconds, 2)})
        for r in mid[:-1]:  # the last eval is the run's own end, already a row above
            rows.append({**base, "schedule": "mid_run", "steps": r["step"], "tokens": r["tokens"],
                         "tokens_per_param": r["tokens"] / n_params, "val_loss": r["val_loss"],
                         "excess": r["val_loss"] - floor, "seconds": None})
        if progress:
            print(f"  data scaling: {tokens / n_params:6.1f} tok/param ({steps} steps): val {val:.4f} "
                  f"(floor {floor:.4f}) in {seconds:.1f} s", flush=True)
    return sorted(rows, key=lambda r: (r["schedule"], r["tokens"]))


def improvement_per_decade(rows: Sequence[dict], schedule: str = "own_cosine") -> list[dict]:
    """For consecutive runs, the loss bought per 10x of data: log-log slope turned into nats per decade, and the
    share of the gap to the floor closed per decade. A share near 0 means saturation at this model size."""
    pts = sorted((r["tokens"], r["val_loss"], r["floor"]) for r in rows if r.get("schedule") == schedule)
    if len(pts) < 2:
        raise ValueError(f"need at least two rows with schedule={schedule!r}, got {len(pts)}")
    out = []
    for (d0, l0, f), (d1, l1, _) in zip(pts, pts[1:]):
        decades = math.log10(d1 / d0)
        gap0, gap1 = l0 - f, l1 - f
        closed = 1 - (gap1 / gap0) ** (1 / decades) if gap0 > 0 and gap1 > 0 else float("nan")
        out.append({"tokens_from": d0, "tokens_to": d1, "nats_per_decade": (l0 - l1) / decades,
                    "gap_closed_per_decade": closed})
    return out


# ============================================================================================ 2. the shipped sweep's exponents


@functools.lru_cache(maxsize=1)
def sweep_allocation_exponents() -> dict[str, float]:
    """N_opt ∝ C^a fitted to the shipped laptop IsoFLOP sweep (bench/results/sweeps/laptop_isoflop.jsonl) by
    approaches 1 (envelope) and 2 (IsoFLOP parabolas), once with N counted as non-embedding parameters (the
    sweep's `n_params`, Kaplan's count) and once as total parameters (`n_params_total`, Chinchilla's count).
    Keys: envelope, isoflop, envelope_total, isoflop_total; isoflop_se, isoflop_total_se (the standard error of
    approach 2's slope, ordinary least squares on its few points: how loosely they pin it down); n_budgets
    (bracketed budgets approach 2 used). The chapter quotes these (book/prose.py keys); approach 3 is left out:
    its fit takes tens of seconds."""
    from book import results
    from book.ch01_scaling_laws import plots
    import numpy as np

    from minillm.scaling import fit_envelope, fit_isoflop

    out: dict[str, float] = {}
    rows = results.sweep()
    for suffix, count in (("", "n_params"), ("_total", "n_params_total")):
        counted = [dict(r, n_params=r[count]) for r in rows]
        bracketed = plots.bracketed_budgets(counted)
        out["envelope" + suffix] = fit_envelope(plots.envelope_curves(counted)).a
        iso = fit_isoflop(plots.run_columns(bracketed))
        out["isoflop" + suffix] = iso.a
        x, y = np.log(iso.C), np.log(iso.n_opt)  # (K,) one point per budget
        resid = y - np.polyval(np.polyfit(x, y, 1), x)
        out["isoflop" + suffix + "_se"] = float(np.sqrt(resid @ resid / (len(x) - 2) / ((x - x.mean()) ** 2).sum()))
        out["n_budgets" + suffix] = len({r["budget"] for r in bracketed})
    return out
