"""The crawl data model: labels, Page, CrawlConfig (the mixture knobs) and Crawl. Survey §4.1.1-4.1.2.

Every page carries its ground truth (quality, language, register, duplicate source, contamination, PII
spans), so each cleaning step of chapter 03 can be scored exactly: precision and recall of a quality
filter, of deduplication, of PII masking, of decontamination.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields

import numpy as np

from minillm.data.pii import PII_KINDS, PIISpan

QUALITIES = ("clean", "low_quality", "spam", "garbled")
LANGUAGES = ("en", "zh", "other")
REGISTERS = ("formal", "informal")
DUP_KINDS = ("exact", "near")

__all__ = ["QUALITIES", "LANGUAGES", "REGISTERS", "DUP_KINDS", "PII_KINDS", "PIISpan", "Page", "CrawlConfig",
           "Crawl"]


@dataclass(frozen=True)
class Page:
    """One crawled page and its ground truth. `text` is what a perfect extractor returns from `html`."""

    id: int                        # index in Crawl.pages
    url: str
    html: str                      # the raw page: chrome (nav, ads, footer, <script>) around the main content
    text: str                      # ground-truth main content, lines joined by "\n"
    language: str                  # "en" | "zh" | "other"
    script: str                    # "latin" | "han" | "cyrillic" | "greek" | "arabic" | "devanagari"
    quality: str                   # in QUALITIES: "clean" is worth keeping, the other three are junk
    register: str                  # "formal" | "informal" (informal pages are clean, chatty text)
    duplicate_of: int | None       # id of the earlier clean page this one copies, else None
    dup_kind: str | None           # "exact" | "near" | None
    contaminated: bool             # text contains one of Crawl.eval_texts verbatim
    pii: tuple[PIISpan, ...]       # every real PII item in `text`, sorted (decoys are not listed)


@dataclass
class CrawlConfig:
    """The mixture of a synthetic crawl. Each page first draws its kind: exact duplicate, near duplicate,
    low_quality, spam, garbled, other-language (clean) with the p_* below, else a fresh clean page, so
    those six are fractions of all pages. The rest are conditional, as their names say."""

    n_pages: int = 1000
    seed: int = 0
    p_exact_dup: float = 0.08      # fraction of pages that copy an earlier clean en/zh page exactly
    p_near_dup: float = 0.08       # fraction that copy one with a few words edited
    p_low_quality: float = 0.15    # fraction of boilerplate-like pages (bullets, navigation, tables, stubs)
    p_spam: float = 0.08           # fraction of keyword-stuffed pages
    p_garbled: float = 0.05        # fraction of machine-garbled pages
    p_other: float = 0.05          # fraction of clean pages in another script (Cyrillic, Greek, ...)
    p_zh: float = 0.3              # P(Chinese) for every page that is not other-language (junk included)
    p_informal: float = 0.10       # P(chatty register) for a fresh clean en/zh page
    p_pii: float = 0.15            # P(page carries PII items) for every fresh page (duplicates copy theirs)
    p_decoy: float = 0.15          # P(page carries PII look-alikes: bad checksums, versions, years, prices)
    p_contaminated: float = 0.03   # P(a fresh clean English page embeds one eval text verbatim)
    near_dup_edit: float = 0.03    # fraction of words (Han characters in Chinese) a near duplicate edits
    n_eval: int = 50               # held-out "benchmark" texts (Crawl.eval_texts)

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type == "int":
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise ValueError(f"CrawlConfig.{f.name} must be an int, got {v!r}")
                setattr(self, f.name, int(v))
            elif isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) \
                    or not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"CrawlConfig.{f.name} must be a probability in [0, 1], got {v!r}")
            else:
                setattr(self, f.name, float(v))
        if not 1 <= self.n_pages <= 10**7:
            raise ValueError(f"CrawlConfig.n_pages must be in [1, 10_000_000], got {self.n_pages}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"CrawlConfig.seed must be in [0, 2**63), got {self.seed}")
        if not 0 <= self.n_eval <= 100_000:
            raise ValueError(f"CrawlConfig.n_eval must be in [0, 100_000], got {self.n_eval}")
        if self.p_contaminated > 0 and self.n_eval == 0:
            raise ValueError("p_contaminated > 0 needs eval texts to embed: set n_eval >= 1 (or p_contaminated=0)")
        if not 0.0 < self.near_dup_edit <= 0.5:
            raise ValueError(f"CrawlConfig.near_dup_edit must be in (0, 0.5] (a fraction of words to edit), "
                             f"got {self.near_dup_edit}")
        if self.p_fresh_clean < 0.1 - 1e-9:  # tolerance: 1 - 0.9 is 0.0999... in floating point
            raise ValueError(f"p_exact_dup + p_near_dup + p_low_quality + p_spam + p_garbled + p_other = "
                             f"{1 - self.p_fresh_clean:.3f}; it must be <= 0.9 so that at least 10% of pages "
                             f"are fresh clean pages (duplicates copy them)")

    @property
    def kind_probs(self) -> dict[str, float]:
        """P(kind) of each page; the kinds are drawn from this categorical."""
        p = {"exact": self.p_exact_dup, "near": self.p_near_dup, "low_quality": self.p_low_quality,
             "spam": self.p_spam, "garbled": self.p_garbled, "other": self.p_other}
        return {**p, "clean": 1.0 - sum(p.values())}

    @property
    def p_fresh_clean(self) -> float:
        return self.kind_probs["clean"]


@dataclass
class Crawl:
    """A synthetic crawl: pages (ids 0..n-1), a held-out eval split, and the config that made them."""

    pages: list[Page]
    eval_texts: list[str]
    config: CrawlConfig

    def __len__(self) -> int:
        return len(self.pages)

    def texts(self) -> list[str]:
        """Ground-truth main text of every page, in id order."""
        return [p.text for p in self.pages]

    def htmls(self) -> list[str]:
        """Raw HTML of every page, in id order."""
        return [p.html for p in self.pages]

    def labels(self) -> dict[str, np.ndarray]:
        """Ground truth as columns, one row per page: id, quality, language, script, register, duplicate_of
        (-1 for none), dup_kind ("" for none), contaminated (bool), n_pii, junk (quality != "clean")."""
        ps = self.pages
        return {
            "id": np.array([p.id for p in ps], dtype=np.int64),
            "quality": np.array([p.quality for p in ps], dtype=str),
            "language": np.array([p.language for p in ps], dtype=str),
            "script": np.array([p.script for p in ps], dtype=str),
            "register": np.array([p.register for p in ps], dtype=str),
            "duplicate_of": np.array([-1 if p.duplicate_of is None else p.duplicate_of for p in ps], dtype=np.int64),
            "dup_kind": np.array([p.dup_kind or "" for p in ps], dtype=str),
            "contaminated": np.array([p.contaminated for p in ps], dtype=bool),
            "n_pii": np.array([len(p.pii) for p in ps], dtype=np.int64),
            "junk": np.array([p.quality != "clean" for p in ps], dtype=bool),
        }

    def summary(self) -> dict:
        """Counts per label, for printing: {"pages": n, "quality": {...}, "language": {...}, ...}."""
        ps = self.pages
        count = lambda key: dict(Counter(getattr(p, key) for p in ps).most_common())  # noqa: E731
        return {
            "pages": len(ps),
            "quality": count("quality"),
            "language": count("language"),
            "script": count("script"),
            "register": count("register"),
            "dup_kind": dict(Counter(p.dup_kind or "none" for p in ps).most_common()),
            "contaminated": sum(p.contaminated for p in ps),
            "pages_with_pii": sum(bool(p.pii) for p in ps),
            "pii_items": {k: sum(s.kind == k for p in ps for s in p.pii) for k in PII_KINDS},
            "eval_texts": len(self.eval_texts),
        }
