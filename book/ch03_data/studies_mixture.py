"""The mixture sweep behind the data mixing law (Survey §4.1.3; Ye et al. 2024).

`mixture_sweep` trains one small model per domain mixture of a simplex grid (`minillm.data.mixture`) and returns
the held-out loss per domain, the rows `minillm.data.mixture.fit_mixing_law` fits. `excess_by_share` reads such
rows back: each domain's mean excess loss at each share it was given (what chapter 03's prose quotes from the
shipped sweep, `shipped_excess_by_share`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
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


def excess_by_share(rows: Sequence[Mapping]) -> list[dict]:
    """Each domain's excess loss at each share it had, averaged over the mixtures that gave it that share (the
    other domains' shares vary across them). Rows of `mixture_sweep` in; out, one row per share, smallest first:
    {"share": "1/7" (the share as a fraction), domain: mean excess or None, "n_" + domain: how many mixtures}."""
    if not rows:
        raise ValueError("excess_by_share needs the rows of a mixture sweep (mixture_sweep or a shipped record)")
    by_share: dict[Fraction, dict[str, list[float]]] = {}
    for r in rows:
        for domain, w in r["weights"].items():
            share = Fraction(w).limit_denominator(100)
            by_share.setdefault(share, {}).setdefault(domain, []).append(r["excess"][domain])
    domains = list(rows[0]["weights"])
    out = []
    for share in sorted(by_share):
        row: dict = {"share": f"{share.numerator}/{share.denominator}"}
        for d in domains:
            vals = by_share[share].get(d, [])
            row[d] = sum(vals) / len(vals) if vals else None
            row["n_" + d] = len(vals)
        out.append(row)
    return out


def shipped_excess_by_share() -> dict:
    """`excess_by_share` of the newest shipped mixture sweep (bench/results/data_experiments.jsonl), as
    {"rows": [...]}, for keys such as `@book.ch03_data.studies_mixture:shipped_excess_by_share/rows[share=1/7].chinese`."""
    from book import results

    return {"rows": excess_by_share(results.latest("data_experiments.jsonl", key="experiment")["mixture"]["rows"])}
