"""The mixture sweep behind the data mixing law (Survey §4.1.3; Ye et al. 2024).

`mixture_sweep` trains one small model per domain mixture of a simplex grid (`minillm.data.mixture`) and returns
the held-out loss per domain, the rows `minillm.data.mixture.fit_mixing_law` fits.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from book.ch03_data.studies_experiments import train_on_texts
from book.runs import Run
from minillm.data.mixture import DOMAINS, _check_weights, domain_pools, mixture_docs


def mixture_sweep(grid: Sequence[Sequence[float]], run: Run = Run(),
                  domains: Mapping[str, str] = DOMAINS, seed: int = 0, progress: bool = False) -> list[dict]:
    """Train `run` once per mixture in `grid`; rows: weights {domain: share}, loss {domain: nats/char},
    excess {domain: loss - floor}, floor {domain}, tokens."""
    if not grid:
        raise ValueError("grid is empty: use simplex_grid(n_domains, steps)")
    from minillm.data.tokenizer import CharTokenizer

    names = list(domains)
    train, held, floors = domain_pools(run.tokens, domains, seed)
    tok = CharTokenizer.from_text("\n".join(d for pool in (*train.values(), *held.values()) for d in pool))
    rows = []
    for weights in grid:
        w = _check_weights(weights, len(names))
        docs = mixture_docs(w, train, run.tokens, seed)
        res = train_on_texts(docs, held, run, tok)
        loss = res["losses"]
        rows.append({"weights": dict(zip(names, w.tolist())), "loss": loss, "floor": floors,
                     "excess": {k: loss[k] - floors[k] for k in names}, "tokens": run.tokens})
        if progress:
            print("  mixture " + " ".join(f"{k}={v:.2f}" for k, v in zip(names, w)) + " -> excess "
                  + " ".join(f"{k}={loss[k] - floors[k]:.3f}" for k in names), flush=True)
    return rows
