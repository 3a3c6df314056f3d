"""The whole cleaning pipeline on a synthetic crawl, every stage scored against ground truth. Survey §4.1.2
(data preprocessing: quality filtering, de-duplication, privacy reduction) and §4.1.4 (effect on training).

`run_pipeline(crawl)` runs, in the order a real pipeline (CCNet, RefinedWeb, FineWeb) does:

    extract (HTML -> text) -> language id -> quality filters (heuristic rules, keywords, perplexity, classifier)
    -> exact dedup -> MinHash-LSH near dedup -> decontamination against the eval set -> PII masking

and returns each stage's decision per page next to the truth, so `stage_rows` can print precision and recall
of every stage and `register_bias` how often each filter drops clean *informal* pages (the survey's warning
that filters trained on formal text remove dialects and colloquial registers).

What the filters learn from is what a real pipeline would have, never the crawl's labels:
- perplexity: one character n-gram LM per language trained on clean reference text (our generators),
  threshold at the 95th percentile of held-out reference perplexities (CCNet's recipe);
- classifier: "reference text = good, raw crawl = bad", as GPT-3 and LLaMA did with Wikipedia/WebText as
  positives and unfiltered Common Crawl as negatives; the raw crawl is another seed's, never the one scored.
  Since the raw crawl is mostly *clean* pages, this classifier learns "looks like the reference", not "is
  good": it drops most clean crawl pages and every informal one. That is the survey's bias warning, measured.
- classifier_labelled: the same model trained on a labelled development crawl (another seed, clean vs junk),
  as FineWeb-Edu trains on annotated pages: what the classifier family can do with the right labels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minillm.data.clean import (
    CharNgramLM,
    QualityClassifier,
    QualityRules,
    extract_text,
    heuristic_filter,
    keyword_filter,
    perplexity_filter,
    perplexity_threshold,
    precision_recall,
    script_language,
)
from minillm.data.crawl import Crawl, generate_crawl
from minillm.data.dedup import decontaminate, exact_dedup, near_dedup
from minillm.data.pii import find_pii, mask_pii_batch
from minillm.data.synthetic import corpus

QUALITY_FILTERS = ("heuristic", "keyword", "perplexity", "classifier", "classifier_labelled")


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of every stage; the defaults are the published recipes' (see each stage's module)."""

    rules: QualityRules = field(default_factory=QualityRules)
    keyword_max_hits: int = 2                # drop pages with more blocklist hits than this
    perplexity_quantile: float = 0.95        # keep the reference texts' lowest 95% of perplexities
    classifier_threshold: float = 0.5        # P(reference-like) below this -> drop
    use_filters: tuple[str, ...] = ("heuristic", "keyword", "perplexity")  # which quality filters the cleaned set applies
    near_threshold: float = 0.7              # MinHash-LSH Jaccard threshold (our near copies: J ~ 0.7-0.8)
    num_perm: int = 128
    decontam_n: int = 13                     # GPT-3's 13-gram rule (words)
    n_reference_docs: int = 600              # clean reference documents per language for LMs and classifier
    seed: int = 0

    def __post_init__(self):
        unknown = sorted(set(self.use_filters) - set(QUALITY_FILTERS))
        if unknown:
            raise ValueError(f"use_filters has unknown filters {unknown}; choose from {QUALITY_FILTERS}")
        if not (isinstance(self.keyword_max_hits, int) and self.keyword_max_hits >= 0):
            raise ValueError(f"keyword_max_hits={self.keyword_max_hits!r} must be an int >= 0")
        for name in ("perplexity_quantile", "classifier_threshold", "near_threshold"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 < v < 1):
                raise ValueError(f"{name}={v!r} must be in (0, 1)")
        for name in ("num_perm", "decontam_n", "n_reference_docs"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name}={v!r} must be a positive int")


def reference_texts(n_docs: int, seed: int) -> dict[str, list[str]]:
    """Clean reference text per language, from our generators: English stories and facts, Chinese stories."""

    half = max(1, n_docs // 2)
    return {"en": corpus("story", half, seed).docs + corpus("facts", n_docs - half, seed).docs,
            "zh": corpus("story_zh", n_docs, seed).docs}


@dataclass
class PipelineResult:
    """Decisions of every stage (True = flagged / dropped) for each page, the texts, and the truth."""

    texts: list[str]                      # extracted text of every page
    flags: dict[str, np.ndarray]          # stage -> (D,) bool: the stage drops (or flags) the page
    truth: dict[str, np.ndarray]          # target -> (D,) bool: what the stage should flag
    keep: np.ndarray                      # (D,) bool: survives every stage used for the cleaned set
    cleaned: list[str]                    # kept texts, PII masked
    pii_counts: dict[str, int]
    extras: dict = field(default_factory=dict)


def _pii_scores(texts: list[str], crawl: Crawl) -> dict:
    """Precision/recall of find_pii over items: a found span counts when it equals a true one exactly."""
    tp = fp = fn = 0
    for text, page in zip(texts, crawl.pages):
        if text != page.text:  # spans index into the true text; score only pages extracted exactly
            continue
        found = {(s.start, s.end, s.kind) for s in find_pii(text)}
        true = {(s.start, s.end, s.kind) for s in page.pii}
        tp, fp, fn = tp + len(found & true), fp + len(found - true), fn + len(true - found)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"stage": "pii", "target": "PII items", "flagged": tp + fp, "true": tp + fn, "precision": precision,
            "recall": recall, "f1": f1}


def run_pipeline(crawl: Crawl, cfg: PipelineConfig = PipelineConfig()) -> PipelineResult:
    """Run every stage on `crawl` (see the module docstring) and collect decisions and truth."""
    if not isinstance(crawl, Crawl):
        raise TypeError(f"crawl must be a minillm.data.crawl.Crawl (from generate_crawl), got {type(crawl).__name__}")
    if not cfg.use_filters:
        raise ValueError("use_filters is empty: the cleaned set would apply no quality filter")
    labels = crawl.labels()
    texts = [extract_text(p.html) for p in crawl.pages]
    lang = np.array([script_language(t) for t in texts])                              # (D,)
    flags: dict[str, np.ndarray] = {"language": lang == "other"}
    lang_for_rules = np.where(lang == "zh", "zh", "en").tolist()
    flags["heuristic"] = heuristic_filter(texts, lang_for_rules, cfg.rules).drop
    flags["keyword"] = keyword_filter(texts, max_hits=cfg.keyword_max_hits).drop

    ref = reference_texts(cfg.n_reference_docs, cfg.seed + 101)
    held = reference_texts(max(50, cfg.n_reference_docs // 4), cfg.seed + 202)
    lms = {k: CharNgramLM(order=4).fit(v) for k, v in ref.items()}
    limits = {k: perplexity_threshold(lms[k], held[k], cfg.perplexity_quantile) for k in lms}
    ppl_lang = np.where(lang == "zh", "zh", "en").tolist()
    ppl = perplexity_filter(texts, lms, limits, ppl_lang)
    flags["perplexity"] = ppl.drop

    dev = generate_crawl(len(crawl), seed=crawl.config.seed + 7919)                     # another crawl, never scored
    dev_texts = [extract_text(h) for h in dev.htmls()]
    positives = ref["en"] + ref["zh"]
    clf = QualityClassifier(seed=cfg.seed).fit(positives + dev_texts, [1] * len(positives) + [0] * len(dev_texts))
    p_clean = clf.predict_proba(texts)
    flags["classifier"] = p_clean < cfg.classifier_threshold
    dev_clean = (dev.labels()["quality"] == "clean").astype(int).tolist()
    clf_lab = QualityClassifier(seed=cfg.seed).fit(dev_texts, dev_clean)
    p_clean_lab = clf_lab.predict_proba(texts)
    flags["classifier_labelled"] = p_clean_lab < cfg.classifier_threshold

    flags["exact_dup"] = ~exact_dedup(texts).keep
    near = np.zeros(len(texts), dtype=bool)
    for language, unit, n in (("en", "word", 5), ("zh", "char", 5)):                  # Chinese has no spaces
        idx = np.flatnonzero(lang == language)
        if len(idx) > 1:
            res = near_dedup([texts[i] for i in idx], cfg.near_threshold, cfg.num_perm, n, unit, cfg.seed + 1)
            near[idx] = ~res.keep
    flags["near_dup"] = near
    flags["contaminated"] = ~decontaminate(texts, crawl.eval_texts, n=cfg.decontam_n).keep

    junk = labels["quality"] != "clean"
    truth = {"language": labels["language"] == "other", "exact_dup": labels["dup_kind"] == "exact",
             "near_dup": labels["duplicate_of"] >= 0, "contaminated": labels["contaminated"].astype(bool),
             **{f: junk for f in QUALITY_FILTERS}}
    keep = ~flags["language"] & ~flags["exact_dup"] & ~flags["near_dup"] & ~flags["contaminated"]
    for f in cfg.use_filters:
        keep &= ~flags[f]
    cleaned, counts = mask_pii_batch([t for t, k in zip(texts, keep) if k])
    return PipelineResult(texts=texts, flags=flags, truth=truth, keep=keep, cleaned=cleaned, pii_counts=counts,
                          extras={"languages": lang, "perplexity": ppl.scores, "p_clean": p_clean, "p_clean_labelled": p_clean_lab,
                                  "labels": labels, "extraction_exact": float(np.mean(
                                      [t == p.text for t, p in zip(texts, crawl.pages)])),
                                  "pii": _pii_scores(texts, crawl)})


STAGE_TARGETS = {"language": "other-language page", "heuristic": "junk page", "keyword": "junk page",
                 "perplexity": "junk page", "classifier": "junk page", "classifier_labelled": "junk page",
                 "exact_dup": "exact duplicate",
                 "near_dup": "any duplicate", "contaminated": "contains eval text"}


def stage_rows(result: PipelineResult) -> list[dict]:
    """Precision, recall and F1 of every stage against its target (see STAGE_TARGETS), plus PII items.

    Quality filters are scored on pages that are neither duplicates nor other-language, so each filter is
    judged on the pages it is meant to decide."""
    labels = result.extras["labels"]
    fresh = (labels["duplicate_of"] < 0) & (labels["language"] != "other")
    rows = []
    for stage, target in STAGE_TARGETS.items():
        mask = fresh if stage in QUALITY_FILTERS else np.ones_like(fresh)
        pr = precision_recall(result.flags[stage][mask], result.truth[stage][mask])
        rows.append({"stage": stage, "target": target, "flagged": int(result.flags[stage][mask].sum()),
                     "true": int(result.truth[stage][mask].sum()), "precision": pr["precision"],
                     "recall": pr["recall"], "f1": pr["f1"]})
    rows.append(result.extras["pii"])
    return rows


def register_bias(result: PipelineResult) -> list[dict]:
    """For each quality filter: the share of clean formal and of clean informal pages it wrongly drops."""
    labels = result.extras["labels"]
    clean = (labels["quality"] == "clean") & (labels["duplicate_of"] < 0) & (labels["language"] != "other")
    rows = []
    for f in QUALITY_FILTERS:
        row = {"filter": f}
        for reg in ("formal", "informal"):
            m = clean & (labels["register"] == reg)
            row[f"dropped_{reg}"] = float(result.flags[f][m].mean()) if m.any() else float("nan")
            row[f"n_{reg}"] = int(m.sum())
        rows.append(row)
    return rows
