"""Optimization-setting studies: learning rate, warmup, schedule, batch size and the gradient noise scale.

Survey §4.3.1 (optimization setting) lists what LLM pre-training settled on: a peak learning rate found by a
sweep, a linear warmup followed by a cosine decay (or warmup-stable-decay), and a batch size that grows with
training. Each choice is a small experiment here, on the shared tiny-run recipe of
`book.runs` (same model, data and budget in every arm; one knob changes):

- `lr_sweep`: final/held-out loss per peak lr, each lr labelled too low / right / too high (diverged).
- `warmup_study`, `schedule_study`: held-out loss curves and the lr curve of each arm (`optim.lr_curve`).
- `noise_scale_from_norms`, `estimate_noise_scale`, `gradient_noise_scale`: the "simple" gradient noise scale
  B_simple = tr(Σ)/|G|² of McCandlish et al. 2018 (An Empirical Model of Large-Batch Training, App. A.1),
  measured at a few points of a training run: the batch size beyond which larger batches stop paying.
- `batch_size_study`: held-out loss per batch size at an equal token budget, to set beside B_simple.

Rows are plain JSON-ready dicts (a missing value is None). Figures are in `plots.py`; the stability
studies (weight decay, clipping, loss spikes, Survey §4.3.2) are in `studies_stability.py`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from minillm.config import SCHEDULES, TrainConfig
from book.runs import ArchRun, check_run, study_data, train, train_config
from minillm.train.optim import lr_curve

__all__ = ["lr_sweep", "warmup_study", "schedule_study", "noise_scale_from_norms", "estimate_noise_scale",
           "gradient_noise_scale", "batch_size_study"]


# ------------------------------------------------------------------------------------------ shared helpers


_check_run = check_run  # the architecture studies' check: None -> the size profile's recipe


def _numbers(name: str, values: Sequence, *, allow_zero: bool = False, allow_none: bool = False) -> list:
    values = list(values)
    ok = bool(values) and all(
        (allow_none and v is None) or (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
                                       and (v >= 0 if allow_zero else v > 0)) for v in values)
    if not ok:
        kind = "non-negative" if allow_zero else "positive"
        extra = " (or None)" if allow_none else ""
        raise ValueError(f"{name}={values!r} must be a non-empty sequence of {kind} finite numbers{extra}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name}={values} has repeated values")
    return values


def _json(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _train(run: ArchRun, **overrides) -> dict:
    """train_config on run's model shape; the result without the (non-JSON) model."""
    _, vocab, _, _ = study_data(run)
    res = train_config(run.model_config(vocab), run, **overrides)
    res.pop("model")
    return res


def _curves(res: dict) -> dict:
    """Per-step training losses, and the held-out evaluations the Trainer made, from a train_config result."""
    hist = res["history"]
    return {"losses": [_json(r["loss"]) for r in hist],
            "val_steps": [r["step"] for r in hist if "val_loss" in r],
            "val_losses": [_json(r["val_loss"]) for r in hist if "val_loss" in r]}


def _summary(res: dict) -> dict:
    return {k: res[k] for k in ("final_loss", "val_loss", "initial_loss", "diverged", "diverged_at", "status")}


def _schedule_cfg(run: ArchRun, **fields) -> TrainConfig:
    """The TrainConfig `run` trains with, `fields` changed (lr_curve reads its schedule fields)."""
    return run.train_config(**fields)


# ------------------------------------------------------------------------------------------ 1. peak lr


def lr_sweep(lrs: Sequence[float] = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1.0), run: ArchRun | None = None, *,
             tol: float = 0.05) -> list[dict]:
    """Train run's recipe once per peak lr. Rows (in lr order): lr, final_loss, val_loss, initial_loss,
    diverged, diverged_at, status, verdict, losses (per-step training loss).

    verdict: "too high" if the run diverged (NaN/inf, or it ended worse than it started: see train_config);
    otherwise "right" if its val_loss is within `tol` nats of the best one, else "too low"/"too high" by the
    side of the best lr it sits on. At ci size 1e-4 barely moves in 60 steps, 3e-3 trains, 1.0 diverges."""
    run = _check_run(run)
    lrs = sorted(_numbers("lrs", lrs))
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tol={tol!r} must be a non-negative number (nats)")
    rows = []
    for lr in lrs:
        res = _train(run, lr=float(lr))
        rows.append({"lr": float(lr), **_summary(res), "losses": _curves(res)["losses"]})
    ok = [r for r in rows if not r["diverged"]]
    best = min(ok, key=lambda r: r["val_loss"]) if ok else None
    for r in rows:
        if r["diverged"] or best is None:
            r["verdict"] = "too high"
        elif r["val_loss"] <= best["val_loss"] + tol:
            r["verdict"] = "right"
        else:
            r["verdict"] = "too low" if r["lr"] < best["lr"] else "too high"
    return rows


# ------------------------------------------------------------------------------------------ 2. warmup, schedule


def _eval_every(run: ArchRun, n_evals: int) -> int:
    if isinstance(n_evals, bool) or not isinstance(n_evals, int) or n_evals < 1:
        raise ValueError(f"n_evals={n_evals!r} must be a positive int")
    return max(1, run.steps // n_evals)


def warmup_study(warmups: Sequence[int] = (0, 5, 20), run: ArchRun | None = None, *, lr: float | None = None,
                 n_evals: int = 10) -> list[dict]:
    """One run per warmup length (linear warmup then cosine to lr/10), at peak `lr` (default run.lr; warmup
    matters most near the highest trainable lr). Rows: warmup, lr, final_loss, val_loss, initial_loss,
    diverged, diverged_at, status, losses, val_steps/val_losses (about n_evals held-out evaluations during
    training), lrs (the schedule, one value per step, from optim.lr_curve)."""
    run = _check_run(run)
    warmups = _numbers("warmups", warmups, allow_zero=True)
    if any(not isinstance(w, int) or w > run.steps for w in warmups):
        raise ValueError(f"warmups={warmups} must be ints in [0, run.steps={run.steps}]")
    lr = run.lr if lr is None else float(_numbers("lr", [lr])[0])
    every = _eval_every(run, n_evals)
    rows = []
    for w in warmups:
        res = _train(run, lr=lr, warmup_steps=w, eval_interval=every)
        lrs = lr_curve(_schedule_cfg(run, lr=lr, warmup_steps=w))
        rows.append({"warmup": w, "lr": lr, **_summary(res), **_curves(res), "lrs": lrs})
    return rows


def schedule_study(schedules: Sequence[str] = ("cosine", "wsd", "constant"), run: ArchRun | None = None, *,
                   lr: float | None = None, n_evals: int = 10) -> list[dict]:
    """One run per schedule after the same warmup (cosine and linear decay to lr/10; wsd holds lr and decays
    over the last 20% of steps; constant never decays). Rows: schedule, lr, the train_config summary,
    losses, val_steps/val_losses, lrs. The decay phase is where the loss drops: constant ends highest, and
    wsd catches up with cosine during its short decay (Hägele et al. 2024)."""
    run = _check_run(run)
    schedules = list(schedules)
    if not schedules or any(s not in SCHEDULES for s in schedules) or len(set(schedules)) != len(schedules):
        raise ValueError(f"schedules={schedules!r} must be distinct names from {', '.join(SCHEDULES)}")
    lr = run.lr if lr is None else float(_numbers("lr", [lr])[0])
    every = _eval_every(run, n_evals)
    rows = []
    for s in schedules:
        res = _train(run, lr=lr, schedule=s, eval_interval=every)
        lrs = lr_curve(_schedule_cfg(run, lr=lr, schedule=s))
        rows.append({"schedule": s, "lr": lr, **_summary(res), **_curves(res), "lrs": lrs})
    return rows


# ------------------------------------------------------------------------------------------ 3. noise scale


def noise_scale_from_norms(g2_small: float, g2_big: float, b_small: int, b_big: int) -> dict:
    """Unbiased |G|² and tr(Σ) from mean squared gradient norms at two batch sizes (McCandlish et al. App. A.1).

    A batch-B gradient is G plus noise of covariance Σ/B, so E|G_B|² = |G|² + tr(Σ)/B. Two batch sizes give
    two equations:
        |G|²  = (B_big·|G_big|² − B_small·|G_small|²) / (B_big − B_small)
        tr(Σ) = (|G_small|² − |G_big|²) / (1/B_small − 1/B_big)
    B_simple = tr(Σ)/|G|²: the batch size at which the noise in a gradient equals its signal. Average g2_* over
    many batches first (the ratio of noisy estimates is biased); with |G|² estimated <= 0 (noise swamps the
    signal) B_simple is None: larger than these batch sizes can resolve."""
    if not (isinstance(b_small, int) and isinstance(b_big, int) and 0 < b_small < b_big):
        raise ValueError(f"batch sizes must be ints with 0 < b_small < b_big, got {b_small!r}, {b_big!r}")
    g2 = (b_big * g2_big - b_small * g2_small) / (b_big - b_small)
    trace = (g2_small - g2_big) / (1.0 / b_small - 1.0 / b_big)
    b_simple = trace / g2 if g2 > 0 and trace > 0 else None
    return {"grad_sq": float(g2), "trace_sigma": float(trace), "b_simple": b_simple}


def estimate_noise_scale(grad_sq_norm: Callable[[int], float], b_small: int, b_big: int, draws: int = 8) -> dict:
    """B_simple from `draws` fresh batches at each size: grad_sq_norm(B) must return |G_B|² for a new batch of
    B examples (the gradient of the *mean* loss). Returns noise_scale_from_norms's dict plus the two means."""
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws={draws!r} must be a positive int")
    g2_small = sum(float(grad_sq_norm(b_small)) for _ in range(draws)) / draws
    g2_big = sum(float(grad_sq_norm(b_big)) for _ in range(draws)) / draws
    return {**noise_scale_from_norms(g2_small, g2_big, b_small, b_big), "g2_small": g2_small, "g2_big": g2_big}


def gradient_noise_scale(run: ArchRun | None = None, batch_sizes: tuple[int, int] = (4, 16), *,
                         at_steps: Sequence[int] | None = None, draws: int = 8) -> list[dict]:
    """B_simple of run's model at a few steps of its training run (default: 0, 1/4, 1/2 and all of run.steps).

    At each of those steps the Trainer is paused (a hook) and gradients of fresh training batches of
    batch_sizes[0] and [1] sequences are measured with torch.autograd.grad (the Trainer's own gradients and
    data order are untouched). Rows: step, loss (training loss of that step; None at 0), grad_sq,
    trace_sigma, b_simple (sequences), b_simple_tokens (× block_size), g2_small, g2_big, batch_sizes.
    B_simple grows as the loss falls (the signal |G|² shrinks faster than the noise): the reason large runs
    ramp up their batch size (Survey §4.3.1, GPT-3/PaLM batch warmup)."""
    from minillm.data.loader import get_batch

    run = _check_run(run)
    pair = tuple(batch_sizes) if isinstance(batch_sizes, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(b, int) and not isinstance(b, bool) for b in pair) \
            or not 0 < pair[0] < pair[1]:
        raise ValueError(f"batch_sizes={batch_sizes!r} must be two ints (small, big) with 0 < small < big")
    b_small, b_big = pair
    steps = sorted({0, run.steps // 4, run.steps // 2, run.steps} if at_steps is None else set(at_steps))
    if not steps or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= run.steps for s in steps):
        raise ValueError(f"at_steps={at_steps!r} must be ints in [0, run.steps={run.steps}]")
    splits, _, _, _ = study_data(run)
    generator = torch.Generator().manual_seed(run.seed + 1)  # measurement batches, apart from training's
    rows: list[dict] = []

    def measure(trainer, step: int, loss) -> None:
        params = [p for p in trainer.model.parameters() if p.requires_grad]

        def grad_sq_norm(b: int) -> float:
            x, y = get_batch(splits.train, b, run.block_size, trainer.device, generator)  # (b, T) each
            _, batch_loss = trainer.model(x, y)
            grads = torch.autograd.grad(batch_loss, params)
            return float(sum(g.double().pow(2).sum() for g in grads))

        est = estimate_noise_scale(grad_sq_norm, b_small, b_big, draws)
        bs = est["b_simple"]
        rows.append({"step": step, "loss": _json(loss), **est,
                     "b_simple_tokens": None if bs is None else bs * run.block_size,
                     "batch_sizes": [b_small, b_big]})

    trainer = train(run, splits, fit=False, log_interval=1, hooks={"on_step": lambda tr, row: (
        measure(tr, row["step"], row["loss"]) if row["step"] in steps else None)}).trainer
    if 0 in steps:
        measure(trainer, 0, None)
    trainer.fit()
    return rows


def batch_size_study(batch_sizes: Sequence[int] = (2, 4, 8, 16, 32), run: ArchRun | None = None) -> list[dict]:
    """One run per batch size at run's token budget (run.tokens): steps = tokens / (B × block_size), warmup
    scaled in proportion, the same peak lr. Rows: batch_size, steps, tokens, the train_config summary,
    losses. Below the critical batch size (~B_simple) a bigger batch wastes no data but needs as many tokens;
    above it, the fewer steps cost loss at equal tokens."""
    run = _check_run(run)
    batch_sizes = _numbers("batch_sizes", batch_sizes)
    if any(not isinstance(b, int) for b in batch_sizes):
        raise ValueError(f"batch_sizes={batch_sizes} must be positive ints")
    rows = []
    for b in sorted(batch_sizes):
        steps = run.tokens // (b * run.block_size)
        if steps < 1:
            raise ValueError(f"batch_size={b} leaves no full step within run.tokens={run.tokens}: use smaller "
                             f"batches or a longer run")
        arm = run.replace(batch_size=b, steps=steps, warmup=min(steps, round(run.warmup_steps * steps / run.steps)))
        res = _train(arm)
        rows.append({"batch_size": b, "steps": steps, "tokens": steps * b * run.block_size, **_summary(res),
                     "losses": _curves(res)["losses"]})
    return rows
