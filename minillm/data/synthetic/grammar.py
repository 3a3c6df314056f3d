"""The machinery behind every synthetic corpus: choices over surface strings, and one generator program
run three ways (sample, score, enumerate). Survey §4.1 (pre-training data) and §2.1 (scaling laws: the
irreducible loss E of Chinchilla's L(N, D) = E + A/N^alpha + B/D^beta).

Why this design gives an *exact* entropy floor
----------------------------------------------
A document is written by a small program that makes a sequence of random decisions. Each decision picks
one option of a `Choice` (a categorical distribution) and immediately writes that option's text. If at
every decision no option's text is a prefix of another option's text ("prefix-free"), a reader going left
to right can always tell which option was taken. So every string has exactly one derivation, and

    log p(string) = sum over decisions of log p(option taken)

exactly: the probability of the *string*, not just of one way of producing it. Deterministic text
(`emit`) costs 0 nats. The same program is therefore usable as

- a sampler (`Sampler`): draws decisions from a seeded numpy Generator and adds up their log-probs;
- a scorer (`Parser`): reads a given string, recovers the decisions, returns log p(string) (or -inf);
- an enumerator (`enumerate_program`): visits every derivation of a tiny grammar, giving the exact
  distribution, which the tests compare with samples.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from typing import Callable, Iterator, Sequence

import numpy as np

# Named difficulty levels of the story grammars; a float in [0, 1] is accepted too.
DIFFICULTY_LEVELS = {"easy": 0.25, "default": 0.5, "hard": 1.0}


class Choice:
    """One decision: a categorical distribution over distinct, prefix-free surface strings.

    Built once per grammar and reused for every document, so the cumulative table used for sampling
    (`cum`) and the log-probabilities (`logp`) are precomputed here, off the hot path.
    """

    __slots__ = ("surfaces", "logp", "cum", "_index", "_lengths")

    def __init__(self, surfaces: Sequence[str], weights: Sequence[float]):
        surfaces = tuple(surfaces)
        w = np.asarray(weights, dtype=np.float64)
        if len(surfaces) == 0 or w.shape != (len(surfaces),):
            raise ValueError(f"a Choice needs one positive weight per surface, got {len(surfaces)} surfaces "
                             f"and weights of shape {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(f"Choice weights must be finite and > 0 (drop an option instead of giving it "
                             f"weight 0), got {w.tolist()}")
        check_prefix_free(surfaces)
        p = w / w.sum()
        self.surfaces = surfaces
        self.logp = tuple(np.log(p).tolist())
        cum = np.cumsum(p)
        cum[-1] = 1.0  # a uniform u in [0, 1) always lands on some option despite rounding
        self.cum = cum.tolist()
        self._index: dict[str, int] | None = None
        self._lengths: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.surfaces)

    def __repr__(self) -> str:
        return f"Choice({len(self)} options, first={self.surfaces[0]!r})"

    def match(self, text: str, pos: int) -> int:
        """Index of the option whose surface starts `text` at `pos`, or -1 (at most one can: prefix-free)."""
        if self._index is None:  # built lazily: only scoring needs it
            self._index = {s: i for i, s in enumerate(self.surfaces)}
            self._lengths = tuple(sorted({len(s) for s in self.surfaces}))
        for n in self._lengths:
            i = self._index.get(text[pos:pos + n])
            if i is not None:
                return i
        return -1


def check_prefix_free(surfaces: Sequence[str]) -> None:
    """Raise ValueError unless the surfaces are distinct, non-empty (when >1) and no one prefixes another.

    After sorting, if a is a prefix of c then every string between them also starts with a, so checking
    neighbours is enough: O(n log n) instead of O(n^2).
    """
    if len(set(surfaces)) != len(surfaces):
        dup = sorted(s for s in set(surfaces) if surfaces.count(s) > 1)
        raise ValueError(f"Choice surfaces must be distinct, these repeat: {dup[:5]}")
    if len(surfaces) > 1 and "" in surfaces:
        raise ValueError("an empty surface is a prefix of every other one: give each option visible text")
    ordered = sorted(surfaces)
    for a, b in zip(ordered, ordered[1:]):
        if b.startswith(a):
            raise ValueError(f"ambiguous grammar: option {a!r} is a prefix of option {b!r}, so a reader "
                             f"could not tell them apart; rename one of them")


def zipf_weights(n: int, s: float) -> np.ndarray:
    """Weights 1 / rank^s for ranks 1..n: a few frequent options and a long tail, like word counts."""
    return 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s


def parse_difficulty(value) -> float:
    """'easy' | 'default' | 'hard' | float in [0, 1] -> float in [0, 1]."""
    if isinstance(value, str):
        if value not in DIFFICULTY_LEVELS:
            raise ValueError(f"difficulty={value!r} is unknown: use one of {sorted(DIFFICULTY_LEVELS)} or a "
                             f"float in [0, 1]")
        return DIFFICULTY_LEVELS[value]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"difficulty={value!r} must be one of {sorted(DIFFICULTY_LEVELS)} or a float in [0, 1]")
    return float(value)


def check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} must be an integer in [{lo}, {hi}]")
    return int(value)


def check_float(name: str, value, lo: float, hi: float, *, open_interval: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and ((lo < value < hi) if open_interval else (lo <= value <= hi))
    if not ok:
        brackets = f"({lo}, {hi})" if open_interval else f"[{lo}, {hi}]"
        raise ValueError(f"{name}={value!r} must be a number in {brackets}")
    return float(value)


class NoParse(Exception):
    """Raised inside a Parser when the text is not a string this grammar can produce."""


class Sampler:
    """Runs a program forward: each decision draws u ~ U[0,1) and looks it up in the cumulative table.

    Uniforms come from one seeded numpy Generator in blocks of 4096 (a numpy call per decision would
    cost more than the decision itself); the block order is fixed, so a seed fixes every document.
    """

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._u: list[float] = []
        self._i = 0
        self.parts: list[str] = []
        self.logp = 0.0

    def _uniform(self) -> float:
        if self._i == len(self._u):
            self._u = self._rng.random(4096).tolist()
            self._i = 0
        u = self._u[self._i]
        self._i += 1
        return u

    def choose(self, c: Choice) -> int:
        i = 0 if len(c.cum) == 1 else bisect_right(c.cum, self._uniform())
        self.logp += c.logp[i]
        self.parts.append(c.surfaces[i])
        return i

    def choose_hidden(self, c: Choice) -> int:
        """A decision that writes nothing (e.g. the language of a bilingual document)."""
        i = 0 if len(c.cum) == 1 else bisect_right(c.cum, self._uniform())
        self.logp += c.logp[i]
        return i

    def emit(self, text: str) -> None:
        self.parts.append(text)

    def finish(self) -> tuple[str, float]:
        text, logp = "".join(self.parts), self.logp
        self.parts, self.logp = [], 0.0
        return text, logp


class Parser:
    """Runs a program against a given text: each decision is the unique option that matches next."""

    def __init__(self, text: str):
        self.text, self.pos, self.logp = text, 0, 0.0

    def choose(self, c: Choice) -> int:
        i = c.match(self.text, self.pos)
        if i < 0:
            raise NoParse
        self.pos += len(c.surfaces[i])
        self.logp += c.logp[i]
        return i

    def choose_hidden(self, c: Choice) -> int:
        raise RuntimeError("a hidden decision cannot be read back from the text: score such a mixture by "
                           "summing the probabilities of its components (see BilingualSource.score)")

    def emit(self, text: str) -> None:
        if not self.text.startswith(text, self.pos):
            raise NoParse
        self.pos += len(text)


class _Branch(Exception):
    def __init__(self, n: int):
        self.n = n


class _Replayer:
    """Runs a program with the first decisions forced; stops with _Branch at the first free one."""

    def __init__(self, forced: list[int]):
        self.forced, self.k, self.parts, self.logp = forced, 0, [], 0.0

    def choose_hidden(self, c: Choice) -> int:
        if len(c) == 1:
            return 0
        if self.k == len(self.forced):
            raise _Branch(len(c))
        i = self.forced[self.k]
        self.k += 1
        self.logp += c.logp[i]
        return i

    def choose(self, c: Choice) -> int:
        i = self.choose_hidden(c)
        self.parts.append(c.surfaces[i])
        return i

    def emit(self, text: str) -> None:
        self.parts.append(text)


def enumerate_program(program: Callable[[object], None], limit: int) -> Iterator[tuple[str, float]]:
    """Yield (text, logp) for every derivation of `program`, depth first, by replaying decision prefixes.

    Replaying from the start for each leaf costs O(leaves * depth), which is fine for the tiny grammars
    this is meant for. Raises ValueError after `limit` derivations so a large grammar fails fast.
    """
    stack: list[list[int]] = [[]]
    count = 0
    while stack:
        forced = stack.pop()
        r = _Replayer(forced)
        try:
            program(r)
        except _Branch as b:
            stack.extend(forced + [i] for i in reversed(range(b.n)))
            continue
        count += 1
        if count > limit:
            raise ValueError(f"this configuration has more than limit={limit} documents: make it smaller "
                             f"(e.g. difficulty=0.0, max_sentences=2) or raise the limit")
        yield "".join(r.parts), r.logp
