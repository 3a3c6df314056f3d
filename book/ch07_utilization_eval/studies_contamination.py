"""Benchmark contamination shown, not told (Survey §7.3): a clean and a contaminated model, on the same items.

`contamination_demo` trains two story models (same text, seed and steps; the second also sees copies of half a
benchmark's items) and scores both on the leaked and the clean half, with `minillm.evaluation.contamination`'s
n-gram report saying which items it finds in each model's training text.
"""
from __future__ import annotations

import numpy as np
from minillm.evaluation.benchmarks import EvalTask, FactsMC, score_items
from minillm.evaluation.contamination import contaminated_text, contamination_report
from book.results import note
from book.runs import Run, train


# Demo knobs per size profile: items (half leaked), copies of each leaked item, story characters, training steps.
# lr 1e-2 (book.runs.Run's default is 3e-3): memorising 20 name -> city pairs needs the faster rate and 32 copies.
_DEMO = {"ci": dict(n_items=16, copies=4, n_chars=20_000, steps=40, n_people=40, lr=1e-2),
         "laptop": dict(n_items=40, copies=32, n_chars=150_000, steps=3000, n_people=100, lr=1e-2),
         "gpu": dict(n_items=200, copies=32, n_chars=600_000, steps=8000, n_people=400, lr=1e-2)}


def contamination_demo(size: str | None = None, seed: int = 0, task: EvalTask | None = None,
                       report_n: int = 5, report_unit: str = "word", **overrides) -> list[dict]:
    """Train a clean and a contaminated model (same story text, seed and steps; the second also sees `copies`
    copies of half the test items) and score both on the leaked and the clean half.

    Rows: model ("clean" | "contaminated"), split ("leaked" | "clean"), accuracy, acc_norm, n, chance and
    flagged (share of the split's items that `contamination_report` finds in that model's training text).
    `task` defaults to FactsMC over a world the story text never mentions, so only a leak can teach an answer.
    The report checks word 5-grams: an item ("Ada Ashdown lives in Ashford") is 5 words, so only a copy of a whole
    item matches; character 20-grams would also match " lives in Brightwater" shared by different people.
    Measured at laptop (one thread, ~75 s for both models): contaminated 1.00 / 0.95 on leaked items (seeds 0 / 1),
    the clean model 0.20 / 0.20 on the same items (chance 0.25). The contaminated model can also beat chance on
    clean items (0.25 / 0.50): the leak teaches which cities are answers at all (a city never seen after
    "lives in" costs ~70 nats), and FactWorld's Zipf-drawn cities repeat across people.
    overrides: n_items, copies, n_chars, steps, n_people, lr (defaults per size profile)."""
    from minillm.data.synthetic import corpus
    from minillm.data.tasks.pretraining import emergence_tokenizer
    from minillm.presets import by_size

    knobs = dict(by_size(**_DEMO, size=size))
    unknown = sorted(set(overrides) - set(knobs))
    if unknown:
        raise ValueError(f"unknown override(s) {unknown}; valid: {sorted(knobs)}")
    knobs.update(overrides)
    note(contamination={**knobs, "seed": seed})
    if knobs["n_items"] < 2:
        raise ValueError(f"n_items={knobs['n_items']} must be >= 2 (half are leaked, half stay clean)")
    task = task or FactsMC(world_seed=1000 + seed, n_people=knobs["n_people"])
    if task.kind != "mc":
        raise ValueError(f"the demo scores multiple choice (chance is known); task {task.name!r} is {task.kind!r}")
    items = task.examples(knobs["n_items"], seed)
    order = np.random.default_rng([seed, 0x1EA]).permutation(len(items))
    leaked_idx, clean_idx = np.sort(order[:len(items) // 2]), np.sort(order[len(items) // 2:])
    splits = {"leaked": leaked_idx, "clean": clean_idx}
    stories = corpus("story", max(10, knobs["n_chars"] // 60), seed=seed).text()
    cut = stories.rfind("\n", 0, int(0.9 * len(stories))) + 1
    base, val = stories[:cut], stories[cut:]  # one validation text for both: the leak is never split off into it
    texts = {"clean": base, "contaminated": contaminated_text(base, [items[i] for i in leaked_idx],
                                                              knobs["copies"], seed)}
    rows = []
    for name, text in texts.items():
        run = Run(steps=knobs["steps"], lr=knobs["lr"], seed=seed)  # Run's default 0.1M-parameter GPT otherwise
        model, tok, _ = train(run, text, val=val, tokenizer=emergence_tokenizer())
        found = set(contamination_report(text, items, n=report_n, unit=report_unit)["indices"])
        for split, idx in splits.items():
            sc = score_items(model, tok, task, [items[i] for i in idx])
            rows.append({"model": name, "split": split, "accuracy": sc["accuracy"], "acc_norm": sc["acc_norm"],
                         "n": int(len(idx)), "chance": task.chance,
                         "flagged": float(np.mean([i in found for i in idx.tolist()]))})
    return rows
