"""Metric-based filtering with a language model's perplexity (Survey §4.1.2, "Quality filtering": metric-
based filtering, "perplexity can be employed to detect and remove unnatural sentences"; CCNet, Wenzek et
al. 2020, kept Common Crawl pages by the perplexity of a 5-gram model trained on Wikipedia).

`CharNgramLM` is a character n-gram model with interpolated Kneser-Ney smoothing (Kneser & Ney 1995; Chen &
Goodman 1998), trained on clean text. Garbled or machine-made junk is text the model finds surprising, so
its perplexity per character is high, and `perplexity_filter` drops documents above a threshold.

Kneser-Ney, for order k and context h (the previous k-1 characters):

    P_k(w | h) = max(c_k(h w) - D_k, 0) / c_k(h .)  +  D_k N1+(h .) / c_k(h .) * P_{k-1}(w | h')

where h' drops h's oldest character, c_N are raw counts at the highest order, and for lower orders c_k(g)
is a *continuation count*: in how many distinct contexts g appeared (the number of distinct characters
seen just before it). A context never seen in training falls back to P_{k-1} entirely. P_1 interpolates
with a uniform distribution over the vocabulary plus an "unknown character" symbol, so nothing has
probability 0. D_k = n1 / (n1 + 2 n2) from the counts of counts (clipped to [0.05, 0.95]).

Counting is vectorized: characters become small integer ids (0 = padding before the document, 1 =
unknown), an n-gram is packed into one uint64 (order x bits per id <= 64), and counts are np.unique.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Sequence

import numpy as np

from minillm.data.clean._common import FilterResult, check_float, check_int, check_text, check_texts, codepoints

BOS, UNK = 0, 1          # ids of "before the document" padding and of characters unseen in training


class CharNgramLM:
    """Character n-gram language model with interpolated Kneser-Ney smoothing.

    >>> lm = CharNgramLM(order=4).fit(clean_docs)
    >>> lm.perplexity(["Mia found a red key.", "key red. a Mia dnuof"])   # the second is much higher
    """

    def __init__(self, order: int = 4):
        self.order = check_int(order, "order", 1, 16)
        self.chars_: np.ndarray | None = None     # (V-2,) sorted code points seen in training
        self.bits_ = 0                            # bits per character id in a packed n-gram key
        self.tables_: list[dict] = []             # per order k = 1..order: keys, counts, contexts, discount

    # ---- encoding ---------------------------------------------------------------------------------------
    def _ids(self, text: str) -> np.ndarray:
        """(L,) uint64 character ids: 2.. for known characters, UNK for the rest."""
        cp = codepoints(text)
        pos = np.minimum(np.searchsorted(self.chars_, cp), len(self.chars_) - 1)
        return np.where(self.chars_[pos] == cp, pos + 2, UNK).astype(np.uint64)

    def _keys(self, ids: np.ndarray, k: int) -> np.ndarray:
        """(L,) packed n-gram of length k ending at each character (padded with BOS before the start)."""
        padded = np.concatenate([np.full(k - 1, BOS, dtype=np.uint64), ids])
        key = np.zeros(len(ids), dtype=np.uint64)
        for j in range(k):                         # k vectorized passes, oldest character first
            key = (key << np.uint64(self.bits_)) | padded[j: j + len(ids)]
        return key

    def _suffix(self, keys: np.ndarray, k: int) -> np.ndarray:
        """The last k characters of packed keys."""
        return keys & np.uint64((1 << (self.bits_ * k)) - 1)

    # ---- training ---------------------------------------------------------------------------------------
    def fit(self, texts: Sequence[str]) -> "CharNgramLM":
        """Count the n-grams of `texts` (clean text). Refitting replaces the model."""
        texts = check_texts(texts)
        if not any(texts):
            raise ValueError("every training text is empty: the model needs some characters to count")
        self.chars_ = np.unique(np.concatenate([codepoints(t) for t in texts]))
        n_ids = len(self.chars_) + 2
        self.bits_ = max(1, math.ceil(math.log2(n_ids)))
        if self.bits_ * self.order > 64:
            raise ValueError(f"order={self.order} with {n_ids} distinct characters needs {self.bits_ * self.order} "
                             f"bits per n-gram (max 64): lower the order or train on fewer scripts")
        top = np.concatenate([self._keys(self._ids(t), self.order) for t in texts if t])   # every N-gram
        tables: list[dict] = [{} for _ in range(self.order)]
        keys, counts = np.unique(top, return_counts=True)          # raw counts at the highest order
        for k in range(self.order, 0, -1):
            t = tables[k - 1]
            t["keys"], t["counts"] = keys, counts.astype(np.float64)
            ctx, ctx_idx = np.unique(keys >> np.uint64(self.bits_), return_inverse=True)
            t["ctx"] = ctx
            t["ctx_total"] = np.bincount(ctx_idx.ravel(), weights=t["counts"], minlength=len(ctx))
            t["ctx_types"] = np.bincount(ctx_idx.ravel(), minlength=len(ctx)).astype(np.float64)
            n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
            t["D"] = float(np.clip(n1 / (n1 + 2 * n2), 0.05, 0.95)) if n1 + n2 else 0.5
            if k > 1:   # continuation counts of the (k-1)-grams: distinct characters seen before each
                keys, counts = np.unique(self._suffix(keys, k - 1), return_counts=True)
        self.tables_ = tables
        return self

    # ---- scoring ----------------------------------------------------------------------------------------
    @staticmethod
    def _lookup(sorted_keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position, found) of each query in a sorted key array."""
        pos = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
        return pos, sorted_keys[pos] == query

    def char_log_probs(self, text: str) -> np.ndarray:
        """(L,) natural-log probability of each character given the ones before it."""
        if self.chars_ is None:
            raise ValueError("this CharNgramLM is not fitted yet: call fit(texts) first")
        ids = self._ids(check_text(text))
        if len(ids) == 0:
            return np.zeros(0)
        t1 = self.tables_[0]
        n_symbols = len(self.chars_) + 1                                     # known characters + UNK
        pos, found = self._lookup(t1["keys"], ids)
        c = np.where(found, t1["counts"][pos], 0.0)
        total, types, D = t1["ctx_total"][0], t1["ctx_types"][0], t1["D"]
        p = (np.maximum(c - D, 0.0) + D * types / n_symbols) / total       # (L,) P_1
        for k in range(2, self.order + 1):
            t = self.tables_[k - 1]
            keys = self._keys(ids, k)
            cpos, cfound = self._lookup(t["ctx"], keys >> np.uint64(self.bits_))
            kpos, kfound = self._lookup(t["keys"], keys)
            c = np.where(kfound, t["counts"][kpos], 0.0)
            total = np.where(cfound, t["ctx_total"][cpos], 1.0)
            types = np.where(cfound, t["ctx_types"][cpos], 0.0)
            p = np.where(cfound, (np.maximum(c - t["D"], 0.0) + t["D"] * types * p) / total, p)
        return np.log(p)

    def log_prob(self, text: str) -> float:
        """Natural-log probability of `text` (0.0 for the empty text)."""
        return float(self.char_log_probs(text).sum())

    def perplexity(self, texts: Sequence[str]) -> np.ndarray:
        """(D,) perplexity per character, exp(-log p(text) / characters); NaN for an empty text."""
        texts = check_texts(texts)
        out = np.full(len(texts), np.nan)
        for i, t in enumerate(texts):
            if t:
                out[i] = math.exp(-self.log_prob(t) / len(t))
        return out


def perplexity_threshold(lm: CharNgramLM, clean_texts: Sequence[str], quantile: float = 0.95) -> float:
    """The `quantile` of the perplexities of held-out clean texts: a threshold that keeps that share of them."""
    quantile = check_float(quantile, "quantile", 0.0, 1.0)
    ppl = lm.perplexity(clean_texts)
    if np.isnan(ppl).all():
        raise ValueError("every clean text is empty: no perplexity to take a quantile of")
    return float(np.nanquantile(ppl, quantile))


def perplexity_filter(texts: Sequence[str], lm: CharNgramLM | Mapping[str, CharNgramLM],
                      max_perplexity: float | Mapping[str, float],
                      languages: Sequence[str] | None = None) -> FilterResult:
    """Keep documents whose perplexity per character is <= max_perplexity (scores = perplexities).

    One model for all, or, as CCNet does, one model and threshold per language: pass dicts keyed by
    language and `languages` (one per text). Empty documents have no perplexity and are dropped ("empty").
    """
    texts = check_texts(texts)
    if isinstance(lm, Mapping):
        if languages is None or isinstance(languages, str) or len(languages) != len(texts):
            raise ValueError(f"with one model per language, pass languages: one per text ({len(texts)})")
        if not all(isinstance(m, CharNgramLM) for m in lm.values()):
            raise TypeError("every value of the lm dict must be a CharNgramLM")
        missing = sorted(set(languages) - set(lm))
        if missing:
            raise ValueError(f"no language model for {missing}; models given for {sorted(lm)}")
        limits = max_perplexity if isinstance(max_perplexity, Mapping) else {lang: max_perplexity for lang in lm}
        if set(languages) - set(limits):
            raise ValueError(f"no max_perplexity for {sorted(set(languages) - set(limits))}")
    elif isinstance(lm, CharNgramLM):
        if isinstance(max_perplexity, Mapping):
            raise TypeError("max_perplexity must be one number when lm is a single CharNgramLM")
        languages, lm, limits = ["*"] * len(texts), {"*": lm}, {"*": max_perplexity}
    else:
        raise TypeError(f"lm must be a CharNgramLM or a dict of them by language, got {type(lm).__name__}")
    limits = {lang: check_float(v, f"max_perplexity[{lang!r}]", 1.0) for lang, v in limits.items()}
    ppl = np.array([lm[lang].perplexity([t])[0] for t, lang in zip(texts, languages)])
    limit = np.array([limits[lang] for lang in languages])
    keep = ppl <= limit                                                     # NaN (empty) compares False
    reasons = [[] if k else (["empty"] if np.isnan(p) else ["perplexity"]) for k, p in zip(keep, ppl)]
    return FilterResult(keep=keep, reasons=reasons, scores=ppl)
