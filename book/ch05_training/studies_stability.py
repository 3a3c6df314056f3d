"""Stabilizing training: weight decay, gradient clipping, and surviving a loss spike. Survey §4.3.2.

The survey lists the stabilizers LLM training relies on: weight decay (0.1) and gradient clipping (global norm
1.0) everywhere, and for the loss spikes that still happen, PaLM's and OPT's remedy -- restart from an earlier
checkpoint and skip the data that triggered the spike -- or simply skipping steps whose loss is far above the
recent ones. Each is a small experiment on the shared tiny-run recipe of `book.runs`:

- `weight_decay_study`: held-out loss, gradient-norm history and the final norm of the decayed matrices per λ.
- `clipping_study`: at a high lr, held-out loss and the (pre-clip) gradient norms with and without clipping.
- `loss_spike_study`: one bad batch at a chosen step, three arms: no protection, skip the step when its loss
  exceeds k × the running median, and roll back to the last in-memory checkpoint skipping the bad data.
- `precision_study`: the same run in fp32 and bf16 autocast (and fp16 with loss scaling on CUDA, where
  torch supports it): held-out loss and wall time side by side.

Rows are JSON-ready dicts; figures are in `plots.py`; the §4.3.1 studies are in `studies.py`.
"""
from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Sequence

import torch

from minillm.evaluation.loss import heldout_loss
from book.runs import ArchRun, study_data, train, train_config
from minillm.train.optim import param_groups
from book.ch05_training.studies import _check_run, _curves, _json, _numbers, _summary, _train

__all__ = ["weight_decay_study", "clipping_study", "loss_spike_study", "precision_study", "SPIKE_ARMS"]

SPIKE_ARMS = ("none", "skip", "rollback")


def _norm_history(res: dict) -> list[float | None]:
    return [_json(r["grad_norm"]) for r in res["history"]]  # the global norm before clipping, every step


# ------------------------------------------------------------------------------------------ weight decay


def weight_decay_study(wds: Sequence[float] = (0.0, 0.1, 1.0), run: ArchRun | None = None, *,
                       lr: float | None = None) -> list[dict]:
    """One run per decoupled weight decay λ (on matrices only: see optim.param_groups). Rows: weight_decay,
    lr, the train_config summary, losses, grad_norms (per step, before clipping), weight_norm (L2 norm of the
    decayed matrices at the end: λ is a pull toward 0 of strength lr·λ per step, so it shrinks with λ)."""
    run = _check_run(run)
    wds = _numbers("wds", wds, allow_zero=True)
    lr = run.lr if lr is None else float(_numbers("lr", [lr])[0])
    _, vocab, _, _ = study_data(run)
    rows = []
    for wd in wds:
        res = train_config(run.model_config(vocab), run, lr=lr, weight_decay=float(wd))
        model = res.pop("model")
        decayed = param_groups(model, 1.0)[0]["params"]  # the group that gets decay (matrices)
        weight_norm = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in decayed))
        rows.append({"weight_decay": float(wd), "lr": lr, **_summary(res), "losses": _curves(res)["losses"],
                     "grad_norms": _norm_history(res), "weight_norm": weight_norm})
    return rows


# ------------------------------------------------------------------------------------------ clipping


def clipping_study(clips: Sequence[float | None] = (None, 1.0, 0.25), run: ArchRun | None = None, *,
                   lr: float | None = None) -> list[dict]:
    """One run per max gradient norm (None = no clipping) at a deliberately high peak lr (default 10 × run.lr).
    Rows: grad_clip, lr, the train_config summary, losses, grad_norms (the norm *before* clipping, per step:
    what the Trainer records), clipped_frac (share of steps whose norm exceeded the clip)."""
    run = _check_run(run)
    clips = _numbers("clips", clips, allow_none=True)
    lr = 10 * run.lr if lr is None else float(_numbers("lr", [lr])[0])
    rows = []
    _, vocab, _, _ = study_data(run)
    for clip in clips:
        res = train_config(run.model_config(vocab), run, lr=lr, grad_clip=clip)
        res.pop("model")
        norms = _norm_history(res)
        seen = [n for n in norms if n is not None]
        frac = None if clip is None or not seen else sum(n > clip for n in seen) / len(seen)
        rows.append({"grad_clip": clip, "lr": lr, **_summary(res), "losses": _curves(res)["losses"],
                     "grad_norms": norms, "clipped_frac": frac})
    return rows


# ------------------------------------------------------------------------------------------ loss spikes


class _PoisonedLoader:
    """The Trainer's loader, except that draw number `at` (0-based) is a bad batch.

    The bad batch: uniformly random tokens from the rarest quarter of the vocabulary (garbage such as a
    mis-decoded file; the model gives those characters tiny probability, so its loss is several times the
    usual), consumed with the lr multiplied by `scale` for that one step (a stand-in for the optimizer state
    that turns a bad batch into a blow-up). The Trainer sets each step's lr before it draws its batch and
    resets it on the next step, so scaling the param groups here affects exactly the step that uses it.
    Tied to the draw, not the step: an arm that skips data never sees it again."""

    def __init__(self, inner, optimizer, at: int, scale: float, rare: torch.Tensor, seed: int):
        self.inner, self.optimizer, self.at, self.scale, self.rare = inner, optimizer, at, scale, rare
        self.draws = 0
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        return self

    def __next__(self):
        x, y = next(self.inner)  # (B, T) each; drawn anyway so the data order matches the other arms
        self.draws += 1
        if self.draws - 1 != self.at:
            return x, y
        idx = torch.randint(len(self.rare), (x.shape[0], x.shape[1] + 1), generator=self.generator)
        w = self.rare[idx].to(x.device)  # (B, T+1) garbage tokens
        for group in self.optimizer.param_groups:
            group["lr"] *= self.scale
        return w[:, :-1], w[:, 1:]


class _SpikeGuard:
    """on_step hook: when a step's loss exceeds k × the median of the last `window` accepted losses, restore
    the model and optimizer to the newest snapshot. Snapshots (in-memory state_dict copies) are taken after
    every `every`-th accepted step: every=1 restores the state just before the bad step, i.e. skips its
    update exactly (the step counter and the data move on, as with the Trainer's own on_nan='skip');
    every=N rolls back up to N steps, discarding the bad update and those since the last snapshot, and the
    data moves on past them (PaLM restarts ~100 steps before a spike and skips 200-500 batches)."""

    def __init__(self, k: float, window: int, every: int):
        self.k, self.window, self.every = k, window, every
        self.accepted: list[float] = []
        self.snapshot = None  # (step, model state, optimizer state)
        self.flagged: list[int] = []
        self.restored_to: list[int] = []

    def take(self, trainer) -> None:
        self.snapshot = (trainer.step, copy.deepcopy(trainer.model.state_dict()),
                         copy.deepcopy(trainer.optimizer.state_dict()))

    def __call__(self, trainer, row) -> None:
        loss = row["loss"]
        recent = self.accepted[-self.window:]
        if len(recent) >= 3 and not (math.isfinite(loss) and loss <= self.k * statistics.median(recent)):
            step, model_state, opt_state = self.snapshot
            trainer.model.load_state_dict(model_state)
            # a copy: the optimizer updates its loaded state in place, and the snapshot may be needed again
            trainer.optimizer.load_state_dict(copy.deepcopy(opt_state))
            self.flagged.append(row["step"])
            self.restored_to.append(step)
            return
        self.accepted.append(loss)
        if row["step"] % self.every == 0:
            self.take(trainer)


def _spike_arm(arm: str, run: ArchRun, spike_step: int, scale: float, k: float, window: int,
               ckpt_every: int) -> dict:
    splits, vocab, _, _ = study_data(run)
    counts = torch.bincount(torch.as_tensor(splits.train), minlength=vocab)  # (V,)
    rare = counts.argsort()[: max(2, vocab // 4)]  # the rarest quarter of the characters
    guard = None if arm == "none" else _SpikeGuard(k, window, 1 if arm == "skip" else ckpt_every)
    out = train(run, splits, fit=False, log_interval=1, on_nan="skip", hooks={"on_step": [guard]} if guard else None)
    model, trainer = out.model, out.trainer
    # step s (1-based, as history rows count) consumes draw s-1
    trainer.loader = _PoisonedLoader(trainer.loader, trainer.optimizer, spike_step - 1, scale, rare, run.seed)
    if guard is not None:
        guard.take(trainer)  # the initial state: something to go back to before the first snapshot
    trainer.fit()
    losses = [_json(r["loss"]) for r in trainer.history]  # (steps,) history[i] is step i+1
    before = [v for v in losses[max(0, spike_step - 1 - window): spike_step - 1] if v is not None]
    after = losses[spike_step:]  # steps after the bad one
    loss_before = statistics.median(before) if before else None
    max_after = None if not after or any(v is None for v in after) else max(after)
    ratio = None if loss_before is None or max_after is None else max_after / loss_before
    tail = [v for v in losses[-max(1, len(losses) // 10):] if v is not None]  # last 10% of steps
    val = heldout_loss(model, splits.val, length=run.block_size, max_windows=run.eval_windows)
    return {"arm": arm, "spike_step": spike_step, "scale": scale, "k": k, "window": window,
            "ckpt_every": ckpt_every if arm == "rollback" else (1 if arm == "skip" else None),
            "losses": losses, "lrs": [r["lr"] for r in trainer.history], "loss_before": loss_before,
            "max_after": max_after, "spike_ratio": ratio, "nonfinite_after": any(v is None for v in after),
            "flagged_steps": guard.flagged if guard else [], "restored_to": guard.restored_to if guard else [],
            "final_loss": _json(statistics.fmean(tail)) if tail else None, "val_loss": _json(val)}


def loss_spike_study(run: ArchRun | None = None, spike_step: int | None = None, scale: float = 300.0, *,
                     arms: Sequence[str] = SPIKE_ARMS, k: float = 1.5, window: int = 10,
                     ckpt_every: int = 10) -> list[dict]:
    """Inject one bad batch at step `spike_step` (1-based; default run.steps // 2) and train three ways.

    The bad batch (see _PoisonedLoader): random rare characters, applied with lr × `scale`. Its own loss is
    ~1.9× the running median at ci size (5.6 vs 3.0), so k=1.5 catches it. Measured at ci size (scale=300):
    the unprotected loss jumps to 9.7 right after (spike_ratio 3.3; 1.5 at scale=100, 12 at 1000) and
    ends at val 5.55; skip: no spike (ratio 0.98), val 2.60; rollback (to step 20): ratio 1.03, val 2.74 --
    it paid for the discarded steps. Arms:
      - "none": no protection.
      - "skip": a step whose loss exceeds k × the median of the last `window` accepted losses has its update
        undone (model and optimizer restored to the state before it): the bad batch's own loss is high, so
        the damage is never done.
      - "rollback": on the same trigger, restore the last in-memory checkpoint (taken every `ckpt_every`
        steps) and carry on with the following data: the bad batch and those since the checkpoint are skipped.
    Rows: arm, spike_step, scale, k, window, ckpt_every, losses (per step; None where non-finite), lrs,
    loss_before (median of the `window` losses before the bad step), max_after (max loss of the steps after
    it; None if any was non-finite), spike_ratio = max_after / loss_before, nonfinite_after, flagged_steps,
    restored_to (the snapshot step each trigger went back to), final_loss, val_loss."""
    run = _check_run(run)
    spike_step = run.steps // 2 if spike_step is None else spike_step
    if isinstance(spike_step, bool) or not isinstance(spike_step, int) or not 1 <= spike_step < run.steps:
        raise ValueError(f"spike_step={spike_step!r} must be an int in [1, run.steps={run.steps}): a step "
                         f"with steps after it to show the spike")
    for name, v in (("scale", scale), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise ValueError(f"{name}={v!r} must be a positive finite number")
    scale, k = float(scale), float(k)
    if k <= 1:
        raise ValueError(f"k={k!r} must be > 1: the trigger is a loss above k × the running median")
    for name, v in (("window", window), ("ckpt_every", ckpt_every)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive int")
    arms = list(arms)
    if not arms or any(a not in SPIKE_ARMS for a in arms) or len(set(arms)) != len(arms):
        raise ValueError(f"arms={arms!r} must be distinct names from {', '.join(SPIKE_ARMS)}")
    return [_spike_arm(a, run, spike_step, scale, k, window, ckpt_every) for a in arms]


def precision_study(precisions: Sequence[str] = ("fp32", "bf16"), run: ArchRun | None = None) -> list[dict]:
    """One run per training precision (TrainConfig.precision), same seed, data and steps: held-out loss, the
    train_config summary, per-step losses and seconds. bf16 keeps fp32's exponent range, so it needs no loss
    scaling; fp16 (CUDA only: torch has no fp16 GradScaler path on CPU here) trains with the GradScaler."""
    run = _check_run(run)
    precisions = list(precisions)
    allowed = ("fp32", "bf16", "fp16")
    if not precisions or any(p not in allowed for p in precisions) or len(set(precisions)) != len(precisions):
        raise ValueError(f"precisions={precisions!r} must be distinct names from {', '.join(allowed)}")
    rows = []
    for p in precisions:
        res = _train(run, precision=p)
        rows.append({"precision": p, **_summary(res), "losses": _curves(res)["losses"],
                     "seconds": round(float(res["seconds"]), 2)})
    return rows
