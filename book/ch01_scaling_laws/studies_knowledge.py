"""Knowledge capacity: how many bits of facts a model stores per parameter (Survey §2.1; Allen-Zhu & Li 2024).

`knowledge_capacity` trains models of several sizes on biographies of a seeded FactWorld (each fact seen a set
number of times) and measures the bits they store with `minillm.scaling.knowledge.knowledge_bits`.
`expected_facts_per_doc` and `facts_tokenizer` are its helpers.
"""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
import numpy as np
import torch
from book.ch01_scaling_laws.studies import check_shape, train_shape
from minillm.scaling.knowledge import PROMPTS, fact_candidates, knowledge_bits, model_scorer


def expected_facts_per_doc(p_stop: float, max_facts: int) -> float:
    """Mean facts a "facts" document states: it stops after each fact with probability p_stop."""
    return sum((1 - p_stop) ** k for k in range(max_facts))


def facts_tokenizer(text: str, kind: str = "bpe", bpe_vocab: int = 1024):
    """The study's tokenizer for `text`: "bpe" (byte-level, trained here; a vocabulary bigger than the corpus's
    words just stops early, which is expected and not warned about) or "char" (every prompt and candidate
    character is covered by the caller adding them to `text`)."""
    from minillm.data.tokenizer import BPETokenizer, CharTokenizer

    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind != "bpe":
        raise ValueError(f"tokenizer={kind!r}: use 'bpe' (whole-word tokens) or 'char'")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="BPE training stopped")
        return BPETokenizer.train(text, vocab_size=bpe_vocab, special_tokens=())


def knowledge_capacity(sizes: Sequence[tuple[int, int, int]], *, n_people: int = 400, world_seed: int = 0,
                       exposures: float = 100.0, popularity: float = 0.0, data_seed: int = 1,
                       tokenizer: str = "bpe", bpe_vocab: int = 1024, block_size: int = 64, batch_size: int = 16,
                       lr_ref: float = 3e-3, seed: int = 1337, measure_at: Sequence[float] = (0.5, 1.0),
                       eval_batches: int = 20, device: str = "auto", progress: bool = False) -> list[dict]:
    """Train each (n_layer, n_embd, n_head) in `sizes` on the facts of one world for one pass over a corpus in
    which each fact appears ~`exposures` times, and measure the bits stored at each fraction in `measure_at`
    of training (two points show whether the model still learns or has saturated). popularity=0 mentions every
    person equally often (Allen-Zhu & Li's uniform setting); lr = lr_ref·sqrt(128/n_embd), clipped to
    [lr_ref/4, 2·lr_ref] (the sweep's width rule).

    Rows: n_layer, n_embd, n_head, n_params (non-embedding), n_params_total, steps, tokens, exposures (the
    share of the pass done × `exposures`), val_loss, floor, bits, bits_vs_prior, total_bits,
    total_bits_vs_prior, accuracy, bits_per_param (vs prior, per non-embedding parameter),
    bits_per_param_total (vs prior, per parameter), per_attribute, tokenizer, vocab_size, seconds.
    """
    from minillm.data.loader import DataSplits
    from minillm.data.synthetic import FactWorld, corpus
    from minillm.data.synthetic.facts import FactsSource
    from minillm.scaling.sweep import shape_counts

    if not sizes:
        raise ValueError("sizes is empty: give (n_layer, n_embd, n_head) tuples")
    if any(len(s) != 3 for s in sizes):
        raise ValueError(f"sizes={list(sizes)!r}: each entry must be (n_layer, n_embd, n_head)")
    shapes = [check_shape(*s) for s in sizes]
    if not (isinstance(exposures, (int, float)) and exposures > 0):
        raise ValueError(f"exposures={exposures!r} must be positive")
    fracs = sorted(float(f) for f in measure_at)
    if not fracs or fracs[-1] != 1.0 or fracs[0] <= 0:
        raise ValueError(f"measure_at={tuple(measure_at)!r} must be fractions in (0, 1] ending with 1.0")
    knobs = {**FactsSource.defaults, "n_people": n_people, "world_seed": world_seed, "popularity": popularity}
    world = FactWorld(world_seed, n_people)
    per_doc = expected_facts_per_doc(knobs["p_stop"], knobs["max_facts"])
    # A document is about one person (uniform at popularity 0) and states `per_doc` of their 6 facts.
    n_docs = math.ceil(exposures * n_people * len(PROMPTS) / per_doc / 0.95)  # /0.95: the val split
    c = corpus("facts", n_docs, data_seed, **knobs)
    text = c.text()
    # The tokenizer also sees every prompt and candidate, so scoring never meets an unknown character (a small
    # world's documents need not mention every city); an unseen value just gets a low probability.
    extra = "".join(PROMPTS.values()) + " " + " ".join(sum(fact_candidates(world).values(), []))
    tok = facts_tokenizer(text + "\n" + extra, tokenizer, bpe_vocab)
    ids = torch.from_numpy(np.asarray(tok.encode(text), dtype=np.int64))
    splits = DataSplits.from_tokens(ids, val_fraction=0.05, vocab_size=tok.vocab_size)
    floor = c.entropy_per_token(tok)
    tps = batch_size * block_size
    steps = max(2, len(splits.train) // tps)  # one pass's worth of random windows
    rows = []
    for shape in shapes:
        n_params, n_total, _ = shape_counts(shape, tok.vocab_size, block_size)
        lr = float(min(max(lr_ref * math.sqrt(128 / shape[1]), lr_ref / 4), 2 * lr_ref))
        model, trainer = train_shape(shape, splits, tok.vocab_size, block_size, batch_size, steps, lr, seed,
                                     eval_batches, 0, None, device)
        scorer = model_scorer(model, tok.encode)
        t0 = time.perf_counter()
        for f in fracs:
            stop = max(1, round(f * steps))
            trainer.fit(stop_at=stop)
            seconds = time.perf_counter() - t0
            kb = knowledge_bits(world, scorer)
            row = {"n_layer": shape[0], "n_embd": shape[1], "n_head": shape[2], "n_params": n_params,
                   "n_params_total": n_total, "steps": stop, "tokens": stop * tps, "lr": lr,
                   "exposures": exposures * stop / steps, "val_loss": trainer.evaluate(), "floor": floor, **kb,
                   "bits_per_param": kb["bits_vs_prior"] / n_params,
                   "bits_per_param_total": kb["bits_vs_prior"] / n_total, "seconds": round(seconds, 2),
                   "n_people": n_people, "world_seed": world_seed, "popularity": popularity,
                   "tokenizer": tokenizer, "vocab_size": tok.vocab_size}
            rows.append(row)
            if progress:
                print(f"  knowledge: L{shape[0]} E{shape[1]} N={n_params:,} at {row['exposures']:.0f} exposures: "
                      f"{kb['bits_vs_prior']:.0f}/{kb['total_bits_vs_prior']:.0f} bits vs prior "
                      f"({row['bits_per_param']:.3f}/param, acc {kb['accuracy']:.3f}, val {row['val_loss']:.4f}, "
                      f"floor {floor:.4f}) {seconds:.0f} s", flush=True)
    return rows
