"""A corpus generator ("source") = named knobs + a document program. Survey §4.1 (data sources).

`Source` is what the `CORPORA` registry holds. `ProgramSource` turns one program (see grammar.py) into
a sampler, a scorer and an exact enumerator, so the three can never disagree about the grammar.
"""
from __future__ import annotations

import itertools
import math
from typing import Iterator

import numpy as np

from minillm.data.synthetic.grammar import NoParse, Parser, Sampler, enumerate_program

_MAX_CACHED = 16  # grammars kept per source (oldest dropped first)
END = "\n"  # every program ends a document with this decision; Corpus.text() writes it as the separator


class Source:
    """Base class of a registered generator: knob checking plus the stream / score / support trio."""

    name: str = ""
    description: str = ""
    defaults: dict[str, object] = {}

    def resolve(self, knobs: dict) -> dict:
        """Defaults filled in and every knob checked; unknown names raise ValueError listing valid ones."""
        unknown = sorted(set(knobs) - set(self.defaults))
        if unknown:
            raise ValueError(f"corpus {self.name!r} has no knob(s) {unknown}; valid knobs: "
                             f"{sorted(self.defaults)}")
        resolved = {**self.defaults, **knobs}
        self.check(resolved)
        return resolved

    def check(self, knobs: dict) -> None:
        """Raise ValueError for a bad knob value (subclasses)."""

    def stream(self, seed: int, knobs: dict) -> Iterator[tuple[str, float]]:
        """Endless (document without its END symbol, natural-log probability including END)."""
        raise NotImplementedError

    def score(self, doc: str, knobs: dict) -> float:
        """log p(doc + END) under the generator; -inf if the generator cannot produce it."""
        raise NotImplementedError

    def support(self, knobs: dict, limit: int) -> dict[str, float]:
        """Every document with its log-probability (tiny configurations only; ValueError past `limit`)."""
        raise NotImplementedError


class ProgramSource(Source):
    """A Source defined by `program(chooser, grammar)`; subclasses also implement `build(knobs)`."""

    def __init__(self):
        self._grammars: dict[tuple, object] = {}

    def build(self, knobs: dict) -> object:
        """The grammar (Choice tables etc.) for these knobs; built once and cached."""
        raise NotImplementedError

    def program(self, ch, g) -> None:
        raise NotImplementedError

    def grammar(self, knobs: dict) -> object:
        key = tuple(sorted(knobs.items()))
        if key not in self._grammars:
            if len(self._grammars) >= _MAX_CACHED:  # a sweep over many knob values must not grow memory
                del self._grammars[next(iter(self._grammars))]
            self._grammars[key] = self.build(knobs)
        return self._grammars[key]

    def stream(self, seed: int, knobs: dict) -> Iterator[tuple[str, float]]:
        g = self.grammar(knobs)
        sampler = Sampler(np.random.default_rng(seed))
        while True:
            self.program(sampler, g)
            text, logp = sampler.finish()
            if not text.endswith(END) or END in text[:-1]:
                raise RuntimeError(f"{self.name}: a document must contain END only as its last symbol, got "
                                   f"{text[-40:]!r}")
            yield text[:-1], logp

    def score(self, doc: str, knobs: dict) -> float:
        parser = Parser(doc + END)
        try:
            self.program(parser, self.grammar(knobs))
        except NoParse:
            return -math.inf
        return parser.logp if parser.pos == len(parser.text) else -math.inf

    def support(self, knobs: dict, limit: int) -> dict[str, float]:
        g = self.grammar(knobs)
        out: dict[str, float] = {}
        for text, logp in enumerate_program(lambda ch: self.program(ch, g), limit):
            doc = text[:-1]
            if doc in out:  # two derivations, one string: the logprob of a sample would be wrong
                raise RuntimeError(f"{self.name} grammar is ambiguous: {doc!r} has two derivations")
            out[doc] = logp
        return out


def take(stream: Iterator[tuple[str, float]], n: int) -> tuple[list[str], np.ndarray]:
    """First n (doc, logprob) pairs of a stream as (list of docs, float64 array)."""
    docs: list[str] = []
    logps: list[float] = []
    for doc, lp in itertools.islice(stream, n):
        docs.append(doc)
        logps.append(lp)
    return docs, np.asarray(logps, dtype=np.float64)
