"""Data mixtures: how the share of each source in pre-training data sets the loss on every domain.
Survey §4.1.3 ("data scheduling": data mixture) and §4.1.4 (effect of the mixture of sources).

A mixture is a weight per domain (they sum to 1). `mixture_sweep` trains the same small GPT for the same number
of tokens on each mixture of a grid and scores held-out text of every domain, reporting loss minus that
domain's exact entropy floor (our generators know it), so domains of different difficulty compare fairly.

`fit_mixing_law` fits the data mixing law of Ye et al. 2024 ("Data Mixing Laws"), per evaluated domain i:

    L_i(r) = c_i + k_i · exp(Σ_j t_ij r_j)

where r is the mixture. Since Σ_j r_j = 1, adding a constant to every t_ij only rescales k_i, so the last
domain's t is fixed at 0 (absorbed in k_i): the fitted law is the same function, and the fit is well posed.
With it a reader can ask "which mixture minimises the loss on Chinese, and what does it cost on English?"
without training a new model per slider position (the chapter's widget).
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from minillm.data.synthetic import corpus
from minillm.data.tokenizer import CharTokenizer

# The default domains: English stories, Chinese stories, arithmetic. Three sources as different as a crawl's
# web text, its Chinese share and its code/math share.
DOMAINS = {"english": "story", "chinese": "story_zh", "arithmetic": "arithmetic"}


def simplex_grid(n_domains: int, steps: int, min_count: int = 1) -> list[tuple[float, ...]]:
    """Every mixture whose weights are multiples of 1/steps and at least min_count/steps each."""
    if not (isinstance(n_domains, int) and n_domains >= 2):
        raise ValueError(f"n_domains={n_domains!r} must be an int >= 2")
    if not (isinstance(steps, int) and steps >= n_domains * min_count and min_count >= 0):
        raise ValueError(f"steps={steps!r} must be an int >= n_domains*min_count = {n_domains * min_count}")
    out = []
    for counts in itertools.product(range(min_count, steps + 1), repeat=n_domains - 1):
        last = steps - sum(counts)
        if last >= min_count:
            out.append(tuple(c / steps for c in (*counts, last)))
    return out


def _check_weights(weights: Sequence[float], n: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights={tuple(weights)!r} must be {n} non-negative numbers with a positive sum")
    return w / w.sum()


def mixture_docs(weights: Sequence[float], pools: Mapping[str, Sequence[str]], n_chars: int,
                 seed: int = 0) -> list[str]:
    """About `n_chars` characters of training documents, weights[i] of them from the i-th pool (taken in order,
    so no document repeats unless a pool runs out, which is an error), shuffled with `seed`."""
    w = _check_weights(weights, len(pools))
    docs: list[str] = []
    for share, (name, pool) in zip(w, pools.items()):
        need = share * n_chars
        lengths = np.cumsum([len(d) + 1 for d in pool])
        k = int(np.searchsorted(lengths, need)) + 1 if need > 0 else 0
        if k > len(pool):
            raise ValueError(f"domain {name!r} needs {need:,.0f} characters but its pool has {lengths[-1]:,}: "
                             f"generate more documents")
        docs += list(pool[:k])
    order = np.random.default_rng(seed).permutation(len(docs))
    return [docs[i] for i in order]


def domain_pools(n_chars: int, domains: Mapping[str, str] = DOMAINS, seed: int = 0,
                 n_eval_docs: int = 200) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, float]]:
    """(train pools, held-out docs, floors) per domain: enough training text for a run of `n_chars` made of
    that domain alone, held-out documents from another seed, and each domain's entropy floor (nats/char)."""

    train, held, floors = {}, {}, {}
    for name, source in domains.items():
        probe = corpus(source, 50, seed + 10)
        mean_len = float(np.mean([len(d) + 1 for d in probe.docs]))
        train[name] = corpus(source, int(n_chars / mean_len * 1.3) + 20, seed + 10).docs
        h = corpus(source, n_eval_docs, seed + 20)
        held[name] = h.docs
        floors[name] = h.entropy_per_token(CharTokenizer.from_text(h.text()))
    return train, held, floors


@dataclass(frozen=True)
class MixingLaw:
    """L(r) = c + k · exp(t · r) for one evaluated domain; t has a 0 for the last domain (see module doc)."""

    domain: str
    domains: tuple[str, ...]
    c: float
    k: float
    t: tuple[float, ...]
    rmse: float  # of the fit on the rows it was fitted to, nats/char

    def predict(self, weights: Sequence[float] | np.ndarray) -> np.ndarray:
        r = np.atleast_2d(np.asarray(weights, dtype=np.float64))                   # (M, n_domains)
        r = r / r.sum(axis=1, keepdims=True)
        return self.c + self.k * np.exp(r @ np.asarray(self.t))                     # (M,)


def fit_mixing_law(rows: Sequence[Mapping], domain: str, key: str = "loss") -> MixingLaw:
    """Fit the mixing law of one evaluated `domain` to sweep rows (their `key`: "loss" or "excess")."""

    if len(rows) < 1:
        raise ValueError("no rows: run mixture_sweep first")
    names = tuple(rows[0]["weights"])
    if domain not in names:
        raise ValueError(f"domain={domain!r} is not one of the sweep's domains {names}")
    n_free = 2 + len(names) - 1
    if len(rows) < n_free + 1:
        raise ValueError(f"{len(rows)} mixtures cannot fit {n_free} parameters: sweep more mixtures")
    R = np.array([[r["weights"][k] for k in names] for r in rows])                 # (M, n)
    y = np.array([float(r[key][domain]) for r in rows])                             # (M,)
    if not np.all(np.isfinite(y)):
        raise ValueError(f"the rows' {key}[{domain!r}] has NaN/inf values: drop the diverged runs first")

    def resid(p):  # p = (c, log k, t_1 .. t_{n-1})
        t = np.append(p[2:], 0.0)
        return p[0] + np.exp(p[1]) * np.exp(R @ t) - y

    best = None
    for t0 in (-2.0, 0.0, 2.0):  # a few starts: the exp makes the surface non-convex
        p0 = np.concatenate([[y.min() * 0.9, np.log(max(y.max() - y.min(), 1e-3))], np.full(len(names) - 1, t0)])
        sol = least_squares(resid, p0, method="lm" if len(rows) > n_free else "trf")
        if best is None or sol.cost < best.cost:
            best = sol
    p = best.x
    return MixingLaw(domain=domain, domains=names, c=float(p[0]), k=float(np.exp(p[1])),
                     t=tuple(float(v) for v in np.append(p[2:], 0.0)),
                     rmse=float(np.sqrt(np.mean(resid(p) ** 2))))
