"""Arithmetic documents such as "37+48=85". Survey §2.2 (emergent abilities: arithmetic) and §2.1 (E).

Operands are uniform with `digits` digits at most and the operation is uniform over `ops`, so every
document has the same log-probability  -2 log(10^digits) - log(len(ops)).  The answer is a function of
the question and costs 0 nats: a model that has learned to add can predict it perfectly, and the
entropy floor is entirely in the operands. The same text is hard for a small model and free for a
model that knows the algorithm: the floor says what is learnable, not what is easy.
"""
from __future__ import annotations

import math
import re
from typing import Iterator

import numpy as np

from minillm.data.synthetic.grammar import check_int
from minillm.data.synthetic.generator import Source

_CHUNK = 1024  # documents drawn per numpy call; fixed so a seed always gives the same stream
_NUMBER = r"(0|[1-9][0-9]*)"
_DOC = re.compile(_NUMBER + r"([+\-*])" + _NUMBER + r"=(-?(?:0|[1-9][0-9]*))")
_APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


class ArithmeticSource(Source):
    """Knobs: digits (1..6, operands in [0, 10^digits)), ops (a string of distinct characters of "+-*")."""

    name = "arithmetic"
    description = "equations a<op>b=c with uniform operands; the answer costs 0 nats"
    defaults = {"digits": 2, "ops": "+-"}

    def check(self, knobs: dict) -> None:
        check_int("digits", knobs["digits"], 1, 6)
        ops = knobs["ops"]
        if not isinstance(ops, str) or not ops or len(set(ops)) != len(ops) or set(ops) - set(_APPLY):
            raise ValueError(f"ops={ops!r} must be a non-empty string of distinct characters from '+-*', "
                             f"e.g. ops='+-'")

    @staticmethod
    def logprob(knobs: dict) -> float:
        """The (same) log-probability of every document."""
        return -2 * knobs["digits"] * math.log(10) - math.log(len(knobs["ops"]))

    def stream(self, seed: int, knobs: dict) -> Iterator[tuple[str, float]]:
        rng = np.random.default_rng(seed)
        hi, ops, lp = 10 ** knobs["digits"], knobs["ops"], self.logprob(knobs)
        while True:  # vectorized per chunk: numpy draws and computes, Python only formats strings
            a = rng.integers(0, hi, size=_CHUNK)  # (CHUNK,)
            b = rng.integers(0, hi, size=_CHUNK)
            o = rng.integers(0, len(ops), size=_CHUNK)
            results = np.select([o == k for k in range(len(ops))], [_APPLY[op](a, b) for op in ops])
            for x, k, y, r in zip(a.tolist(), o.tolist(), b.tolist(), results.tolist()):
                yield f"{x}{ops[k]}{y}={r}", lp

    def score(self, doc: str, knobs: dict) -> float:
        m = _DOC.fullmatch(doc)
        if m is None:
            return -math.inf
        a, op, b, r = int(m[1]), m[2], int(m[3]), int(m[4])
        hi = 10 ** knobs["digits"]
        if op not in knobs["ops"] or a >= hi or b >= hi or _APPLY[op](a, b) != r or m[4] == "-0":
            return -math.inf
        return self.logprob(knobs)

    def support(self, knobs: dict, limit: int) -> dict[str, float]:
        hi, ops = 10 ** knobs["digits"], knobs["ops"]
        if hi * hi * len(ops) > limit:
            raise ValueError(f"arithmetic with digits={knobs['digits']}, ops={ops!r} has {hi * hi * len(ops)} "
                             f"documents, more than limit={limit}: use digits=1 or raise the limit")
        lp = self.logprob(knobs)
        return {f"{a}{op}{b}={_APPLY[op](a, b)}": lp for op in ops for a in range(hi) for b in range(hi)}
