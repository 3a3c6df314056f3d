"""Shared machinery of the architecture studies: one small run, its data, training and held-out scoring.

Survey §4.2.2 (detailed configuration) compares normalisations, activations, position embeddings and biases
by what they do to training: does it stay stable, how low does the loss go, does it extrapolate. Every study in
`studies.py` (and `studies_b.py`) trains the *same* small GPT recipe and changes one architectural knob, so a
difference in loss is that knob's doing. This module holds the pieces they share:

- `ArchRun`: the recipe (shape, context, batch, steps, peak lr, warmup, seeds, data), validated, with
  `ArchRun.for_size("ci" | "laptop" | "gpu")` presets.
- `study_data(run)`: the char-level synthetic corpus split into train/val, its vocabulary, tokenizer and
  exact entropy floor (nats/char), cached per data setting so every arm of a study reuses it for free.
  `unigram_loss(run)`: the loss of predicting character frequencies only, ignoring context.
- `model_config(run, vocab_size, **fields)`: the run's ModelConfig with some fields changed.
- `train_config(cfg, run, **overrides)`: train GPT(cfg) with the project's Trainer and report final/held-out
  loss and how the run went -- trained, stuck at character frequencies, or diverged -- without raising when
  it fails (a failure is a result here).
- `position_losses(model, ids, length)`: per-position held-out losses over evenly spread windows.

Characters are the tokens, so losses are nats per character, comparable across arms and with the floor.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minillm.config import DEVICES, ModelConfig, TrainConfig
from minillm.data.loader import eval_window_starts

# Trainer settings the divergence check relies on: a history row every step (so a non-finite step is seen at
# once) and skip-on-NaN (so the Trainer reports it in the row instead of raising).
_FIXED_TRAIN_FIELDS = ("log_interval", "on_nan", "progress")
_DATA_CACHE: dict[tuple, tuple] = {}
_DATA_CACHE_SIZE = 4  # a few data settings at once (a notebook comparing ci and laptop), not an unbounded pile
# A run whose final loss is within this many nats of the unigram loss learned nothing from context. Unstable
# post-LN runs end there rather than at NaN: LayerNorm keeps activations finite, the attention/MLP branches
# collapse, and the model falls back to the character frequencies (measured: 3.003 vs a unigram 2.997).
STUCK_MARGIN = 0.05


@dataclass(frozen=True)
class ArchRun:
    """One small GPT recipe shared by every arm of an architecture study. Defaults = the laptop preset."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    block_size: int = 64  # training context (position_extrapolation trains on its own train_len instead)
    batch_size: int = 16
    steps: int = 200
    lr: float = 3e-3  # peak lr of the cosine schedule (decays to lr / 10)
    warmup: int = 10  # linear-warmup steps
    seed: int = 1337  # model init and batch order
    eval_windows: int = 64  # held-out windows scored per evaluation
    device: str = "cpu"
    corpus: str = "story"  # a name from minillm.data.synthetic.CORPORA
    n_docs: int = 3000  # documents drawn from the corpus (10% of the characters are held out)
    data_seed: int = 0  # which documents: kept apart from `seed` so reseeding a run keeps the data

    def __post_init__(self):
        from minillm.data.synthetic import CORPORA

        for name in ("n_layer", "n_embd", "n_head", "block_size", "batch_size", "steps", "eval_windows", "n_docs"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ArchRun.{name}={v!r} must be a positive int")
        for name in ("warmup", "seed", "data_seed"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"ArchRun.{name}={v!r} must be a non-negative int")
        if self.warmup > self.steps:
            raise ValueError(f"ArchRun.warmup={self.warmup} exceeds steps={self.steps}: the peak lr would never "
                             f"be reached; use warmup <= steps")
        if self.n_embd % self.n_head:
            raise ValueError(f"ArchRun.n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        # Any positive lr is allowed, absurd ones included: the stability study is about lrs that blow up.
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (0 < self.lr < math.inf):
            raise ValueError(f"ArchRun.lr={self.lr!r} must be a positive finite number")
        if self.device not in DEVICES:
            raise ValueError(f"ArchRun.device={self.device!r} is not valid; choose one of {', '.join(DEVICES)}")
        if self.corpus not in CORPORA:
            raise ValueError(f"ArchRun.corpus={self.corpus!r} is not a known corpus; choose one of "
                             f"{', '.join(CORPORA)}")

    @classmethod
    def for_size(cls, size: str | None = None, **changes) -> "ArchRun":
        """The recipe of a size profile (default: $MINILLM_SIZE), with field changes. ci: each run a fraction of
        a second (tests, CI); laptop: a few seconds per run on one CPU thread; gpu: a real small model."""
        from minillm.presets import by_size

        base = by_size(
            ci=dict(n_layer=2, n_embd=32, n_head=2, block_size=32, batch_size=8, steps=60, warmup=5,
                    eval_windows=16, n_docs=300),
            laptop={},
            gpu=dict(n_layer=4, n_embd=256, n_head=8, block_size=256, batch_size=64, steps=3000, lr=1e-3,
                     warmup=100, eval_windows=256, n_docs=100_000, device="auto"),
            size=size)
        return cls(**{**base, **changes})

    def replace(self, **changes) -> "ArchRun":
        return dataclasses.replace(self, **changes)

    @property
    def tokens(self) -> int:
        """Training tokens of one run: steps × batch × context."""
        return self.steps * self.batch_size * self.block_size


def check_run(run: Any) -> ArchRun:
    """`run` itself, or the size profile's recipe for None; a TypeError for anything else."""
    if run is None:
        return ArchRun.for_size()
    if not isinstance(run, ArchRun):
        raise TypeError(f"run must be an ArchRun (or None for the size profile's), got {type(run).__name__}")
    return run


def study_data(run: ArchRun):
    """(splits, vocab_size, tokenizer, floor) for `run`'s corpus: char tokens split 90/10 into a DataSplits, the
    CharTokenizer, and the exact entropy of the text in nats/char (the loss a perfect model would reach).

    Cached on (corpus, n_docs, data_seed): the same objects come back on every call, so do not modify them."""
    from minillm.data.loader import DataSplits
    from minillm.data.synthetic import corpus
    from minillm.data.tokenizer import CharTokenizer

    if not isinstance(run, ArchRun):
        raise TypeError(f"run must be an ArchRun, got {type(run).__name__}")
    key = (run.corpus, run.n_docs, run.data_seed)
    if key not in _DATA_CACHE:
        c = corpus(run.corpus, run.n_docs, run.data_seed)
        text = c.text()
        tok = CharTokenizer.from_text(text)
        ids = torch.from_numpy(tok.encode_to_array(text, dtype=np.int64))  # (N,)
        splits = DataSplits.from_tokens(ids, val_fraction=0.1, vocab_size=tok.vocab_size)
        counts = torch.bincount(torch.as_tensor(splits.train), minlength=tok.vocab_size).double()  # (V,)
        p = counts[counts > 0] / counts.sum()
        unigram = float(-(p * p.log()).sum())  # entropy of the character frequencies, nats/char
        if len(_DATA_CACHE) >= _DATA_CACHE_SIZE:
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))  # oldest first
        _DATA_CACHE[key] = (splits, tok.vocab_size, tok, c.entropy_per_token(tok), unigram)
    return _DATA_CACHE[key][:4]


def unigram_loss(run: ArchRun) -> float:
    """Entropy (nats/char) of the training split's character frequencies: the loss of a model that ignores its
    context. A trained model must get well below it; one that stays there is stuck."""
    study_data(run)
    return _DATA_CACHE[(run.corpus, run.n_docs, run.data_seed)][4]


def model_config(run: ArchRun, vocab_size: int, **fields: Any) -> ModelConfig:
    """The run's ModelConfig (its shape and context) with `fields` changed, e.g. norm="rmsnorm"."""
    base = dict(vocab_size=vocab_size, block_size=run.block_size, n_layer=run.n_layer, n_embd=run.n_embd,
                n_head=run.n_head)
    return ModelConfig(**{**base, **fields})


@torch.no_grad()
def position_losses(model: nn.Module, ids: torch.Tensor, length: int, max_windows: int = 64,
                    batch_size: int = 32) -> torch.Tensor:
    """(n, length) next-token losses of `model` on n <= max_windows non-overlapping windows of `length` tokens
    spread evenly over `ids` (deterministic: two models are scored on the same targets). Column t is the loss
    of predicting token t+1 from the t+1 tokens before it, so columns >= L are positions a model trained on
    windows of L tokens never saw. `.mean()` is the usual held-out loss."""
    starts = eval_window_starts(len(ids), length, max_windows)  # (n,)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for s in range(0, len(starts), batch_size):
            w = ids[starts[s:s + batch_size, None] + torch.arange(length + 1)].to(device)  # (b, length+1)
            logits, _ = model(w[:, :-1])  # (b, length, V)
            nll = F.cross_entropy(logits.float().transpose(1, 2), w[:, 1:], reduction="none")  # (b, length)
            out.append(nll.cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


class _Diverged(Exception):
    """Raised from a Trainer hook to stop a run at its first non-finite step."""


class _ShortWindows(nn.Module):
    """Shows `model` to the Trainer as if its context were `length`: the Trainer cuts windows of
    model.config.block_size tokens, so a model built for long contexts trains on short ones (the positions
    past `length` exist but get no gradient: what the extrapolation study needs)."""

    def __init__(self, model: nn.Module, length: int):
        super().__init__()
        self.inner = model
        self.config = SimpleNamespace(block_size=length, vocab_size=model.config.vocab_size)

    def forward(self, idx, targets=None):
        return self.inner(idx, targets)


def _finite_or_none(x: float) -> float | None:
    # JSON has no NaN/inf (as minillm.train.history writes rows): a missing value is null
    return float(x) if x is not None and math.isfinite(x) else None


def train_config(cfg: ModelConfig, run: ArchRun, *, model: nn.Module | None = None, train_len: int | None = None,
                 **overrides: Any) -> dict:
    """Train GPT(cfg) (initialised with run.seed) on study_data(run) for run.steps with minillm's Trainer.

    Recipe: AdamW, peak run.lr after run.warmup linear-warmup steps, cosine to lr/10, grad clip 1.0, batches of
    run.batch_size windows of cfg.block_size tokens (or `train_len` tokens: a shorter training context than the
    model supports). `overrides` are TrainConfig fields (e.g. warmup_steps=1, grad_clip=None, lr=1e-2).
    `model` trains that module instead of GPT(cfg) (anything with .config and model(x, y) -> (logits, loss),
    e.g. an adapter around an encoder-decoder); cfg then only supplies the held-out window length.

    Returns {"final_loss": mean training loss of the last 10% of steps, "val_loss": held-out loss on
    run.eval_windows windows, "initial_loss": the loss at step 1 (before any update), "unigram_loss",
    "diverged", "diverged_at": the first non-finite step or None, "status", "history": the Trainer's rows
    (one per step), "params": non-embedding parameters, "params_total", "seconds", "model": the trained module
    (not JSON: drop it before saving)}.

    diverged = the loss (or gradient norm) became NaN/inf at some step -- the run is stopped there and its
    losses are None -- or the run ended with final_loss above initial_loss (it got worse than the untrained
    model: an lr this high undoes what it learns). A divergence is reported, never raised.
    status = "diverged"; else "stuck" when final_loss > unigram_loss - STUCK_MARGIN (it learned no more than
    the character frequencies: how unstable post-LN runs usually fail); else "trained".
    """
    from minillm.train.trainer import Trainer
    from minillm.model.transformer import GPT

    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
    if not isinstance(run, ArchRun):
        raise TypeError(f"run must be an ArchRun, got {type(run).__name__}")
    fixed = sorted(set(overrides) & set(_FIXED_TRAIN_FIELDS))
    if fixed:
        raise ValueError(f"train_config sets {', '.join(fixed)} itself (the divergence check needs a row every "
                         f"step and on_nan='skip'); leave them out of the overrides")
    splits, vocab_size, _, _ = study_data(run)
    if cfg.vocab_size < vocab_size:
        raise ValueError(f"cfg.vocab_size={cfg.vocab_size} is smaller than the corpus's {vocab_size} characters: "
                         f"build it with model_config(run, vocab_size) or vocab_size >= {vocab_size}")
    length = cfg.block_size if train_len is None else train_len
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= cfg.block_size:
        raise ValueError(f"train_len={train_len!r} must be an int in [1, cfg.block_size={cfg.block_size}]")
    base = dict(batch_size=run.batch_size, max_steps=run.steps, lr=run.lr, warmup_steps=run.warmup,
                schedule="cosine", eval_interval=0, eval_batches=1, seed=run.seed, device=run.device)
    lr = overrides.get("lr", run.lr)
    tcfg = TrainConfig.from_dict({**base, "min_lr": lr / 10, **overrides,
                                  "log_interval": 1, "on_nan": "skip", "progress": False})
    if model is None:
        torch.manual_seed(run.seed)
        model = GPT(cfg)
    trained = model if length == cfg.block_size else _ShortWindows(model, length)

    def stop_on_nan(trainer, row):
        if row["skipped"] or not math.isfinite(row["loss"]):
            raise _Diverged(row["step"])

    trainer = Trainer(trained, tcfg, splits, hooks={"on_step": stop_on_nan})
    t0 = time.perf_counter()
    diverged_at = None
    try:
        trainer.fit()
    except _Diverged as e:
        diverged_at = e.args[0]
    seconds = time.perf_counter() - t0
    history = trainer.history
    initial = history[0]["loss"] if history else math.nan
    if diverged_at is None:
        tail = [r["loss"] for r in history[-max(1, len(history) // 10):]]
        final = float(np.mean(tail))
        val = position_losses(model, splits.val, length, run.eval_windows).mean().item()
        diverged = not (math.isfinite(final) and math.isfinite(val)) or final > initial
    else:
        final = val = math.nan
        diverged = True
    unigram = unigram_loss(run)
    status = "diverged" if diverged else "stuck" if final > unigram - STUCK_MARGIN else "trained"
    count = getattr(model, "num_params", None)
    n_all = sum(p.numel() for p in model.parameters())
    return {"final_loss": _finite_or_none(final), "val_loss": _finite_or_none(val),
            "initial_loss": _finite_or_none(initial), "unigram_loss": unigram, "diverged": bool(diverged),
            "diverged_at": diverged_at, "status": status, "history": history,
            "params": count() if callable(count) else n_all, "params_total": n_all, "seconds": round(seconds, 3),
            "model": model}
