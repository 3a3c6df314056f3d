"""Benchmark contamination: finding test items in training text, and showing what a leak does to a score.
Survey §7.3 (evaluation approaches; "benchmark leakage": test data in pre-training corpora inflates results) and
§4.1.2 (decontamination with n-gram overlap, GPT-3's 13-gram rule).

- `contamination_report`: which benchmark items share an n-gram with a training text. It reuses
  `minillm.data.dedup.decontaminate` with the roles swapped (the items are the "documents" checked, the training
  text the reference), so normalisation and hashing are the ones decontamination uses.
- `contamination_demo`: two tiny models trained on the same text, one of them also on copies of half the
  benchmark's test items (with answers). The contaminated model aces the items it saw and stays at chance on the
  others: its benchmark score measures memory, not knowledge. The report flags exactly the leaked items.
"""
from __future__ import annotations

import numpy as np

from .benchmarks import EvalTask, FactsMC, Item, score_items


def _item_text(x) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, Item):
        return x.text
    if all(hasattr(x, a) for a in ("prompt", "answer")):  # minillm.emergence Example: prompt + working + answer
        return x.prompt + getattr(x, "trace", "") + x.answer
    raise ValueError(f"an item must be a str, a benchmarks.Item or an emergence Example, got {type(x).__name__}")


def contamination_report(train_text: str, items, n: int = 13, unit: str = "word", normalize: bool = True) -> dict:
    """Benchmark items sharing at least one n-gram (of words, or of characters with unit="char") with
    `train_text`, each item written as prompt + answer. Word 13-grams are GPT-3's test; short synthetic items
    need a smaller n or unit="char" (n ~ 20): items with fewer than n units can never be flagged, so they are
    listed in `too_short` rather than silently counted clean.

    Returns n, unit, n_items, n_flagged, share (flagged / items), indices (flagged items), overlap (per item:
    share of its distinct n-grams found in the text) and too_short (indices)."""
    from .data.dedup import decontaminate, ngram_keys, normalize_for_hash

    if not isinstance(train_text, str) or not train_text:
        raise ValueError("train_text must be a non-empty str (the training corpus to check)")
    texts = [_item_text(x) for x in items]
    if not texts:
        raise ValueError("no items to check")
    if any(not t for t in texts):
        raise ValueError("an item's text is empty; every item needs a prompt or an answer")
    # Roles swapped: each item is a "training document" checked against the corpus as the reference set.
    res = decontaminate(texts, [train_text], n=n, unit=unit, normalize=normalize)
    sizes = np.array([len(ngram_keys(normalize_for_hash(t) if normalize else t, n, unit)) for t in texts])  # (N,)
    flagged = np.flatnonzero(res.matched > 0)
    overlap = np.where(sizes > 0, res.matched / np.maximum(sizes, 1), 0.0)
    return {"n": n, "unit": unit, "n_items": len(texts), "n_flagged": int(flagged.size),
            "share": float(flagged.size / len(texts)), "indices": flagged.tolist(), "overlap": overlap.tolist(),
            "too_short": np.flatnonzero(sizes == 0).tolist()}


# Demo knobs per size profile: items (half leaked), copies of each leaked item, story characters, training steps.
# lr 1e-2 (train_lm's default is 3e-3): memorising 20 name -> city pairs needs the faster rate and 32 copies.
_DEMO = {"ci": dict(n_items=16, copies=4, n_chars=20_000, steps=40, n_people=40, lr=1e-2),
         "laptop": dict(n_items=40, copies=32, n_chars=150_000, steps=3000, n_people=100, lr=1e-2),
         "gpu": dict(n_items=200, copies=32, n_chars=600_000, steps=8000, n_people=400, lr=1e-2)}


def contaminated_text(base_text: str, items, copies: int, seed: int = 0) -> str:
    """`base_text` (newline-separated documents) with `copies` copies of each item's text as documents of their
    own, at random places: a test set that leaked into a crawl, duplicated as web copies are."""
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"copies={copies!r} must be a positive int")
    docs = base_text.splitlines(keepends=True)
    leaks = [_item_text(x) + "\n" for x in items for _ in range(copies)]
    rng = np.random.default_rng([seed, 0xC0])
    at = np.sort(rng.integers(0, len(docs) + 1, size=len(leaks)))  # insertion points, in document order
    out, prev = [], 0
    for pos, leak in zip(at.tolist(), [leaks[i] for i in rng.permutation(len(leaks))]):
        out += docs[prev:pos] + [leak]
        prev = pos
    return "".join(out + docs[prev:])


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
    from .data.synthetic import corpus
    from .emergence.mixture import emergence_tokenizer
    from .emergence.scoring import train_lm
    from .presets import by_size

    knobs = dict(by_size(**_DEMO, size=size))
    unknown = sorted(set(overrides) - set(knobs))
    if unknown:
        raise ValueError(f"unknown override(s) {unknown}; valid: {sorted(knobs)}")
    knobs.update(overrides)
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
        model, tok, _ = train_lm(text, steps=knobs["steps"], lr=knobs["lr"], seed=seed, val_text=val,
                                 tokenizer=emergence_tokenizer())
        found = set(contamination_report(text, items, n=report_n, unit=report_unit)["indices"])
        for split, idx in splits.items():
            sc = score_items(model, tok, task, [items[i] for i in idx])
            rows.append({"model": name, "split": split, "accuracy": sc["accuracy"], "acc_norm": sc["acc_norm"],
                         "n": int(len(idx)), "chance": task.chance,
                         "flagged": float(np.mean([i in found for i in idx.tolist()]))})
    return rows
