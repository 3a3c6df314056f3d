"""Training experiments on data choices. Survey §4.1.2 (data preprocessing: why quality filtering and
de-duplication are worth their cost) and §4.1.3 (data scheduling: the mixture of sources, `studies_mixture`).

Every experiment here trains the *same* small GPT for the *same* number of tokens and changes only the data,
then scores held-out text whose exact entropy we know (our synthetic generators give it), so a difference in
loss is the data's doing and "excess loss" (loss minus the floor) says how far from perfect each model is.

- `train_on_texts`: train the book's one small-run recipe (`book.runs.Run`, the same for every arm) on a list of
  documents, report held-out loss (`minillm.evaluation.loss.heldout_loss`) on named evaluation sets.
- `duplication_study`: same token budget, a growing share of it spent on a few documents repeated many times
  (Hernandez et al. 2022; Lee et al. 2022: repeated data hurts more than its share suggests).
- `raw_vs_clean`: train on everything a crawl extracted vs only what the cleaning pipeline kept.
- `shipped_duplication`: the shipped duplication rows keyed by the share of repeats in percent (prose keys).

Characters are the tokens (one shared `CharTokenizer` over every text an experiment touches) so losses are
nats per character and comparable across arms.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict

import numpy as np

from minillm.data.tokenizer import CharTokenizer
from minillm.evaluation.loss import heldout_loss
from book.runs import Run, train

SEP = "\n"  # between documents of a training stream


def _check_docs(name: str, docs: Sequence[str]) -> list[str]:
    if isinstance(docs, str) or not isinstance(docs, Sequence):
        raise TypeError(f"{name} must be a list of str documents, got {type(docs).__name__}")
    bad = [i for i, d in enumerate(docs) if not isinstance(d, str)]
    if bad:
        raise TypeError(f"{name}[{bad[0]}] is {type(docs[bad[0]]).__name__}, not str")
    docs = [d for d in docs if d]
    if not docs:
        raise ValueError(f"{name} has no non-empty documents")
    return docs


def train_on_texts(train_docs: Sequence[str], eval_sets: Mapping[str, Sequence[str]], run: Run = Run(),
                   tokenizer: CharTokenizer | None = None) -> dict:
    """Train `run`'s model for `run.tokens` tokens on `train_docs` with `book.runs.train` (random windows; a small
    set is revisited, which is the point of some experiments), then score every evaluation set.

    Returns {"losses": {name: nats/char}, "train_chars", "epochs" (= run.tokens / train chars), "history", "run"}.
    The tokenizer defaults to one built over all texts, so no evaluation character is unknown.
    """
    train_docs = _check_docs("train_docs", train_docs)
    if not eval_sets:
        raise ValueError("eval_sets is empty: give at least one {name: documents} to score the model on")
    evals = {k: _check_docs(f"eval_sets[{k!r}]", v) for k, v in eval_sets.items()}
    train_text = SEP.join(train_docs) + SEP
    eval_text = {k: SEP.join(v) + SEP for k, v in evals.items()}
    tok = tokenizer or CharTokenizer.from_text(train_text + "".join(eval_text.values()))
    first = next(iter(eval_text))
    out = train(run, train_text, val=eval_text[first], tokenizer=tok)  # scores the first evaluation set
    losses = {k: out.val_loss if k == first else
              heldout_loss(out.model, t, tokenizer=tok, max_windows=run.eval_windows) for k, t in eval_text.items()}
    train_chars = len(out.splits.train)
    return {"losses": losses, "train_chars": train_chars, "epochs": run.tokens / train_chars,
            "history": out.history, "run": asdict(run)}


def repeated_mixture(unique_docs: Sequence[str], n_chars: int, dup_share: float, n_repeated: int,
                     seed: int = 0) -> list[str]:
    """A training set of ~`n_chars` characters where `dup_share` of them are `n_repeated` documents copied
    over and over, and the rest are distinct documents taken from `unique_docs` in order. Shuffled (seeded)."""
    unique_docs = _check_docs("unique_docs", unique_docs)
    if not 0 <= dup_share < 1:
        raise ValueError(f"dup_share={dup_share!r} must be in [0, 1)")
    if not isinstance(n_repeated, int) or n_repeated < 1:
        raise ValueError(f"n_repeated={n_repeated!r} must be a positive int")
    lengths = np.cumsum([len(d) + 1 for d in unique_docs])
    n_fresh = int(np.searchsorted(lengths, (1 - dup_share) * n_chars)) + 1
    pool = unique_docs[n_repeated:]  # the repeated docs never also appear as fresh ones
    if n_fresh > len(pool):
        raise ValueError(f"need {n_fresh} distinct documents for {n_chars:,} characters at dup_share={dup_share}, "
                         f"have {len(pool)}: pass more unique_docs")
    docs = list(pool[:n_fresh])
    if dup_share > 0:
        rep = unique_docs[:n_repeated]
        rep_chars = sum(len(d) + 1 for d in rep)
        copies = max(1, math.ceil(dup_share * n_chars / rep_chars))
        docs += list(rep) * copies
    order = np.random.default_rng(seed).permutation(len(docs))
    return [docs[i] for i in order]


def duplication_study(dup_shares: Sequence[float] = (0.0, 0.25, 0.5, 0.75), *, n_repeated: int = 20,
                      run: Run = Run(), corpus_name: str = "story", seed: int = 0,
                      n_eval_docs: int = 200) -> list[dict]:
    """Held-out loss when `dup_share` of a fixed-size training set is `n_repeated` documents repeated.

    The training set holds as many characters as `run` trains on (one epoch of fresh data at dup_share=0), so
    every arm sees the same number of tokens; only their diversity changes. Rows: dup_share, val_loss, floor,
    excess, epochs, distinct_chars (characters of distinct text seen)."""
    from minillm.data.synthetic import corpus

    shares = [float(s) for s in dup_shares]
    if not shares:
        raise ValueError("dup_shares is empty")
    n_chars = run.tokens
    # Enough documents for the dup_share=0 arm: average story length from a first draw, then all we need.
    probe = corpus(corpus_name, 50, seed + 1)
    mean_len = np.mean([len(d) + 1 for d in probe.docs])
    pool = corpus(corpus_name, int(n_chars / mean_len * 1.3) + n_repeated + 10, seed + 1).docs
    held = corpus(corpus_name, n_eval_docs, seed + 2)
    tok = CharTokenizer.from_text(SEP.join(pool) + SEP.join(held.docs) + SEP)
    floor = held.entropy_per_token(tok)
    rows = []
    for s in shares:
        docs = repeated_mixture(pool, n_chars, s, n_repeated, seed)
        res = train_on_texts(docs, {"held_out": held.docs}, run, tok)
        loss = res["losses"]["held_out"]
        distinct = sum(len(d) + 1 for d in set(docs))
        rows.append({"dup_share": s, "val_loss": loss, "floor": floor, "excess": loss - floor,
                     "epochs": res["epochs"], "distinct_chars": distinct, "n_repeated": n_repeated,
                     "tokens": run.tokens})
    return rows


def raw_vs_clean(raw_docs: Sequence[str], clean_docs: Sequence[str], eval_sets: Mapping[str, Sequence[str]],
                 run: Run = Run()) -> dict:
    """The same model and token budget trained on everything extracted from a crawl (`raw_docs`) and on what
    the cleaning pipeline kept (`clean_docs`); held-out losses on each evaluation set, and their difference."""
    raw_docs, clean_docs = _check_docs("raw_docs", raw_docs), _check_docs("clean_docs", clean_docs)
    everything = SEP.join(raw_docs + clean_docs) + "".join(SEP.join(_check_docs(k, v)) for k, v in eval_sets.items())
    tok = CharTokenizer.from_text(everything + SEP)
    raw = train_on_texts(raw_docs, eval_sets, run, tok)
    clean = train_on_texts(clean_docs, eval_sets, run, tok)
    return {"raw": raw["losses"], "clean": clean["losses"],
            "clean_minus_raw": {k: clean["losses"][k] - raw["losses"][k] for k in raw["losses"]},
            "raw_epochs": raw["epochs"], "clean_epochs": clean["epochs"], "tokens": run.tokens}


def shipped_duplication() -> dict:
    """The newest shipped duplication study (bench/results/data_experiments.jsonl) as {"rows": [...]}, each row
    with `repeats_pct` (dup_share × 100, rounded) added, since a prose key's selector cannot hold a decimal point:
    `@book.ch03_data.studies_experiments:shipped_duplication/rows[repeats_pct=25].excess`."""
    from book import results

    rows = results.latest("data_experiments.jsonl", key="experiment")["duplication"]["rows"]
    return {"rows": [{**r, "repeats_pct": round(100 * r["dup_share"])} for r in rows]}
