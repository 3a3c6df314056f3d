"""The chapter's PEFT and quantization studies: what each method costs and what it buys, as plain-dict rows.

Survey §5.3 (parameter-efficient adaptation): full fine-tuning, LoRA, adapters, prefix and prompt tuning trained
on the same SFT task for the same number of steps, compared on trainable parameters, training memory
(weights + gradients + AdamW state, `peft_report`) and accuracy on held-out instruction phrasings; a LoRA rank /
alpha sweep (the chapter's widget data). Survey §5.4 (memory-efficient adaptation): the bytes a model saves under
int8 / int4 weight quantization, per tensor or per group, against the perplexity it loses.

    base, tok = pretrain_base("ci")                     # cached: trained once per (size, seed) per process
    rows = peft_comparison(base, ("full", "lora", "prompt"), budget=40)
    rows = lora_rank_sweep(base, ranks=(1, 2, 4, 8), alphas=(8.0, 16.0))
    rows = quantization_cost(base, heldout_text)        # bits 32 (reference), 8, 4 x group None, 32

Every study deep-copies its base model, so the cached base is never changed. Sizes follow `presets.by_size`
(MINILLM_SIZE, see `study_config`): at `ci` each study runs in seconds on one CPU thread (accuracy ~0, a smoke
test); at `laptop` pretraining + comparison + rank sweep + quantization take about 6 minutes on one thread.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from minillm.config import _Config
from minillm.presets import by_size
from minillm.finetune.chat import ChatTemplate, chat_tokenizer
from minillm.finetune.peft import LoRAConfig, PromptTuning, apply_adapters, apply_lora, apply_prefix_tuning, peft_report
from minillm.finetune.quant import QuantizedWeight, model_bytes, quantize_model
from minillm.finetune.sft import instruction_data, pack, response_accuracy
from book.results import note
from book.runs import Run, train

__all__ = ["PEFT_METHODS", "PEFT_RUN", "BASE_RUNS", "PEFTStudyConfig", "study_config", "pretrain_base",
           "pretraining_text", "apply_method", "sft_task", "peft_comparison", "lora_trainable_count", "lora_rank_sweep", "quantization_cost"]

PEFT_METHODS = ("full", "lora", "adapters", "prefix", "prompt")
# Full fine-tuning moves pretrained weights (a small lr keeps what pretraining learned); the PEFT parameters start
# at zero or from a prompt and are few, so they take a larger lr, as in the papers' own settings.
# Measured at laptop size (count+first, 600 steps): full at 1e-3 over-fits the training phrasings and forgets
# (held-out accuracy 0.07 vs 0.27 at 3e-4); LoRA on wq/wv at 1e-2 diverges to a loss near 1 (0.67 seen-phrasing
# accuracy at 3e-3 vs 0.36).
DEFAULT_LR = {"full": 3e-4, "lora": 3e-3, "adapters": 1e-2, "prefix": 1e-2, "prompt": 3e-2}

# The adaptation recipe (book.runs.Run): the step budget every method gets, packed rows per step, warmup 10% of
# the steps. Each method's lr comes from PEFTStudyConfig.lr and the seed from PEFTStudyConfig.seed.
PEFT_RUN = Run(steps=40, batch_size=8, warmup=0.1)
RUN_FIELDS = ("steps", "batch_size", "warmup")  # study_config routes these knobs into `run`
# The pretrained base per size profile (block 64, batch 16, lr 3e-3; pretrain_base seeds it with 1337 + seed)
BASE_RUNS = {"ci": Run(n_layer=2, n_embd=32, n_head=2, steps=150),
             "laptop": Run(n_layer=4, n_embd=128, n_head=4, steps=1500),
             "gpu": Run(n_layer=6, n_embd=256, n_head=8, steps=4000)}

_BASE_CACHE: dict[tuple, tuple[nn.Module, object]] = {}


@dataclass
class PEFTStudyConfig(_Config):
    """The shared SFT task of the PEFT studies: the training recipe (`run`, a book.runs.Run: steps, batch size,
    warmup), how many conversations, which method settings; `seed` draws the data and seeds every method's run."""

    run: Run = PEFT_RUN
    n_train: int = 256  # training conversations (training phrasings)
    n_eval: int = 64  # held-out conversations (held-out phrasings, problems not in training)
    seed: int = 0
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ("wq", "wv")  # Linear names LoRA adapts (Hu et al.'s choice: wq and wv)
    adapter_bottleneck: int = 8
    n_virtual: int = 8  # prefix length (prefix tuning) and soft-prompt length (prompt tuning)
    # instruction families to train and score on ("all" or names): a small model cannot tell seven tasks apart
    # under phrasings it never saw, so the laptop study uses a few whose answers are short
    families: tuple[str, ...] | str = "all"
    lr: dict = field(default_factory=lambda: dict(DEFAULT_LR))  # per method; missing methods use DEFAULT_LR

    def __post_init__(self) -> None:
        n = "PEFTStudyConfig"
        if isinstance(self.run, Mapping):  # _Config.replace passes it back as a dict
            self.run = Run(**self.run)
        if not isinstance(self.run, Run):
            raise TypeError(f"{n}.run must be a book.runs.Run, got {type(self.run).__name__}")
        for k in ("n_train", "n_eval", "lora_rank", "adapter_bottleneck", "n_virtual"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{n}.{k}={v!r} must be a positive int")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"{n}.seed={self.seed!r} must be a non-negative int")
        if self.n_train < self.run.batch_size:
            raise ValueError(f"{n}.n_train={self.n_train} is below batch_size={self.run.batch_size}; raise n_train")
        if isinstance(self.lora_alpha, bool) or not isinstance(self.lora_alpha, (int, float)) or self.lora_alpha <= 0:
            raise ValueError(f"{n}.lora_alpha={self.lora_alpha!r} must be a positive number")
        bad = {m: v for m, v in dict(self.lr).items() if m not in PEFT_METHODS or not (isinstance(v, (int, float))
                                                                                       and v > 0)}
        if bad:
            raise ValueError(f"{n}.lr has invalid entries {bad}: keys from {PEFT_METHODS}, values positive numbers")
        self.lr = {**DEFAULT_LR, **dict(self.lr)}
        from minillm.data.tasks.instructions import FAMILIES

        fams = tuple(FAMILIES) if self.families == "all" else (
            (self.families,) if isinstance(self.families, str) else tuple(self.families))
        if not fams or any(f not in FAMILIES for f in fams):
            raise ValueError(f"{n}.families={self.families!r}: give 'all' or names from {', '.join(FAMILIES)}")
        self.families = fams
        targets = (self.lora_targets,) if isinstance(self.lora_targets, str) else tuple(self.lora_targets)
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise ValueError(f"{n}.lora_targets={self.lora_targets!r} must name Linear layers, e.g. ('wq', 'wv')")
        self.lora_targets = targets

    def replace(self, **changes) -> "PEFTStudyConfig":
        """A copy with fields changed (validated again); steps / batch_size / warmup change the recipe `run`."""
        run = changes.pop("run", self.run).replace(**{k: changes.pop(k) for k in RUN_FIELDS if k in changes})
        return super().replace(run=run, **changes)


def study_config(size: str | None = None, **overrides) -> PEFTStudyConfig:
    """The profile's SFT task. laptop (about 5 minutes on one CPU thread for pretraining + comparison + sweep):
    the count and first families only, whose held-out phrasings share words with training ones ("letter
    count", "opening letter"); over all seven families a 0.8M-parameter model scores near 0 on held-out
    phrasings whatever the method. ci: seconds, accuracy ~0 (a smoke test). `overrides`: PEFTStudyConfig fields,
    or the recipe's steps / batch_size / warmup (routed into `run`)."""
    base = by_size(ci=dict(steps=40),
                   laptop=dict(steps=600, n_train=1024, n_eval=128, families=("count", "first")),
                   gpu=dict(steps=1500, n_train=2048, n_eval=256), size=size)
    knobs = {**base, **overrides}
    run = knobs.pop("run", PEFT_RUN).replace(**{k: knobs.pop(k) for k in RUN_FIELDS if k in knobs})
    cfg = PEFTStudyConfig.from_dict({**knobs, "run": run})
    note(peft_study={k: v for k, v in vars(cfg).items() if k != "run"})  # the run is noted when it trains
    return cfg


def _check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = (methods,)
    bad = [m for m in methods if m not in PEFT_METHODS]
    if bad or not methods:
        raise ValueError(f"methods {list(methods)!r}: choose a non-empty list from {', '.join(PEFT_METHODS)}")
    return tuple(methods)


# ---- the base model --------------------------------------------------------------------------------------------

def pretraining_text(size: str | None = None, seed: int = 0, chat_fraction: float = 0.5) -> str:
    """Stories plus instruction-task text (training phrasings only): the base model has seen the task words and
    formats, so adaptation only has to teach the chat format and the held-out phrasings' meaning.

    chat_fraction of the stories are rendered as two-turn chats (`<|user|>story<|end|><|assistant|>next
    story<|end|>`, each story sentence split off as the turns): a real base model has seen dialogue, and without
    it the chat tags' embeddings stay untrained, which only full fine-tuning can fix (LoRA, adapters, prefix and
    prompt tuning leave the embedding table frozen), so the comparison would measure that and not the methods.
    No instruction ever appears in chat form: mapping tasks to the chat format is left to SFT."""
    from minillm.data.tasks.pretraining import pretraining_mixture
    from minillm.finetune.chat import ASSISTANT, END, USER

    if not 0 <= chat_fraction <= 1:
        raise ValueError(f"chat_fraction={chat_fraction!r} must be in [0, 1]")
    n_chars = by_size(ci=120_000, laptop=1_500_000, gpu=6_000_000, size=size)
    mix = pretraining_mixture({"instructions": 0.5}, n_chars, seed, instructions={"templates": "train"})
    rng = torch.Generator().manual_seed(seed)
    out = []
    for doc, src in zip(mix.docs, mix.sources):  # a loop over documents, not tokens
        sents = doc.strip().split(". ")
        if src == "story" and len(sents) > 1 and float(torch.rand((), generator=rng)) < chat_fraction:
            cut = len(sents) // 2  # the first half of the story asks, the second half answers
            doc = (f"{USER}{'. '.join(sents[:cut])}.{END}{ASSISTANT}{'. '.join(sents[cut:])}{END}\n")
        out.append(doc)
    return "".join(out)


def pretrain_base(size: str | None = None, seed: int = 0, run: Run | None = None) -> tuple[nn.Module, object]:
    """(GPT, chat_tokenizer) pretrained on `pretraining_text` with `book.runs.train`; cached per (size, seed, run)
    in this process. run: the model and its training (default: the profile's BASE_RUNS; `studies_sft.big_base`
    asks for a larger one); its seed is replaced by 1337 + seed. Callers must not modify the model: the studies
    deep-copy it."""
    from minillm.presets import size_profile

    size = size or size_profile()
    run = (run or by_size(**BASE_RUNS, size=size)).replace(seed=1337 + seed)
    key = (size, seed, run)
    if key not in _BASE_CACHE:
        model, tok, _ = train(run, pretraining_text(size, seed), tokenizer=chat_tokenizer())
        model.requires_grad_(False)  # the cache is read-only; copies re-enable what they train
        _BASE_CACHE[key] = (model, tok)
    return _BASE_CACHE[key]


# ---- the SFT task and the methods ----------------------------------------------------------------------------

def sft_task(cfg: PEFTStudyConfig, block_size: int, template: ChatTemplate | None = None):
    """(x, y, heldout, seen, template): packed training rows on training phrasings; held-out conversations
    (held-out phrasings, problems never trained on) and seen-phrasing conversations (training phrasings, problems
    never trained on) for `response_accuracy`. The gap between the two is phrasing generalisation."""
    template = template or ChatTemplate(chat_tokenizer())
    knobs = {"instructions": {"families": cfg.families}}
    train = instruction_data(cfg.n_train, seed=cfg.seed, knobs=knobs)
    heldout = instruction_data(cfg.n_eval, seed=cfg.seed + 1, split="heldout", exclude=train, knobs=knobs)
    seen = instruction_data(cfg.n_eval, seed=cfg.seed + 2, split="train", exclude=train, knobs=knobs)
    x, y = pack(train, block_size, template, overflow="drop")
    return x, y, heldout, seen, template


def apply_method(base: nn.Module, method: str, cfg: PEFTStudyConfig) -> nn.Module:
    """A deep copy of `base` prepared for `method`: every weight trainable ("full"), or the base frozen and the
    method's parameters added. Prompt tuning returns a wrapper (a PromptTuning) around the copy."""
    _check_methods((method,))
    model = copy.deepcopy(base)
    if method == "full":
        model.requires_grad_(True)
    elif method == "lora":
        apply_lora(model, LoRAConfig(rank=cfg.lora_rank, alpha=cfg.lora_alpha, target_modules=cfg.lora_targets))
    elif method == "adapters":
        apply_adapters(model, cfg.adapter_bottleneck)
    elif method == "prefix":
        apply_prefix_tuning(model, cfg.n_virtual, seed=cfg.seed)
    else:
        model = PromptTuning(model, cfg.n_virtual, seed=cfg.seed)
    return model


def _train_eval(model: nn.Module, x, y, heldout, template, cfg: PEFTStudyConfig, lr: float, seen=None) -> dict:
    """Train on (x, y) with cfg.run's recipe at peak `lr` (seed cfg.seed), then score the held-out conversations:
    {loss, accuracy, seconds}, plus accuracy_seen on `seen` (training phrasings, new problems) when given."""
    t0 = time.perf_counter()
    history = train(cfg.run.replace(lr=lr, seed=cfg.seed), (x, y), model=model).history
    seconds = time.perf_counter() - t0
    acc = response_accuracy(model, template, heldout)
    out = {"loss": float(history[-1]["loss"]), "accuracy": float(acc.mean()), "seconds": seconds}
    if seen is not None:
        out["accuracy_seen"] = float(response_accuracy(model, template, seen).mean())
    return out


def peft_comparison(base: nn.Module | None = None, method_list: Sequence[str] = PEFT_METHODS,
                    budget: int | None = None, cfg: PEFTStudyConfig | None = None,
                    size: str | None = None) -> list[dict]:
    """One row per method, all on the same SFT data and step budget: {method, trainable, total, trainable_frac,
    train_memory_bytes, full_ft_memory_bytes, accuracy (held-out phrasings), accuracy_seen (training
    phrasings, new problems), loss (last step), seconds}.

    base: a GPT over the chat tokenizer (default: `pretrain_base(size)`); budget: steps (overrides cfg.run.steps;
    default `study_config(size).run.steps`); cfg defaults to `study_config(size)`. train_memory_bytes is weights +
    gradients + AdamW state (activations excluded): what §5.3 says PEFT saves.
    """
    methods = _check_methods(method_list)
    if base is None:
        base = pretrain_base(size)[0]
    if cfg is None:
        cfg = study_config(size)
    if budget is not None:
        cfg = cfg.replace(steps=budget)  # re-validated
    # one packing for every method: rows short enough for prompt tuning's n virtual tokens
    x, y, heldout, seen, template = sft_task(cfg, base.config.block_size - cfg.n_virtual)
    rows = []
    for method in methods:
        model = apply_method(base, method, cfg)
        rep = peft_report(model)
        res = _train_eval(model, x, y, heldout, template, cfg, cfg.lr[method], seen)
        rows.append({"method": method, "trainable": rep["trainable"], "total": rep["total"],
                     "trainable_frac": rep["trainable_fraction"], "train_memory_bytes": rep["train_bytes"],
                     "full_ft_memory_bytes": rep["full_ft_train_bytes"], "steps": cfg.run.steps, **res})
    return rows


# ---- LoRA rank sweep ---------------------------------------------------------------------------------------------

def lora_trainable_count(model: nn.Module, rank: int, targets: Sequence[str] = ("wq", "wv")) -> int:
    """LoRA's parameter count without applying it: rank * (in + out) for every Linear matching `targets` (A is
    (r, in), B is (out, r)), which is linear in rank."""
    total = 0
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and any(name == t or name.endswith("." + t) for t in targets):
            total += rank * (m.in_features + m.out_features)
    return total


def lora_rank_sweep(base: nn.Module | None = None, ranks: Sequence[int] = (1, 2, 4, 8, 16),
                    alphas: Sequence[float] | None = None, cfg: PEFTStudyConfig | None = None,
                    size: str | None = None) -> list[dict]:
    """Rows {rank, alpha, scale, trainable, accuracy, accuracy_seen, loss, seconds} for every (rank, alpha);
    alphas=None uses alpha = 2 * rank (a common default, which keeps the scale alpha/rank at 2). Same SFT task as
    `peft_comparison`, LoRA on cfg.lora_targets."""
    if isinstance(ranks, int) or not ranks or any(isinstance(r, bool) or not isinstance(r, int) or r < 1
                                                  for r in ranks):
        raise ValueError(f"ranks={ranks!r} must be a non-empty list of positive ints")
    if base is None:
        base = pretrain_base(size)[0]
    cfg = cfg if cfg is not None else study_config(size)
    x, y, heldout, seen, template = sft_task(cfg, base.config.block_size)
    rows = []
    for rank in ranks:
        for alpha in (alphas if alphas is not None else (2.0 * rank,)):
            model = copy.deepcopy(base)
            lcfg = LoRAConfig(rank=rank, alpha=float(alpha), target_modules=cfg.lora_targets)
            rep = apply_lora(model, lcfg)
            res = _train_eval(model, x, y, heldout, template, cfg, cfg.lr["lora"], seen)
            rows.append({"rank": rank, "alpha": float(alpha), "scale": float(alpha) / rank,
                         "trainable": rep.trainable, **res})
    return rows


# ---- quantization cost --------------------------------------------------------------------------------------------

@torch.no_grad()
def _weight_error(before: nn.Module, after: nn.Module) -> float:
    """Relative reconstruction error ||W - deq(Q(W))|| / ||W|| over all quantized weights (one Frobenius norm)."""
    mods = dict(before.named_modules())
    err = ref = 0.0
    for name, m in after.named_modules():
        qw = getattr(m, "qweight", None)
        if isinstance(qw, QuantizedWeight) and name in mods:
            w = mods[name].weight.float()
            err += float((w - qw.dequantized().float()).pow(2).sum())
            ref += float(w.pow(2).sum())
    return math.sqrt(err / ref) if ref > 0 else 0.0


def quantization_cost(model: nn.Module, text: str, bits: Sequence[int] = (8, 4),
                      group_sizes: Sequence[int | None] = (None, 32), tokenizer=None,
                      max_windows: int = 64) -> list[dict]:
    """Rows {bits, group_size, bytes, ratio, weight_error, loss, perplexity, delta_ppl}: first the float
    reference (bits 32), then every (bits, group_size). Perplexity is exp(mean next-token loss) on `text`
    (held-out text the model did not train on); delta_ppl is against the float model. weight_error is the
    relative reconstruction error of the quantized weights. Linear layers only (embeddings and a tied head stay
    in float: `quantize_model`'s default)."""
    from minillm.evaluation.loss import heldout_loss

    tokenizer = tokenizer or chat_tokenizer()
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty str of held-out text")
    note(quantization={"bits": bits, "group_sizes": group_sizes, "heldout_chars": len(text),
                       "max_windows": max_windows, "params": sum(p.numel() for p in model.parameters())})
    model.eval()
    ref_bytes = model_bytes(model)
    ref_loss = heldout_loss(model, text, tokenizer=tokenizer, max_windows=max_windows)
    ref_ppl = math.exp(ref_loss)
    rows = [{"bits": 32, "group_size": None, "bytes": ref_bytes, "ratio": 1.0, "weight_error": 0.0,
             "loss": ref_loss, "perplexity": ref_ppl, "delta_ppl": 0.0}]
    for b in bits:
        for g in group_sizes:
            q = copy.deepcopy(model)
            quantize_model(q, b, g)
            loss = heldout_loss(q, text, tokenizer=tokenizer, max_windows=max_windows)
            nbytes = model_bytes(q)
            rows.append({"bits": b, "group_size": g, "bytes": nbytes, "ratio": ref_bytes / nbytes,
                         "weight_error": _weight_error(model, q), "loss": loss, "perplexity": math.exp(loss),
                         "delta_ppl": math.exp(loss) - ref_ppl})
    return rows
