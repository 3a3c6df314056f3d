"""generate_crawl: assemble a seeded synthetic crawl with ground truth. Survey §4.1.1-4.1.2.

Order of work per page: draw its kind (one vectorized categorical draw for all pages), write the main
content (pages.py), add an eval passage / PII sentences / decoy sentences as tagged segments, join the
paragraphs into Page.text (tagged segments become spans), then wrap the text in HTML (html.py).
Duplicates copy an earlier fresh clean English or Chinese page; near duplicates edit it (dups.py).
"""
from __future__ import annotations

from dataclasses import fields

import numpy as np

from minillm.data.pii import PII_KINDS, PIISpan
from minillm.data.synthetic import corpus
from minillm.data.crawl import items, pages
from minillm.data.crawl import words as W
from minillm.data.crawl.dups import near_duplicate
from minillm.data.crawl.html import render
from minillm.data.crawl.model import Crawl, CrawlConfig, Page
from minillm.data.crawl.words import Rng

_MAX_RETRIES = 50  # a fresh page whose text collides with an earlier one is redrawn (never happens twice)


def _seed(seed: int, tag: int) -> int:
    """An independent 63-bit seed per purpose, so pools, eval texts and page draws never share a stream."""
    return int(np.random.SeedSequence([seed, tag]).generate_state(1, np.uint64)[0] >> 1)


def _eval_texts(n: int, seed: int) -> list[str]:
    """n long story documents from a seed of their own: a held-out "benchmark" never otherwise crawled.
    Long (>= 200 characters, >= 4 sentences) so that a passage is unmistakable, as real benchmark items are."""
    out: list[str] = []
    seen: set[str] = set()
    chunk = 0
    while len(out) < n:
        for d in corpus("story", max(64, 4 * n), _seed(seed, chunk)).docs:
            if len(d) >= 200 and d.count(". ") >= 3 and d not in seen and len(out) < n:
                seen.add(d)
                out.append(d)
        chunk += 1
    return out


def _insert(r: Rng, body: list, segs: list, lang: str, own_paragraph: bool) -> None:
    """Put a tagged sentence into the body: as its own paragraph, or at the end of an existing one."""
    if own_paragraph or not body:
        body.insert(r.int(0, len(body)), segs)
    else:
        para = body[r.int(0, len(body) - 1)]
        if lang != "zh":
            segs = [(" " + segs[0][0], segs[0][1])] + segs[1:] if not segs[0][1] else [(" ", "")] + segs
        para.extend(segs)


def _assemble(body: list) -> tuple[str, list[tuple[int, int, str]]]:
    """Join paragraphs with "\\n"; every tagged segment becomes a (start, end, tag) span of the text."""
    parts, spans, pos = [], [], 0
    for i, para in enumerate(body):
        if i:
            parts.append("\n")
            pos += 1
        for s, tag in para:
            if tag:
                spans.append((pos, pos + len(s), tag))
            parts.append(s)
            pos += len(s)
    return "".join(parts), spans


def _url(r: Rng, i: int, lang: str, script: str, quality: str) -> str:
    w = r.pick(W.SITE_WORDS)
    if quality == "spam":
        host = r.pick(W.SPAM_SITE).format(w)
    elif lang == "zh":
        host = f"{w}{r.int(1, 99)}.{r.pick(W.TLDS['zh'])}"
    elif lang == "other":
        host = f"{w}.{r.pick(W.TLDS[script])}"
    else:
        host = f"{w}{r.pick(W.SITE_WORDS)}.{r.pick(W.TLDS_EN)}"
    return f"https://www.{host}/{r.pick(('post', 'p', 'article', 'news', 'blog', 'thread'))}/{i}.html"


def _fresh(r: Rng, cfg: CrawlConfig, kind: str, pools: dict, eval_texts: list[str], tables: dict) -> dict:
    """Everything about a new (non-duplicate) page except its id, url and html."""
    register, contaminated = "formal", False
    if kind == "other":
        lang, script = "other", r.pick(W.OTHER_SCRIPTS)
        body, layout = pages.other_language(r, pools, script, tables[script])
    else:
        lang = "zh" if r.chance(cfg.p_zh) else "en"
        script = "han" if lang == "zh" else "latin"
        if kind == "clean":
            if r.chance(cfg.p_informal):
                register = "informal"
                body, layout = pages.informal(r, pools, lang)
            else:
                body, layout = pages.formal(r, pools, lang)
        else:
            body, layout = {"low_quality": pages.low_quality, "spam": pages.spam, "garbled": pages.garbled}[kind](
                r, pools, lang)
    if kind == "clean" and lang == "en" and r.chance(cfg.p_contaminated):
        contaminated = True
        _insert(r, body, [(r.pick(eval_texts), "eval")], lang, own_paragraph=True)
    if r.chance(cfg.p_pii):
        for _ in range(r.int(1, 3)):
            _insert(r, body, items.pii_sentence(r, r.pick(PII_KINDS), lang), lang, own_paragraph=r.chance(0.5))
    if r.chance(cfg.p_decoy):
        for _ in range(r.int(1, 2)):
            _insert(r, body, items.decoy_sentence(r, lang), lang, own_paragraph=r.chance(0.5))
    text, spans = _assemble(body)
    quality = "clean" if kind in ("clean", "other") else kind
    return dict(text=text, spans=spans, layout=layout, language=lang, script=script, quality=quality,
                register=register, contaminated=contaminated)


def generate_crawl(n_pages: int = 1000, seed: int = 0, **knobs) -> Crawl:
    """A synthetic web crawl of `n_pages` pages with exact ground truth; the same arguments always give
    the same crawl. `knobs` are CrawlConfig fields (p_zh, p_spam, p_near_dup, near_dup_edit, n_eval, ...)."""
    names = {f.name for f in fields(CrawlConfig)} - {"n_pages", "seed"}
    unknown = sorted(set(knobs) - names)
    if unknown:
        raise ValueError(f"unknown crawl knob(s) {unknown}; valid knobs: {', '.join(sorted(names))}")
    cfg = CrawlConfig(n_pages=n_pages, seed=seed, **knobs)
    n = cfg.n_pages
    r = Rng(np.random.default_rng(_seed(cfg.seed, 0)))
    pools = {"story": pages.Pools("story", _seed(cfg.seed, 1), max(256, 3 * n)),
             "story_zh": pages.Pools("story_zh", _seed(cfg.seed, 2), max(256, 2 * n)),
             "facts": pages.Pools("facts", _seed(cfg.seed, 3), max(256, n))}
    eval_texts = _eval_texts(cfg.n_eval, _seed(cfg.seed, 4)) if cfg.n_eval else []
    tables = W.translit_tables()
    probs = cfg.kind_probs
    kinds = r.g.choice(list(probs), size=n, p=np.array(list(probs.values())))  # (n,) page kinds
    drafts: list[dict] = []
    originals: list[int] = []   # fresh clean en/zh pages: what duplicates copy
    seen: set[str] = set()
    for i, kind in enumerate(kinds.tolist()):
        if kind in ("exact", "near") and originals:
            o = originals[r.int(0, len(originals) - 1)]
            d = dict(drafts[o], duplicate_of=o, dup_kind=kind)
            if kind == "near":
                d["text"], d["spans"] = near_duplicate(d["text"], d["spans"], cfg.near_dup_edit, d["language"], r)
        else:
            kind = "clean" if kind in ("exact", "near") else kind  # nothing to copy yet
            for _ in range(_MAX_RETRIES):
                d = _fresh(r, cfg, kind, pools, eval_texts, tables)
                if d["text"] not in seen:
                    break
            else:
                raise RuntimeError("could not draw a page whose text differs from every earlier page")
            d.update(duplicate_of=None, dup_kind=None)
            if d["quality"] == "clean" and d["language"] != "other":
                originals.append(i)
        seen.add(d["text"])
        drafts.append(d)
    out = []
    for i, d in enumerate(drafts):
        url = _url(r, i, d["language"], d["script"], d["quality"])
        lang_or_script = d["script"] if d["language"] == "other" else d["language"]
        pii = tuple(PIISpan(s, e, tag) for s, e, tag in sorted(d["spans"]) if tag != "eval")
        out.append(Page(id=i, url=url, html=render(r, d["text"], d["layout"], lang_or_script, url), text=d["text"],
                        language=d["language"], script=d["script"], quality=d["quality"], register=d["register"],
                        duplicate_of=d["duplicate_of"], dup_kind=d["dup_kind"], contaminated=d["contaminated"],
                        pii=pii))
    return Crawl(pages=out, eval_texts=eval_texts, config=cfg)
