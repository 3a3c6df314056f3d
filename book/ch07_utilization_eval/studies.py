"""Chapter 07's studies: decoding strategies judged by an exact grammar, prompting, and what perplexity says
about downstream accuracy. Survey §4.2.4 (decoding), §6.1 (in-context learning), §6.3 (chain-of-thought),
§7.1 and §7.3 (evaluating knowledge, reasoning and language generation; benchmarks).

    models = chapter_models("ci")                    # char GPTs of 1-3 sizes on stories + facts + arithmetic
    rows = decoding_sweep(models[-1])                # greedy / temperature / top-k / top-p / beam, side by side
    rows = prompting_study(models)                   # zero- vs few-shot, direct vs chain-of-thought
    rows = ppl_vs_accuracy(models)                   # held-out bits per byte vs the three benchmark suites

One text trains every model (`chapter_text`): stories of the synthetic grammar (easy, ≤ 8 sentences, the
knobs `benchmarks.StoryCloze` reads), facts about a `FactWorld` (world_seed 0, 100 people, Zipf popularity: the
world `benchmarks.FactsMC` asks about) and 1-3 digit additions, half with written working (chapter 02's format).
Decoding quality is measured against the story grammar itself: `data.synthetic.doc_logprob` gives the exact
log-probability of a generated story, -inf when the grammar cannot produce it, so "is it a valid story" and
"how likely is it" need no judge model. Sizes follow `presets.by_size`; models are cached per (size, seed).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from minillm.presets import by_size
from book.results import note
from book.runs import Run, size_label, train

__all__ = ["STORY_KNOBS", "FACT_KNOBS", "DECODING_SETTINGS", "ChapterModel", "chapter_text", "chapter_models",
           "story_prompts", "decode", "decoding_sweep", "prompting_study", "ppl_vs_accuracy"]

STORY_KNOBS = {"difficulty": "easy", "max_sentences": 8}  # what benchmarks.StoryCloze draws by default
FACT_KNOBS = {"world_seed": 0, "n_people": 100}            # what benchmarks.FactsMC asks about by default
# (label, settings): settings go to `decode`; beam is beam search with that width (deterministic, like greedy)
DECODING_SETTINGS = (("greedy", {"temperature": 0.0}), ("beam 4", {"beam": 4}),
                     ("T=0.7", {"temperature": 0.7}), ("T=1.0", {"temperature": 1.0}),
                     ("T=1.5", {"temperature": 1.5}), ("top-k 5", {"temperature": 1.0, "top_k": 5}),
                     ("top-p 0.9", {"temperature": 1.0, "top_p": 0.9}))
_CACHE: dict[tuple, list] = {}


@dataclass
class ChapterModel:
    name: str
    params: int  # non-embedding parameters
    model: torch.nn.Module
    tokenizer: Any
    val_text: str


def chapter_text(n_chars: int, seed: int = 0, fact_share: float = 0.3, addition_share: float = 0.25) -> str:
    """About n_chars of training text, one document per line: facts (fact_share), additions with and without
    working (addition_share), stories (the rest). Shuffled by seed."""
    from minillm.data.synthetic import corpus
    from minillm.data.tasks.pretraining import pretraining_mixture

    if not (0 <= fact_share < 1 and 0 <= addition_share < 1 and fact_share + addition_share < 1):
        raise ValueError(f"fact_share={fact_share!r} and addition_share={addition_share!r} must be shares in [0, 1) "
                         "that leave room for stories")
    rest = int(n_chars * (1 - fact_share))
    mix = pretraining_mixture({"addition": addition_share / (1 - fact_share)}, rest, seed,
                              story_knobs=STORY_KNOBS, addition={"digits": (1, 2, 3), "cot": 0.5})
    facts, got, k = [], 0, 256
    while got < n_chars * fact_share:  # grow the draw until the facts reach their share
        facts = corpus("facts", k, seed, **FACT_KNOBS).docs
        got = sum(len(d) + 1 for d in facts)
        k *= 2
    keep = int(np.searchsorted(np.cumsum([len(d) + 1 for d in facts]), n_chars * fact_share)) + 1
    docs = [d.strip("\n") for d in mix.docs] + facts[:keep]
    order = np.random.default_rng([seed, 707]).permutation(len(docs))
    return "\n".join(docs[i] for i in order) + "\n"


def chapter_models(size: str | None = None, seed: int = 0) -> list[ChapterModel]:
    """Char GPTs of by_size(1, 2, 3) sizes trained on `chapter_text` with `book.runs.train` (a head per 32
    channels, 128-character windows, RoPE, the emergence tokenizer; cached per (size, seed); read-only)."""
    from minillm.data.tasks.pretraining import emergence_tokenizer
    from minillm.presets import size_profile

    key = (size or size_profile(), seed)
    if key not in _CACHE:
        dims = by_size(ci=((1, 32),), laptop=((2, 64), (4, 128)), gpu=((2, 128), (4, 256), (6, 384)), size=key[0])
        steps = by_size(ci=200, laptop=2000, gpu=6000, size=key[0])
        text = chapter_text(by_size(ci=150_000, laptop=1_500_000, gpu=8_000_000, size=key[0]), seed)
        cut = text.rfind("\n", 0, int(len(text) * 0.95)) + 1
        # train where it is fast; evaluate on the CPU (the studies build their inputs there; models stay small)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        out = []
        for n_layer, n_embd in dims:  # a loop over model sizes
            run = Run(n_layer=n_layer, n_embd=n_embd, n_head=max(1, n_embd // 32), block_size=128, steps=steps,
                      seed=1337 + seed, device=device, model_fields={"position": "rope"})
            model, tok, _ = train(run, text[:cut], val=text[cut:], tokenizer=emergence_tokenizer())
            model.cpu().requires_grad_(False)
            out.append(ChapterModel(size_label(n_layer, n_embd), model.num_params(non_embedding=True), model, tok,
                                    text[cut:]))
        _CACHE[key] = out
    return _CACHE[key]


# ---- decoding --------------------------------------------------------------------------------------------------

def story_prompts(n: int, seed: int = 1) -> list[str]:
    """The first sentence of n stories (seed 1: not the training draw), each ending with ". "."""
    from minillm.data.synthetic import corpus

    docs = corpus("story", n, 10_000 + seed, **STORY_KNOBS).docs
    return [d.split(". ", 1)[0] + ". " if ". " in d else d for d in docs]


def decode(cm: ChapterModel, prompt: str, max_new_tokens: int = 160, *, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, beam: int = 0, repetition_penalty: float = 1.0,
           generator: torch.Generator | None = None) -> str:
    """The model's continuation of prompt up to (not including) the first newline, with the given strategy
    (beam > 0: beam search of that width, length penalty 1)."""
    from minillm.generate import beam_search, generate

    tok = cm.tokenizer
    idx = torch.tensor([tok.encode(prompt)], dtype=torch.long)
    nl = tok.encode("\n")
    if beam:
        ids = beam_search(cm.model, idx, max_new_tokens, beam_width=beam, stop_tokens=nl).sequences[0]
    else:
        ids = generate(cm.model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                       stop_tokens=nl, generator=generator, repetition_penalty=repetition_penalty)[0]
    return tok.decode(ids[idx.size(1):].tolist()).split("\n", 1)[0]


def _distinct(texts: list[str], n: int) -> float:
    """distinct-n (Li et al. 2016): unique word n-grams / all word n-grams over the samples."""
    grams = [tuple(ws[i:i + n]) for t in texts for ws in [t.split()] for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def decoding_sweep(cm: ChapterModel, settings=DECODING_SETTINGS, n_prompts: int | None = None,
                   samples: int = 2, max_new_tokens: int | None = None, seed: int = 0,
                   size: str | None = None) -> list[dict]:
    """Rows {label, valid (share of continuations the story grammar can produce), logprob_per_char (exact,
    mean over valid ones), distinct_2, distinct_3 (over all samples), unique (distinct samples / samples),
    chars (mean length)}; `samples` draws per prompt (deterministic strategies repeat)."""
    from minillm.data.synthetic import doc_logprob

    n_prompts = n_prompts or by_size(ci=4, laptop=20, gpu=60, size=size)
    # stories run to ~300 characters (99th percentile 275): a shorter budget would cut valid ones off
    max_new_tokens = max_new_tokens or by_size(ci=60, laptop=300, gpu=300, size=size)
    prompts = story_prompts(n_prompts)
    note(decoding={"model": cm.name, "n_prompts": n_prompts, "samples": samples, "max_new_tokens": max_new_tokens,
                   "seed": seed})
    rows = []
    for label, kw in settings:  # a loop over strategies
        g = torch.Generator().manual_seed(seed)
        outs = [(p, decode(cm, p, max_new_tokens, generator=g, **kw)) for p in prompts for _ in range(samples)]
        lps = [doc_logprob("story", p + c, **STORY_KNOBS) for p, c in outs]
        ok = [lp / max(1, len(c)) for (p, c), lp in zip(outs, lps) if math.isfinite(lp)]
        conts = [c for _, c in outs]
        rows.append({"label": label, **kw, "valid": len(ok) / len(outs),
                     "logprob_per_char": float(np.mean(ok)) if ok else None,
                     "distinct_2": _distinct(conts, 2), "distinct_3": _distinct(conts, 3),
                     "unique": len(set(outs)) / len(outs), "chars": float(np.mean([len(c) for c in conts])),
                     "example": outs[0][0] + outs[0][1]})
    return rows


# ---- prompting and evaluation ------------------------------------------------------------------------------------

def prompting_study(models: list[ChapterModel], n: int | None = None, shots=(0, 3), seed: int = 0,
                    size: str | None = None) -> list[dict]:
    """Rows {model, params, task, shots, cot, accuracy, acc_norm, chance}: facts_mc and story_cloze at each shot
    count, and 2-digit addition asked directly and with chain-of-thought (the prompt ends in "[")."""
    from minillm.evaluation.benchmarks import Arithmetic, run_benchmark

    n = n or by_size(ci=16, laptop=100, gpu=200, size=size)
    note(prompting={"n": n, "shots": shots, "seed": seed, "models": [cm.name for cm in models]})
    rows = []
    for cm in models:  # a loop over models, then tasks
        base = {"model": cm.name, "params": cm.params}
        for task in ("facts_mc", "story_cloze"):
            for k in shots:
                r = run_benchmark(cm.model, cm.tokenizer, task, n=n, shots=k, seed=seed)
                rows.append({**base, "task": task, "shots": k, "cot": False, "accuracy": r["accuracy"],
                             "acc_norm": r["acc_norm"], "chance": r["chance"]})
        for cot in (False, True):
            r = run_benchmark(cm.model, cm.tokenizer, Arithmetic(digits=2, cot=cot), n=n, seed=seed)
            rows.append({**base, "task": "arithmetic", "shots": 0, "cot": cot, "accuracy": r["accuracy"],
                         "acc_norm": None, "chance": None})
    return rows


def ppl_vs_accuracy(models: list[ChapterModel], n: int | None = None, seed: int = 0,
                    size: str | None = None) -> list[dict]:
    """Rows {model, params, loss, bits_per_byte (held-out text), facts_mc, story_cloze, arithmetic_cot}: does the
    language-modelling score rank the models as the benchmarks do?"""
    from minillm.evaluation.benchmarks import Arithmetic, run_benchmark
    from minillm.evaluation.harness import perplexity

    n = n or by_size(ci=16, laptop=100, gpu=200, size=size)
    note(ppl_vs_accuracy={"n": n, "heldout_chars": 50_000, "seed": seed, "models": [cm.name for cm in models]})
    rows = []
    for cm in models:  # a loop over models
        ppl = perplexity(cm.model, text=cm.val_text[:50_000], tokenizer=cm.tokenizer)
        acc = {t: run_benchmark(cm.model, cm.tokenizer, t, n=n, seed=seed)["accuracy"]
               for t in ("facts_mc", "story_cloze")}
        acc["arithmetic_cot"] = run_benchmark(cm.model, cm.tokenizer, Arithmetic(digits=2, cot=True), n=n,
                                              seed=seed)["accuracy"]
        rows.append({"model": cm.name, "params": cm.params, "loss": ppl["loss"],
                     "bits_per_byte": ppl["bits_per_byte"], **acc})
    return rows
