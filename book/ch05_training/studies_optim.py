"""Optimizers compared at their own tuned learning rates, and what weight decay and clipping do to the norms.
Survey §4.3.1 (optimization setting).

The survey's LLMs train with Adam/AdamW; it also names Adafactor (PaLM, T5: less optimizer memory). This module
trains chapter 04's small GPT (the shared recipe of `book.runs`: same data, model, steps, batch and seed in every
arm) with each optimizer `minillm.train.optim.build_optimizer` offers, and compares them fairly: every optimizer
gets a small learning-rate sweep of its own (their good rates differ by orders of magnitude: SGD's ~1, AdamW's
~1e-2, Lion's ~1e-3), and the comparison is made at each one's best rate.

- `optimizer_state_bytes`: bytes of the tensors an optimizer keeps (`optimizer.state`), MEASURED after a step.
- `measure_state`: that, next to the parameters' bytes, for one optimizer on run's model.
- `optimizer_study`: rows per (optimizer, lr): held-out loss, loss curves, the measured state bytes; `best` marks
  each optimizer's best lr. `best_rows` keeps those.
- `decay_clip_study`: weight decay λ and clipping thresholds, with the per-step global norm of the decayed
  weights, of each update (θ_t − θ_{t−1}) and of the gradient (before clipping), and the clip rate.

Rows are JSON-ready dicts (None = non-finite). Figures: `plots_optim.py`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from book.runs import ArchRun, study_data, train_config
from book.ch05_training.studies import _check_run, _curves, _json, _numbers, _summary
from minillm.config import OPTIMIZERS
from minillm.train.optim import build_optimizer, param_groups

__all__ = ["COMPARED", "LR_GRIDS", "optimizer_state_bytes", "measure_state", "optimizer_study", "best_rows",
           "decay_clip_study"]

# The optimizers compared, in the order the chapter introduces them (torch_adamw is AdamW again, left out).
COMPARED = ("sgd", "adam", "adamw", "adafactor", "lion", "muon")
# Per-optimizer sweeps, factors of ~3 around each one's usual range on this model. Adafactor's lr is a relative
# step (a share of each tensor's RMS, see build_optimizer), hence its large values.
LR_GRIDS: dict[str, tuple[float, ...]] = {
    "sgd": (0.1, 0.3, 1.0, 3.0),
    "adam": (1e-3, 3e-3, 1e-2, 3e-2),
    "adamw": (1e-3, 3e-3, 1e-2, 3e-2),
    "adafactor": (3e-2, 1e-1, 3e-1, 1.0),
    "lion": (3e-4, 1e-3, 3e-3, 1e-2),
    "muon": (3e-3, 1e-2, 3e-2, 1e-1),
}


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in `optimizer.state` (moments, momentum buffers, factored rows/columns, step
    counters). Measured, not computed from a formula: call it after at least one step (state is created lazily)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not optimizer.state:
        raise ValueError("the optimizer has no state yet: optimizers create it at their first step; call "
                         "optimizer.step() once before measuring")
    return sum(t.numel() * t.element_size() for st in optimizer.state.values() for t in st.values()
               if isinstance(t, torch.Tensor))


def measure_state(optimizer: str, run: ArchRun | None = None) -> dict:
    """One step of `optimizer` on a fresh copy of run's model (one training batch): {"optimizer",
    "state_bytes", "param_bytes", "state_ratio" = state / parameters}. AdamW's is ~2 (m and v), SGD's and Lion's
    ~1, Adafactor's well below 1 (a matrix keeps a row and a column of second moments)."""
    from minillm.data.loader import get_batch
    from minillm.model.transformer import GPT

    run = _check_run(run)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is not valid; choose one of {', '.join(OPTIMIZERS)}")
    splits, vocab, _, _ = study_data(run)
    torch.manual_seed(run.seed)
    model = GPT(run.model_config(vocab))
    opt = build_optimizer(model, run.train_config(optimizer=optimizer), "cpu")  # a throwaway model
    x, y = get_batch(splits.train, run.batch_size, run.block_size, "cpu", torch.Generator().manual_seed(run.seed))
    _, loss = model(x, y)  # x, y: (B, T)
    loss.backward()
    opt.step()
    state = optimizer_state_bytes(opt)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return {"optimizer": optimizer, "state_bytes": state, "param_bytes": params, "state_ratio": state / params}


def optimizer_study(lrs: Mapping[str, Sequence[float]] | None = None, run: ArchRun | None = None, *,
                    n_evals: int = 10) -> list[dict]:
    """Train run's recipe once per (optimizer, peak lr) of `lrs` (default LR_GRIDS), same warmup, cosine schedule,
    weight decay, clipping, steps, batch and seed. Rows (optimizer order of `lrs`, lrs ascending): optimizer, lr,
    the train_config summary, losses (per step), val_steps/val_losses (about n_evals held-out evaluations),
    best (the lowest final held-out loss of that optimizer's non-diverged runs), state_bytes, param_bytes and
    state_ratio (measure_state)."""
    run = _check_run(run)
    lrs = dict(LR_GRIDS if lrs is None else lrs)
    bad = [k for k in lrs if k not in OPTIMIZERS]
    if not lrs or bad:
        raise ValueError(f"lrs must map optimizer names to lr lists; {bad or 'none given'} not among "
                         f"{', '.join(OPTIMIZERS)}")
    if isinstance(n_evals, bool) or not isinstance(n_evals, int) or n_evals < 1:
        raise ValueError(f"n_evals={n_evals!r} must be a positive int")
    every = max(1, run.steps // n_evals)
    _, vocab, _, _ = study_data(run)
    rows = []
    for name, grid in lrs.items():
        state = measure_state(name, run)
        arm = []
        for lr in sorted(_numbers(f"lrs[{name!r}]", grid)):
            res = train_config(run.model_config(vocab), run, optimizer=name, lr=float(lr), eval_interval=every)
            res.pop("model")
            arm.append({"optimizer": name, "lr": float(lr), **_summary(res), **_curves(res), "best": False,
                        **{k: state[k] for k in ("state_bytes", "param_bytes", "state_ratio")}})
        ok = [r for r in arm if not r["diverged"] and r["val_loss"] is not None]
        if ok:
            min(ok, key=lambda r: r["val_loss"])["best"] = True
        rows.extend(arm)
    return rows


def best_rows(rows: Sequence[Mapping]) -> list[Mapping]:
    """Each optimizer's best-lr row of an optimizer_study (in row order); an optimizer with none is left out."""
    return [r for r in rows if r["best"]]


def decay_clip_study(wds: Sequence[float] = (0.0, 0.1, 1.0), clips: Sequence[float | None] = (None, 1.0, 0.25),
                     run: ArchRun | None = None, *, clip_lr: float | None = None) -> list[dict]:
    """One run per weight decay λ (at run.lr, clipping at the recipe's 1.0), then one per max grad norm (None =
    off) at a deliberately high lr (`clip_lr`, default 10 × run.lr, as clipping_study). Rows: knob
    ("weight_decay" | "grad_clip"), value, lr, weight_decay, grad_clip, the train_config summary, losses,
    grad_norms (global norm before clipping), weight_norms (global L2 norm of the decayed matrices after each
    step), update_norms (‖θ_t − θ_{t−1}‖ over all parameters), clip_rate (share of steps whose grad norm
    exceeded the clip; None without one), weight_norm (the last weight_norms)."""
    from minillm.model.transformer import GPT

    run = _check_run(run)
    wds = _numbers("wds", wds, allow_zero=True)
    clips = _numbers("clips", clips, allow_none=True)
    clip_lr = 10 * run.lr if clip_lr is None else float(_numbers("clip_lr", [clip_lr])[0])
    _, vocab, _, _ = study_data(run)
    cfg = run.model_config(vocab)
    arms = [("weight_decay", float(w), run.lr, float(w), 1.0) for w in wds]
    arms += [("grad_clip", c, clip_lr, 0.1, c) for c in clips]
    rows = []
    for knob, value, lr, wd, clip in arms:
        torch.manual_seed(run.seed)
        model = GPT(cfg)
        decayed = param_groups(model, 1.0)[0]["params"]  # the matrices that get decay
        params = list(model.parameters())
        prev = [p.detach().clone() for p in params]
        weight_norms: list[float | None] = []
        update_norms: list[float | None] = []

        def on_step(trainer, row, prev=prev, params=params, decayed=decayed, w=weight_norms, u=update_norms):
            with torch.no_grad():
                w.append(_json(math.sqrt(sum(float(p.double().pow(2).sum()) for p in decayed))))
                u.append(_json(math.sqrt(sum(float((p - q).double().pow(2).sum()) for p, q in zip(params, prev)))))
                for p, q in zip(params, prev):
                    q.copy_(p)

        res = train_config(cfg, run, model=model, lr=lr, weight_decay=wd, grad_clip=clip,
                           hooks={"on_step": on_step})
        res.pop("model")
        norms = [_json(r["grad_norm"]) for r in res["history"]]
        seen = [n for n in norms if n is not None]
        rate = None if clip is None or not seen else sum(n > clip for n in seen) / len(seen)
        rows.append({"knob": knob, "value": value, "lr": lr, "weight_decay": wd, "grad_clip": clip, **_summary(res),
                     "losses": _curves(res)["losses"], "grad_norms": norms, "weight_norms": weight_norms,
                     "update_norms": update_norms, "clip_rate": rate,
                     "weight_norm": weight_norms[-1] if weight_norms else None})
    return rows
