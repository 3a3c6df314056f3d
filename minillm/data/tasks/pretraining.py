"""Pretraining text that mixes synthetic stories with task examples at controlled rates. Survey §2.1 (abilities
"emerge" from pretraining data that happens to contain them) and §4.1 (data mixtures).

    mix = pretraining_mixture({"addition": 0.1, "kv_map": 0.1}, n_chars=200_000, seed=0,
                              addition={"digits": (1, 2, 3), "cot": 0.5}, exclude=evals)
    mix.text                  # what the model trains on
    mix.char_fractions()      # measured share of characters per source ("story" gets the rest)

Rates are fractions of CHARACTERS (what a character-level model trains on), not of documents: a CoT example is
several times longer than a direct one, so document rates would silently change the budget.

Keeping evaluation problems out of training. Training examples come from one seed stream and evaluation
examples (`eval_examples`) from another, so they are different draws, but at 1-3 digits the same problem can be
drawn twice (there are only 8,100 two-digit additions): pass the evaluation examples (or their keys) as
`exclude` and every training example with the same key is redrawn. An arithmetic key is the problem "37+48"
without its format, so excluding an evaluation problem also removes its CoT and direct versions from training.
Within the training text problems may repeat, as they would in real pretraining data.

`emergence_tokenizer()` is one fixed character vocabulary (newline + printable ASCII) that covers every task and
the English story corpus, so every experiment's model has the same vocabulary and its losses are comparable.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from minillm.data.synthetic import corpus
from minillm.data.tasks.suites import TASKS, Example
from minillm.data.tokenizer import CharTokenizer

ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))  # newline + printable ASCII: 96 characters
STORY = "story"
TRAIN_STREAM, EVAL_STREAM = 0, 1  # seed streams: training text and evaluation examples never share draws
_CHUNK_CHARS = 20_000  # characters drawn per round; fixed, so a seed always gives the same text


def emergence_tokenizer() -> CharTokenizer:
    """The fixed character vocabulary of every emergence experiment (96 ids: newline + printable ASCII)."""
    return CharTokenizer(sorted(ALPHABET))


def stream_seed(seed: int, name: str, stream: int, chunk: int = 0) -> int:
    """A 63-bit seed for (seed, source name, stream, chunk): independent draws per source and purpose."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative int")
    ss = np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), stream, chunk])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def eval_examples(name: str, n: int, seed: int, **knobs) -> list[Example]:
    """Evaluation examples of task `name` from the EVAL seed stream (never the one training text is drawn from)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid names: {', '.join(TASKS)}")
    return TASKS[name].sample(n, stream_seed(seed, name, EVAL_STREAM), **knobs)


@dataclass
class Mixture:
    """Training documents (each ending in a newline), the source of each, and how they were made."""

    docs: list[str]
    sources: list[str]
    rates: dict[str, float]
    seed: int
    knobs: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(self.docs)

    @property
    def n_chars(self) -> int:
        return sum(map(len, self.docs))

    def char_fractions(self) -> dict[str, float]:
        """Measured share of characters per source (story included), summing to 1."""
        chars: dict[str, int] = {}
        for d, s in zip(self.docs, self.sources):
            chars[s] = chars.get(s, 0) + len(d)
        total = sum(chars.values())
        return {s: c / total for s, c in chars.items()}


def _check_rates(rates) -> dict[str, float]:
    if not isinstance(rates, Mapping):
        raise ValueError(f"rates must be a dict {{task: fraction of characters}}, got {type(rates).__name__}")
    out = {}
    for name, r in rates.items():
        if name == STORY:
            raise ValueError("rates must not name 'story': the story corpus fills whatever the tasks leave")
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r} in rates; valid names: {', '.join(TASKS)}")
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 1:
            raise ValueError(f"rates[{name!r}]={r!r} must be a number in [0, 1]")
        out[name] = float(r)
    if sum(out.values()) > 1 + 1e-9:
        raise ValueError(f"rates sum to {sum(out.values()):.4f} > 1; they are fractions of all characters")
    return out


def _fill(draw, target: int) -> list[str]:
    """Documents from draw(chunk) -> list[str], in order, until they hold at least `target` characters."""
    docs, chars, chunk = [], 0, 0
    while chars < target:
        for d in draw(chunk):
            if chars >= target:
                break
            docs.append(d)
            chars += len(d)
        chunk += 1
    return docs


def pretraining_mixture(rates: Mapping[str, float], n_chars: int, seed: int, *,
                        exclude: Iterable[str | Example] = (), story_knobs: Mapping | None = None,
                        shuffle: bool = True, **task_knobs: Mapping) -> Mixture:
    """About `n_chars` characters of training text: each task in `rates` gets that fraction of the characters,
    the English story corpus gets the rest. `task_knobs[name]` is a dict of knobs for task `name`
    (e.g. addition={"digits": 3, "cot": True}, instructions={"templates": "train"}). Problems whose key is in
    `exclude` never appear. Each source overshoots its share by less than one document, so measured fractions
    match the rates to within a document's length over n_chars. Documents are shuffled (seeded)."""

    rates = _check_rates(rates)
    if isinstance(n_chars, bool) or not isinstance(n_chars, (int, np.integer)) or n_chars < 1:
        raise ValueError(f"n_chars={n_chars!r} must be a positive int")
    stray = sorted(set(task_knobs) - set(rates))
    if stray:
        raise ValueError(f"knobs given for {stray}, which have no rate; add them to rates (or drop the knobs)")
    for name, kn in task_knobs.items():
        if not isinstance(kn, Mapping):
            raise ValueError(f"{name}= must be a dict of knobs for task {name!r}, got {type(kn).__name__}")
        TASKS[name].knobs(**kn)  # fail now, with the task's own message
    banned = frozenset(e.key if isinstance(e, Example) else e for e in exclude)
    docs, sources = [], []
    for name, r in rates.items():
        if r == 0:
            continue
        gen, kn = TASKS[name], dict(task_knobs.get(name, {}))
        mean = np.mean([len(e.text) for e in gen.sample(32, stream_seed(seed, name, TRAIN_STREAM, 10**6), **kn)])
        per_chunk = max(1, int(_CHUNK_CHARS / mean))
        part = _fill(lambda c: [e.text for e in gen.sample(per_chunk, stream_seed(seed, name, TRAIN_STREAM, c),
                                                           exclude=banned, **kn)], round(r * n_chars))
        docs += part
        sources += [name] * len(part)
    story_target = n_chars - sum(map(len, docs))
    if story_target > 0:
        sk = dict(story_knobs or {})
        part = _fill(lambda c: [d + "\n" for d in corpus(STORY, 200, stream_seed(seed, STORY, TRAIN_STREAM, c),
                                                         **sk).docs], story_target)
        docs += part
        sources += [STORY] * len(part)
    bad = set("".join(docs)) - set(ALPHABET)
    if bad:
        raise ValueError(f"characters {sorted(bad)} are outside the emergence alphabet (printable ASCII): "
                         f"use the English story corpus and ASCII task knobs")
    if shuffle:
        order = np.random.default_rng(stream_seed(seed, "shuffle", TRAIN_STREAM)).permutation(len(docs))
        docs, sources = [docs[i] for i in order], [sources[i] for i in order]
    return Mixture(docs, sources, rates, int(seed), {k: dict(v) for k, v in task_knobs.items()})
