"""The chapter's instruction-tuning studies (Survey §5.1), each a function returning plain-dict rows.

    rows = diversity_vs_count(size="ci")   # phrasings per task x number of conversations, one step budget
    rows = mixing_study(size="ci")         # task mixing ratios -> per-task accuracy
    rows = pretrain_mix_study(size="ci")   # OPT-IML: pretraining rows mixed into SFT as a regulariser
    rows = tuned_vs_untuned(size="ci")     # a small SFT-ed model vs a larger untuned base (InstructGPT)
    rows = knowledge_study(size="ci")      # in studies_knowledge.py: SFT elicits, it does not teach, knowledge

What each shows (Survey §5.1.1-§5.1.3), and what it measured at laptop (seed 0, one CPU thread):
- `diversity_vs_count`: Flan / Super-NaturalInstructions: with the same steps, more distinct phrasings
  (instruction diversity) should help more on never-seen phrasings than more instances of the same few. At
  laptop the held-out accuracy stays 0.08-0.28 in every cell with no trend in either axis (also at lr 3e-4
  and at 150 steps): the base already read all training phrasings in pretraining, and a 0.8M model barely
  transfers to new ones.
  Seen-phrasing accuracy rises with count and falls with the number of phrasings per example. ~3 minutes.
- `mixing_study`: a task's accuracy follows its share of the SFT mix (instructions 0.96 alone, 0.90 at 60%,
  0.52 at 33%, ~0.01 at 0%). Addition (1-2 digits) and kv_map retrieval stay near 0.01-0.13 in 400 steps
  whatever the mix: the base never saw them, so only the instruction task shows the trade. ~80 s.
- `pretrain_mix_study`: SFT at lr 1e-3 raises the loss on held-out stories by 3.3 nats/token (forgetting);
  25% pretraining rows cut that to 0.08 and 50% to 0.03, at about the same held-out accuracy (0.23 / 0.25 /
  0.20): OPT-IML's regulariser. ~50 s.
- `tuned_vs_untuned`: the SFT-ed 0.8M model scores 0.23 (held-out phrasings) / 0.96 (training phrasings) in
  chat form; the untuned 1.8M base scores 0 in chat form and 0.16 / 0.36 given the instruction as plain text
  the way it read it in pretraining: the InstructGPT result (1.3B tuned preferred over 175B untuned). ~1 minute
  plus pretraining the big base (~3-4 minutes, once per process).

Every study deep-copies the cached bases (`studies_peft.pretrain_base`, `big_base`, `knowledge_base`): the caches
are never changed. Sizes come from `presets.by_size` (`sft_study_config`): at `ci` each study takes seconds on
one CPU thread (numbers meaningless: a smoke test); the laptop times above exclude the shared base's
pretraining (about 2 minutes, once per process). Nothing is written to disk.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from minillm.config import _Config
from minillm.evaluation.loss import heldout_loss
from minillm.presets import by_size
from minillm.finetune.chat import ChatTemplate
from minillm.finetune.sft import SFT_TASKS, instruction_data, pack, response_accuracy
from book.ch06_tuning.studies_peft import pretrain_base, pretraining_text
from book.results import note
from book.runs import Run, train

__all__ = ["SFT_RUN", "SFTStudyConfig", "sft_study_config", "finetune_copy", "diversity_vs_count", "mixing_study",
           "pretrain_mix_data", "pretrain_mix_study", "big_base", "tuned_vs_untuned"]

N_TRAIN_PHRASINGS = 6  # sft.task_templates: 8 phrasings per family, the last 2 held out


# The SFT recipe (book.runs.Run): the step budget every cell / arm gets, packed rows per step, the full
# fine-tuning lr (peak; cosine to lr/10), warmup 10% of the steps. finetune_copy sets the seed per study.
SFT_RUN = Run(steps=40, batch_size=8, lr=1e-3, warmup=0.1)
RUN_FIELDS = ("steps", "batch_size", "lr", "warmup")  # sft_study_config routes these knobs into `run`


@dataclass
class SFTStudyConfig(_Config):
    """Knobs the SFT studies share: the training recipe (`run`, a book.runs.Run), data counts and the
    instruction families."""

    run: Run = SFT_RUN
    n_train: int = 128  # SFT conversations (studies without their own count grid)
    n_eval: int = 32  # evaluation conversations per split / task
    block_size: int = 64  # packed row length (the bases' context)
    # a 0.8M model learns "count" and "first" under unseen phrasings in a few hundred steps (studies_peft)
    families: tuple[str, ...] | str = ("count", "first")

    def __post_init__(self) -> None:
        from minillm.data.tasks.instructions import FAMILIES

        if isinstance(self.run, Mapping):  # _Config.replace passes it back as a dict
            self.run = Run(**self.run)
        if not isinstance(self.run, Run):
            raise TypeError(f"SFTStudyConfig.run must be a book.runs.Run, got {type(self.run).__name__}")
        for k in ("n_train", "n_eval", "block_size"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SFTStudyConfig.{k}={v!r} must be a positive int")
        if not 0 < self.run.lr < 1:  # fine-tuning a pretrained model: an lr of 1 or more only destroys it
            raise ValueError(f"SFTStudyConfig.run.lr={self.run.lr!r} must be a number in (0, 1)")
        fams = tuple(FAMILIES) if self.families == "all" else (
            (self.families,) if isinstance(self.families, str) else tuple(self.families))
        if not fams or any(f not in FAMILIES for f in fams):
            raise ValueError(f"SFTStudyConfig.families={self.families!r}: 'all' or names from {', '.join(FAMILIES)}")
        self.families = fams

    def replace(self, **changes) -> "SFTStudyConfig":
        """A copy with fields changed (validated again); steps / batch_size / lr / warmup change the recipe `run`."""
        run = changes.pop("run", self.run).replace(**{k: changes.pop(k) for k in RUN_FIELDS if k in changes})
        return super().replace(run=run, **changes)


def sft_study_config(size: str | None = None, **overrides) -> SFTStudyConfig:
    """The profile's shared knobs; `overrides` win and are validated: SFTStudyConfig fields, or the recipe's
    steps / batch_size / lr / warmup (routed into `run`)."""
    base = by_size(ci=dict(steps=30, n_train=64, n_eval=16),
                   laptop=dict(steps=400, n_train=1024, n_eval=128),
                   gpu=dict(steps=1500, n_train=4096, n_eval=256, families="all"), size=size)
    knobs = {**base, **overrides}
    run = knobs.pop("run", SFT_RUN).replace(**{k: knobs.pop(k) for k in RUN_FIELDS if k in knobs})
    cfg = SFTStudyConfig.from_dict({**knobs, "run": run})  # unknown knob names raise a ValueError
    note(sft_study={k: v for k, v in vars(cfg).items() if k != "run"})  # the run is noted when it trains
    return cfg


def _int_tuple(name: str, v, lo: int, hi: int | None = None) -> tuple[int, ...]:
    try:
        vals = (v,) if isinstance(v, int) and not isinstance(v, bool) else tuple(v)
    except TypeError:
        vals = ()
    if not vals or any(isinstance(x, bool) or not isinstance(x, int) or x < lo or (hi and x > hi) for x in vals):
        raise ValueError(f"{name}={v!r} must be a non-empty list of ints in [{lo}, {hi or 'inf'}]")
    return vals


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative int")
    return seed


def _inst_knobs(cfg: SFTStudyConfig) -> dict:
    return {"instructions": {"families": cfg.families}}


def finetune_copy(base: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: SFTStudyConfig, seed: int = 0,
                  batch_size: int | None = None) -> tuple[nn.Module, float]:
    """(a deep copy of `base` fully fine-tuned on packed rows x, y (N, T) with cfg.run's recipe at `seed` (and
    `batch_size` rows per step, default min(cfg.run.batch_size, N)), its last loss)."""
    model = copy.deepcopy(base).requires_grad_(True)  # the cached bases are read-only
    run = cfg.run.replace(seed=seed, batch_size=batch_size or cfg.run.batch_size)
    hist = train(run, (x, y), model=model).history
    return model, float(hist[-1]["loss"])


def _acc(model: nn.Module, template: ChatTemplate, convs) -> float:
    return float(response_accuracy(model, template, convs).mean())


# ---- 1. instruction diversity vs instance count -----------------------------------------------------------------

def diversity_vs_count(size: str | None = None, seed: int = 0, n_templates: Sequence[int] = (1, 2, 6),
                       n_examples: Sequence[int] | None = None, **knobs) -> list[dict]:
    """Rows {n_templates, n_examples, n_phrasings, heldout_accuracy, seen_accuracy, steps, batch_size, loss}
    for every cell of the grid: training phrasings per family x training conversations, every cell with the same
    steps and batch size. heldout: the 2 held-out phrasings per family on problems never trained on; seen: the
    cell's own training phrasings on problems never trained on. n_phrasings: distinct phrasings in the data.
    knobs: SFTStudyConfig fields (steps, lr, families, n_eval, ...)."""
    _check_seed(seed)
    cfg = sft_study_config(size, **knobs)
    ks = _int_tuple("n_templates", n_templates, 1, N_TRAIN_PHRASINGS)
    ns = _int_tuple("n_examples", by_size(ci=(16, 64), laptop=(64, 256, 1024), gpu=(256, 1024, 4096), size=size)
                    if n_examples is None else n_examples, 1)
    base, tok = pretrain_base(size, seed)
    template = ChatTemplate(tok)
    kn = _inst_knobs(cfg)
    # one evaluation set for the whole grid, drawn first so training data can exclude its problems
    heldout = instruction_data(cfg.n_eval, seed + 1, split="heldout", knobs=kn)
    seen = {k: instruction_data(cfg.n_eval, seed + 2, split="train", n_templates=k, knobs=kn, exclude=heldout)
            for k in ks}  # same problems for every k (problems do not depend on n_templates), phrasing differs
    banned = heldout + seen[ks[0]]
    cells = {}
    for k in ks:
        for n in ns:
            train = instruction_data(n, seed, n_templates=k, knobs=kn, exclude=banned)
            cells[k, n] = (train, *pack(train, cfg.block_size, template, overflow="drop"))
    # equal budgets: the same steps AND rows per step in every cell (the smallest cell bounds the batch)
    bs = min(cfg.run.batch_size, *(len(x) for _, x, _ in cells.values()))
    rows = []
    for (k, n), (train, x, y) in cells.items():
        model, loss = finetune_copy(base, x, y, cfg, seed, bs)
        rows.append({"n_templates": k, "n_examples": n, "n_phrasings": len({c.meta["template"] for c in train}),
                     "heldout_accuracy": _acc(model, template, heldout),
                     "seen_accuracy": _acc(model, template, seen[k]),
                     "steps": cfg.run.steps, "batch_size": bs, "loss": loss})
    return rows


# ---- 2. data mixing ratios ----------------------------------------------------------------------------------------

DEFAULT_MIXES = ({"instructions": 1.0}, {"addition": 1.0}, {"kv_map": 1.0},
                 {"instructions": 1.0, "addition": 1.0, "kv_map": 1.0},
                 {"instructions": 0.6, "addition": 0.2, "kv_map": 0.2})


def _check_mixes(mixes) -> list[dict]:
    if isinstance(mixes, Mapping) or isinstance(mixes, str) or not mixes:
        raise ValueError(f"mixes={mixes!r} must be a non-empty list of {{task: weight}} dicts")
    out = []
    for m in mixes:
        if not isinstance(m, Mapping) or not m or any(t not in SFT_TASKS for t in m):
            raise ValueError(f"mix {m!r} must be a non-empty {{task: weight}} dict over {', '.join(SFT_TASKS)}")
        if any(isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0 for w in m.values()):
            raise ValueError(f"mix {m!r}: weights must be non-negative numbers")
        total = sum(m.values())
        if total <= 0:
            raise ValueError(f"mix {m!r}: weights sum to 0")
        out.append({t: float(w) / total for t, w in m.items()})
    return out


def mixing_study(size: str | None = None, seed: int = 0, mixes: Sequence[Mapping[str, float]] = DEFAULT_MIXES,
                 task_knobs: Mapping[str, dict] | None = None, eval_split: str = "train", **knobs) -> list[dict]:
    """Rows {mix (normalised {task: share}), counts ({task: conversations}), accuracy ({task: exact match}),
    mean_accuracy, steps}: the same total count (cfg.n_train) and steps for every mix; each task is scored on
    cfg.n_eval problems never trained on, in `eval_split` phrasings, whether or not the mix contains it.
    task_knobs: generator knobs per task (default: cfg.families for instructions, 1-2 digit addition, kv_map
    queries among the shots)."""
    _check_seed(seed)
    cfg = sft_study_config(size, **knobs)
    ms = _check_mixes(mixes)
    if eval_split not in ("train", "heldout", "all"):
        raise ValueError(f"eval_split={eval_split!r}: choose 'train', 'heldout' or 'all'")
    # kv_map "shown": the query key is always among the shots (pure in-context retrieval, answerable every time)
    tk = {**_inst_knobs(cfg), "addition": {"digits": (1, 2)}, "kv_map": {"query": "shown"},
          **dict(task_knobs or {})}
    base, tok = pretrain_base(size, seed)
    template = ChatTemplate(tok)
    tasks = sorted({t for m in ms for t in m})
    evals = {t: instruction_data(cfg.n_eval, seed + 1, mix=t, split=eval_split, knobs=tk) for t in tasks}
    banned = [c for t in tasks for c in evals[t]]
    rows = []
    for m in ms:
        train = instruction_data(cfg.n_train, seed, mix=m, knobs=tk, exclude=banned)
        x, y = pack(train, cfg.block_size, template, overflow="drop")
        model, loss = finetune_copy(base, x, y, cfg, seed)
        acc = {t: _acc(model, template, evals[t]) for t in tasks}
        counts = {t: sum(c.meta["task"] == t for c in train) for t in m}
        rows.append({"mix": m, "counts": counts, "accuracy": acc, "mean_accuracy": float(np.mean(list(acc.values()))),
                     "steps": cfg.run.steps, "loss": loss})
    return rows


# ---- 3. pretraining data mixed into SFT (OPT-IML) ------------------------------------------------------------------

def _heldout_stories(size: str | None, seed: int) -> str:
    """Stories the base never trained on: the story source on a seed far from the pretraining streams."""
    from minillm.data.synthetic import corpus

    n = by_size(ci=40, laptop=200, gpu=400, size=size)
    return "\n".join(corpus("story", n, 10_000 + seed).docs) + "\n"


def pretrain_mix_data(share: float, cfg: SFTStudyConfig, template: ChatTemplate, seed: int = 0,
                      size: str | None = None):
    """(x, y, is_pretrain): the SFT rows (loss on responses) plus pretraining rows (windows of the base's own
    pretraining text, loss on every token) making up `share` of all rows; is_pretrain (N,) bool marks them."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
        raise ValueError(f"share={share!r} must be a number in [0, 1)")
    train = instruction_data(cfg.n_train, seed, knobs=_inst_knobs(cfg))
    xs, ys = pack(train, cfg.block_size, template, overflow="drop")  # (Ns, T)
    n_pre = round(share / (1 - share) * len(xs))  # pre / (sft + pre) = share
    if n_pre == 0:
        return xs, ys, torch.zeros(len(xs), dtype=torch.bool)
    L = cfg.block_size + 1
    text = pretraining_text(size, seed)
    ids = np.asarray(template.tokenizer.encode(text[: int(1.2 * n_pre * L) + L]), dtype=np.int64)
    if len(ids) < n_pre * L:
        raise ValueError(f"share={share} needs {n_pre * L} pretraining tokens, the text has {len(ids)}")
    win = ids[: n_pre * L].reshape(n_pre, L)  # (n_pre, T+1): consecutive windows, each one packed row
    xp, yp = pack([(w, np.ones(L, dtype=bool)) for w in win], cfg.block_size)  # every token a target
    x, y = torch.cat([xs, xp]), torch.cat([ys, yp])  # (Ns + n_pre, T); batches are drawn shuffled
    return x, y, torch.cat([torch.zeros(len(xs), dtype=torch.bool), torch.ones(n_pre, dtype=torch.bool)])


def pretrain_mix_study(size: str | None = None, seed: int = 0, shares: Sequence[float] = (0.0, 0.25, 0.5),
                       **knobs) -> list[dict]:
    """Rows {pretrain_share, n_sft_rows, n_pretrain_rows, pretrain_loss_base, pretrain_loss_after, forgetting,
    accuracy, steps}: forgetting = loss on held-out stories after SFT minus the base's (nats/token); accuracy on
    held-out phrasings. Same steps and batch size for every share (so a larger share means fewer SFT rows per
    step: the price of the regulariser)."""
    if isinstance(shares, (int, float)) or not shares:
        raise ValueError(f"shares={shares!r} must be a non-empty list of numbers in [0, 1)")
    _check_seed(seed)
    cfg = sft_study_config(size, **knobs)
    base, tok = pretrain_base(size, seed)
    template = ChatTemplate(tok)
    stories = _heldout_stories(size, seed)
    windows = by_size(ci=16, laptop=64, gpu=128, size=size)
    loss0 = heldout_loss(base, stories, tokenizer=tok, max_windows=windows)
    heldout = instruction_data(cfg.n_eval, seed + 1, split="heldout", knobs=_inst_knobs(cfg))
    rows = []
    for p in shares:
        x, y, is_pre = pretrain_mix_data(p, cfg, template, seed, size)
        model, loss = finetune_copy(base, x, y, cfg, seed)
        after = heldout_loss(model, stories, tokenizer=tok, max_windows=windows)
        rows.append({"pretrain_share": float(p), "n_sft_rows": int((~is_pre).sum()),
                     "n_pretrain_rows": int(is_pre.sum()),
                     "pretrain_loss_base": loss0, "pretrain_loss_after": after, "forgetting": after - loss0,
                     "accuracy": _acc(model, template, heldout), "steps": cfg.run.steps, "loss": loss})
    return rows


# ---- 5. a small tuned model vs a larger untuned one -------------------------------------------------------------

# The untuned bigger base, per size: pretrained like `pretrain_base` (block 64, batch 16, lr 3e-3, same steps)
BIG_BASE_RUNS = {"ci": Run(n_layer=3, n_embd=48, n_head=2, steps=150),
                 "laptop": Run(n_layer=4, n_embd=192, n_head=6, steps=1500),
                 "gpu": Run(n_layer=8, n_embd=384, n_head=8, steps=4000)}


def big_base(size: str | None = None, seed: int = 0) -> nn.Module:
    """A wider/deeper GPT pretrained like `pretrain_base` (same text, tokenizer, steps); cached per (size, seed)."""
    return pretrain_base(size, seed, run=by_size(**BIG_BASE_RUNS, size=size))[0]


def _plain_accuracy(model: nn.Module, tok, convs) -> float:
    """Exact match with the instruction as plain text, the way it appears in pretraining ("<phrasing> " ->
    answer, newline): an untuned base's best shot."""
    from minillm.evaluation.scoring import greedy_complete

    prompts = [c.prompt[-1]["content"] + " " for c in convs]
    n_new = max(len(tok.encode(c.answer)) for c in convs) + 2
    out = greedy_complete(model, tok, prompts, n_new, stop="\n")
    return float(np.mean([o == c.answer for o, c in zip(out, convs)]))


def tuned_vs_untuned(size: str | None = None, seed: int = 0, splits: Sequence[str] = ("heldout", "train"),
                     **knobs) -> list[dict]:
    """Rows {model ("small"/"big"), params, tuned, prompt_format ("chat"/"plain"), split, accuracy}: the small
    base SFT-ed (chat); the big base untuned in chat form and in plain text; the small untuned in plain text (a
    reference). Every row scores the same problems (never SFT-ed on) per phrasing split: "heldout" phrasings
    were never seen by any model, "train" phrasings were in pretraining (plain) and SFT."""
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    if not splits or any(s not in ("heldout", "train") for s in splits):
        raise ValueError(f"splits={splits!r} must name 'heldout' and/or 'train'")
    _check_seed(seed)
    cfg = sft_study_config(size, **knobs)
    small, tok = pretrain_base(size, seed)
    big = big_base(size, seed)
    template = ChatTemplate(tok)
    kn = _inst_knobs(cfg)
    train = instruction_data(cfg.n_train, seed, knobs=kn)
    tuned, _ = finetune_copy(small, *pack(train, cfg.block_size, template, overflow="drop"), cfg, seed)
    n = {"small": sum(p.numel() for p in small.parameters()), "big": sum(p.numel() for p in big.parameters())}
    rows = []
    for s in splits:
        ev = instruction_data(cfg.n_eval, seed + 1, split=s, knobs=kn, exclude=train)
        for name, model, is_tuned, fmt in (("small", tuned, True, "chat"), ("big", big, False, "chat"),
                                           ("big", big, False, "plain"), ("small", small, False, "plain")):
            acc = _acc(model, template, ev) if fmt == "chat" else _plain_accuracy(model, tok, ev)
            rows.append({"model": name, "params": n[name], "tuned": is_tuned, "prompt_format": fmt, "split": s,
                         "accuracy": acc})
    return rows

