"""Task suites with exact answers, for studying emergent abilities. Survey §2.1 (the three abilities said to
emerge with scale: in-context learning, instruction following, step-by-step reasoning), §6.1 (ICL), §6.2 (CoT).

Every task is character-level text a small GPT can learn from pretraining data, and every example knows its
answer exactly. An `Example` is written as ``prompt + trace + answer + "\\n"``; `trace` is empty except for
chain-of-thought arithmetic, so for everything else the text is ``prompt + answer + "\\n"``.

- "addition", "multiplication": ``37+48=`` -> ``85``. With a trace (knob `cot`) the prompt ends in ``[`` and the
  model writes its working column by column, least-significant first, then ``]`` and the answer (`addition_trace`).
- "kv_map", "linear": in-context pattern tasks. Each episode draws a NEW rule (a random key->value map, or
  y = (a*x + b) mod 10), shows `shots` examples ``x>y`` joined by ``;`` and asks a query ``x=`` (its own mark, so
  the end of an episode is never a guess: ``qd>7;ab>3;qd=7``). The rule can only be read off the prompt. Every
  example carries meta["bayes"], the accuracy of the Bayes-optimal reader of that prompt, so "above chance" and
  "as good as possible" are both known.
- "instructions" and "pattern_conflict" (the inverse-scaling probe): see instructions.py.
The shared pieces (Example, the prompt marks, few_shot_prompt, extract_answer, TaskGenerator) are in examples.py
and re-exported here.

`TASKS` maps names to generators; ``make_examples(name, n, seed, **knobs)`` samples from one. Draws come from
``numpy.random.default_rng(seed)`` only, so a seed always gives the same examples.
"""
from __future__ import annotations

import string
from collections.abc import Iterable, Sequence

import numpy as np

from minillm.data.tasks.examples import (  # noqa: F401  (the marks, Example and helpers are re-exported)
    ANSWER_MARK, LETTERS, MAP_SEP, QUERY_MARK, SHOT_SEP, TRACE_OPEN, Example, TaskGenerator, _choice, _int_choices, _word,
    extract_answer, few_shot_prompt)
from minillm.data.tasks.instructions import FAMILIES, HELDOUT_PER_FAMILY, Instructions, PatternConflict, templates  # noqa: F401

# ---- arithmetic, with and without written working ----------------------------------------------------------


def _column_trace(a: int, b: int, op: str) -> str:
    """Working for a+b (any sizes) or a*b (b one digit), one step per column of a, least-significant first.

    Step i is ``x{op}y+c=r``: x is column i of a, y is column i of b (or the whole one-digit b for "*"),
    c is the carry in, and r is the running result: the column total written with two digits, followed by the
    previous r without its first character (that character was the carry, now consumed). So r always holds the
    result of the low i+1 columns, carry first, and the final answer is the last r without a leading 0.
    ``37+48`` -> ``7+8+0=15,3+4+1=085``;  ``37*8`` -> ``7*8+0=56,3*8+5=296``.
    """
    da, db = str(a)[::-1], str(b)[::-1]
    steps, r = [], "0"
    for i in range(max(len(da), len(db)) if op == "+" else len(da)):
        x = int(da[i]) if i < len(da) else 0
        y = (int(db[i]) if i < len(db) else 0) if op == "+" else b
        c = int(r[0])
        r = f"{x + y + c if op == '+' else x * y + c:02d}" + r[1:]
        steps.append(f"{x}{op}{y}+{c}={r}")
    return ",".join(steps) + ANSWER_MARK


def addition_trace(a: int, b: int) -> str:
    """The chain-of-thought working of a+b (see `_column_trace`), ending with ANSWER_MARK."""
    return _column_trace(a, b, "+")


def multiplication_trace(a: int, b: int) -> str:
    """The working of a*b for a one-digit b (see `_column_trace`), ending with ANSWER_MARK."""
    if not 0 <= b <= 9:
        raise ValueError(f"multiplication_trace needs a one-digit b, got {b}")
    return _column_trace(a, b, "*")


class _Arithmetic(TaskGenerator):
    op = "+"

    def check(self, k: dict) -> dict:
        k["digits"] = _int_choices("digits", k["digits"], 1, 6)
        cot = k["cot"]
        if isinstance(cot, bool):
            cot = float(cot)
        if not isinstance(cot, (int, float)) or not 0 <= cot <= 1:
            raise ValueError(f"cot={k['cot']!r} must be True/False or the share of examples with working, in [0, 1]")
        k["cot"] = float(cot)
        return k

    @staticmethod
    def _numbers(rng, d: np.ndarray) -> np.ndarray:
        """Uniform numbers with exactly d digits (0..9 for d = 1). d (n,) -> (n,)"""
        return rng.integers(np.where(d == 1, 0, 10 ** (d - 1)), 10 ** d)

    def _draw(self, rng, n, k):
        da = rng.choice(np.array(k["digits"]), size=n)                      # (n,) digits of a
        # addition: both operands have the same length; multiplication: b's length is its own knob
        db = da if self.op == "+" else rng.choice(np.array(k["digits_b"]), size=n)
        a, b = self._numbers(rng, da), self._numbers(rng, db)                 # (n,), (n,)
        cot = rng.random(n) < k["cot"]
        out = []
        for x, y, t, d1, d2 in zip(a.tolist(), b.tolist(), cot.tolist(), da.tolist(), db.tolist()):
            key = f"{x}{self.op}{y}"
            ans = str(x + y if self.op == "+" else x * y)
            meta = {"key": key, "a": x, "b": y, "digits": d1, "digits_b": d2, "cot": t}
            trace = _column_trace(x, y, self.op) if t else ""
            out.append(Example(key + "=" + (TRACE_OPEN if t else ""), ans, self.name, meta, trace))
        return out


class Addition(_Arithmetic):
    """a+b with `digits`-digit operands (an int 1..6 or a list drawn from per example); `cot` = share with working."""

    name, op = "addition", "+"
    description = "a+b=c; with cot the model writes column sums and carries, least-significant column first"
    defaults = {"digits": 2, "cot": False}


class Multiplication(_Arithmetic):
    """a*b with a of `digits` digits and b of `digits_b` (1..3); written working needs digits_b == 1."""

    name, op = "multiplication", "*"
    description = "a*b=c; with cot (b one digit) the model writes each column's product plus carry"
    defaults = {"digits": 2, "digits_b": 1, "cot": False}

    def check(self, k: dict) -> dict:
        k = super().check(k)
        k["digits_b"] = _int_choices("digits_b", k["digits_b"], 1, 3)
        if k["cot"] > 0 and k["digits_b"] != (1,):
            raise ValueError(f"cot={k['cot']} needs digits_b=1: written working is defined for a one-digit "
                             f"multiplier only (got digits_b={k['digits_b']})")
        return k


# ---- in-context pattern tasks: a fresh rule per episode ------------------------------------------------------


def _pairs_prompt(xs: Sequence[str], ys: Sequence[str], query: str, task: str) -> str:
    shots = [Example(x + MAP_SEP, y, task) for x, y in zip(xs, ys)]
    return few_shot_prompt(shots, Example(query + QUERY_MARK, "", task))


class KVMap(TaskGenerator):
    """Random key->value map per episode. Keys: distinct random lowercase strings of `key_len` letters; values:
    the first `n_values` digits (values="digits") or uppercase letters. `shots` pairs are shown, then a query:

    - query="any": the episode has `n_keys` keys; each shot and the query is any of them (drawn with
      replacement, so a key may be shown several times, always with its value). An unshown query key can only be
      guessed: Bayes accuracy 1 - (1 - 1/V)(1 - 1/n_keys)^shots. Repeats make every shot after the first
      occurrence of its key a retrieval exercise, the signal a model learns in-context copying from.
    - query="shown": the shots show `shots` distinct keys and the query is one of them (pure retrieval).
    - query="rule": the value is a function of the key's FIRST letter (a fresh letter->value map over n_keys
      letters); the query is a new key whose first letter some shot shares, so its value follows from the shots.
    """

    name = "kv_map"
    description = "few-shot key>value pairs from a fresh random map, then a query key"
    defaults = {"shots": 4, "n_keys": 8, "n_values": 10, "values": "digits", "key_len": (2, 3), "query": "any"}

    def check(self, k: dict) -> dict:
        k["shots"] = _int_choices("shots", k["shots"], 0, 32)
        k["n_keys"] = _int_choices("n_keys", k["n_keys"], 1, 26)[0]
        _choice("values", k["values"], ("digits", "letters"))
        k["n_values"] = _int_choices("n_values", k["n_values"], 2, 10 if k["values"] == "digits" else 26)[0]
        k["key_len"] = _int_choices("key_len", k["key_len"], 1, 5)
        _choice("query", k["query"], ("any", "shown", "rule"))
        if k["query"] == "rule" and (min(k["key_len"]) < 2 or max(k["shots"]) > 25):
            raise ValueError(f"query='rule' needs keys of at least 2 letters (the first is the class) and at most "
                             f"25 shots, got key_len={k['key_len']}, shots={k['shots']}")
        if k["query"] != "rule" and 26 ** max(k["key_len"]) < k["n_keys"]:
            raise ValueError(f"key_len={k['key_len']} cannot make n_keys={k['n_keys']} distinct keys")
        if k["query"] in ("shown", "rule") and min(k["shots"]) < 1:
            raise ValueError(f"query={k['query']!r} needs shots >= 1 (got shots={k['shots']}); use query='any'")
        if k["query"] == "shown" and max(k["shots"]) > k["n_keys"]:
            raise ValueError(f"query='shown' shows shots={k['shots']} distinct keys, more than n_keys={k['n_keys']}")
        return k

    def chance(self, **knobs) -> float:
        return 1.0 / self.knobs(**knobs)["n_values"]

    def _keys(self, rng, m, lens, first=None) -> list[str]:
        """m distinct random keys (their first letters given by `first` if not None)."""
        out: list[str] = []
        while len(out) < m:
            w = _word(rng, lens)
            if first is not None:
                w = first[len(out)] + w[1:]
            if w not in out:
                out.append(w)
        return out

    def _draw(self, rng, n, k):
        alphabet = string.digits if k["values"] == "digits" else string.ascii_uppercase
        V, out = k["n_values"], []
        for _ in range(n):
            s = int(rng.choice(k["shots"]))
            if k["query"] == "rule":
                classes = LETTERS[rng.permutation(26)[:k["n_keys"]]]            # the episode's first letters
                value_of = dict(zip(classes, rng.integers(0, V, size=k["n_keys"]).tolist()))
                firsts = classes[rng.integers(0, k["n_keys"], size=s + 1)]
                firsts[-1] = firsts[rng.integers(0, s)]                          # the query shares a shot's class
                keys = self._keys(rng, s + 1, k["key_len"], firsts)              # distinct: the query is new
                vals = [alphabet[value_of[w[0]]] for w in keys]
                xs, ys, q, ans, bayes = keys[:s], vals[:s], keys[s], vals[s], 1.0
            else:
                keys = self._keys(rng, k["n_keys"], k["key_len"])
                vals = [alphabet[v] for v in rng.integers(0, V, size=k["n_keys"]).tolist()]
                if k["query"] == "shown":
                    shown = rng.permutation(k["n_keys"])[:s].tolist()
                    qi = shown[rng.integers(0, s)]
                else:
                    shown = rng.integers(0, k["n_keys"], size=s).tolist()
                    qi = int(rng.integers(0, k["n_keys"]))
                xs, ys, q, ans = [keys[i] for i in shown], [vals[i] for i in shown], keys[qi], vals[qi]
                bayes = 1.0 if qi in shown else 1.0 / V
            meta = {"shots": s, "query": q, "pairs": list(zip(xs, ys)), "bayes": bayes, "chance": 1.0 / V}
            out.append(Example(_pairs_prompt(xs, ys, q, self.name), ans, self.name, meta))
        return out


class Linear(TaskGenerator):
    """y = (a*x + b) mod 10 with fresh a, b (uniform 0..9) per episode; x are digits, the shots' x distinct.
    query="new": x not among the shots (the rule must be inferred; shots <= 9); "any": any digit; "shown": a
    shot's x. meta["bayes"]: accuracy of the best guess given the shots (uniform prior over the 100 (a, b))."""

    name = "linear"
    description = "few-shot x>y pairs of y=(a*x+b) mod 10 with fresh a, b, then a query x"
    defaults = {"shots": 4, "query": "new"}
    _A, _B = np.divmod(np.arange(100), 10)  # the 100 hypotheses (a, b)

    def check(self, k: dict) -> dict:
        _choice("query", k["query"], ("new", "any", "shown"))
        k["shots"] = _int_choices("shots", k["shots"], 1 if k["query"] == "shown" else 0,
                                  9 if k["query"] == "new" else 10)
        return k

    def chance(self, **knobs) -> float:
        self.knobs(**knobs)
        return 0.1

    def _draw(self, rng, n, k):
        out = []
        for _ in range(n):
            s = int(rng.choice(k["shots"]))
            a, b = rng.integers(0, 10, size=2).tolist()
            order = rng.permutation(10)
            xs = order[:s]                                                      # (s,) distinct shot inputs
            q = int({"new": lambda: order[s], "any": lambda: rng.integers(0, 10),
                     "shown": lambda: xs[rng.integers(0, s)]}[k["query"]]())
            ys = (a * xs + b) % 10
            # Bayes: the hypotheses that fit every shot vote for their prediction at q.
            fits = np.all((self._A[:, None] * xs[None, :] + self._B[:, None]) % 10 == ys[None, :], axis=1)  # (100,)
            votes = np.bincount((self._A[fits] * q + self._B[fits]) % 10, minlength=10)
            meta = {"shots": s, "a": a, "b": b, "x": q, "bayes": float(votes.max() / fits.sum()), "chance": 0.1}
            out.append(Example(_pairs_prompt([str(x) for x in xs.tolist()], [str(y) for y in ys.tolist()], str(q),
                                             self.name), str((a * q + b) % 10), self.name, meta))
        return out


TASKS: dict[str, TaskGenerator] = {g.name: g for g in (Addition(), Multiplication(), KVMap(), Linear(),
                                                        Instructions(), PatternConflict())}


def make_examples(name: str, n: int, seed: int, exclude: Iterable[str | Example] = (), **knobs) -> list[Example]:
    """`n` examples of task `name` (see TASKS) drawn with `seed`, skipping problems whose key is in `exclude`."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid names: {', '.join(TASKS)}")
    return TASKS[name].sample(n, seed, exclude=exclude, **knobs)
