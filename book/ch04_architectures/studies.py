"""Architecture studies: normalisation and stability, activations, position embeddings, biases.

Survey §4.2.2 (detailed configuration) reports what practice settled on: pre-LN (or RMSNorm, pre) trains more
stably than the original post-LN, DeepNorm makes post-LN trainable when deep; GLU activations (SwiGLU, GeGLU)
beat ReLU/GeLU at equal parameter count; RoPE and ALiBi replaced learned absolute positions, and ALiBi
extrapolates to inputs longer than those seen in training; many recent LLMs drop biases for stability. Each
claim is a small experiment here, on the book's one small-run recipe (`book.runs`: every arm the same model,
data and budget but one knob):

- `stability_map`: norm type/position × depth × peak lr × bias with a short warmup; which cells train, which
  get stuck at character frequencies and which diverge. `stability_summary` reduces it to the highest stable
  lr per norm and depth.
- `activation_study`: ReLU, GeLU, SwiGLU, GeGLU at equal parameter count (GLUs get 8/3·C hidden units).
- `position_extrapolation`: train on short windows in a model that accepts long ones; held-out loss on longer
  windows, overall and on the never-trained positions alone.
- `bias_param_share`: how little of a model its biases are (so dropping them costs ~nothing in capacity).

Rows are plain dicts (JSON-ready: a missing value is None). Figures are in `plots.py`. Threads are left
to the caller. The shared helpers of `book.runs` (`ArchRun`, `study_data`, `unigram_loss`, `train_config`) are
re-exported here; a run's ModelConfig is `run.model_config(vocab_size, **fields)`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from minillm.config import ACTIVATIONS, POSITIONS, ModelConfig
from minillm.evaluation.loss import heldout_loss
from book.runs import STUCK_MARGIN, ArchRun, check_run, study_data, train_config, unigram_loss

__all__ = ["ArchRun", "study_data", "unigram_loss", "train_config",
           "STUCK_MARGIN", "NORM_SETUPS",
           "stability_map", "stability_summary", "activation_study", "position_extrapolation", "bias_param_share"]

# The five normalisation setups the survey names, as ModelConfig fields.
NORM_SETUPS: dict[str, dict] = {
    "post_ln": dict(norm="layernorm", norm_position="post"),  # Vaswani et al. 2017
    "pre_ln": dict(norm="layernorm", norm_position="pre"),  # GPT-2
    "rmsnorm": dict(norm="rmsnorm", norm_position="pre"),  # Llama, Gopher
    "deepnorm": dict(norm="deepnorm"),  # DeepNet: post-LN with the residual up-weighted (always post)
    "sandwich": dict(norm="layernorm", norm_position="sandwich"),  # CogView
}


_check_run = check_run  # shared with the other study modules (book.runs.check_run)


def _choices(name: str, values: Sequence, allowed: Sequence) -> list:
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty: give at least one of {', '.join(map(str, allowed))}")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"{name} has unknown value(s) {bad}; choose from {', '.join(map(str, allowed))}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name}={values} has repeated values")
    return values


def _positive_ints(name: str, values: Sequence) -> list[int]:
    values = list(values)
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
        raise ValueError(f"{name}={values!r} must be a non-empty sequence of positive ints")
    if len(set(values)) != len(values):
        raise ValueError(f"{name}={values} has repeated values")
    return values


# ============================================================================================ 1. stability


def stability_map(norms: Sequence[str] = tuple(NORM_SETUPS), depths: Sequence[int] = (2, 4, 8),
                  lrs: Sequence[float] = (1e-3, 3e-3, 1e-2, 3e-2), bias: Sequence[bool] = (True, False), *,
                  run: ArchRun | None = None, warmup: int | None = None) -> list[dict]:
    """Train one small GPT per cell of norms × depths × lrs × bias and record how its training went.

    The warmup is deliberately short (default max(1, 2% of run.steps)): warmup hides post-LN's instability,
    which is the point to show. Each cell's model is run's shape with n_layer = depth and the norm setup of
    NORM_SETUPS. Rows (in grid order): norm, n_layer, lr, bias, status ("trained" | "stuck" | "diverged"),
    diverged, diverged_at, final_loss, val_loss, initial_loss, unigram_loss, params, warmup, steps (see
    train_config for the status rules). At laptop size, 8-layer post-LN gets stuck from lr 3e-3 on while
    pre-LN still trains at 3e-2."""
    run = _check_run(run)
    norms = _choices("norms", norms, tuple(NORM_SETUPS))
    depths = _positive_ints("depths", depths)
    lrs = list(lrs)
    if not lrs or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf for v in lrs):
        raise ValueError(f"lrs={lrs!r} must be a non-empty sequence of positive numbers")
    bias = list(bias)
    if not bias or any(not isinstance(b, bool) for b in bias) or len(set(bias)) != len(bias):
        raise ValueError(f"bias={bias!r} must hold True and/or False, each once")
    warmup = max(1, round(0.02 * run.steps)) if warmup is None else warmup
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup <= run.steps:
        raise ValueError(f"warmup={warmup!r} must be an int in [0, run.steps={run.steps}]")
    _, vocab, _, _ = study_data(run)
    rows = []
    for norm in norms:
        for depth in depths:
            for lr in lrs:
                for b in bias:
                    cfg = run.model_config(vocab, n_layer=depth, bias=b, **NORM_SETUPS[norm])
                    res = train_config(cfg, run, lr=float(lr), warmup_steps=warmup)
                    rows.append({"norm": norm, "n_layer": depth, "lr": float(lr), "bias": b,
                                 "status": res["status"], "diverged": res["diverged"],
                                 "diverged_at": res["diverged_at"], "final_loss": res["final_loss"],
                                 "val_loss": res["val_loss"], "initial_loss": res["initial_loss"],
                                 "unigram_loss": res["unigram_loss"], "params": res["params"],
                                 "warmup": warmup, "steps": run.steps})
    return rows


def stability_summary(rows: Sequence[dict]) -> list[dict]:
    """Per (norm, n_layer, bias): the highest lr whose run trained (status "trained": neither diverged nor
    stuck; None if none did), how many lrs trained, and the lr with the lowest final loss. The wider a norm's
    band of trainable lrs, the more forgiving it is."""
    if not rows:
        raise ValueError("no rows: run stability_map first")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["norm"], r["n_layer"], r["bias"]), []).append(r)
    out = []
    for (norm, depth, b), rs in groups.items():
        stable = [r for r in rs if r["status"] == "trained"]
        best = min(stable, key=lambda r: r["final_loss"]) if stable else None
        out.append({"norm": norm, "n_layer": depth, "bias": b,
                    "max_stable_lr": max(r["lr"] for r in stable) if stable else None,
                    "n_stable": len(stable), "n_lrs": len(rs),
                    "best_lr": best["lr"] if best else None, "best_loss": best["final_loss"] if best else None})
    return out


def _meta_model(cfg: ModelConfig):
    """GPT(cfg) on the meta device: shapes without memory or init time, for counting parameters."""
    from minillm.model.transformer import GPT

    with torch.device("meta"):
        return GPT(cfg)


def bias_param_share(cfg: ModelConfig) -> float:
    """Share of all of GPT(cfg)'s parameters (tied matrices once) that are biases: Linear and LayerNorm `.bias`.

    Counted on the meta device, so even a big config costs no memory."""
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
    model = _meta_model(cfg)
    total = sum(p.numel() for p in model.parameters())
    biases = sum(p.numel() for name, p in model.named_parameters() if name.endswith(".bias"))
    return biases / total


# ============================================================================================ 2. activations


def activation_study(activations: Sequence[str] = ACTIVATIONS, *, run: ArchRun | None = None) -> list[dict]:
    """Held-out loss of the run's model with each MLP activation, at equal parameter count.

    relu/gelu MLPs have two C×4C matrices; GLU variants (swiglu, geglu) have three, so they get round(8/3·C)
    hidden units (Shazeer 2020) -- not ModelConfig's default rounded up to a multiple of 8, which at toy widths
    adds a few % -- and the non-embedding counts must agree within 2% (else ValueError).
    Rows: activation, ffn_hidden, params (non-embedding), params_total, val_loss, final_loss, floor, status."""
    run = _check_run(run)
    activations = _choices("activations", activations, ACTIVATIONS)
    _, vocab, _, floor = study_data(run)
    cfgs = {a: run.model_config(vocab, activation=a,
                                ffn_hidden=round(8 * run.n_embd / 3) if a in ("swiglu", "geglu") else 4 * run.n_embd)
            for a in activations}
    counts = {a: _meta_model(cfg).num_params() for a, cfg in cfgs.items()}  # checked before any training
    if max(counts.values()) > 1.02 * min(counts.values()):
        raise ValueError(f"non-embedding parameter counts differ by more than 2% ({counts}): n_embd="
                         f"{run.n_embd} is too narrow for round(8/3·C) to match 4·C; use a wider run")
    rows = []
    for a, cfg in cfgs.items():
        res = train_config(cfg, run)
        rows.append({"activation": a, "ffn_hidden": cfg.ffn_hidden, "params": res["params"],
                     "params_total": res["params_total"], "val_loss": res["val_loss"],
                     "final_loss": res["final_loss"], "floor": floor, "status": res["status"]})
    return rows


# ============================================================================================ 3. positions


def position_extrapolation(positions: Sequence[str] = POSITIONS, train_len: int = 32,
                           eval_lens: Sequence[int] = (32, 64, 128), *, run: ArchRun | None = None) -> list[dict]:
    """Train on windows of `train_len` tokens, evaluate on longer ones: which position encodings extrapolate?

    Every model is built with block_size = max(eval_lens), so learned/sinusoidal tables have rows beyond
    train_len -- they exist but never receive a gradient (train_config's train_len feeds the Trainer windows of
    train_len tokens). run.block_size is not used. Each eval length scores run.eval_windows windows of that
    many tokens from the held-out split (the same windows for every position type). Rows: position, train_len,
    eval_len, loss (mean over all positions of the window), loss_beyond_train (mean over positions t >=
    train_len only, the never-trained ones; None when eval_len <= train_len), floor, params, status."""
    run = _check_run(run)
    positions = _choices("positions", positions, POSITIONS)
    eval_lens = sorted(_positive_ints("eval_lens", eval_lens))
    if isinstance(train_len, bool) or not isinstance(train_len, int) or not 1 <= train_len <= eval_lens[-1]:
        raise ValueError(f"train_len={train_len!r} must be an int in [1, max(eval_lens)={eval_lens[-1]}]")
    splits, vocab, _, floor = study_data(run)
    if len(splits.val) <= eval_lens[-1]:
        raise ValueError(f"the held-out split has {len(splits.val)} tokens, fewer than one window of "
                         f"{eval_lens[-1] + 1}: raise run.n_docs or lower eval_lens")
    rows = []
    for pos in positions:
        cfg = run.model_config(vocab, block_size=eval_lens[-1], position=pos)
        res = train_config(cfg, run, train_len=train_len)
        for L in eval_lens:
            if res["diverged_at"] is not None:  # NaN weights: nothing to evaluate
                loss = beyond = None
            else:
                nll = heldout_loss(res["model"], splits.val, length=L, max_windows=run.eval_windows,
                                   per_position=True)  # (n, L)
                loss = nll.mean().item()
                beyond = nll[:, train_len:].mean().item() if L > train_len else None
            rows.append({"position": pos, "train_len": train_len, "eval_len": L, "loss": loss,
                         "loss_beyond_train": beyond, "floor": floor, "params": res["params"],
                         "status": res["status"]})
    return rows
