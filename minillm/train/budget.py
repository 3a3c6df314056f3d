"""Train for a wall-clock budget instead of a step count: compute-matched comparisons (Survey §4.3.1, §2.2).

Comparing two recipes fairly means giving both the same compute. On one machine the honest unit is seconds: a
cheaper step buys more steps. `fit_for_seconds(trainer, seconds)` trains a `Trainer` until its budget is spent,
with a schedule that still ends where the budget does:

1. The first step pays one-off costs (allocations, kernel selection, compilation) and is not timed.
2. Steps 2..``probe`` are timed. With cosine or linear decay they must lie inside the warmup, where the learning
   rate does not depend on the total step count S (`lr_at`). They are real training steps: nothing is thrown away.
3. S = steps done + seconds left / seconds per step, and ``trainer.cfg.max_steps`` becomes S.
4. With WSD the learning rate stays at its peak until the last ``decay_frac``·S steps, so it does not depend on S
   either until the decay: S is re-planned every ``replan`` steps from the rate of the steps since the last plan
   (load on a shared machine moves it) until the decay begins; from there S is fixed. A constant schedule is
   re-planned until the end. With cosine or linear the learning rate depends on S at every step after the
   warmup, so S is planned once, after the probe.

The seconds are the Trainer's own ``elapsed_s`` (time inside ``fit``), less whatever ``paused`` returns (e.g. the
time a hook spent scoring a curve point, which should not count against the run).
"""
from __future__ import annotations

import math
from typing import Callable

from minillm.config import TrainConfig


def plan_steps(done: int, used_s: float, step_s: float, budget_s: float) -> int:
    """Steps a budget affords: those done plus the seconds left at ``step_s`` seconds per step (at least one more)."""
    return done + max(1, int((budget_s - used_s) / step_s))


def decay_start(steps: int, decay_frac: float) -> int:
    """The first (0-based) step of a WSD decay over the last ceil(decay_frac * steps) steps, as `lr_at` has it."""
    return steps - math.ceil(decay_frac * steps)


def fit_for_seconds(trainer, budget_s: float, *, probe: int = 20, replan: int = 50,
                    paused: Callable[[], float] | None = None,
                    configure: Callable[[TrainConfig, int], TrainConfig] | None = None) -> list[list[float]]:
    """Train ``trainer`` (a fresh `Trainer`) for ``budget_s`` seconds of ``fit``; return the plans made.

    Each plan is ``[step, seconds used, planned steps]``. ``configure(cfg, steps)`` builds the config of a plan
    (default: ``cfg.replace(max_steps=steps)``; e.g. also scale log_interval to the new length). Raises ValueError
    for a probe that is not inside the warmup, or a trainer that has already stepped.
    """
    cfg = trainer.cfg
    if not (budget_s > 0 and math.isfinite(budget_s)):
        raise ValueError(f"budget_s={budget_s!r} must be a positive number of seconds")
    if probe < 2 or replan < 1:
        raise ValueError(f"probe={probe} must be >= 2 (the first step is not timed) and replan={replan} >= 1")
    if cfg.schedule in ("cosine", "linear") and probe >= cfg.warmup_steps:
        raise ValueError(f"probe={probe} must be below warmup_steps={cfg.warmup_steps}: before the first plan the "
                         "learning rate must not depend on the step count (raise warmup_steps or lower probe)")
    if probe >= cfg.max_steps:
        raise ValueError(f"probe={probe} must be below the initial max_steps={cfg.max_steps} (any large guess will do)")
    if trainer.step != 0:
        raise ValueError(f"fit_for_seconds needs a fresh Trainer; this one is at step {trainer.step}")
    configure = configure or (lambda c, steps: c.replace(max_steps=steps))
    used = (lambda: trainer.elapsed_s - paused()) if paused is not None else (lambda: trainer.elapsed_s)

    trainer.fit(stop_at=1)  # one-off costs: not in the rate
    mark = (trainer.step, used())
    trainer.fit(stop_at=probe)
    plans: list[list[float]] = []
    while True:
        rate = (used() - mark[1]) / (trainer.step - mark[0])  # the near past predicts the rest best
        steps = plan_steps(trainer.step, used(), rate, budget_s)
        while cfg.schedule == "wsd" and decay_start(steps, cfg.decay_frac) < trainer.step:
            steps += 1  # never plan the decay to start behind the next step: the lr would drop at once
        trainer.cfg = configure(trainer.cfg, steps)  # read at every step (lr_at) and by every fit()
        plans.append([trainer.step, round(used(), 3), steps])
        decay_at = {"wsd": decay_start(steps, cfg.decay_frac), "constant": steps}.get(cfg.schedule, trainer.step)
        if trainer.step + replan > decay_at:
            break
        mark = (trainer.step, used())
        trainer.fit(stop_at=trainer.step + replan)
    trainer.fit()
    return plans
