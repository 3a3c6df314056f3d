"""The chapter's emergence experiments: one model-size sweep, trained once per size, evaluated many ways.
Survey §2.1 (in-context learning, instruction following and step-by-step reasoning said to appear with scale)
and Schaeffer et al. 2023 (the jump may be made by the metric, not by the model).

    run = EmergenceRun.for_size("ci")
    zoo = ModelZoo(run)                       # trains lazily, caches every model in memory
    rows = size_sweep(zoo)                    # (size, task) rows under every metric + held-out story loss
    icl_by_shots(zoo); cot_study(zoo); instruction_study(zoo); inverse_scaling_study(zoo)
    appearance_table(rows)                    # the smallest size at which each ability appears, per metric

Every model of the sweep trains on the SAME mixture (`base_rates`: stories + addition with and without
working + kv_map and linear ICL episodes + instructions in the train phrasings), the same number of steps and
the same data order; only n_layer / n_embd change. Ablation arms ("no_cot": no working in training,
"no_instructions": no instruction data) retrain a few sizes with one ingredient removed (its characters go to
stories). Evaluation problems come from the EVAL seed stream and their keys are excluded from training text.

Rows are plain JSON-ready dicts. Figures are in `plots.py`; the shipped laptop records in
bench/results/emergence_studies.jsonl (made by bench/emergence_studies.py).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from minillm.evaluation import metrics as M
from minillm.data.tasks.pretraining import EVAL_STREAM, eval_examples, pretraining_mixture, stream_seed
from minillm.data.tasks.examples import TRACE_OPEN
from minillm.data.tasks.pretraining import emergence_tokenizer
from minillm.evaluation.loss import heldout_loss
from minillm.evaluation.scoring import icl_accuracy_by_shots, inverse_scaling_rates, score_examples, score_generated
from book.runs import Run, size_label, train

__all__ = ["RECIPE", "EmergenceRun", "ModelZoo", "base_rates", "SWEEP_TASKS", "THRESHOLDS", "size_sweep",
           "icl_by_shots", "cot_study", "instruction_study", "inverse_scaling_study", "predictability",
           "loss_correlations", "shipped_loss_correlations", "appearance_table", "size_label"]

# What the sweep scores: name -> (task, knobs). A 2-digit sum has 2-3 answer characters (plus the newline),
# so exact match needs every one right, the multi-token case where Schaeffer et al. expect a "jump".
SWEEP_TASKS: dict[str, tuple[str, dict]] = {
    "addition": ("addition", {"digits": 2}),
    "kv_map": ("kv_map", {"shots": 8}),
    "linear": ("linear", {"shots": 6}),
    "instructions": ("instructions", {"templates": "train"}),
}

# When an ability "appears" (used by appearance_table): the first size at which the metric passes the bar.
# Absolute bars for the rates (0.5: right more often than not) and Brier (0.5 is half the distance from
# uniform-guess ~0.99 to perfect 0); log-likelihood has no natural absolute bar, so it is relative: within
# 0.25 nats per token of the best size's value (where the curve has flattened out).
THRESHOLDS: dict[str, tuple[str, float]] = {
    "exact_match": (">=", 0.5),
    "token_accuracy": (">=", 0.5),
    "brier": ("<=", 0.5),
    "logprob_mean": ("near_best", 0.25),
}


def base_rates(cot: bool = True, instructions: bool = True) -> tuple[dict, dict]:
    """(rates, knobs) of the sweep's mixture; `cot` / `instructions` False give the ablation arms."""
    # Tasks take 75% of the characters: at these budgets (about 2M training characters) a story-heavy mixture
    # leaves every task at chance (the first shipped run, 39% tasks, learned none).
    rates = {"addition": 0.30, "kv_map": 0.20, "linear": 0.10, "instructions": 0.15 if instructions else 0.0}
    knobs = {"addition": {"digits": (1, 2, 3), "cot": 0.5 if cot else 0.0},
             "kv_map": {"shots": (0, 1, 2, 4, 8)}, "linear": {"shots": (2, 3, 4, 5, 6, 7, 8)}}
    if instructions:
        knobs["instructions"] = {"templates": "train"}
    else:
        rates.pop("instructions")
    return rates, knobs


# The sweep's training recipe (book.runs.Run); each size replaces n_layer, n_embd and n_head (see model_run).
# RoPE: at 3000 steps a 2-layer model adds 2 digits (EM 0.16); learned positions: 0.00.
RECIPE = Run(steps=1000, batch_size=16, block_size=128, lr=5e-3, model_fields={"position": "rope"})


@dataclass(frozen=True)
class EmergenceRun:
    """The budget of every study: model sizes as (n_layer, n_embd), one training recipe (`run`, a book.runs.Run
    whose shape each size replaces), evaluation sizes. `ablation_sizes` are indices into `sizes` that the no_cot /
    no_instructions arms retrain; `seed` draws the data (and offsets the models' init seed, 1337 + seed)."""

    sizes: tuple[tuple[int, int], ...] = ((1, 16), (1, 32), (2, 48), (2, 64), (3, 96), (3, 128))
    run: Run = RECIPE
    n_chars: int = 600_000
    n_eval: int = 200
    ablation_sizes: tuple[int, ...] = (2, 4)
    digits: tuple[int, ...] = (2, 3, 4)
    shots: tuple[int, ...] = (0, 1, 2, 4, 8)
    seed: int = 0

    @classmethod
    def for_size(cls, size: str | None = None) -> "EmergenceRun":
        from minillm.presets import by_size

        return by_size(
            ci=cls(sizes=((1, 16), (2, 32), (2, 64)), run=RECIPE.replace(steps=150, batch_size=8), n_chars=60_000,
                   n_eval=40, ablation_sizes=(2,), digits=(2, 3), shots=(0, 2, 8)),
            laptop=cls(run=RECIPE.replace(steps=3000, batch_size=32, lr=3e-3), n_chars=4_000_000),
            gpu=cls(sizes=((1, 16), (1, 32), (2, 64), (3, 128), (4, 192), (6, 256), (8, 384)),
                    run=RECIPE.replace(steps=4000, batch_size=32), n_chars=4_000_000, n_eval=500,
                    ablation_sizes=(2, 4)),
            size=size)

    @classmethod
    def live(cls, size: str | None = None) -> "EmergenceRun":
        """The smaller budget a chapter trains while the reader waits: ci as `for_size("ci")`; laptop 3 sizes at
        1500 steps (~5 min on one CPU core, beside the shipped 6-size, 3000-step record); gpu as `for_size("gpu")`."""
        from minillm.presets import by_size, size_profile

        size = size_profile() if size is None else size
        if by_size(ci=False, laptop=True, gpu=False, size=size):
            return cls(sizes=((1, 32), (2, 64), (3, 96)), run=RECIPE.replace(steps=1500, lr=3e-3),
                       n_chars=1_000_000, n_eval=100, ablation_sizes=(1,))
        return cls.for_size(size)

    def __post_init__(self):
        if not isinstance(self.run, Run):
            raise TypeError(f"run must be a book.runs.Run, got {type(self.run).__name__}")
        if not self.sizes or any(len(s) != 2 or min(s) < 1 or s[1] % 16 for s in self.sizes):
            raise ValueError(f"sizes={self.sizes!r} must be (n_layer, n_embd) pairs with n_embd a multiple of 16")
        if any(not 0 <= i < len(self.sizes) for i in self.ablation_sizes):
            raise ValueError(f"ablation_sizes={self.ablation_sizes} must index into sizes (0..{len(self.sizes) - 1})")
        if self.n_eval < 2 or self.n_chars < 10_000:
            raise ValueError("n_eval >= 2 and n_chars >= 10_000 are needed for a meaningful study")

    def model_run(self, index: int) -> Run:
        """The Run of size `index`: run's recipe at (n_layer, n_embd) = sizes[index], a head per 32 channels."""
        n_layer, n_embd = self.sizes[index]
        return self.run.replace(n_layer=n_layer, n_embd=n_embd, n_head=max(1, n_embd // 32), seed=1337 + self.seed)


@dataclass
class ModelZoo:
    """Trains each (arm, size) once and keeps it in memory: every study reads the same models.

    With `cache_dir`, trained models are also saved there (atomically) and loaded by any other ModelZoo of the
    same run, so several processes can share the training of a sweep (bench/emergence_studies.py --jobs): a
    process about to train a model claims it with a lock file; the others wait for its weights instead of
    training it twice."""

    run: EmergenceRun
    models: dict = field(default_factory=dict)  # (arm, index) -> (model, tokenizer, val_loss)
    evals: dict = field(default_factory=dict)
    cache_dir: str | None = None
    wait_s: float = 7200.0  # how long to wait for another process's model before giving up

    ARMS = {"base": {}, "no_cot": {"cot": False}, "no_instructions": {"instructions": False}}

    def eval_set(self, name: str, **knobs) -> list:
        """Evaluation examples (EVAL seed stream), cached so every model sees the same ones."""
        key = (name, tuple(sorted((k, str(v)) for k, v in knobs.items())))
        if key not in self.evals:
            self.evals[key] = eval_examples(name, self.run.n_eval, self.run.seed, **knobs)
        return self.evals[key]

    def _exclude(self) -> list:
        """Every arithmetic problem any study evaluates: kept out of all training text."""
        return [e for d in {*self.run.digits, *(k["digits"] for t, k in SWEEP_TASKS.values() if t == "addition")}
                for e in self.eval_set("addition", digits=d)]

    def get(self, index: int, arm: str = "base"):
        if arm not in self.ARMS:
            raise ValueError(f"arm={arm!r}: choose one of {', '.join(self.ARMS)}")
        if (arm, index) not in self.models:
            self.models[(arm, index)] = self._cached(arm, index) or self._train(arm, index)
        return self.models[(arm, index)]

    def _train(self, arm: str, index: int):
        if ("mix", arm) not in self.evals:  # one text per arm: every size reads the same characters
            rates, knobs = base_rates(**self.ARMS[arm])
            self.evals[("mix", arm)] = pretraining_mixture(rates, self.run.n_chars, self.run.seed,
                                                           exclude=self._exclude(), **knobs).text
        out = tuple(train(self.run.model_run(index), self.evals[("mix", arm)], tokenizer=emergence_tokenizer()))
        if self.cache_dir is not None:
            from book.ch02_emergence import studies_zoo as zoo_cache
            zoo_cache.save(self._cache_path(arm, index), *out)
        return out

    def _cache_path(self, arm: str, index: int):
        from book.ch02_emergence import studies_zoo as zoo_cache
        return zoo_cache.path_for(self.cache_dir, self.run, arm, index)

    def _cached(self, arm: str, index: int):
        """The model from cache_dir (waiting while another process trains it), or None: train it here."""
        if self.cache_dir is None:
            return None
        from book.ch02_emergence import studies_zoo as zoo_cache
        return zoo_cache.load_or_claim(self._cache_path(arm, index), self.wait_s)

    def story_text(self) -> str:
        """Held-out story text: stories only, drawn with a seed no training mixture uses."""
        if "story" not in self.evals:
            self.evals["story"] = pretraining_mixture({}, 30_000, stream_seed(self.run.seed, "story", EVAL_STREAM)
                                                      % 2**31).text
        return self.evals["story"]

    def size_info(self, index: int) -> dict:
        n_layer, n_embd = self.run.sizes[index]
        model = self.get(index)[0]
        return {"size": size_label(n_layer, n_embd), "n_layer": n_layer, "n_embd": n_embd,
                "params": int(model.num_params(non_embedding=True))}


def size_sweep(zoo: ModelZoo, tasks: dict[str, tuple[str, dict]] = SWEEP_TASKS) -> list[dict]:
    """Per size and task: exact match, token accuracy, answer log-likelihood and Brier score of the SAME
    teacher-forced outputs (each with its standard error), plus the model's held-out loss on story text."""
    rows = []
    for i in range(len(zoo.run.sizes)):
        model, tok, val = zoo.get(i)
        info = {**zoo.size_info(i), "val_loss": float(val),
                "heldout_loss": heldout_loss(model, zoo.story_text(), tokenizer=tok)}
        for name, (task, knobs) in tasks.items():
            # Half the training additions open with "[" (working): ask for the direct answer, not the working.
            forbid = TRACE_OPEN if task in ("addition", "multiplication") and not knobs.get("cot") else ""
            sc = score_examples(model, tok, zoo.eval_set(task, **knobs), forbid_first=forbid)
            rows.append({**info, "task": name, "n": zoo.run.n_eval, **M.summarize(sc)})
    return rows


def icl_by_shots(zoo: ModelZoo, tasks: Sequence[str] = ("kv_map", "linear")) -> list[dict]:
    """Accuracy vs number of in-context examples, per size: kv_map (retrieval) and linear (rule inference)."""
    rows = []
    for i in range(len(zoo.run.sizes)):
        model, tok, _ = zoo.get(i)
        for task in tasks:
            shots = [s for s in zoo.run.shots if task != "linear" or s <= 9]
            for r in icl_accuracy_by_shots(model, tok, task, shots, zoo.run.n_eval,
                                           stream_seed(zoo.run.seed, task, EVAL_STREAM, 7)):
                rows.append({**zoo.size_info(i), **r})
    return rows


def cot_study(zoo: ModelZoo) -> list[dict]:
    """Greedy answers to addition, per size and digit count, under three prompts: "cot" (the prompt ends in "[":
    the model writes its working, then the answer), "direct" (the plain prompt with "[" forbidden as the first
    character: an answer without working) and "free" (the plain prompt; the model chooses; the answer is what
    follows its "]" if it wrote working). Training has 1-3 digits, so 4 digits is out of distribution. The no_cot
    arm (no working in training) is evaluated the same way at `ablation_sizes`."""
    rows = []
    arms = [("base", i) for i in range(len(zoo.run.sizes))] + [("no_cot", i) for i in zoo.run.ablation_sizes]
    for arm, i in arms:
        model, tok, _ = zoo.get(i, arm)
        for d in zoo.run.digits:
            for prompt, cot in (("cot", True), ("direct", False), ("free", False)):
                ex = zoo.eval_set("addition", digits=d, cot=cot)
                if prompt == "free":  # the plain prompt "37+48=": the model may write working first, or not
                    em = score_generated(model, tok, ex, max_new_tokens=12 * d + 8)["exact_match"]
                else:  # cot: the prompt ends in "[", so it writes working; direct: "[" is forbidden as first char
                    em = score_generated(model, tok, ex, forbid_first="" if cot else TRACE_OPEN)["exact_match"]
                acc, se = M.mean_se(em)
                rows.append({**zoo.size_info(i), "arm": arm, "trained_with_traces": arm == "base", "digits": d,
                             "prompt": prompt, "exact_match": acc, "exact_match_se": se, "n": len(ex),
                             "in_distribution": d <= 3})
    return rows


def instruction_study(zoo: ModelZoo) -> list[dict]:
    """Zero-shot accuracy on HELD-OUT phrasings (never in any training text) and on the train phrasings, for
    the base models and for the no_instructions arm (trained without instruction data) at `ablation_sizes`."""
    rows = []
    arms = [("base", i) for i in range(len(zoo.run.sizes))]
    arms += [("no_instructions", i) for i in zoo.run.ablation_sizes]
    for arm, i in arms:
        model, tok, _ = zoo.get(i, arm)
        for split in ("heldout", "train"):
            sc = score_examples(model, tok, zoo.eval_set("instructions", templates=split))
            rows.append({**zoo.size_info(i), "arm": arm, "trained_with_instructions": arm == "base",
                         "templates": split, "n": zoo.run.n_eval, **M.summarize(sc)})
    return rows


def inverse_scaling_study(zoo: ModelZoo) -> list[dict]:
    """pattern_conflict per size: the rate of the instructed answer (correct) and of the in-context pattern's
    answer (imitation). Inverse scaling would be imitation rising (and correct falling) with size."""
    rows = []
    for i in range(len(zoo.run.sizes)):
        model, tok, _ = zoo.get(i)
        rows.append({**zoo.size_info(i), **inverse_scaling_rates(model, tok, zoo.eval_set("pattern_conflict"))})
    return rows


def predictability(sweep_rows: Sequence[dict], metric: str = "exact_match") -> list[dict]:
    """Per task: held-out loss and task score per size, with the Pearson correlation across sizes (negative:
    lower loss goes with higher score; a rank-perfect relation makes loss a predictor of the ability)."""
    out = []
    for task in dict.fromkeys(r["task"] for r in sweep_rows):
        rs = sorted((r for r in sweep_rows if r["task"] == task), key=lambda r: r["params"])
        x, y = np.array([r["heldout_loss"] for r in rs]), np.array([r[metric] for r in rs])
        corr = float(np.corrcoef(x, y)[0, 1]) if len(rs) > 2 and x.std() > 0 and y.std() > 0 else None
        out.append({"task": task, "metric": metric, "corr": corr, "heldout_loss": x.tolist(), metric: y.tolist(),
                    "sizes": [r["size"] for r in rs]})
    return out


def loss_correlations(sweep_rows: Sequence[dict], metrics: Sequence[str] = ("exact_match", "token_accuracy")) -> dict:
    """`predictability`'s correlations by task and metric, over all sizes and again without the smallest size
    (whose held-out loss sits far from the rest, so one point can carry a correlation of six):
    {"all": {task: {metric: r}}, "without_smallest": {task: {metric: r}}}."""
    smallest = min(r["params"] for r in sweep_rows)
    out: dict[str, dict] = {}
    for name, rows in (("all", list(sweep_rows)),
                       ("without_smallest", [r for r in sweep_rows if r["params"] != smallest])):
        out[name] = {}
        for m in metrics:
            for p in predictability(rows, m):
                out[name].setdefault(p["task"], {})[m] = p["corr"]
    return out


def shipped_loss_correlations() -> dict:
    """`loss_correlations` of the newest shipped size_sweep record (bench/results/emergence_studies.jsonl): the
    values chapter 02 quotes in section 8 (its prose keys read them, see book/prose.py)."""
    from book import results

    return loss_correlations(results.latest("emergence_studies.jsonl")["size_sweep"]["rows"])


def _passes(metric: str, value: float, best: float) -> bool:
    kind, bar = THRESHOLDS[metric]
    if kind == ">=":
        return value >= bar
    if kind == "<=":
        return value <= bar
    return value >= best - bar  # near_best (higher is better: log-likelihood)


def appearance_table(sweep_rows: Sequence[dict], metrics: Sequence[str] = tuple(THRESHOLDS)) -> list[dict]:
    """Per task: the smallest size (and its non-embedding params) at which each metric passes its THRESHOLDS
    bar, or None if no size does. One row per task: {task, <metric>: size label, <metric>_params: int}."""
    if not sweep_rows:
        raise ValueError("no sweep rows: run size_sweep (or read the shipped records) first")
    out = []
    for task in dict.fromkeys(r["task"] for r in sweep_rows):
        rs = sorted((r for r in sweep_rows if r["task"] == task), key=lambda r: r["params"])
        row = {"task": task}
        for m in metrics:
            best = max(r[m] for r in rs)
            hit = next((r for r in rs if _passes(m, r[m], best)), None)
            row[m] = hit["size"] if hit else None
            row[m + "_params"] = hit["params"] if hit else None
        out.append(row)
    return out
