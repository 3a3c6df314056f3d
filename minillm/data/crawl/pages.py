"""Main-content text of each kind of synthetic web page. Survey §4.1.1-4.1.2: real crawls mix good prose
with chatty posts, boilerplate, keyword spam, garbled encodings and other languages; quality filters must
tell them apart, and this module writes each kind with a known label.

All content comes from minillm's own corpora (story, story_zh, facts), drawn in bulk by `Pools`. A page
body is a list of paragraphs; a paragraph is a list of segments (text, tag), tag "" for plain text, a PII
kind for a PII item, "eval" for an embedded benchmark passage (build.py adds those). Every paragraph
is stripped and single-spaced, so Page.text survives whitespace normalization by an extractor.
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np

from minillm.data.synthetic import corpus
from minillm.data.synthetic.lexicon import CHINESE, CITIES, ENGLISH
from minillm.data.crawl import words as W
from minillm.data.crawl.words import Rng

_EN_SENT = re.compile(r"(?<=\.) ")
_ZH_SENT = re.compile(r"[^。]+。?")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def norm(s: str) -> str:
    """Single spaces, no leading/trailing whitespace (the contract for every line of Page.text)."""
    return " ".join(s.split())


class Pools:
    """Documents of one corpus handed out in order, drawn in chunks: one corpus() call per chunk keeps
    generation fast, and handing each document out once keeps pages from sharing content by accident."""

    def __init__(self, name: str, seed: int, chunk: int):
        self.name, self.seed, self.chunk = name, seed, chunk
        self.docs: list[str] = []
        self.pos = 0
        self.n_chunks = 0

    def take(self, k: int) -> list[str]:
        while self.pos + k > len(self.docs):
            chunk_seed = int(np.random.SeedSequence([self.seed, self.n_chunks]).generate_state(1, np.uint64)[0] >> 1)
            self.docs = self.docs[self.pos:] + corpus(self.name, self.chunk, chunk_seed).docs
            self.pos, self.n_chunks = 0, self.n_chunks + 1
        out = self.docs[self.pos:self.pos + k]
        self.pos += k
        return out


def _plain(lines: list[str]) -> list:
    return [[(norm(s), "")] for s in lines if norm(s)]


def _paragraphs(r: Rng, take, sep: str, lo: int, hi: int) -> list[str]:
    """Paragraphs of 1-3 documents each until the page holds between lo and hi characters."""
    target, total, paras = r.int(lo, hi), 0, []
    while total < target:
        p = sep.join(take(r.int(1, 3)))
        paras.append(p)
        total += len(p)
    return paras


def _sentences(doc: str, lang: str) -> list[str]:
    return _ZH_SENT.findall(doc) if lang == "zh" else _EN_SENT.split(doc)


def _en_source(r: Rng, pools: dict) -> Callable[[int], list[str]]:
    topic = r.pick(("story", "story", "story", "facts", "facts", "mixed"))
    if topic == "mixed":
        return lambda k: [pools[r.pick(("story", "facts"))].take(1)[0] for _ in range(k)]
    return pools[topic].take


def _title(r: Rng, lang: str) -> str:
    if lang == "zh":
        return r.pick((f"{r.pick(CHINESE.places)}的故事（{r.int(1, 30)}）", f"{r.pick(CHINESE.names)[0]}的一天",
                       f"《{r.pick(CHINESE.places)}》随笔"))
    return r.pick((f"Stories & notes, part {r.int(1, 30)}", f"{r.pick(ENGLISH.names)[0]}'s day out",
                   f"Life in {r.pick(CITIES)} & beyond", f"Q&A: {r.pick(ENGLISH.places)}",
                   f"\"{r.pick(ENGLISH.adjectives).title()}\" tales from {r.pick(CITIES)}"))


def formal(r: Rng, pools: dict, lang: str) -> tuple[list, str]:
    """Clean prose: several documents as paragraphs, sometimes under a title line."""
    if lang == "zh":
        paras = _paragraphs(r, pools["story_zh"].take, "", 120, 500)
    else:
        paras = _paragraphs(r, _en_source(r, pools), " ", 300, 1200)
    if r.chance(0.3):
        return _plain([_title(r, lang)] + paras), "title_prose"
    return _plain(paras), "prose"


def _chatty_en(r: Rng, sentence: str) -> str:
    s = " " + sentence.lower().rstrip(".") + " "
    for a, b in W.INFORMAL_EN_SUBS:
        s = s.replace(a, b)
    prefix = r.pick(W.INFORMAL_EN_PREFIX) if r.chance(0.4) else ""
    return prefix + s.strip() + r.pick(W.INFORMAL_EN_SUFFIX)


def _chatty_zh(r: Rng, sentence: str) -> str:
    prefix = r.pick(W.INFORMAL_ZH_PREFIX) if r.chance(0.4) else ""
    return prefix + sentence.rstrip("。") + r.pick(W.INFORMAL_ZH_SUFFIX)


def informal(r: Rng, pools: dict, lang: str) -> tuple[list, str]:
    """Clean but chatty: the same kind of content, one short lowercase line per sentence, with fillers,
    slang and emoji. Real content in an unusual register (a classifier filter's false positives)."""
    zh = lang == "zh"
    docs = _paragraphs(r, pools["story_zh"].take if zh else _en_source(r, pools), "" if zh else " ",
                       100 if zh else 250, 400 if zh else 800)
    chatty, fillers = (_chatty_zh, W.INFORMAL_ZH_FILLER) if zh else (_chatty_en, W.INFORMAL_EN_FILLER)
    lines = []
    for doc in docs:
        for s in _sentences(doc, lang):
            lines.append(chatty(r, s))
            if r.chance(0.15):
                lines.append(r.pick(fillers))
    return _plain(lines), "lines"


# ---- junk ----------------------------------------------------------------------------------------------
def _fragment(r: Rng, pools: dict, lang: str) -> str:
    if lang == "zh":
        s = pools["story_zh"].take(1)[0]
        return s[:r.int(4, 9)] + r.pick(("...", "", "…"))
    ws = pools["story"].take(1)[0].split()
    return " ".join(ws[:r.int(2, 5)]).rstrip(".") + r.pick(("...", "", " »", "..."))


def low_quality(r: Rng, pools: dict, lang: str) -> tuple[list, str]:
    """Boilerplate-like pages: bullet fragments, navigation, a line repeated, tables of numbers/symbols,
    error stubs. One or two of these per page."""
    zh = lang == "zh"
    nav, low = (W.NAV_ZH, W.LOW_ZH) if zh else (W.NAV_EN, W.LOW_EN)
    styles = [r.pick(("bullets", "nav", "repeat", "table", "short"))]
    if r.chance(0.3):
        styles.append(r.pick(("bullets", "nav", "repeat", "table", "short")))
    lines: list[str] = []
    for style in styles:
        if style == "bullets":
            lines += ["• " + _fragment(r, pools, lang) for _ in range(r.int(3, 9))]
        elif style == "nav":
            lines.append(" | ".join(r.pick(nav) for _ in range(r.int(3, 7))))
            lines.append(f"{nav[0]} > {r.pick(nav)} > {r.pick(CHINESE.places if zh else ENGLISH.places)}")
            lines += [r.pick(low) for _ in range(r.int(1, 4))]
            lines.append(f"第{r.int(2, 40)}页 / 共{r.int(41, 90)}页" if zh else f"Page {r.int(2, 40)} of {r.int(41, 90)}")
        elif style == "repeat":
            line = r.pick((_fragment(r, pools, lang), r.pick(low)))
            lines += [line] * r.int(4, 10)
        elif style == "table":
            lines.append("名称 | 数量 | 价格 | 备注" if zh else "Item | Qty | Price | Note")
            for _ in range(r.int(3, 8)):
                noun = r.pick(CHINESE.nouns)[0] if zh else r.pick(ENGLISH.nouns)[0]
                lines.append(f"{noun} | {r.int(0, 999)} | {r.int(0, 99)}.{r.int(0, 99):02d} | "
                             f"{r.pick(W.TABLE_SYMBOLS)}")
        else:  # short stub; the number keeps two stubs from being accidental exact duplicates
            lines.append(r.pick(low))
            lines.append(f"错误 {r.int(400, 599)}：/{r.pick(CHINESE.places)}/{r.int(1, 99999)}" if zh
                         else f"Error {r.int(400, 599)}: /{r.pick(W.SITE_WORDS)}/{r.int(1, 99999)}")
    return _plain(lines), "list" if styles == ["bullets"] else "lines"


def spam(r: Rng, pools: dict, lang: str) -> tuple[list, str]:
    """Keyword stuffing: a few sales words repeated over and over, with products and prices."""
    zh = lang == "zh"
    vocab = W.SPAM_ZH if zh else W.SPAM_EN
    kws = [r.pick(vocab) for _ in range(r.int(3, 5))]
    products = [(r.pick(CHINESE.nouns)[0] if zh else r.pick(ENGLISH.nouns)[0] + "s") for _ in range(2)]
    sep = "" if zh else " "
    lines = []
    for _ in range(r.int(5, 14)):
        kw, prod = r.pick(kws), r.pick(products)
        form = r.int(0, 4)
        if form == 0:
            lines.append(sep.join([kw] * r.int(2, 5)))
        elif form == 1:
            lines.append(sep.join((kw, prod, r.pick(kws), f"${r.int(1, 99)}.99")))
        elif form == 2:
            lines.append(r.pick(W.SPAM_DECOR).format(kw if zh else kw.upper()))
        elif form == 3:
            lines.append(f"{kw}，{kw}，{kw}{prod}" if zh else f"{kw}, {kw}, {kw} {prod}")
        else:
            lines.append(sep.join(r.pick(kws) for _ in range(r.int(4, 8))))
    return _plain(lines), "lines"


def _garble_word(r: Rng, w: str) -> str:
    op = r.int(0, 4)
    if op == 0 and len(w) > 3:  # shuffle letters
        chars = list(w)
        r.g.shuffle(chars)
        return "".join(chars)
    if op == 1:  # mojibake
        return "".join(W.MOJIBAKE_EN.get(c, c) for c in w)
    if op == 2:  # symbols
        return w + "".join(r.pick(W.GARBLE_SYMBOLS) for _ in range(r.int(1, 4)))
    if op == 3 and len(w) > 3:  # broken word
        i = r.int(1, len(w) - 2)
        return w[:i] + " " + w[i:]
    return w.translate({ord(v): None for v in "aeiou"}) or w  # vowels dropped


def garbled(r: Rng, pools: dict, lang: str) -> tuple[list, str]:
    """Machine-garbled text: shuffled letters, mojibake (UTF-8 read as cp1252), symbol noise, broken words."""
    zh = lang == "zh"
    paras = _paragraphs(r, pools["story_zh" if zh else "story"].take, "" if zh else " ", 100 if zh else 250,
                        400 if zh else 900)
    out = []
    for p in paras:
        if zh:
            sents = []
            for s in _sentences(p, "zh"):
                op = r.int(0, 2)
                if op == 0:
                    s = s.encode("utf-8").decode("cp1252", errors="replace")
                elif op == 1:
                    chars = list(s)
                    r.g.shuffle(chars)
                    s = "".join(chars)
                else:
                    s = "".join(c + (r.pick(W.GARBLE_SYMBOLS) if r.chance(0.3) else "") for c in s)
                sents.append(s)
            out.append("".join(sents))
        else:
            out.append(" ".join(_garble_word(r, w) if r.chance(0.6) else w for w in p.split()))
    return _plain(out), "prose"


def other_language(r: Rng, pools: dict, script: str, table: dict) -> tuple[list, str]:
    """Clean prose in another script: our English stories transliterated letter by letter."""
    paras = _paragraphs(r, pools["story"].take, " ", 300, 1000)
    return _plain([p.translate(table) for p in paras]), "prose"


def han_chars(text: str) -> list[str]:
    return _HAN.findall(text)
