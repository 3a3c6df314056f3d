"""The pieces every task of the emergence suites shares: the `Example` record, the prompt format's marks,
the few-shot prompt builder, answer extraction and the `TaskGenerator` base (knob checking, seeded sampling,
held-out problems). Survey §2.1, §6.1 (in-context learning: the k-shot prompt format). The tasks themselves are
in tasks.py (arithmetic, in-context patterns, the registry) and instructions.py.
"""
from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

TRACE_OPEN = "["   # a chain-of-thought prompt ends with it: "write your working"
ANSWER_MARK = "]"  # closes the working; the final answer follows it
SHOT_SEP = ";"     # between the pairs of a few-shot prompt
MAP_SEP = ">"      # between input and output of one pair: "qd>7"
QUERY_MARK = "="   # after the query's input: "qd=" says "answer, then the line ends" (as in "37+48=")
LETTERS = np.array(list(string.ascii_lowercase))


@dataclass(frozen=True)
class Example:
    """One task instance. `answer` excludes the terminator; the text a model reads and writes is `text`."""

    prompt: str
    answer: str
    task: str
    meta: dict = field(default_factory=dict)
    trace: str = ""  # chain-of-thought working between prompt and answer ("" for every non-CoT example)

    def __post_init__(self):
        for name in ("prompt", "answer", "trace"):
            v = getattr(self, name)
            if not isinstance(v, str) or "\n" in v:
                raise ValueError(f"Example.{name}={v!r} must be a str without newlines (newline ends a document)")

    @property
    def text(self) -> str:
        return self.prompt + self.trace + self.answer + "\n"

    @property
    def context(self) -> str:
        """What the answer is conditioned on when it is teacher-forced: the prompt and the (gold) working."""
        return self.prompt + self.trace

    @property
    def key(self) -> str:
        """Identity of the underlying problem, for keeping evaluation problems out of training text."""
        return self.meta.get("key", self.prompt)


def few_shot_prompt(shots: Sequence[Example], query: Example, sep: str = SHOT_SEP) -> str:
    """``shot1 + sep + shot2 + sep + ... + query.prompt``, each shot written as prompt + trace + answer.

    The format of every in-context task here ("ab>3;cd>7;ab>"); the lab's prompt builder must match it."""
    if not isinstance(sep, str) or not sep or "\n" in sep:
        raise ValueError(f"sep={sep!r} must be a non-empty string without newlines")
    parts = []
    for i, s in enumerate(shots):
        body = s.prompt + s.trace + s.answer
        if sep in body:
            raise ValueError(f"shot {i} ({body!r}) contains the separator {sep!r}, so shots could not be told apart")
        parts.append(body + sep)
    return "".join(parts) + query.prompt


def extract_answer(text: str, require_marker: bool = False) -> str | None:
    """The final answer in a generated continuation: the text after the last ANSWER_MARK, up to a newline.
    Without a marker the whole first line is the answer (direct answers), or None if require_marker."""
    line = text.split("\n", 1)[0]
    if ANSWER_MARK in line:
        return line.rsplit(ANSWER_MARK, 1)[1]
    return None if require_marker else line


def _int_choices(name: str, v, lo: int, hi: int) -> tuple[int, ...]:
    """An int or a non-empty sequence of ints, each in [lo, hi], as a tuple (drawn uniformly per example)."""
    vals = (v,) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
    if isinstance(vals, (str, bytes)) or not isinstance(vals, Iterable):
        raise ValueError(f"{name}={v!r} must be an int in [{lo}, {hi}] or a list of them")
    vals = tuple(vals)
    if not vals or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or not lo <= x <= hi for x in vals):
        raise ValueError(f"{name}={v!r} must be an int in [{lo}, {hi}] or a non-empty list of them")
    return tuple(int(x) for x in vals)


def _choice(name: str, v, allowed: tuple[str, ...]) -> str:
    if v not in allowed:
        raise ValueError(f"{name}={v!r} is not valid; choose one of {', '.join(map(repr, allowed))}")
    return v


def _word(rng: np.random.Generator, lens: tuple[int, ...]) -> str:
    return "".join(LETTERS[rng.integers(0, 26, size=int(rng.choice(lens)))])


class TaskGenerator:
    """A task: `defaults` (its knobs), `check` (validates and normalises them), `sample`, `chance`."""

    name = ""
    description = ""
    defaults: dict = {}

    def check(self, k: dict) -> dict:  # pragma: no cover - every task overrides
        return k

    def knobs(self, **knobs) -> dict:
        unknown = sorted(set(knobs) - set(self.defaults))
        if unknown:
            raise ValueError(f"unknown knob(s) {unknown} for task {self.name!r}; valid: {sorted(self.defaults)}")
        return self.check({**self.defaults, **knobs})

    def chance(self, **knobs) -> float | None:
        """Accuracy of guessing without reading the prompt (None where no meaningful guess exists)."""
        return None

    def sample(self, n: int, seed: int, exclude: Iterable[str | Example] = (), **knobs) -> list[Example]:
        """`n` examples drawn with `seed`; problems whose `key` is in `exclude` are skipped (redrawn)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n={n!r} must be a non-negative int")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed={seed!r} must be a non-negative int")
        k = self.knobs(**knobs)
        banned = frozenset(e.key if isinstance(e, Example) else e for e in exclude)
        rng = np.random.default_rng(int(seed))
        out: list[Example] = []
        for _ in range(1000):  # rejection rounds; each draws what is still missing (at least 64)
            if len(out) >= n:
                break
            need = n - len(out)
            batch = self._draw(rng, max(need, 64) if banned else need, k)
            out += [e for e in batch if e.key not in banned][:need]
        else:
            raise ValueError(f"could not draw {n} {self.name} examples outside `exclude` ({len(banned)} keys): "
                             f"it covers (nearly) every problem with knobs {k}; exclude fewer or widen the task")
        return out

    def _draw(self, rng: np.random.Generator, n: int, k: dict) -> list[Example]:  # pragma: no cover
        raise NotImplementedError
