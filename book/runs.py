"""The book's one small-run recipe: `Run` (what to train, for how long) and `train` (train it, score it).

Every study of the book trains small GPTs on synthetic text. They all share this recipe, so that "the same small
GPT" means the same thing in every chapter and there is one training code path: `train` drives the library's
`minillm.Trainer` for token streams (text, token ids, a DataSplits) and the library's SFT loop
(`minillm.finetune.sft.train_sft`) for packed (x, y) rows; both take their steps in `minillm.train.step`.
A study's own config holds a Run (or a table of them per size profile) and adds only what is its own: data,
evaluation sets, model sizes to sweep.

    run = Run.for_size("ci")                               # MINILLM_SIZE's preset (chapters 04/05's table)
    out = train(run, text)                                 # char tokenizer over the text, last 5% held out
    model, tok, val_loss = train(Run(steps=600), text, val=val_text, tokenizer=my_tok)   # unpacks in three
    out = train(run, splits, stop_on_nonfinite=True)       # a failure is a result (chapter 05)
    out = train(run.replace(lr=3e-4, warmup=0.1, seed=0), (x, y), model=copy)   # SFT on packed rows

The recipe:
  init      torch.manual_seed(run.seed); GPT(run.model_config(vocab_size))   (unless `model` is given)
  optimizer minillm's AdamW (TrainConfig defaults: weight decay 0.1 on matrices, betas 0.9/0.95, grad clip 1.0)
  schedule  linear warmup for `run.warmup_steps`, cosine from run.lr to run.lr / 10 at run.steps
  batches   run.batch_size random windows of model.config.block_size tokens from a generator seeded with
            run.seed (two runs with the same seed see the same batches, whatever the model)
  held out  `minillm.evaluation.loss.heldout_loss` over up to run.eval_windows non-overlapping windows spread
            evenly over the validation tokens (deterministic: every model is scored on the same targets)

Also here, because two chapters share them (book/__init__.py: a chapter never imports another chapter):
- `size_label(n_layer, n_embd)`: "L2-C64", how chapters 02 and 07 name a model size;
- chapters 04/05's architecture runs: `ArchRun` (a Run plus its corpus), `study_data`, `unigram_loss`,
  `check_run` and `train_config` (train one ModelConfig and report trained / stuck / diverged).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from minillm.config import DEVICES, ModelConfig, TrainConfig
from minillm.data.loader import DataSplits
from minillm.data.tokenizer import encode_array
from minillm.evaluation.loss import heldout_loss

__all__ = ["Run", "SIZES", "Trained", "train", "size_label", "ArchRun", "STUCK_MARGIN", "check_run", "study_data",
           "unigram_loss", "train_config"]

# Run.for_size(size): changes to Run() per size profile (chapters 04/05's presets). ci: each run a fraction of a
# second on one CPU thread (tests, CI); laptop: a few seconds; gpu: a real small model.
SIZES: dict[str, dict[str, Any]] = {
    "ci": dict(n_layer=2, n_embd=32, n_head=2, block_size=32, batch_size=8, steps=60, warmup=5, eval_windows=16),
    "laptop": dict(n_head=4, steps=200, warmup=10),
    "gpu": dict(n_layer=4, n_embd=256, n_head=8, block_size=256, batch_size=64, steps=3000, lr=1e-3, warmup=100,
                eval_windows=256, device="auto"),
}
_SHAPE = ("n_layer", "n_head", "n_embd", "block_size")


def size_label(n_layer: int, n_embd: int) -> str:
    """How the book names a model size: "L2-C64" (2 blocks, 64 wide)."""
    return f"L{n_layer}-C{n_embd}"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive_int(owner: str, name: str, v: Any, zero_ok: bool = False) -> None:
    if not _is_int(v) or v < (0 if zero_ok else 1):
        raise ValueError(f"{owner}.{name}={v!r} must be a {'non-negative' if zero_ok else 'positive'} int")


@dataclass(frozen=True)
class Run:
    """One small GPT and how to train it. Defaults: 0.1M non-embedding parameters, 300 steps of 16 × 64 tokens;
    `Run.for_size()` gives the size profile's preset. Validated at construction; `replace` re-validates."""

    n_layer: int = 2
    n_head: int = 2
    n_embd: int = 64
    block_size: int = 64  # training context (windows of this many tokens)
    batch_size: int = 16  # windows (or packed rows) per step
    steps: int = 300
    lr: float = 3e-3  # peak lr; cosine decays to lr / 10 (TrainConfig's min_lr default)
    # linear-warmup steps: an int; or a share of `steps` in (0, 1), giving max(1, floor(share × steps)) (0.05 is
    # exactly steps // 20, 0.1 exactly steps // 10) and following `replace(steps=...)`; or None = 0.05
    warmup: int | float | None = None
    seed: int = 1337  # model init AND batch order (TrainConfig.seed); data seeds belong to the study
    eval_windows: int = 64  # held-out windows scored at the end
    device: str = "cpu"  # cpu | cuda | mps | auto (minillm.device.resolve_device)
    # extra ModelConfig fields, e.g. {"position": "rope"}; stored as sorted (name, value) pairs (hashable)
    model_fields: Mapping[str, Any] | tuple = field(default=())

    def __post_init__(self) -> None:
        n = type(self).__name__
        for k in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "steps", "eval_windows"):
            _positive_int(n, k, getattr(self, k))
        _positive_int(n, "seed", self.seed, zero_ok=True)
        if self.n_embd % self.n_head:
            raise ValueError(f"{n}.n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        # Any positive finite lr is allowed, absurd ones included: the stability studies need lrs that blow up.
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf:
            raise ValueError(f"{n}.lr={self.lr!r} must be a positive finite number")
        w = self.warmup
        if _is_int(w):
            _positive_int(n, "warmup", w, zero_ok=True)
            if w > self.steps:
                raise ValueError(f"{n}.warmup={w} exceeds steps={self.steps}: the peak lr would never be reached; "
                                 f"use warmup <= steps (or a share of steps such as 0.05)")
        elif w is not None and not (isinstance(w, float) and 0 < w < 1):
            raise ValueError(f"{n}.warmup={w!r} must be an int of steps, a share of steps in (0, 1), or None")
        if self.device not in DEVICES:
            raise ValueError(f"{n}.device={self.device!r} is not valid; choose one of {', '.join(DEVICES)}")
        try:
            extra = dict(self.model_fields)
        except (TypeError, ValueError):
            raise ValueError(f"{n}.model_fields={self.model_fields!r} must be a dict of ModelConfig fields, "
                             f"e.g. {{'position': 'rope'}}") from None
        allowed = {f.name for f in dataclasses.fields(ModelConfig)} - set(_SHAPE) - {"vocab_size"}
        bad = sorted(set(extra) - allowed)
        if bad:
            raise ValueError(f"{n}.model_fields has {bad}: give ModelConfig fields other than vocab_size and the "
                             f"shape ({', '.join(_SHAPE)}, which are Run's own fields)")
        object.__setattr__(self, "model_fields", tuple(sorted(extra.items())))

    # ---- presets and derived numbers ---------------------------------------------------------------------------
    @classmethod
    def for_size(cls, size: str | None = None, **changes: Any):
        """The size profile's preset (default: $MINILLM_SIZE, see minillm.presets) with field changes."""
        from minillm.presets import by_size

        return cls(**{**by_size(ci=SIZES["ci"], laptop=SIZES["laptop"], gpu=SIZES["gpu"], size=size), **changes})

    def replace(self, **changes: Any):
        """A copy with fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def warmup_steps(self) -> int:
        """Linear-warmup steps: `warmup` itself, or max(1, floor(share × steps)) for a share (None = 0.05)."""
        w = 0.05 if self.warmup is None else self.warmup
        return w if _is_int(w) else max(1, int(w * self.steps))

    @property
    def tokens(self) -> int:
        """Training tokens of one run: steps × batch × context."""
        return self.steps * self.batch_size * self.block_size

    def model_config(self, vocab_size: int, **fields: Any) -> ModelConfig:
        """The run's ModelConfig (shape, context, model_fields) with `fields` changed, e.g. norm="rmsnorm"."""
        base = dict(vocab_size=vocab_size, **{k: getattr(self, k) for k in _SHAPE}, **dict(self.model_fields))
        return ModelConfig(**{**base, **fields})

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The run's TrainConfig; `overrides` are TrainConfig fields (e.g. grad_clip=None, schedule="wsd").
        min_lr is left to TrainConfig: lr / 10 of the final lr, overridden or not."""
        base = dict(batch_size=self.batch_size, max_steps=self.steps, lr=self.lr, warmup_steps=self.warmup_steps,
                    schedule="cosine", eval_interval=0, eval_batches=1, log_interval=max(1, self.steps // 10),
                    seed=self.seed, device=self.device, progress=False)
        return TrainConfig.from_dict({**base, **overrides})


# ---- training ---------------------------------------------------------------------------------------------------

@dataclass
class Trained:
    """What `train` returns. `model, tokenizer, val_loss = train(...)` unpacks it in three."""

    model: nn.Module  # the module that was trained (in eval mode after a fit)
    tokenizer: Any  # what text was encoded with (None when token ids, splits or rows were given)
    history: list[dict]  # the Trainer's (or the SFT loop's) rows
    val_loss: float | None  # held-out loss on the validation tokens; None: rows, score=False, fit=False, diverged
    splits: DataSplits | None  # what was trained on (None for rows)
    trainer: Any = None  # the minillm Trainer (None for rows); fitted unless train(..., fit=False)
    seconds: float = 0.0  # wall time of the fit
    diverged_at: int | None = None  # first non-finite step, when stop_on_nonfinite stopped the run there

    def __iter__(self):
        return iter((self.model, self.tokenizer, self.val_loss))

    @property
    def initial_loss(self) -> float | None:
        """The loss of the first history row (the first step's, with a row every step)."""
        return self.history[0]["loss"] if self.history else None

    @property
    def final_loss(self) -> float | None:
        """Mean training loss of the last 10% of history rows (of steps, with a row every step)."""
        tail = [r["loss"] for r in self.history[-max(1, len(self.history) // 10):]]
        return float(np.mean(tail)) if tail else None


class _Diverged(Exception):
    """Raised from a Trainer hook to stop a run at its first non-finite step."""


def _split_text(text: str, val: Any, val_fraction: float) -> tuple[str, str]:
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty str")
    if val is not None:
        if not isinstance(val, str) or not val:
            raise ValueError("val must be a non-empty str of held-out text when the data is text")
        return text, val
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r} must be in (0, 1) when no val is given")
    cut = text.rfind("\n", 0, int(len(text) * (1 - val_fraction))) + 1  # at a document boundary
    return text[:cut], text[cut:]


def _as_splits(data: Any, val: Any, val_fraction: float, tokenizer: Any, vocab_size: int | None,
               block: int) -> tuple[DataSplits, Any]:
    """(DataSplits with its vocab_size, tokenizer or None) from text, token ids or a DataSplits."""
    if isinstance(data, DataSplits):
        vocab = vocab_size or data.vocab_size
        splits = data if vocab == data.vocab_size else DataSplits(data.train, data.val, vocab)
        return splits, tokenizer
    if isinstance(data, str):
        text, val_text = _split_text(data, val, val_fraction)
        if tokenizer is None:
            from minillm.data.tokenizer import CharTokenizer

            tokenizer = CharTokenizer.from_text(text + val_text)  # no held-out character is unknown
        train_ids, val_ids = (torch.from_numpy(encode_array(tokenizer, t)) for t in (text, val_text))
        vocab = tokenizer.vocab_size
    elif isinstance(data, (torch.Tensor, np.ndarray, list)):
        ids = torch.as_tensor(np.asarray(data) if isinstance(data, list) else data).long()
        if ids.dim() != 1:
            raise ValueError(f"token ids must be one stream (T,), got shape {tuple(ids.shape)}")
        vocab = vocab_size or getattr(tokenizer, "vocab_size", None)
        if vocab is None:
            raise ValueError("token ids need vocab_size= (or the tokenizer that made them)")
        if val is None:
            if not 0 < val_fraction < 1:
                raise ValueError(f"val_fraction={val_fraction!r} must be in (0, 1) when no val is given")
            n_val = int(round(len(ids) * val_fraction))
            train_ids, val_ids = ids[:len(ids) - n_val], ids[len(ids) - n_val:]  # the tail is held out
        else:
            train_ids, val_ids = ids, torch.as_tensor(val).long()
    else:
        raise TypeError(f"data must be text, 1-D token ids, a DataSplits or (x, y) packed rows; "
                        f"got {type(data).__name__}")
    for name, ids in (("training", train_ids), ("validation", val_ids)):
        if len(ids) <= block:
            raise ValueError(f"the {name} data has {len(ids)} tokens, fewer than one window of block_size+1="
                             f"{block + 1} (its inputs and their targets): give more text")
    return DataSplits(train=train_ids, val=val_ids, vocab_size=vocab), tokenizer


def _is_rows(data: Any) -> bool:
    return (isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)
            and data[0].dim() == 2)


def _note_run(run: Run, model: nn.Module, data: str, overrides: Mapping[str, Any]) -> None:
    """What a shipped record says about this run (book.results.recording): the model's shape and size and the
    run's training settings."""
    from book.results import note

    cfg = model.config
    shape = {k: getattr(cfg, k) for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size") if hasattr(cfg, k)}
    settings = dict(train=data, **shape, params=sum(p.numel() for p in model.parameters()), steps=run.steps,
                    batch_size=run.batch_size, lr=run.lr, warmup_steps=run.warmup_steps, seed=run.seed,
                    eval_windows=run.eval_windows)
    note(**{**settings, **dict(overrides)})  # a TrainConfig override (lr=, warmup_steps=) is what trained


def train(run: Run, data: Any, *, val: Any = None, val_fraction: float = 0.05, tokenizer: Any = None,
          vocab_size: int | None = None, model: nn.Module | None = None, hooks: Any = None, fit: bool = True,
          score: bool = True, stop_on_nonfinite: bool = False, **train_overrides: Any) -> Trained:
    """Train `model` (default: a fresh GPT(run.model_config(vocab)) initialised with torch.manual_seed(run.seed))
    on `data` with `run`'s recipe, then score it on the held-out tokens.

    data: text (str; the tokenizer defaults to a CharTokenizer over train + val text; `val` is held-out text,
        else the last `val_fraction` of `data`, cut at a newline, is held out and not trained on); 1-D token ids
        (with vocab_size= or tokenizer=; `val` ids, else the last val_fraction); a DataSplits (used as is); or
        packed SFT rows `(x, y)` (N, T) with y = -100 where no loss is wanted: these go through
        minillm.finetune.sft.train_sft with batch_size min(run.batch_size, N), one history row at the end, and
        need `model`.
    model: train this module instead (a deep copy of a base to fine-tune, a wrapper exposing .config with
        block_size and vocab_size and model(x, y) -> (logits, loss)); its config.block_size is the window length
        of training and of the held-out windows.
    hooks: the Trainer's (`{"on_step": fn, "on_eval": fn}`). fit=False: build everything and return before the
        fit (the caller drives `out.trainer.fit(stop_at=...)`; val_loss is None). score=False: no held-out score.
    stop_on_nonfinite: a row every step and on_nan="skip"; the run stops at its first non-finite step, reported
        as `diverged_at` (never raised), and is not scored.
    train_overrides: TrainConfig fields (grad_clip=None, weight_decay=1.0, precision="bf16", eval_batches=40...).
    """
    from minillm.train.history import normalize_hooks
    from minillm.train.trainer import Trainer

    if not isinstance(run, Run):
        raise TypeError(f"run must be a Run, got {type(run).__name__}")
    if _is_rows(data):
        from minillm.finetune.sft import train_sft

        if model is None:
            raise ValueError("packed rows fine-tune a given model: pass model= (e.g. a deep copy of a base)")
        x, y = data
        _note_run(run, model, "rows", train_overrides)
        tcfg = run.train_config(**{"batch_size": min(run.batch_size, len(x)), "log_interval": run.steps,
                                   **train_overrides})
        t0 = time.perf_counter()
        history = train_sft(model, x, y, tcfg) if fit else []
        return Trained(model, tokenizer, history, None, None, None, time.perf_counter() - t0)

    block = run.block_size if model is None else model.config.block_size
    splits, tokenizer = _as_splits(data, val, val_fraction, tokenizer, vocab_size, block)
    if model is None:
        from minillm.model.transformer import GPT

        torch.manual_seed(run.seed)
        model = GPT(run.model_config(splits.vocab_size))
    _note_run(run, model, "tokens", train_overrides)
    hook_map: dict[str, list] = {}
    if stop_on_nonfinite:
        fixed = sorted({"log_interval", "on_nan"} & set(train_overrides))
        if fixed:
            raise ValueError(f"stop_on_nonfinite sets {', '.join(fixed)} itself (a row every step, on_nan='skip')")
        train_overrides = {**train_overrides, "log_interval": 1, "on_nan": "skip"}

        def stop(trainer, row):
            if row["skipped"] or not math.isfinite(row["loss"]):
                raise _Diverged(row["step"])
        hook_map["on_step"] = [stop]
    for name, fns in normalize_hooks(hooks).items():
        hook_map.setdefault(name, []).extend(fns)
    trainer = Trainer(model, run.train_config(**train_overrides), splits, hooks=hook_map or None)
    out = Trained(model, tokenizer, trainer.history, None, splits, trainer)
    if not fit:
        return out
    t0 = time.perf_counter()
    try:
        trainer.fit()
    except _Diverged as e:
        out.diverged_at = e.args[0]
    out.seconds = time.perf_counter() - t0
    out.history = trainer.history
    model.eval()
    if score and out.diverged_at is None and splits.val is not None:
        out.val_loss = heldout_loss(model, splits.val, max_windows=run.eval_windows)
    return out


# ---- chapters 04/05: architecture and training runs on one synthetic corpus ------------------------------------

_DATA_CACHE: dict[tuple, tuple] = {}
_DATA_CACHE_SIZE = 4  # a few data settings at once (a notebook comparing ci and laptop), not an unbounded pile
# A run whose final loss is within this many nats of the unigram loss learned nothing from context. Unstable
# post-LN runs end there rather than at NaN: LayerNorm keeps activations finite, the attention/MLP branches
# collapse, and the model falls back to the character frequencies (measured: 3.003 vs a unigram 2.997).
STUCK_MARGIN = 0.05


@dataclass(frozen=True)
class ArchRun(Run):
    """A Run on one synthetic corpus: every arm of a chapter 04/05 study trains this recipe and changes one knob,
    so a difference in loss is that knob's doing. Defaults = the laptop preset (Run.for_size("laptop"))."""

    n_head: int = 4
    steps: int = 200
    warmup: int | float | None = 10
    corpus: str = "story"  # a name from minillm.data.synthetic.CORPORA
    n_docs: int = 3000  # documents drawn from the corpus (10% of the characters are held out)
    data_seed: int = 0  # which documents: kept apart from `seed` so reseeding a run keeps the data

    def __post_init__(self) -> None:
        from minillm.data.synthetic import CORPORA

        super().__post_init__()
        _positive_int("ArchRun", "n_docs", self.n_docs)
        _positive_int("ArchRun", "data_seed", self.data_seed, zero_ok=True)
        if self.corpus not in CORPORA:
            raise ValueError(f"ArchRun.corpus={self.corpus!r} is not a known corpus; choose one of "
                             f"{', '.join(CORPORA)}")

    @classmethod
    def for_size(cls, size: str | None = None, **changes: Any) -> "ArchRun":
        """Run.for_size's preset on the profile's amount of data (ci 300 documents, laptop 3000, gpu 100k)."""
        from minillm.presets import by_size

        data = by_size(ci=dict(n_docs=300), laptop={}, gpu=dict(n_docs=100_000), size=size)
        return super().for_size(size, **{**data, **changes})


def check_run(run: Any) -> ArchRun:
    """`run` itself, or the size profile's ArchRun for None; a TypeError for anything else."""
    if run is None:
        return ArchRun.for_size()
    if not isinstance(run, ArchRun):
        raise TypeError(f"run must be an ArchRun (or None for the size profile's), got {type(run).__name__}")
    return run


def study_data(run: ArchRun):
    """(splits, vocab_size, tokenizer, floor) for `run`'s corpus: char tokens split 90/10 into a DataSplits, the
    CharTokenizer, and the exact entropy of the text in nats/char (the loss a perfect model would reach).

    Cached on (corpus, n_docs, data_seed): the same objects come back on every call, so do not modify them."""
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


def _finite_or_none(x: float | None) -> float | None:
    # JSON has no NaN/inf (as minillm.train.history writes rows): a missing value is null
    return float(x) if x is not None and math.isfinite(x) else None


def train_config(cfg: ModelConfig, run: ArchRun, *, model: nn.Module | None = None, train_len: int | None = None,
                 **overrides: Any) -> dict:
    """Train GPT(cfg) (initialised with run.seed) on study_data(run) with `train(run, ...)`, and report how it went.

    Batches of run.batch_size windows of cfg.block_size tokens, or of `train_len` tokens (a shorter training
    context than the model supports). `overrides` are TrainConfig fields (e.g. warmup_steps=1, grad_clip=None,
    lr=1e-2). `model` trains that module instead of GPT(cfg) (anything with .config and model(x, y) ->
    (logits, loss)); cfg then only supplies the held-out window length.

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
    from minillm.model.transformer import GPT

    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
    if not isinstance(run, ArchRun):
        raise TypeError(f"run must be an ArchRun, got {type(run).__name__}")
    fixed = sorted(set(overrides) & {"log_interval", "on_nan", "progress"})
    if fixed:
        raise ValueError(f"train_config sets {', '.join(fixed)} itself (the divergence check needs a row every "
                         f"step and on_nan='skip'); leave them out of the overrides")
    splits, vocab_size, _, _ = study_data(run)
    if cfg.vocab_size < vocab_size:
        raise ValueError(f"cfg.vocab_size={cfg.vocab_size} is smaller than the corpus's {vocab_size} characters: "
                         f"build it with run.model_config(vocab_size) or vocab_size >= {vocab_size}")
    length = cfg.block_size if train_len is None else train_len
    if not _is_int(length) or not 1 <= length <= cfg.block_size:
        raise ValueError(f"train_len={train_len!r} must be an int in [1, cfg.block_size={cfg.block_size}]")
    if model is None:
        torch.manual_seed(run.seed)
        model = GPT(cfg)
    trained = model if length == cfg.block_size else _ShortWindows(model, length)
    out = train(run, splits, model=trained, stop_on_nonfinite=True, **overrides)
    initial = out.initial_loss if out.history else math.nan
    if out.diverged_at is None:
        final, val = out.final_loss, out.val_loss
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
            "diverged_at": out.diverged_at, "status": status, "history": out.history,
            "params": count() if callable(count) else n_all, "params_total": n_all,
            "seconds": round(out.seconds, 3), "model": model}
