"""Scaling sweeps: train many models of many sizes on many budgets, one JSONL row each. Survey §2.1.

A scaling law (Kaplan et al. 2020; Hoffmann et al. 2022, "Chinchilla") is a fit to *many* training runs. A
sweep is the grid of those runs: model shapes × training lengths, all on the same data, tokenizer, context
and batch, each trained with its own learning-rate schedule run to the end (Chinchilla's point: a cosine
schedule longer than the run under-trains it, which biased Kaplan's estimate toward bigger models).

Two modes:

- ``grid``: every size × every token budget D. Gives loss curves L(N, D) for the KM-style fit.
- ``isoflop``: for each compute budget C (FLOPs) and each size, train for the number of steps that spends
  exactly C, i.e. ``steps = C / (flops_per_token × tokens_per_step)`` (Chinchilla approach 2). Plotting
  final loss against N for one C gives a U: small models are under-parameterized, big ones see too few
  tokens; the bottom is the compute-optimal N for that C. Sizes that would need fewer than ``min_steps``
  steps (the schedule would be all warm-up, and the loss mostly that of the initialisation) or more than
  ``max_steps`` steps (too long for the profile, and far from the optimum anyway) are left out of that
  budget, so each budget covers a sliding window of the model ladder.

FLOPs are counted as ``model.flops_per_token() × tokens``: 6N per token for the matmul weights (output
layer included) plus the attention products, as in PaLM's appendix; N in each row is Kaplan's
non-embedding count.

``run_sweep`` appends one row per finished run to a JSONL file (fsynced): the RunSpec fields, ``loss`` (mean
training loss over the last logging interval), ``val_loss`` (held-out, mean of ``eval_batches`` batches),
``floor`` (the corpus's exact entropy per token), ``seconds``, ``curve`` ([tokens, train loss] points, for
Chinchilla approach 1), the data/batch settings, and ``provenance``. Each row carries its own
``provenance`` (command, date, host, versions), because a sweep interrupted today may be resumed tomorrow on
another machine: a row must say where *it* was measured. Resuming is free: a run whose ``run_id`` (a
readable prefix plus a hash of every setting that affects the result) is already in the file is skipped.

    cfg = default_sweep("laptop")
    rows = run_sweep(cfg, "bench/results/sweeps/laptop_isoflop.jsonl")
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minillm.config import ModelConfig, TrainConfig
from minillm.data.loader import DataSplits
from minillm.data.synthetic import CORPORA, corpus
from minillm.data.tokenizer import CharTokenizer
from minillm.model.transformer import GPT
from minillm.presets import SIZES, size_profile
from minillm.provenance import append_jsonl, provenance
from minillm.train.trainer import Trainer

MODES = ("isoflop", "grid")
TOKENIZERS = ("char",)
Shape = tuple[int, int, int]  # (n_layer, n_embd, n_head)

# Fields every row written by run_sweep holds; load_sweep checks them.
ROW_FIELDS = ("run_id", "mode", "n_layer", "n_embd", "n_head", "n_params", "n_params_total", "tokens", "steps",
              "flops", "budget", "loss", "val_loss", "floor", "seconds", "curve")


# --------------------------------------------------------------------------------------------- model shapes


def shape_counts(shape: Shape, vocab_size: int, block_size: int) -> tuple[int, int, int]:
    """(non-embedding N, total params, training FLOPs per token) of a GPT shape, counted by the model itself.

    The model is built on the "meta" device: parameters have shapes but no storage, so this is instant
    even for big shapes and the counts can never drift from what GPT really builds.
    """

    n_layer, n_embd, n_head = shape
    with torch.device("meta"):
        m = GPT(ModelConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_embd=n_embd,
                            n_head=n_head))
    return m.num_params(non_embedding=True), m.num_params(non_embedding=False), m.flops_per_token()


def _heads(n_embd: int) -> int | None:
    """Heads 32 to 64 dims wide (the smallest such width dividing n_embd), one head below 64 dims, else None."""
    for head_dim in range(32, 65):
        if n_embd % head_dim == 0:
            return n_embd // head_dim
    return 1 if n_embd < 64 else None


def model_ladder(n_min: float, n_max: float, count: int) -> list[Shape]:
    """`count` GPT shapes whose non-embedding N is spaced evenly in log between n_min and n_max.

    Shapes follow Kaplan et al.'s finding that loss depends only weakly on aspect ratio around
    n_embd ≈ 20-100 × n_layer: for each target N we take the (n_layer, n_embd), n_embd a multiple of 8,
    whose N ≈ 12·n_layer·n_embd² is nearest in log, with a pull toward aspect ratio 48. Heads are
    32-64 dims wide (see `_heads`). Shapes are distinct and sorted by N.
    """
    if not (isinstance(count, int) and not isinstance(count, bool) and count >= 1):
        raise ValueError(f"count={count!r} must be a positive int")
    if not (0 < n_min <= n_max):
        raise ValueError(f"need 0 < n_min <= n_max, got n_min={n_min}, n_max={n_max}")
    candidates = []  # (n_layer, n_embd, n_head, approximate N, aspect ratio)
    for n_layer in range(1, 25):
        for n_embd in range(16, 2049, 8):
            aspect, n_head = n_embd / n_layer, _heads(n_embd)
            if n_head is not None and 16 <= aspect <= 128:
                candidates.append((n_layer, n_embd, n_head, 12 * n_layer * n_embd**2, aspect))
    shapes: list[Shape] = []
    for target in np.geomspace(n_min, n_max, count):
        def score(c, t=target):  # distance in log N, plus a pull toward aspect ratio 48
            return abs(math.log(c[3] / t)) + 0.3 * abs(math.log(c[4] / 48))
        # Skip candidates within 15% of a chosen N: two near-equal sizes would waste a run.
        free = [c for c in candidates if all(abs(math.log(c[3] / (12 * s[0] * s[1] ** 2))) > 0.14 for s in shapes)]
        if not free:
            raise ValueError(f"no more distinct shapes near N={target:.3g}: ask for fewer than {count}")
        shapes.append(min(free, key=score)[:3])
    return sorted(shapes, key=lambda s: (s[0] * s[1] ** 2, s))


# --------------------------------------------------------------------------------------------- configuration


@dataclass
class SweepConfig:
    """Everything a sweep depends on. Survey §2.1. Validated at construction."""

    corpus: str = "story"  # synthetic corpus name (minillm.data.synthetic.CORPORA): it knows its entropy floor
    n_docs: int = 60000  # documents generated; the char stream should exceed the longest run's tokens
    data_seed: int = 0  # seed of the synthetic corpus
    tokenizer: str = "char"  # char: one token per character, so nats/token = nats/char
    val_fraction: float = 0.05  # last share of the token stream held out for the final val_loss
    block_size: int = 64  # context length T of every model
    batch_size: int = 8  # sequences per step: tokens_per_step = batch_size × block_size for every run
    lr: float | None = None  # peak learning rate for all runs; None = the width rule lr_for_width(n_embd)
    lr_ref: float = 2e-3  # width rule: lr = lr_ref × sqrt(lr_ref_width / n_embd), clipped to [lr_ref/4, 2·lr_ref]
    lr_ref_width: int = 128  # width at which the rule gives lr_ref
    warmup_frac: float = 0.05  # linear warm-up as a share of each run's own steps (at least 1 step)
    min_lr_frac: float = 0.1  # cosine decays to lr × min_lr_frac at the run's last step
    shapes: list = field(default_factory=lambda: model_ladder(3e3, 1.5e6, 16))  # (n_layer, n_embd, n_head)
    mode: str = "isoflop"  # isoflop: budgets of FLOPs | grid: every shape × every token budget
    budgets: list = field(default_factory=lambda: [8e10, 2.5e11, 8e11, 2.8e12])  # isoflop compute budgets C, in FLOPs
    token_budgets: list = field(default_factory=list)  # grid: training tokens D per run
    min_steps: int = 150  # isoflop: a shape needing fewer steps for a budget is skipped for it
    max_steps: int = 16000  # isoflop: a shape needing more steps for a budget is skipped for it
    eval_batches: int = 40  # batches of the held-out split averaged for the final val_loss
    curve_points: int = 16  # about how many (tokens, loss) points of each run's training curve are kept
    train_seed: int = 1337  # seeds model init and batch order (the same for every run)
    device: str = "auto"  # auto | cpu | cuda | mps

    def __post_init__(self) -> None:
        n = "SweepConfig"
        if self.corpus not in CORPORA:
            raise ValueError(f"{n}.corpus={self.corpus!r} is unknown; choose one of {', '.join(CORPORA)}")
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"{n}.tokenizer={self.tokenizer!r}: only {', '.join(TOKENIZERS)} is supported")
        if self.mode not in MODES:
            raise ValueError(f"{n}.mode={self.mode!r} is not valid; choose one of {', '.join(MODES)}")
        for name in ("n_docs", "block_size", "batch_size", "lr_ref_width", "min_steps", "max_steps",
                     "eval_batches", "curve_points"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{n}.{name}={v!r} must be a positive integer")
        if self.min_steps > self.max_steps:
            raise ValueError(f"{n}.min_steps={self.min_steps} exceeds max_steps={self.max_steps}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"{n}.val_fraction={self.val_fraction!r} must be in (0, 1)")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"{n}.lr={self.lr!r} must be positive, or None for the width rule")
        if not self.lr_ref > 0:
            raise ValueError(f"{n}.lr_ref={self.lr_ref!r} must be positive")
        if not 0 <= self.warmup_frac < 1 or not 0 <= self.min_lr_frac <= 1:
            raise ValueError(f"{n}: warmup_frac must be in [0, 1) and min_lr_frac in [0, 1]")
        self.shapes = [tuple(int(x) for x in s) for s in self.shapes]
        if not self.shapes:
            raise ValueError(f"{n}.shapes is empty: give (n_layer, n_embd, n_head) tuples or use model_ladder()")
        for s in self.shapes:
            if len(s) != 3 or min(s) <= 0 or s[1] % s[2]:
                raise ValueError(f"{n}.shapes entry {s} must be (n_layer, n_embd, n_head), positive, with "
                                 f"n_embd divisible by n_head")
        if len(set(self.shapes)) != len(self.shapes):
            raise ValueError(f"{n}.shapes has repeated entries")
        self.budgets = [float(b) for b in self.budgets]
        self.token_budgets = [int(d) for d in self.token_budgets]
        if any(not (b > 0 and math.isfinite(b)) for b in self.budgets):
            raise ValueError(f"{n}.budgets={self.budgets} must all be positive FLOP counts")
        if any(d <= 0 for d in self.token_budgets):
            raise ValueError(f"{n}.token_budgets={self.token_budgets} must all be positive token counts")
        wanted = self.budgets if self.mode == "isoflop" else self.token_budgets
        if not wanted:
            what = "budgets (FLOPs)" if self.mode == "isoflop" else "token_budgets (tokens)"
            raise ValueError(f"{n}: mode={self.mode!r} needs at least one entry in {what}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size

    def lr_for_width(self, n_embd: int) -> float:
        """Peak lr of a run: cfg.lr if set, else narrower models get a larger one (as muP-style width rules)."""
        if self.lr is not None:
            return self.lr
        lr = self.lr_ref * math.sqrt(self.lr_ref_width / n_embd)
        return float(min(max(lr, self.lr_ref / 4), 2 * self.lr_ref))


def default_sweep(size: str | None = None) -> SweepConfig:
    """The sweep of a size profile (default: $MINILLM_SIZE). ci: 3 tiny runs in seconds. laptop: the shipped
    IsoFLOP sweep (bench/results/sweeps/: 47 runs, 14 min on one CPU thread). gpu: the same design ~4 decades up
    (not run by us: a starting point)."""
    size = size or size_profile()
    if size not in SIZES:
        raise ValueError(f"size={size!r} is not valid; choose one of {', '.join(SIZES)}")
    if size == "ci":
        return SweepConfig(n_docs=300, block_size=32, batch_size=4, shapes=[(1, 32, 1), (1, 64, 2), (2, 64, 2)],
                           budgets=[4e8], min_steps=2, max_steps=40, eval_batches=2, curve_points=4)
    if size == "laptop":
        return SweepConfig()  # the defaults are the shipped laptop sweep
    return SweepConfig(n_docs=2_000_000, block_size=256, batch_size=64, shapes=model_ladder(3e5, 1e8, 12),
                       budgets=[1e15, 3e15, 1e16, 3e16], lr_ref=1e-3, lr_ref_width=512, max_steps=20000,
                       min_steps=200, eval_batches=50)


def live_sweep(size: str | None = None) -> SweepConfig:
    """The sweep a reader runs inside chapter 01: minutes at most. ci: the 3 tiny runs of default_sweep("ci").
    laptop: the shipped sweep's two smallest budgets (same runs, ~2 min), so the reader's points land on the
    shipped ones. gpu: the whole shipped laptop design, which a GPU runs in minutes."""
    size = size or size_profile()
    if size == "laptop":
        shipped = default_sweep("laptop")
        return dataclasses.replace(shipped, budgets=sorted(shipped.budgets)[:2])
    return default_sweep("ci" if size == "ci" else "laptop")


# --------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class RunSpec:
    """One training run of a sweep: a shape, a length, and the settings that make it reproducible."""

    run_id: str
    mode: str
    n_layer: int
    n_embd: int
    n_head: int
    n_params: int  # non-embedding N (Kaplan)
    n_params_total: int
    flops_per_token: int
    steps: int
    tokens: int  # D = steps × tokens_per_step
    flops: float  # C = flops_per_token × D
    budget: float | None  # the isoflop budget this run spends (None in grid mode)
    lr: float
    warmup_steps: int


def _vocab_size(cfg: SweepConfig) -> int:
    """Vocabulary of the char tokenizer over the sweep's corpus (no end token: documents end with '\\n')."""
    return len(set(_corpus(cfg).text()))


_CORPUS_CACHE: dict[tuple, Any] = {}


def _corpus(cfg: SweepConfig):
    key = (cfg.corpus, cfg.n_docs, cfg.data_seed)
    if key not in _CORPUS_CACHE:  # plan() and run_sweep() both need it; generating twice wastes seconds
        _CORPUS_CACHE.clear()
        _CORPUS_CACHE[key] = corpus(cfg.corpus, cfg.n_docs, cfg.data_seed)
    return _CORPUS_CACHE[key]


def _run_id(cfg: SweepConfig, shape: Shape, steps: int, lr: float, warmup: int, budget: float | None) -> str:
    """Readable prefix + a hash of every setting that changes the result, so a changed setting never resumes
    into an old row."""
    settings = dict(corpus=cfg.corpus, n_docs=cfg.n_docs, data_seed=cfg.data_seed, tokenizer=cfg.tokenizer,
                    val_fraction=cfg.val_fraction, block_size=cfg.block_size, batch_size=cfg.batch_size,
                    shape=list(shape), steps=steps, lr=lr, warmup=warmup, min_lr_frac=cfg.min_lr_frac,
                    eval_batches=cfg.eval_batches, train_seed=cfg.train_seed)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    head = f"C{budget:.2g}" if budget is not None else "grid"
    return f"{head}-L{shape[0]}-E{shape[1]}-H{shape[2]}-S{steps}-{digest}"


def plan(cfg: SweepConfig) -> list[RunSpec]:
    """The runs of a sweep, in execution order (by budget, then N). Pure: trains nothing."""
    vocab = _vocab_size(cfg)
    tps = cfg.tokens_per_step
    counts = {s: shape_counts(s, vocab, cfg.block_size) for s in cfg.shapes}
    shapes = sorted(cfg.shapes, key=lambda s: counts[s][0])
    jobs: list[tuple[Shape, int, float | None]] = []
    if cfg.mode == "isoflop":
        for budget in sorted(cfg.budgets):
            for s in shapes:
                steps = round(budget / (counts[s][2] * tps))  # the steps that spend C with this model
                if cfg.min_steps <= steps <= cfg.max_steps:
                    jobs.append((s, steps, budget))
    else:
        for d in sorted(cfg.token_budgets):
            for s in shapes:
                jobs.append((s, max(1, math.ceil(d / tps)), None))
    specs = []
    for s, steps, budget in jobs:
        n_params, n_total, fpt = counts[s]
        lr = cfg.lr_for_width(s[1])
        warmup = max(1, round(cfg.warmup_frac * steps)) if cfg.warmup_frac > 0 else 0
        specs.append(RunSpec(run_id=_run_id(cfg, s, steps, lr, warmup, budget), mode=cfg.mode, n_layer=s[0],
                             n_embd=s[1], n_head=s[2], n_params=n_params, n_params_total=n_total,
                             flops_per_token=fpt, steps=steps, tokens=steps * tps, flops=float(fpt * steps * tps),
                             budget=budget, lr=lr, warmup_steps=warmup))
    if not specs:
        raise ValueError(f"the sweep plans no runs: every shape needs fewer than min_steps={cfg.min_steps} or more "
                         f"than max_steps={cfg.max_steps} steps for budgets {cfg.budgets}; change the budgets, "
                         f"the shapes or the step bounds")
    return specs


# --------------------------------------------------------------------------------------------- running


def prepare_data(cfg: SweepConfig):
    """Char tokens of the corpus, split once for all runs, and its exact entropy floor per token."""

    c = _corpus(cfg)
    text = c.text()
    tok = CharTokenizer.from_text(text)
    ids = tok.encode_to_array(text, dtype=np.int64)  # (N,)
    splits = DataSplits.from_tokens(torch.from_numpy(ids), val_fraction=cfg.val_fraction, vocab_size=tok.vocab_size)
    return splits, tok.vocab_size, c.entropy_per_token(tok)


def _train_one(cfg: SweepConfig, spec: RunSpec, splits, vocab_size: int) -> tuple[list[dict], float]:
    torch.manual_seed(cfg.train_seed)  # the same init stream for every run of a given shape
    model = GPT(ModelConfig(vocab_size=vocab_size, block_size=cfg.block_size, n_layer=spec.n_layer,
                            n_embd=spec.n_embd, n_head=spec.n_head))
    tcfg = TrainConfig(batch_size=cfg.batch_size, max_steps=spec.steps, lr=spec.lr, min_lr=spec.lr * cfg.min_lr_frac,
                       warmup_steps=spec.warmup_steps, schedule="cosine", eval_interval=0,
                       eval_batches=cfg.eval_batches, log_interval=max(1, spec.steps // cfg.curve_points),
                       seed=cfg.train_seed, device=cfg.device, progress=False)
    t0 = time.perf_counter()
    history = Trainer(model, tcfg, splits).fit()
    return history, time.perf_counter() - t0


def run_sweep(cfg: SweepConfig, out_path: str | os.PathLike, progress: bool = True,
              max_runs: int | None = None) -> list[dict]:
    """Train every run of plan(cfg) not yet in `out_path`, appending one row per finished run.

    Returns the rows of this plan found in or added to the file. `max_runs` caps the runs trained by this
    call (the rest are left for the next call: the sweep resumes where it stopped).
    """

    if max_runs is not None and (not isinstance(max_runs, int) or max_runs < 0):
        raise ValueError(f"max_runs={max_runs!r} must be None or a non-negative int")
    out_path = Path(out_path)
    specs = plan(cfg)
    done = {r["run_id"]: r for r in load_sweep(out_path)} if out_path.exists() else {}
    missing = [s for s in specs if s.run_id not in done]
    todo = missing if max_runs is None else missing[:max_runs]
    if progress:
        print(f"sweep: {len(specs)} runs planned, {len(specs) - len(missing)} already in {out_path}, "
              f"{len(todo)} to train now", flush=True)
    splits = vocab = floor = None
    if todo:
        splits, vocab, floor = prepare_data(cfg)
    for i, spec in enumerate(todo, 1):
        history, seconds = _train_one(cfg, spec, splits, vocab)
        last = history[-1]
        row = {**dataclasses.asdict(spec), "loss": last["loss"], "val_loss": last["val_loss"], "floor": floor,
               "seconds": round(seconds, 2), "tok_per_s": round(spec.tokens / seconds, 1),
               "curve": [[r["tokens"], round(r["loss"], 5)] for r in history],
               "corpus": cfg.corpus, "n_docs": cfg.n_docs, "data_seed": cfg.data_seed, "tokenizer": cfg.tokenizer,
               "vocab_size": vocab, "block_size": cfg.block_size, "batch_size": cfg.batch_size,
               "train_seed": cfg.train_seed, "provenance": provenance()}
        append_jsonl(out_path, row)  # fsynced: a crash after this line keeps the run
        done[spec.run_id] = row
        if progress:
            budget = f"C={spec.budget:.2g} " if spec.budget is not None else ""
            print(f"[{i}/{len(todo)}] {budget}L{spec.n_layer} E{spec.n_embd} N={spec.n_params:,} "
                  f"D={spec.tokens:,} ({spec.steps} steps): val {row['val_loss']:.4f} (floor {floor:.4f}) "
                  f"in {seconds:.1f} s", flush=True)
    return [done[s.run_id] for s in specs if s.run_id in done]


def load_sweep(path: str | os.PathLike) -> list[dict]:
    """The rows of a sweep JSONL file, checked: every line valid JSON with all of ROW_FIELDS."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep results at {path}: run `python -m minillm sweep --out {path}` first")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno} is not valid JSON ({e.msg}); a sweep killed mid-write leaves a "
                                 f"partial last line: delete that line and resume") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno} is not a JSON object")
            missing = [k for k in ROW_FIELDS if k not in row]
            if missing:
                raise ValueError(f"{path}:{lineno} lacks field(s) {', '.join(missing)}: not a minillm sweep row")
            rows.append(row)
    return rows
