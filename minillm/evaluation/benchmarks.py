"""Benchmarks built from our own generators, and the harness that runs them. Survey §7.1.2 (knowledge: closed-
book QA), §7.1.3 (reasoning: arithmetic, with chain-of-thought §6.3), §7.1.1 (language generation: LAMBADA /
HellaSwag-style cloze), §7.3 (benchmarks and evaluation approaches), §6.1 (few-shot prompting).

Three suites, each matching a training corpus so a model trained on it can do the task:

- "facts_mc" (mc): "Ada Ashdown lives in" + one of 4 cities, about a `FactWorld`; a model trained on the "facts"
  corpus with the same `world_seed` can know the answer, any other model can only guess (chance 1/n_choices).
- "arithmetic" (generate): "37+48=" -> greedy continuation, exact match on the answer (with `cot`, the prompt
  ends in "[" and the answer follows the model's own working; parse="number" reads the answer GSM8K-style).
  Problems come from the EVAL seed stream of `minillm.data.tasks.pretraining`, so `pretraining_mixture` text
  with the same seed never holds the same draws.
- "story_cloze" (mc): a "story" corpus prefix ending at "... gave" or "... smiled at"; the right continuation is
  fixed by the story so far (the object the hero found, the friend they met), the wrong ones are other objects
  or names. A model must read the context: no continuation is more likely on its own.

Multiple choice is scored by likelihood (`minillm.evaluation.harness.score_choices`): `accuracy` ranks the choices by their
summed log-prob (lm-eval's acc), `acc_norm` by the normalised one. Generation tasks are scored by exact match.
Every item's draws come from `numpy.random.default_rng` seeded by (seed, task), so a seed gives the same items.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

import numpy as np

from minillm.evaluation.answers import parse_number
from minillm.evaluation.harness import NORMALIZE, _choice_scores, few_shot_prompt

KINDS = ("mc", "generate")
SHOT_STREAM = 7919  # demonstrations come from their own seed stream: never the items being scored


@dataclass(frozen=True)
class Item:
    """One benchmark question. For mc, `answer` is the right entry of `choices` (each a continuation of
    `prompt`, its leading space included); for generate, the exact answer a completion must give."""

    prompt: str
    answer: str
    choices: tuple[str, ...] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.prompt, str) or not self.prompt or not isinstance(self.answer, str):
            raise ValueError(f"Item needs a non-empty str prompt and a str answer, "
                             f"got {self.prompt!r}, {self.answer!r}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
            if list(self.choices).count(self.answer) != 1:
                raise ValueError(f"the answer {self.answer!r} must be among the choices exactly once: {self.choices}")

    @property
    def label(self) -> int | None:
        """Index of the right choice (None for generation items)."""
        return None if self.choices is None else self.choices.index(self.answer)

    @property
    def text(self) -> str:
        """The item as it would appear in a leaked copy of the test set: question and answer."""
        return self.prompt + self.meta.get("trace", "") + self.answer


def _rng(seed: int, name: str) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative int")
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r} must be a positive int (how many items to draw)")
    return int(n)


def _mc_item(rng, prompt: str, answer: str, pool, n_choices: int, meta: dict, weights: dict | None = None,
             max_len_diff: int = 2) -> Item:
    """The answer plus n_choices - 1 distinct wrong values from `pool`, in a random order. Wrong values are drawn
    (by `weights`, uniform if None) among those whose length is within `max_len_diff` characters of the answer's
    (the closest ones if too few are): raw log-prob sums favour short choices, so a right answer that is often
    the shortest would let a model that knows nothing beat chance. HellaSwag filters its distractors for the same
    reason: a benchmark must not be solvable from artifacts of how the wrong answers were made."""
    wrong = sorted(set(pool) - {answer})
    if len(wrong) < n_choices - 1:
        raise ValueError(f"only {len(wrong)} wrong answers exist for {prompt!r}; use n_choices<={len(wrong) + 1}")
    diff = np.array([abs(len(w) - len(answer)) for w in wrong])                      # (W,)
    near = np.flatnonzero(diff <= max(max_len_diff, np.sort(diff)[n_choices - 2]))   # at least n_choices - 1
    wrong = [wrong[i] for i in near.tolist()]
    p = None if weights is None else np.array([weights.get(w, 0.0) for w in wrong], dtype=float)
    pick = rng.choice(len(wrong), size=n_choices - 1, replace=False, p=None if p is None else p / p.sum())
    choices = [wrong[i] for i in pick.tolist()]
    choices.insert(int(rng.integers(0, n_choices)), answer)
    return Item(prompt, answer, tuple(choices), meta)


class EvalTask:
    """A benchmark: `name`, `kind` ("mc" | "generate"), knobs given to the constructor, `examples(n, seed)`."""

    name = ""
    kind = "mc"
    description = ""

    def examples(self, n: int, seed: int = 0) -> list[Item]:  # pragma: no cover - every task overrides
        raise NotImplementedError

    def demo(self, item: Item) -> tuple[str, str]:
        """(question, answer) of a few-shot demonstration: the answer as the model should write it."""
        return item.prompt, item.answer

    def extract(self, completion: str, item: Item) -> str | None:
        """The answer in a generated completion (generate tasks)."""
        return completion.split("\n", 1)[0].strip()

    def max_new_tokens(self, items: list[Item]) -> int:
        return max(len(self.demo(it)[1]) for it in items) + 2

    @property
    def chance(self) -> float | None:
        n = getattr(self, "n_choices", None)
        return 1.0 / n if self.kind == "mc" and n else None

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({knobs})"


class FactsMC(EvalTask):
    """Closed-book QA over a FactWorld as multiple choice. attribute: city | birth_year | job | colour | pet |
    friend; the prompt is the facts corpus's own sentence ("Ada Ashdown lives in") and the choices its values."""

    name, kind = "facts_mc", "mc"
    description = "closed-book knowledge: which value completes a fact about a seeded world"
    PHRASES = {"city": " lives in", "birth_year": " was born in", "job": " works as", "colour": " likes the colour",
               "pet": " has a pet", "friend": " is a friend of"}

    def __init__(self, world_seed: int = 0, n_people: int = 100, attribute: str = "city", n_choices: int = 4):
        from minillm.data.synthetic.grammar import check_int
        from minillm.data.synthetic.lexicon import ENGLISH, LAST_NAMES

        if attribute not in self.PHRASES:
            raise ValueError(f"attribute={attribute!r} is not valid; choose one of {', '.join(self.PHRASES)}")
        if isinstance(n_choices, bool) or not isinstance(n_choices, int) or n_choices < 2:
            raise ValueError(f"n_choices={n_choices!r} must be an int >= 2")
        check_int("world_seed", world_seed, 0, 2**63 - 1)  # FactWorld's own checks, without building it yet
        check_int("n_people", n_people, 2, len(ENGLISH.names) * len(LAST_NAMES))
        self.world_seed, self.n_people, self.attribute, self.n_choices = world_seed, n_people, attribute, n_choices
        self._world = None

    @property
    def world(self):
        from minillm.data.synthetic import FactWorld

        if self._world is None:  # built on first use: importing the registry does no work
            self._world = FactWorld(self.world_seed, self.n_people)
        return self._world

    def _pool(self, person) -> list[str]:
        from minillm.data.synthetic.lexicon import CITIES, COLOURS, JOBS, PETS

        if self.attribute == "birth_year":
            return [str(y) for y in range(1940, 2006)]
        if self.attribute == "friend":
            return [x for x in self.world.names if x != person.name]
        return list({"city": CITIES, "job": JOBS, "colour": COLOURS, "pet": PETS}[self.attribute])

    def examples(self, n: int, seed: int = 0) -> list[Item]:
        n, rng = _check_n(n), _rng(seed, self.name)
        # distinct people while there are enough (rank = popularity rank in the facts corpus: 0 is the most talked of)
        who = rng.permutation(self.n_people)[:n] if n <= self.n_people else rng.integers(0, self.n_people, n)
        # FactWorld draws cities, jobs, colours and pets from a Zipf law: distractors follow the same frequencies
        # (smoothed, so unused values still appear), else "pick the common city" would beat chance.
        freq = {} if self.attribute in ("birth_year", "friend") else {
            " " + v: 0.5 for v in self._pool(self.world.people[0])}
        for p in self.world.people:
            if freq:
                freq[" " + str(getattr(p, self.attribute))] += 1.0
        out = []
        for i in who.tolist():
            p = self.world.people[i]
            value = str(getattr(p, self.attribute))
            out.append(_mc_item(rng, p.name + self.PHRASES[self.attribute], " " + value,
                                [" " + v for v in self._pool(p)], self.n_choices,
                                {"person": p.name, "rank": i, "attribute": self.attribute}, freq or None))
        return out


class Arithmetic(EvalTask):
    """Addition (or multiplication) problems of `digits` digits answered by generation; cot=True asks for the
    written working first (the prompt ends in "[", the answer follows "]").

    The answer is the first line of the completion (with cot, what follows its last "]"). parse="line" (the
    default, what every shipped result used) compares it verbatim, spaces stripped: "85" is right, "85.",
    "085" and "85 apples" are wrong. parse="number" reads it with `minillm.evaluation.answers.parse_number`
    (GSM8K-style: the last number, canonical), so all three are right and "8 5" reads as 5."""

    name, kind = "arithmetic", "generate"
    description = "reasoning: a+b by greedy generation, exact match, optionally with chain-of-thought"
    PARSES = ("line", "number")

    def __init__(self, digits=2, cot: bool = False, op: str = "addition", parse: str = "line"):
        from minillm.data.tasks.suites import TASKS as GENERATORS

        if op not in ("addition", "multiplication"):
            raise ValueError(f"op={op!r} is not valid; choose 'addition' or 'multiplication'")
        if not isinstance(cot, bool):
            raise ValueError(f"cot={cot!r} must be True or False")
        if parse not in self.PARSES:
            raise ValueError(f"parse={parse!r} is not valid; choose 'line' (verbatim) or 'number' (parse_number)")
        GENERATORS[op].knobs(digits=digits, cot=cot)  # the generator's own checks and messages
        self.digits, self.cot, self.op, self.parse = digits, cot, op, parse

    def examples(self, n: int, seed: int = 0) -> list[Item]:
        from minillm.data.tasks.pretraining import eval_examples

        exs = eval_examples(self.op, _check_n(n), seed, digits=self.digits, cot=self.cot)
        return [Item(e.prompt, e.answer, None, {**e.meta, "trace": e.trace}) for e in exs]

    def demo(self, item: Item) -> tuple[str, str]:
        return item.prompt, item.meta.get("trace", "") + item.answer  # a demonstration shows its working

    def extract(self, completion: str, item: Item) -> str | None:
        from minillm.data.tasks.suites import extract_answer

        ans = extract_answer(completion, require_marker=bool(item.meta.get("trace")))
        if ans is None:
            return None
        return ans.strip() if self.parse == "line" else parse_number(ans)

    def max_new_tokens(self, items: list[Item]) -> int:
        return int(1.5 * max(len(self.demo(it)[1]) + 1 for it in items)) + 4  # room for a longer working


class StoryCloze(EvalTask):
    """Cloze over "story" corpus documents: the prompt stops before the object given ("Mia gave" -> " the red
    key") or the person smiled at ("He smiled at" -> " Tom"), both fixed by earlier sentences. Distractors are
    other objects / names seen in such stories. max_prompt_chars keeps only prompts a short-context model sees
    whole; meta["cue_distance"] is how far back the deciding sentence starts."""

    name, kind = "story_cloze", "mc"
    description = "reading: pick the continuation the story so far determines (LAMBADA / HellaSwag-like)"
    PATTERNS = {"give": (re.compile(r" gave (the [^.]+?) to "), " found "),
                "smile": (re.compile(r" smiled at ([A-Z][a-z]+)"), " met ")}

    def __init__(self, difficulty="easy", max_sentences: int = 8, n_choices: int = 4,
                 max_prompt_chars: int | None = None, kinds: tuple[str, ...] = ("give", "smile")):
        from minillm.data.synthetic import CORPORA

        CORPORA["story"].resolve({"difficulty": difficulty, "max_sentences": max_sentences})  # its own checks
        if isinstance(n_choices, bool) or not isinstance(n_choices, int) or n_choices < 2:
            raise ValueError(f"n_choices={n_choices!r} must be an int >= 2")
        if max_prompt_chars is not None and (not isinstance(max_prompt_chars, int) or max_prompt_chars < 10):
            raise ValueError(f"max_prompt_chars={max_prompt_chars!r} must be None or an int >= 10")
        kinds = tuple(kinds)
        if not kinds or set(kinds) - set(self.PATTERNS):
            raise ValueError(f"kinds={kinds!r} must be a non-empty subset of {tuple(self.PATTERNS)}")
        self.difficulty, self.max_sentences, self.n_choices = difficulty, max_sentences, n_choices
        self.max_prompt_chars, self.kinds = max_prompt_chars, kinds
        self._pools: dict | None = None

    def _stories(self, seed: int):
        from minillm.data.synthetic import sample_stream

        return (d for d, _ in sample_stream("story", seed, difficulty=self.difficulty,
                                            max_sentences=self.max_sentences))

    def pools(self) -> dict[str, list[str]]:
        """The distractors: every object given and person smiled at in 3000 reference stories (built once)."""
        if self._pools is None:
            found: dict[str, set] = {k: set() for k in self.PATTERNS}
            for _, doc in zip(range(3000), self._stories(seed=2**31 - 1)):
                for k, (pat, _) in self.PATTERNS.items():
                    found[k].update(" " + m for m in pat.findall(doc))
            self._pools = {k: sorted(v) for k, v in found.items()}
        return self._pools

    def examples(self, n: int, seed: int = 0) -> list[Item]:
        n, rng = _check_n(n), _rng(seed, self.name)
        pools, out, seen = self.pools(), [], 0
        for doc in self._stories(seed):
            seen += 1
            if seen > 200 * n + 2000:
                raise ValueError(f"found only {len(out)} cloze points in {seen - 1} stories; allow longer prompts "
                                 f"(max_prompt_chars={self.max_prompt_chars}) or more sentences")
            points = [(k, m) for k in self.kinds for m in self.PATTERNS[k][0].finditer(doc)
                      if self.max_prompt_chars is None or m.start(1) - 1 <= self.max_prompt_chars]
            if not points:
                continue
            kind, m = points[int(rng.integers(0, len(points)))]
            prompt = doc[:m.start(1) - 1]  # "... Mia quickly gave"; the choices carry the space
            cue = prompt.rfind(self.PATTERNS[kind][1])
            meta = {"kind": kind, "story": doc, "cue_distance": len(prompt) - cue if cue >= 0 else None}
            out.append(_mc_item(rng, prompt, " " + m.group(1), pools[kind], self.n_choices, meta))
            if len(out) == n:
                return out
        raise AssertionError("unreachable: sample_stream is endless")  # pragma: no cover


TASKS: dict[str, EvalTask] = {}


def register_task(task: EvalTask, name: str | None = None, overwrite: bool = False) -> EvalTask:
    """Add a task to TASKS under `name` (default task.name), e.g. a variant with other knobs:
    ``register_task(FactsMC(world_seed=3, attribute="job"), "facts_job")``."""
    if not isinstance(task, EvalTask):
        raise ValueError(f"task must be an EvalTask, got {type(task).__name__}")
    if task.kind not in KINDS:
        raise ValueError(f"task.kind={task.kind!r} must be one of {KINDS}")
    name = name or task.name
    if not name:
        raise ValueError("the task needs a name (set task.name or pass name=)")
    if name in TASKS and not overwrite:
        raise ValueError(f"a task named {name!r} is already registered; pass overwrite=True to replace it")
    TASKS[name] = task
    return task


for _cls in (FactsMC, Arithmetic, StoryCloze):  # cheap: knob checks only, worlds and pools are built lazily
    register_task(_cls())


def get_task(task: str | EvalTask) -> EvalTask:
    if isinstance(task, EvalTask):
        return task
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; registered: {', '.join(TASKS)} (or pass an EvalTask)")
    return TASKS[task]


def _prompts(task: EvalTask, items: list[Item], shots: int, seed: int) -> list[str]:
    """Each item's prompt after `shots` demonstrations drawn from the task's shot stream (never the item itself)."""
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 0:
        raise ValueError(f"shots={shots!r} must be a non-negative int")
    if shots == 0:
        return [it.prompt for it in items]
    pool = task.examples(shots + 8, seed + SHOT_STREAM)
    out = []
    for i, it in enumerate(items):
        ok = [p for p in pool if p.prompt != it.prompt]
        pick = np.random.default_rng([seed, SHOT_STREAM, i]).permutation(len(ok))[:shots]
        out.append(few_shot_prompt([task.demo(ok[j]) for j in pick.tolist()], it.prompt, sep="\n"))
    return out


def score_items(model, tokenizer, task: str | EvalTask, items: list[Item], shots: int = 0, seed: int = 0,
                normalize: str = "chars", max_new_tokens: int | None = None) -> dict:
    """Score given items (the harness's core; `run_benchmark` draws them). Returns accuracy, acc_norm (mc),
    correct (N,) bool and, per item, pred (chosen choice index for mc, extracted answer for generate)."""
    task = get_task(task)
    if not items:
        raise ValueError("no items to score")
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize={normalize!r} is not valid; choose one of {', '.join(map(repr, NORMALIZE))}")
    prompts = _prompts(task, items, shots, seed)
    if task.kind == "mc":
        raw, norm = [], []
        for p, it in zip(prompts, items):  # one padded forward per item, all its choices together
            lp, n_tok = _choice_scores(model, tokenizer, p, list(it.choices))  # (C,), (C,)
            length = {"none": 1, "tokens": n_tok, "chars": np.array([len(c) for c in it.choices])}[normalize]
            raw.append(int(lp.argmax()))
            norm.append(int((lp / length).argmax()))
        labels = np.array([it.label for it in items])
        correct = np.array(raw) == labels
        return {"accuracy": float(correct.mean()), "acc_norm": float((np.array(norm) == labels).mean()),
                "correct": correct, "pred": raw}
    from minillm.evaluation.scoring import greedy_complete

    budget = max_new_tokens or task.max_new_tokens(items)
    comps = greedy_complete(model, tokenizer, prompts, budget, stop="\n")
    preds = [task.extract(c, it) for c, it in zip(comps, items)]
    correct = np.array([p is not None and p == it.answer for p, it in zip(preds, items)])
    return {"accuracy": float(correct.mean()), "correct": correct, "pred": preds, "completion": comps}


def run_benchmark(model, tokenizer, task: str | EvalTask, n: int = 100, shots: int = 0, seed: int = 0,
                  normalize: str = "chars", max_new_tokens: int | None = None, return_items: bool = False) -> dict:
    """Draw `n` items of `task` with `seed` and score them: {task, kind, n, shots, accuracy, acc_norm (mc),
    chance, normalize} and with return_items a per-item list {prompt, answer, pred, correct}."""
    t = get_task(task)
    items = t.examples(n, seed)
    sc = score_items(model, tokenizer, t, items, shots, seed, normalize, max_new_tokens)
    row = {"task": task if isinstance(task, str) else t.name, "kind": t.kind, "n": len(items), "shots": shots,
           "accuracy": sc["accuracy"]}
    if t.kind == "mc":
        row.update(acc_norm=sc["acc_norm"], normalize=normalize)
    row["chance"] = t.chance
    if return_items:
        row["items"] = [{"prompt": it.prompt, "answer": it.answer,
                         "pred": it.choices[p] if t.kind == "mc" else p, "correct": bool(c)}
                        for it, p, c in zip(items, sc["pred"], sc["correct"])]
    return row


def evaluate_suite(model, tokenizer, tasks=("facts_mc", "arithmetic", "story_cloze"), n: int = 100,
                   shots: int | tuple[int, ...] = 0, seed: int = 0, normalize: str = "chars") -> list[dict]:
    """One `run_benchmark` row per (task, shots): the table of a model's results across the suite."""
    shot_list = (shots,) if isinstance(shots, int) else tuple(shots)
    return [run_benchmark(model, tokenizer, t, n=n, shots=k, seed=seed, normalize=normalize)
            for t in tasks for k in shot_list]
