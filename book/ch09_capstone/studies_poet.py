"""Section 4 of the capstone: instruction tuning the poet on pairs built from the poems' own metadata.

Survey §5.1.1 (formatted instances from existing data) and §5.1.2 (instruction tuning with the loss on the
response only). Every poem of the training titles with one of the four regulated forms becomes one chat pair,

    <|user|>五言絕句：春曉<|end|><|assistant|>春眠不覺曉，處處聞啼鳥。\\n夜來風雨聲，花落知多少。<|end|>
                                          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ loss here only

(`poems.instruction_pairs`; the prompt is `poems.form_prompt(title, form)`). The base was pretrained on
"title\\npoem" documents, so it has read these poems but never this request; SFT teaches it to answer the form
asked for. Evaluation uses the HELD-OUT titles (`corpus.poems_heldout`: no poem of these titles was seen in
pretraining or tuning) and asks, for a balanced set of prompts over the four forms:

- form adherence: the share of responses with exactly the form's line count and characters per line
  (`poems.follows_form`), per form and overall, greedy (argmax) and sampled (cfg.temperature, cfg.top_p);
- held-out response loss: nats per response token (the closing <|end|> included) of the true poems;
- distinct_ratio: distinct Han characters / Han characters, averaged over responses (repetition shows here).

    cfg = poet_config("laptop")
    res = sft_poet(base, tok, corpus, cfg)       # res.model (tuned copy), res.rows, res.before, res.after
    prompts, scored = heldout_eval_pairs(corpus, ChatTemplate(tok), base.config.block_size, cfg)
    ev = form_eval(res.model, tok, prompts, cfg, loss_pairs=scored)

The base is never modified: `sft_poet` tunes a deep copy. Rows: {"step", "loss" (training, response tokens),
"heldout_loss"} at step 0 (the base) and every cfg.eval_every steps.

Measured at laptop (seed 0) on a stand-in for the chapter's base, trained by `studies_pretrain.pretrain("laptop")`
(4 layers x 128 wide, 1.32M parameters, 562 steps = 1.15M tokens, held-out 5.35 nats/token): 35,217 training
pairs, 600 steps of 16 packed rows of 128 tokens (~22k rows, ~1.6 pairs a row; 9.7e12 FLOPs, about 2 minutes on
2 idle cores; 7.3 minutes measured on a machine shared with 3 other jobs). On 128 held-out prompts (32 per form):

                        held-out loss   greedy adherence   sampled adherence (T 0.8, top-p 0.95)
    base, same prompt       6.25             0.00               0.00     (it continues the title: no poem)
    after SFT               5.12             0.97               0.89

One pair per row (padded) for the same 600 steps reached 5.18 / 0.94 / 0.88: packing sees ~1.6x the pairs for
the same row tokens, so it is the default here (`pack`'s advice for a few short pairs is the other case). The
greedy poems follow the form but repeat themselves (distinct-character ratio 0.55 greedy, 0.95 sampled; the same
greedy answer of 18% of the titles
repeats another title's word for word): argmax picks the likeliest function words (不, 是, 無, 人) again and again.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm.config import TrainConfig
from minillm.data.special_tokens import EOS_TOKEN
from minillm.device import resolve_device
from minillm.finetune.chat import ChatTemplate
from minillm.finetune.loop import optimize
from minillm.finetune.sft import IGNORE, pack, sft_batches
from minillm.generate import generate_batch
from minillm.presets import by_size
from book.ch09_capstone.studies_poems import FORMS, distinct_ratio, follows_form, form_adherence, instruction_pairs
from book.results import note

__all__ = ["PoetConfig", "poet_config", "PoetResult", "pair_messages", "balanced_pairs", "fitting_pairs",
           "leaving_room", "heldout_eval_pairs", "response_loss", "stop_ids", "decode_responses", "decoding_stats",
           "form_eval", "sft_poet"]

DECODINGS = ("greedy", "sampled")


@dataclass(frozen=True)
class PoetConfig:
    """Sizes of the SFT study and of its evaluation (one per size profile: `poet_config`)."""

    steps: int = 600  # SFT optimizer steps
    batch_size: int = 16  # rows per step
    lr: float = 1e-3  # peak lr (linear warmup, cosine to lr / 10)
    warmup: int = 30
    n_train: int | None = None  # training pairs used (None: every pair of the training titles)
    one_per_row: bool = False  # pairs packed end to end (better here: see poet_config) or one per padded row
    row_len: int | None = None  # tokens per row at most; None: the model's block_size (rows are then cut to the
    # longest one: with one pair per row, columns that are padding in every row would cost FLOPs for nothing)
    eval_every: int = 100  # held-out response loss every this many steps (and at step 0 and the end)
    n_eval: int = 128  # held-out prompts for adherence, balanced over the four forms
    n_loss: int = 256  # held-out pairs for the response loss
    max_new_tokens: int = 100  # response budget; a response cut here has no closing line and fails the form
    temperature: float = 0.8  # the sampled decoding (greedy is argmax)
    top_p: float = 0.95
    n_shown: int = 4  # samples kept per decoding (one per form, in FORMS order)
    eval_batch: int = 128  # prompts decoded (and pairs scored) per batch
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        n = type(self).__name__
        for k in ("steps", "batch_size", "eval_every", "n_eval", "n_loss", "max_new_tokens", "n_shown",
                  "eval_batch"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{n}.{k}={v!r} must be a positive int")
        for k in ("n_train", "row_len"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{n}.{k}={v!r} must be a positive int or None")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or not 0 <= self.warmup <= self.steps:
            raise ValueError(f"{n}.warmup={self.warmup!r} must be an int in [0, steps={self.steps}]")
        if not 0 < self.lr < 1:
            raise ValueError(f"{n}.lr={self.lr!r} must be in (0, 1)")
        if not self.temperature > 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"{n}: temperature={self.temperature} must be > 0 and top_p={self.top_p} in (0, 1] "
                             f"(the sampled decoding; greedy is always run beside it)")


def poet_config(size: str | None = None, **changes) -> PoetConfig:
    """laptop: 600 steps of 16 packed rows (1.2M row tokens, ~35k pairs seen once; ~2 minutes on 2 idle cores for
    the 1.3M-parameter base, see the module docstring), 128 held-out prompts (an evaluation ~10 s). ci: seconds,
    mechanics only. gpu: unmeasured (written for the 10-30M base: bf16 through TrainConfig's precision="auto" on
    CUDA; the fine-tuning loop does not torch.compile)."""
    base = by_size(ci=dict(steps=12, batch_size=8, warmup=2, n_train=256, eval_every=6, n_eval=8, n_loss=16,
                           max_new_tokens=24, n_shown=2, eval_batch=8),
                   laptop={},
                   gpu=dict(steps=3000, batch_size=64, lr=6e-4, warmup=100, eval_every=250, n_eval=512,
                            n_loss=1024, device="auto"), size=size)
    return PoetConfig(**{**base, **changes})


@dataclass
class PoetResult:
    """What `sft_poet` returns: the tuned copy, its training rows and the evaluations before and after."""

    model: nn.Module
    rows: list[dict]  # {"step", "loss", "heldout_loss"}; step 0 = the base (loss None: nothing trained yet)
    before: dict  # form_eval of the base
    after: dict  # form_eval of the tuned model
    n_pairs: int  # training pairs used
    n_rows: int  # packed rows
    seconds: float  # SFT wall time (evaluations excluded)
    meta: dict = field(default_factory=dict)


# ---- data ------------------------------------------------------------------------------------------------------

def pair_messages(pair: dict, with_response: bool = True) -> list[dict]:
    """A pair {"prompt", "response"} as chat messages (the user's request, then the poem)."""
    msgs = [{"role": "user", "content": pair["prompt"]}]
    return msgs + [{"role": "assistant", "content": pair["response"]}] if with_response else msgs


def fitting_pairs(pairs: Sequence[dict], template: ChatTemplate, block_size: int) -> list[dict]:
    """The pairs whose rendered chat (prompt, poem, <|end|>) fits in block_size + 1 tokens, in order."""
    return [p for p in pairs if len(template.render(pair_messages(p))[0]) <= block_size + 1]


def balanced_pairs(pairs: Sequence[dict], n: int, seed: int) -> list[dict]:
    """Up to n pairs, as evenly spread over the four forms as the pairs allow (a form with too few gives all it has,
    the rest fill up round-robin), each form's pairs drawn in a seeded order. Ordered form by form round-robin, so
    the first four are one of each form."""
    rng = np.random.default_rng([seed, 90])
    by_form = {f: [p for p in pairs if p["form"] == f] for f in FORMS}
    queues = {f: [ps[i] for i in rng.permutation(len(ps))] for f, ps in by_form.items()}
    out: list[dict] = []
    while len(out) < n and any(queues.values()):
        for f in FORMS:  # one round: a pair of each form that still has one
            if queues[f] and len(out) < n:
                out.append(queues[f].pop(0))
    if not out:
        raise ValueError("no instruction pairs to choose from: the poems given have no regulated form (see "
                         "poems.classify_form); give more poems")
    return out


def leaving_room(pairs: Sequence[dict], template: ChatTemplate, block_size: int, max_new_tokens: int) -> list[dict]:
    """The pairs whose chat prompt leaves room for max_new_tokens within block_size (a decoded answer never
    outgrows the context), in order."""
    return [p for p in pairs if len(template.prompt_ids(pair_messages(p, False))) + max_new_tokens <= block_size]


def heldout_eval_pairs(corpus, template: ChatTemplate, block_size: int, cfg: PoetConfig) -> tuple[list[dict],
                                                                                                   list[dict]]:
    """(prompts for adherence, pairs for the response loss): balanced pairs of the held-out titles; the prompts
    leave room for cfg.max_new_tokens, the scored pairs fit the model's context."""
    held = fitting_pairs(instruction_pairs(corpus.poems_heldout), template, block_size)
    prompts = leaving_room(held, template, block_size, cfg.max_new_tokens)
    return balanced_pairs(prompts, cfg.n_eval, cfg.seed), balanced_pairs(held, cfg.n_loss, cfg.seed + 1)


# ---- evaluation ------------------------------------------------------------------------------------------------

@torch.no_grad()
def response_loss(model: nn.Module, template: ChatTemplate, pairs: Sequence[dict], batch_size: int = 128) -> float:
    """Mean NLL (nats) per response token of the true poems given their prompts: every response token and the
    closing <|end|> weigh the same, over all `pairs` (one pair per row, so a poem sees only its own prompt)."""
    block = model.config.block_size
    x, y = pack([pair_messages(p) for p in pairs], block_size=block, template=template, one_per_row=True)  # (N, T)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for s in range(0, len(x), batch_size):  # a loop over batches of rows
            xb, yb = x[s:s + batch_size], y[s:s + batch_size]
            t_max = int((yb != IGNORE).nonzero()[:, 1].max()) + 1  # causal: later columns change nothing before
            logits, _ = model(xb[:, :t_max].to(device))  # (b, t_max, V)
            total += float(F.cross_entropy(logits.float().flatten(0, 1), yb[:, :t_max].flatten().to(device),
                                           ignore_index=IGNORE, reduction="sum"))
            count += int((yb != IGNORE).sum())
    finally:
        model.train(was_training)
    return total / count


def stop_ids(tok) -> list[int]:
    """<|end|> ends an answer; <|endoftext|> ends a document (what the untuned base writes after a poem)."""
    return [tok.token_to_id(t) for t in ("<|end|>", EOS_TOKEN)]


@torch.no_grad()
def decode_responses(model: nn.Module, template: ChatTemplate, prompts: Sequence[str], cfg: PoetConfig, *,
                     greedy: bool, generator: torch.Generator | None = None) -> list[str]:
    """The model's answer to each prompt (a user message), decoded with the KV cache in batches of left-padded
    prompts until <|end|> or <|endoftext|> (not included) or cfg.max_new_tokens."""
    stops = stop_ids(template.tokenizer)
    block = model.config.block_size
    ids = [template.prompt_ids([{"role": "user", "content": p}]).tolist() for p in prompts]
    too_long = [p for p, i in zip(prompts, ids) if len(i) + cfg.max_new_tokens > block]
    if too_long:
        raise ValueError(f"{len(too_long)} prompt(s) (e.g. {too_long[0]!r}) plus max_new_tokens={cfg.max_new_tokens} "
                         f"exceed the model's block_size={block}: lower max_new_tokens or drop long titles")
    sampling = dict(temperature=0.0) if greedy else dict(temperature=cfg.temperature, top_p=cfg.top_p,
                                                         generator=generator)
    out: list[str] = []
    for s in range(0, len(ids), cfg.eval_batch):  # a loop over batches of prompts
        new = generate_batch(model, ids[s:s + cfg.eval_batch], cfg.max_new_tokens, pad_id=template.end_id,
                             stop_tokens=stops, **sampling)
        out += [template.tokenizer.decode([t for t in row if t not in stops]) for row in new]
    return out


def decoding_stats(responses: list[str], forms: list[str]) -> dict:
    """{"adherence", "by_form", "distinct_ratio" (mean over responses), "unique_share", "responses", "follows"} of
    responses to prompts asking for `forms` (see `form_eval`)."""
    follows = [follows_form(r, f) for r, f in zip(responses, forms)]
    by_form = {f: float(np.mean([ok for ok, g in zip(follows, forms) if g == f])) for f in FORMS if f in forms}
    return {"adherence": form_adherence(responses, forms), "by_form": by_form,
            "distinct_ratio": float(np.mean([distinct_ratio(r) for r in responses])),
            "unique_share": len(set(responses)) / len(responses), "responses": responses, "follows": follows}


def form_eval(model: nn.Module, tok, pairs: Sequence[dict], cfg: PoetConfig, *,
              loss_pairs: Sequence[dict] | None = None) -> dict:
    """Form adherence of `model` on the prompts of `pairs` (greedy and sampled), its held-out response loss on
    `loss_pairs` (default: `pairs`), and a few samples.

    Returns {"n", "forms", "heldout_loss", "greedy": stats, "sampled": stats, "samples"}; stats = {"adherence"
    (= poems.form_adherence of its "responses"), "by_form", "distinct_ratio", "unique_share" (distinct responses
    / responses: one memorised poem for every title shows here), "responses", "follows"}; samples = the first
    cfg.n_shown prompts (one per form with `balanced_pairs`) under each decoding: {"decoding", "prompt", "form",
    "response", "follows"}."""
    if not pairs:
        raise ValueError("form_eval needs at least one pair {'prompt', 'form', ...} to prompt the model with")
    template = ChatTemplate(tok)
    prompts, forms = [p["prompt"] for p in pairs], [p["form"] for p in pairs]
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(cfg.seed + 5)  # same draws every call
    out: dict = {"n": len(pairs), "forms": forms,
                 "heldout_loss": response_loss(model, template, loss_pairs or pairs, cfg.eval_batch)}
    for decoding in DECODINGS:
        responses = decode_responses(model, template, prompts, cfg, greedy=decoding == "greedy", generator=gen)
        out[decoding] = decoding_stats(responses, forms)
    out["samples"] = [{"decoding": d, "prompt": prompts[i], "form": forms[i], "response": out[d]["responses"][i],
                       "follows": out[d]["follows"][i]} for d in DECODINGS for i in range(min(cfg.n_shown, len(pairs)))]
    return out


# ---- SFT -------------------------------------------------------------------------------------------------------

def _with_heldout_loss(batches, model: nn.Module, template: ChatTemplate, pairs: Sequence[dict], every: int,
                       batch_size: int, found: list[tuple[int, float]]):
    """The SFT batch stream, scoring the held-out response loss before every `every`-th draw: `optimize` draws one
    batch per step (grad_accum_steps=1), so draw s + 1 starts step s + 1 with s steps done. The scoring runs in
    no_grad and eval mode and restores train mode, so the training itself is unchanged."""
    for s, batch in enumerate(batches):
        if s and s % every == 0:
            found.append((s, response_loss(model, template, pairs, batch_size)))
        yield batch


def sft_poet(model: nn.Module, tok, corpus, cfg: PoetConfig | None = None) -> PoetResult:
    """Instruction-tune a deep copy of `model` (a GPT pretrained with `tok`) on the training titles' pairs with the
    response-only loss; evaluate before and after on held-out titles (module docstring). The base is unchanged."""
    cfg = poet_config() if cfg is None else cfg
    template = ChatTemplate(tok)
    block = model.config.block_size
    row_len = cfg.row_len or block
    if row_len > block:
        raise ValueError(f"row_len={row_len} exceeds the model's block_size={block}; use row_len <= block_size")
    train_pairs = instruction_pairs(corpus.poems_train)
    if cfg.n_train is not None:
        rng = np.random.default_rng([cfg.seed, 91])
        train_pairs = [train_pairs[i] for i in sorted(rng.permutation(len(train_pairs))[:cfg.n_train])]
    eval_pairs, loss_pairs = heldout_eval_pairs(corpus, template, block, cfg)
    device = resolve_device(cfg.device)
    base = copy.deepcopy(model).to(device)  # the tuned copy; `model` itself is never trained
    before = form_eval(base, tok, eval_pairs, cfg, loss_pairs=loss_pairs)

    fits = fitting_pairs(train_pairs, template, row_len)  # a poem longer than a row cannot be trained on whole
    x, y = pack([pair_messages(p) for p in fits], block_size=row_len, template=template, one_per_row=cfg.one_per_row)
    t_max = int((y != IGNORE).nonzero()[:, 1].max()) + 1
    x, y = x[:, :t_max], y[:, :t_max]  # (N, t_max): columns that are padding in every row cost FLOPs, teach nothing
    note(study="sft_poet", pairs=len(fits), pairs_too_long=len(train_pairs) - len(fits), rows=len(x), row_len=t_max,
         one_per_row=cfg.one_per_row, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup=cfg.warmup,
         n_eval=len(eval_pairs), n_loss=len(loss_pairs), temperature=cfg.temperature, top_p=cfg.top_p,
         max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    tcfg = TrainConfig(batch_size=min(cfg.batch_size, len(x)), max_steps=cfg.steps, lr=cfg.lr,
                       warmup_steps=cfg.warmup, schedule="cosine", eval_interval=0, log_interval=cfg.eval_every,
                       seed=cfg.seed, device=cfg.device, progress=False)
    found: list[tuple[int, float]] = [(0, before["heldout_loss"])]
    # train_sft's path (sft_batches -> optimize, loss on the -100-masked targets) with the held-out score between
    # steps: train_sft itself has no hook for it.
    batches = _with_heldout_loss(sft_batches(x, y, tcfg.batch_size, seed=cfg.seed, device=device), base, template,
                                 loss_pairs, cfg.eval_every, cfg.eval_batch, found)
    t0 = time.perf_counter()
    history = optimize(base, tcfg, batches=batches)
    seconds = time.perf_counter() - t0
    base.eval()
    after = form_eval(base, tok, eval_pairs, cfg, loss_pairs=loss_pairs)
    found.append((cfg.steps, after["heldout_loss"]))
    train_loss = {r["step"]: r["loss"] for r in history}
    rows = [{"step": s, "loss": train_loss.get(s), "heldout_loss": h} for s, h in dict(found).items()]
    return PoetResult(model=base, rows=rows, before=before, after=after, n_pairs=len(fits), n_rows=len(x),
                      seconds=seconds, meta={"pairs_too_long": len(train_pairs) - len(fits), "row_len": t_max})
