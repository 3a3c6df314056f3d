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

from minillm.evaluation.benchmarks import Item


def _item_text(x) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, Item):
        return x.text
    if all(hasattr(x, a) for a in ("prompt", "answer")):  # minillm.data.tasks Example: prompt + working + answer
        return x.prompt + getattr(x, "trace", "") + x.answer
    raise ValueError(f"an item must be a str, a benchmarks.Item or an emergence Example, got {type(x).__name__}")


def contamination_report(train_text: str, items, n: int = 13, unit: str = "word", normalize: bool = True) -> dict:
    """Benchmark items sharing at least one n-gram (of words, or of characters with unit="char") with
    `train_text`, each item written as prompt + answer. Word 13-grams are GPT-3's test; short synthetic items
    need a smaller n or unit="char" (n ~ 20): items with fewer than n units can never be flagged, so they are
    listed in `too_short` rather than silently counted clean.

    Returns n, unit, n_items, n_flagged, share (flagged / items), indices (flagged items), overlap (per item:
    share of its distinct n-grams found in the text) and too_short (indices)."""
    from minillm.data.dedup import decontaminate, ngram_keys, normalize_for_hash

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
