"""Section 3 of the capstone: pretrain a modern small LM on both corpora, beside a GPT-2-style baseline.

Survey §4.2.2 (the configuration: RoPE, RMSNorm, SwiGLU and no biases against GPT-2's learned positions, LayerNorm,
GELU and biases), §4.3.1 (optimization: a tuned peak lr, warmup, WSD decay, weight decay 0.1, clipping at 1.0) and
§7.1.1 (language modeling: bits per byte, which compares languages and tokenizers where nats per token cannot).

The data (`capstone_data`): one token stream of Shakespeare's training part then every training poem, EOS after
each document, tokenized by the capstone's byte-level BPE (vocabulary: ci 512, laptop 4096, gpu 8192). Batches
are windows drawn uniformly from that stream, so each language gets its share of tokens: about 90% Chinese at
laptop (4.1M of 4.6M tokens), 82% at ci. The poet is the goal, and the poems already dominate, so no re-weighting
is needed. Held out: Shakespeare's last 10% (English) and the poems of the held-out titles (Chinese).

    res = pretrain_modern("laptop", progress=True, callbacks=[live])   # cached: trains once per process
    rows = compare_recipes("laptop")     # the modern run and a GPT-2 baseline given the same wall-clock seconds
    model, tok = pretrain_base("laptop")  # the modern model, for the poet and export sections (deep-copy it)

Both recipes train through `minillm.Trainer`, so `out=` gives a run folder (config.json, tokenizer.json,
history.jsonl, checkpoints) that `minillm.load_run` opens and `resume=True` continues exactly. A time-budgeted
run (`seconds=`) guesses its step count from a few steps of a throwaway model (the guess sets the warmup), then
`minillm.train.budget.fit_for_seconds` times the first warmup steps of the real run and plans the steps that fill
the time, with its schedule run to the end (a run cut off mid-decay would be judged before it annealed).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minillm.config import ModelConfig, TrainConfig
from minillm.data.loader import DataSplits
from minillm.data.tokenizer import BPETokenizer
from minillm.evaluation.loss import heldout_loss
from minillm.model.transformer import GPT
from minillm.presets import by_size, size_profile
from minillm.train.budget import fit_for_seconds
from minillm.train.checkpoint import latest_checkpoint, load_checkpoint_state
from minillm.train.trainer import Trainer
from book.ch09_capstone.studies_corpus import capstone_corpus, capstone_tokenizer, encode_documents
from book.results import note

__all__ = ["LANGUAGES", "CapstoneData", "capstone_data", "bits_per_byte", "Recipe", "MODERN", "GPT2",
           "PretrainConfig", "pretrain_config", "PretrainResult", "fit_recipe", "pretrain", "pretrain_modern",
           "pretrain_base", "compare_recipes", "exact_resume"]

LANGUAGES = ("en", "zh")
Shape = tuple[int, int, int]  # (n_layer, n_embd, n_head)


# ============================================================================================== data


@dataclass(frozen=True, eq=False)
class CapstoneData:
    """The tokenizer, the training stream and the held-out streams per language (with their UTF-8 byte counts)."""

    tok: BPETokenizer
    train: np.ndarray  # (N,) int32 ids: Shakespeare's training part, then the training poems, EOS after each
    heldout: dict[str, np.ndarray]  # {"en", "zh"}: (n,) int32 ids of the held-out documents, EOS after each
    heldout_bytes: dict[str, int]  # UTF-8 bytes of those documents, plus one byte per EOS (a document break)
    train_en_tokens: int  # the English head of `train`; the rest is poems

    @property
    def vocab_size(self) -> int:
        return self.tok.vocab_size

    @property
    def heldout_mix(self) -> np.ndarray:
        """(n_en + n_zh,) the Chinese held-out stream, then the English: what "held-out loss" means in this
        chapter (the Trainer's val curve, the sizing sweep and the final loss all score it)."""
        return np.concatenate([self.heldout["zh"], self.heldout["en"]])

    def splits(self) -> DataSplits:
        return DataSplits(train=self.train, val=self.heldout_mix, vocab_size=self.vocab_size)

    def summary(self) -> dict:
        """Token counts and the Chinese share of the training stream (the share of windows it gets)."""
        return {"train_tokens": int(len(self.train)), "train_en_tokens": self.train_en_tokens,
                "train_zh_share": 1 - self.train_en_tokens / len(self.train),
                **{f"heldout_{k}_tokens": int(len(v)) for k, v in self.heldout.items()},
                **{f"heldout_{k}_bytes": self.heldout_bytes[k] for k in LANGUAGES}}


VOCAB = {"ci": 512, "laptop": 4096, "gpu": 8192}


@lru_cache(maxsize=3)
def _data(size: str) -> CapstoneData:
    corpus = capstone_corpus(size)
    tok = capstone_tokenizer(corpus, VOCAB[size])
    en = encode_documents(tok, [corpus.en_train])
    train = np.concatenate([en, encode_documents(tok, corpus.poem_documents("train"))])
    docs = {"en": [corpus.en_val], "zh": corpus.poem_documents("heldout")}
    heldout = {k: encode_documents(tok, d) for k, d in docs.items()}
    n_bytes = {k: sum(len(x.encode("utf-8")) for x in d) + len(d) for k, d in docs.items()}
    return CapstoneData(tok, train, heldout, n_bytes, len(en))


def capstone_data(size: str | None = None) -> CapstoneData:
    """The profile's tokenizer and token streams, built once per process (laptop: ~20 s of tokenizer training
    on an idle 2-core CPU, then ~4 s of encoding). Do not modify the arrays: every study shares them."""
    return _data(size or size_profile())


def bits_per_byte(model: torch.nn.Module, ids: Any, n_bytes: int, *, max_windows: int | None = None,
                  batch_size: int = 32) -> float:
    """Held-out bits per UTF-8 byte: the total nats of the stream / ln 2 / its bytes.

    The loss is `minillm.evaluation.loss.heldout_loss`: every token after the first scored once (max_windows=None),
    or the mean over `max_windows` evenly spread windows times the stream's targets (a deterministic estimate)."""
    if isinstance(n_bytes, bool) or not isinstance(n_bytes, int) or n_bytes < 1:
        raise ValueError(f"n_bytes={n_bytes!r} must be a positive int: the UTF-8 bytes the ids encode")
    nats = heldout_loss(model, ids, max_windows=max_windows, batch_size=batch_size)  # nats per token
    return nats * (len(ids) - 1) / n_bytes / math.log(2)


# ============================================================================================== recipes


@dataclass(frozen=True)
class Recipe:
    """How one recipe builds its model (ModelConfig fields besides the shape) and trains it."""

    name: str
    arch: tuple  # sorted (ModelConfig field, value) pairs
    lr: float  # peak lr
    schedule: str  # a TrainConfig schedule
    warmup_frac: float = 0.05  # linear warmup, as a share of the run's steps
    min_lr_frac: float = 0.1  # the decay ends at lr × this
    decay_frac: float = 0.2  # wsd: share of the steps spent decaying
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0
    beta2: float = 0.95

    def __post_init__(self) -> None:
        try:
            ModelConfig(**dict(self.arch))
            TrainConfig(lr=self.lr, min_lr=self.lr * self.min_lr_frac, schedule=self.schedule,
                        decay_frac=self.decay_frac, weight_decay=self.weight_decay, grad_clip=self.grad_clip,
                        beta2=self.beta2)
        except ValueError as e:
            raise ValueError(f"Recipe {self.name!r}: {e}") from None
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"Recipe {self.name!r}: warmup_frac={self.warmup_frac!r} must be in [0, 1)")


# Llama-style (chapters 04-05): RoPE, RMSNorm, SwiGLU, no biases; tied embeddings, because at V=4096 the table is a
# large share of a small model's parameters. WSD: chapter 05 measured cosine decaying too early on short runs.
# lr 3e-3: on this corpus (laptop, 6e11 FLOPs, batch 4) 6e-3 gave the same loss for the 2-layer 64-wide model
# (5.917 vs 5.917) and 0.05 lower for a 1-layer 32-wide one; 3e-3 is chapter 05's stable choice.
MODERN = Recipe("modern", tuple(sorted(dict(norm="rmsnorm", activation="swiglu", position="rope", bias=False,
                                            tie_embeddings=True).items())), lr=3e-3, schedule="wsd")
# GPT-2 as nanoGPT trains it: learned positions, LayerNorm, GELU, biases, tied embeddings; lr 6e-4 cosine to 6e-5,
# weight decay 0.1, betas (0.9, 0.95), clip 1.0. The same warmup share as the modern run (nanoGPT's 2000 of 600k
# steps would be 2 steps here), so the two differ in architecture, lr and schedule only.
GPT2 = Recipe("gpt2", tuple(sorted(dict(norm="layernorm", activation="gelu", position="learned", bias=True,
                                        tie_embeddings=True).items())), lr=6e-4, schedule="cosine")


@dataclass(frozen=True)
class PretrainConfig:
    """The pretraining runs of one size profile: shape, context, batch and the modern run's FLOP budget."""

    size: str
    vocab_size: int
    shape: Shape  # (n_layer, n_embd, n_head) of both recipes' models
    flops_budget: float  # the modern run's training FLOPs; its steps = budget / (FLOPs per token × tokens per step)
    block_size: int = 128  # a poem with its title fits (laptop: ~60 tokens)
    batch_size: int = 16
    eval_interval: int = 50  # Trainer evaluations (the val points of the curves)
    eval_batches: int = 8
    log_interval: int = 10
    heldout_windows: int = 256  # windows of CapstoneData.heldout_mix for the final held-out loss
    bpb_windows: int | None = None  # windows per language for bits per byte; None = every held-out token
    seed: int = 1337
    device: str = "cpu"
    precision: str = "fp32"  # bf16 is slower than fp32 on CPUs without bf16 units (this one)
    compile: bool = False
    optimizer: str = "adamw"
    model_extra: tuple = ()  # more ModelConfig fields (gpu: kernels, padding), sorted (name, value) pairs
    modern: Recipe = MODERN
    gpt2: Recipe = GPT2

    def __post_init__(self) -> None:
        if not (self.flops_budget > 0 and math.isfinite(self.flops_budget)):
            raise ValueError(f"PretrainConfig.flops_budget={self.flops_budget!r} must be a positive FLOP count")
        for r in ("modern", "gpt2"):
            self.model_config(r)  # a bad shape or field fails here, not at the first step
        self.train_config("modern", steps=1)

    def recipe(self, name: str | Recipe) -> Recipe:
        if isinstance(name, Recipe):
            return name
        if name not in ("modern", "gpt2"):
            raise ValueError(f"recipe={name!r} is not valid; choose 'modern' or 'gpt2'")
        return getattr(self, name)

    def model_config(self, recipe: str | Recipe, shape: Shape | None = None) -> ModelConfig:
        n_layer, n_embd, n_head = shape or self.shape
        return ModelConfig(vocab_size=self.vocab_size, block_size=self.block_size, n_layer=n_layer, n_embd=n_embd,
                           n_head=n_head, **dict(self.recipe(recipe).arch), **dict(self.model_extra))

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size

    def flops_per_token(self, recipe: str | Recipe = "modern", shape: Shape | None = None) -> int:
        """Training FLOPs per token (GPT.flops_per_token, counted on the meta device: nothing is allocated)."""
        with torch.device("meta"):
            return GPT(self.model_config(recipe, shape)).flops_per_token()

    def steps(self, recipe: str | Recipe = "modern", shape: Shape | None = None) -> int:
        """Optimizer steps that spend flops_budget with this recipe's model."""
        return max(1, round(self.flops_budget / (self.flops_per_token(recipe, shape) * self.tokens_per_step)))

    def train_config(self, recipe: str | Recipe, steps: int, **changes: Any) -> TrainConfig:
        r = self.recipe(recipe)
        base = dict(batch_size=self.batch_size, max_steps=steps, lr=r.lr, min_lr=r.lr * r.min_lr_frac,
                    warmup_steps=max(1, round(r.warmup_frac * steps)) if r.warmup_frac else 0,
                    schedule=r.schedule, decay_frac=r.decay_frac, weight_decay=r.weight_decay,
                    grad_clip=r.grad_clip, beta2=r.beta2, eval_interval=self.eval_interval,
                    eval_batches=self.eval_batches, log_interval=self.log_interval, seed=self.seed,
                    device=self.device, precision=self.precision, compile=self.compile, optimizer=self.optimizer,
                    progress=False)
        return TrainConfig(**{**base, **changes})


def pretrain_config(size: str | None = None, *, shape: Shape | None = None, **changes: Any) -> PretrainConfig:
    """The profile's runs. `shape` overrides the default (the sizing sweep's pick: `studies_sizing.pick_shape`).

    laptop: 7e12 FLOPs, 5760 steps of 4 x 128 tokens (2.9M tokens, 0.64 of an epoch); (2, 64, 2) is the ladder shape
    nearest the IsoFLOP fit's N_opt for that budget (studies_sizing). Batch 4: at these budgets every run is short
    of steps, and on this corpus (6e11 FLOPs) batch 4 beat 16 by 0.15-0.35 nats (more for bigger models) and 2 by
    0.03. At V=4096 a token's time is mostly the (B*T, V) logits' softmax, not the FLOPs. Measured on the idle 2-core
    CPU (2 threads, bench/results/capstone_studies.jsonl): 137 s, held-out 5.06 nats/token, 2.90 bits/byte English,
    2.61 Chinese; the GPT-2 recipe given the same seconds (6084 steps in 132 s): 5.50, 3.27 and 2.83. ci: seconds.
    gpu: a ~14M-parameter model in bf16 with Triton kernels and torch.compile on 5 epochs of the data (unmeasured:
    no GPU was available)."""
    size = size or size_profile()
    base = by_size(
        ci=dict(shape=(2, 32, 2), flops_budget=1e10, batch_size=8, eval_interval=20, eval_batches=2,
                log_interval=5, heldout_windows=16, bpb_windows=8),
        laptop=dict(shape=(2, 64, 2), flops_budget=7e12, batch_size=4, eval_interval=250, log_interval=25),
        gpu=dict(shape=(6, 384, 6), flops_budget=2.0e15, block_size=256, batch_size=64, eval_interval=200,
                 eval_batches=20, log_interval=25, device="auto", precision="bf16", compile=True,
                 optimizer="torch_adamw",
                 model_extra=tuple(sorted(dict(kernels="triton", pad_vocab_multiple=64).items()))),
        size=size)
    if shape is not None:
        base["shape"] = tuple(shape)
    return PretrainConfig(size=size, vocab_size=VOCAB[size], **{**base, **changes})


# ============================================================================================== training


@dataclass
class PretrainResult:
    """One pretraining run: the model, its curve against wall-clock time, and its held-out scores."""

    recipe: str
    model: GPT
    tok: BPETokenizer
    rows: list[dict]  # {"step", "seconds", "loss" (train), "val_loss" (None between evaluations)}
    heldout_loss: float  # nats/token on CapstoneData.heldout_mix (heldout_windows windows)
    bits_per_byte: dict[str, float]  # {"en", "zh"}
    seconds: float  # wall-clock of the fit (evaluations included), Trainer.elapsed_s
    steps: int
    tokens: int
    flops: float  # flops_per_token × tokens
    n_params: int  # non-embedding (Kaplan's N)
    n_params_total: int
    flops_per_token: int
    calibration_s: float = 0.0  # time spent timing steps for `seconds=` (not part of `seconds`)
    plans: list = field(default_factory=list)  # seconds=: fit_for_seconds' [step, seconds used, planned steps]
    history: list[dict] = field(default_factory=list, repr=False)  # the Trainer's rows

    def summary(self) -> dict:
        """Everything but the model and tokenizer: one row of the recipe comparison."""
        return {"recipe": self.recipe, "steps": self.steps, "seconds": self.seconds, "tokens": self.tokens,
                "flops": self.flops, "n_params": self.n_params, "n_params_total": self.n_params_total,
                "heldout_loss": self.heldout_loss, "bpb_en": self.bits_per_byte["en"],
                "bpb_zh": self.bits_per_byte["zh"], "curve": self.rows}


def _model(cfg: PretrainConfig, recipe: Recipe) -> GPT:
    torch.manual_seed(cfg.seed)  # both recipes start from the same seed: a difference is the recipe's
    return GPT(cfg.model_config(recipe))


def _steps_for_seconds(cfg: PretrainConfig, recipe: Recipe, data: CapstoneData, seconds: float,
                       probe: int = 8) -> tuple[int, float]:
    """(steps, seconds spent timing): time `probe` steps of a throwaway model after 2 warm-up steps, add the
    evaluations' share (eval_batches forward passes, ~1/3 of a step each, every eval_interval steps)."""
    t0 = time.perf_counter()
    tcfg = cfg.train_config(recipe, steps=10**6)
    trainer = Trainer(_model(cfg, recipe), tcfg, data.splits())
    trainer.fit(stop_at=2)  # allocator and kernels warm
    t = time.perf_counter()
    trainer.fit(stop_at=2 + probe)
    step_s = (time.perf_counter() - t) / probe
    step_s *= 1 + cfg.eval_batches / (3 * max(1, cfg.eval_interval))
    return max(1, int(seconds / step_s)), time.perf_counter() - t0


def fit_recipe(cfg: PretrainConfig, recipe: str | Recipe, steps: int, *, out: str | Path | None = None,
               resume: bool = False, stop_at: int | None = None, callbacks=(), progress: bool = False,
               budget_s: float | None = None, **train_changes: Any) -> tuple[GPT, Trainer]:
    """Build `recipe`'s model (seeded with cfg.seed) and fit it for `steps` steps on the capstone data with
    `minillm.Trainer`; returns (model in eval mode, the Trainer). train_changes: TrainConfig fields.
    budget_s: train for that many seconds instead (`minillm.train.budget.fit_for_seconds`); `steps` is then only
    the first guess that sets the warmup (at least 3 steps, so the timing probe fits inside it)."""
    r = cfg.recipe(recipe)
    data = capstone_data(cfg.size)
    tcfg = cfg.train_config(r, steps, out_dir=str(out) if out is not None else None, resume=resume,
                            progress=progress, **train_changes)
    if budget_s is not None:
        if stop_at is not None or resume:
            raise ValueError("a run trained for seconds (budget_s) cannot also stop_at a step or resume")
        tcfg = tcfg.replace(warmup_steps=max(3, tcfg.warmup_steps))
    model = _model(cfg, r)
    note(study="capstone.pretrain", recipe=r.name, size=cfg.size, shape=list(cfg.shape), steps=steps,
         batch_size=cfg.batch_size, block_size=cfg.block_size, lr=r.lr, schedule=r.schedule, seed=cfg.seed,
         budget_s=budget_s)
    trainer = Trainer(model, tcfg, data.splits(), tokenizer=data.tok, hooks=list(callbacks) or None)
    if budget_s is None:
        trainer.fit(stop_at=stop_at)
    else:  # time the first steps of this very run (inside the warmup), then plan the rest to fill the budget
        trainer.plans = fit_for_seconds(trainer, budget_s, probe=min(50, tcfg.warmup_steps - 1),
                                        replan=max(1, cfg.eval_interval))
    return model.eval(), trainer


def pretrain(size: str | None = None, recipe: str = "modern", *, shape: Shape | None = None,
             out: str | Path | None = None, seconds: float | None = None, steps: int | None = None,
             stop_at: int | None = None, resume: bool = False, callbacks=(), progress: bool = False,
             config: PretrainConfig | None = None) -> PretrainResult:
    """Train one recipe's model on the capstone data through `minillm.Trainer`, then score it.

    Steps: `steps` if given; else, with `seconds`, as many as fill that wall-clock time (timed first); else the
    config's FLOP budget. out: the run folder (checkpoints every eval_interval steps and at the end); resume=True
    continues its newest checkpoint with the step count it was started with (bit-identical on CPU). stop_at:
    train only that far (a run to resume later). callbacks: Trainer hooks (e.g. book.viz.LiveLossPlot).
    progress: tqdm's bar in a terminal or notebook."""
    if config is not None and shape is not None:
        raise ValueError("give shape= or config=, not both: the config already holds its shape")
    cfg = config or pretrain_config(size, shape=shape)
    r = cfg.recipe(recipe)
    data = capstone_data(cfg.size)
    calibration = 0.0
    if resume:
        if out is None or latest_checkpoint(out) is None:
            raise ValueError(f"resume=True needs out= naming a run folder with a checkpoint (got {out!r}); "
                             f"train it first with pretrain(..., out=..., stop_at=...)")
        if seconds is not None or steps is not None:
            raise ValueError("a resumed run keeps the step count it was started with: drop seconds= and steps=")
        steps = int(load_checkpoint_state(latest_checkpoint(out))["train_config"]["max_steps"])
    elif steps is None and seconds is not None:
        if not seconds > 0:
            raise ValueError(f"seconds={seconds!r} must be positive (the wall-clock budget of the run)")
        steps, calibration = _steps_for_seconds(cfg, r, data, seconds)  # a first guess: it sets the warmup
    budget_s = seconds if seconds is not None and not resume else None
    steps = steps if steps is not None else cfg.steps(r)
    model, trainer = fit_recipe(cfg, r, steps, out=out, resume=resume, stop_at=stop_at, callbacks=callbacks,
                                progress=progress, budget_s=budget_s)
    rows = [{"step": h["step"], "seconds": h["elapsed_s"], "loss": h["loss"], "val_loss": h.get("val_loss")}
            for h in trainer.history]
    bpb = {k: bits_per_byte(model, data.heldout[k], data.heldout_bytes[k], max_windows=cfg.bpb_windows)
           for k in LANGUAGES}
    done, tps = trainer.step, trainer.tokens_per_step
    fpt = model.flops_per_token()
    return PretrainResult(recipe=r.name, model=model, tok=data.tok, rows=rows,
                          heldout_loss=heldout_loss(model, data.heldout_mix, max_windows=cfg.heldout_windows),
                          bits_per_byte=bpb, seconds=trainer.elapsed_s, steps=done, tokens=done * tps,
                          flops=float(fpt * done * tps), n_params=model.num_params(),
                          n_params_total=model.num_params(non_embedding=False), flops_per_token=fpt,
                          calibration_s=calibration, history=trainer.history,
                          plans=getattr(trainer, "plans", []))


_MODERN: dict[str, PretrainResult] = {}


def pretrain_modern(size: str | None = None, *, out: str | Path | None = None, callbacks=(),
                    progress: bool = False) -> PretrainResult:
    """The profile's modern run, trained once per process: the first call trains it (into `out`, with the bar and
    callbacks asked for), later calls return that same result (whatever they pass)."""
    size = size or size_profile()
    if size not in _MODERN:
        _MODERN[size] = pretrain(size, "modern", out=out, callbacks=callbacks, progress=progress)
    return _MODERN[size]


def pretrain_base(size: str | None = None) -> tuple[GPT, BPETokenizer]:
    """(model, tokenizer) of `pretrain_modern(size)`: the base the poet and export sections start from. Shared by
    every caller in the process: fine-tune a `copy.deepcopy` of it, never the model itself."""
    res = pretrain_modern(size)
    return res.model, res.tok


def compare_recipes(size: str | None = None, *, callbacks=(), progress: bool = False) -> list[dict]:
    """[modern, gpt2] summaries (PretrainResult.summary): the GPT-2 baseline gets the modern run's wall-clock
    seconds (`pretrain(..., seconds=)`), on the same data, shape, batch and seed. callbacks/progress: the baseline's."""
    modern = pretrain_modern(size)
    base = pretrain(size, "gpt2", seconds=modern.seconds, callbacks=callbacks, progress=progress)
    return [modern.summary(), {**base.summary(), "calibration_s": base.calibration_s, "budget_s": modern.seconds,
                               "plans": base.plans}]


def exact_resume(size: str | None, root: str | Path, steps: int = 40) -> dict:
    """Train `steps` steps into root/whole; train steps // 2 into root/resumed, then resume it to `steps`.
    Returns {"steps", "stop_at", "whole", "resumed" (train losses per logged step), "identical"}."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps={steps!r} must be an int >= 2 (half of it is trained before the resume)")
    root = Path(root)
    cfg = replace(pretrain_config(size), log_interval=1, eval_interval=max(1, steps // 4), bpb_windows=4,
                  heldout_windows=4)
    whole = pretrain(out=root / "whole", steps=steps, config=cfg)
    pretrain(out=root / "resumed", steps=steps, stop_at=steps // 2, config=cfg)
    resumed = pretrain(out=root / "resumed", resume=True, config=cfg)
    a, b = ([row["loss"] for row in r.rows] for r in (whole, resumed))
    return {"steps": steps, "stop_at": steps // 2, "whole": a, "resumed": b, "identical": a == b}
