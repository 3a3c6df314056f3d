"""Tests for minillm.data.crawl: determinism, label proportions against the knobs, PII ground truth
(checked with pii.py's validators), duplicates, contamination, the informal register, and the extraction
contract (the ground-truth text is recovered from the HTML by a small regex extractor written here)."""
from __future__ import annotations

import html as htmllib
import re
from collections import Counter

import numpy as np
import pytest

from minillm.data.crawl import (LANGUAGES, PII_KINDS, QUALITIES, Crawl, CrawlConfig, Page, PIISpan,
                                generate_crawl)
from minillm.data.pii import cn_id_check_char, cn_id_valid, ipv4_valid, luhn_valid

N = 2000


@pytest.fixture(scope="module")
def crawl() -> Crawl:
    return generate_crawl(N, seed=0)


def frac(mask) -> float:
    return float(np.mean(mask))


def test_deterministic_and_seed_dependent():
    a, b, c = generate_crawl(150, seed=7), generate_crawl(150, seed=7), generate_crawl(150, seed=8)
    assert a.pages == b.pages and a.eval_texts == b.eval_texts
    assert a.texts() != c.texts()
    assert [p.id for p in a.pages] == list(range(150))


def test_proportions_follow_the_knobs(crawl):
    L = crawl.labels()
    assert set(L) >= {"id", "quality", "language", "register", "duplicate_of", "dup_kind", "contaminated", "n_pii"}
    assert all(len(col) == N for col in L.values())
    q, lang, dup = L["quality"], L["language"], L["dup_kind"]
    assert set(q) <= set(QUALITIES) and set(lang) == set(LANGUAGES)
    assert abs(frac(q == "low_quality") - 0.15) < 0.03
    assert abs(frac(q == "spam") - 0.08) < 0.025
    assert abs(frac(q == "garbled") - 0.05) < 0.02
    assert abs(frac(dup == "exact") - 0.08) < 0.025
    assert abs(frac(dup == "near") - 0.08) < 0.025
    assert abs(frac(lang == "other") - 0.05) < 0.02
    assert abs(frac(lang[lang != "other"] == "zh") - 0.3) < 0.04
    clean_enzh = (q == "clean") & (lang != "other")
    assert abs(frac(L["register"][clean_enzh] == "informal") - 0.10) < 0.03
    assert abs(frac(L["n_pii"] > 0) - 0.15) < 0.03
    assert abs(frac(L["contaminated"][(q == "clean") & (lang == "en")]) - 0.03) < 0.015
    s = crawl.summary()
    assert s["pages"] == N and sum(s["quality"].values()) == N and s["quality"]["spam"] == int((q == "spam").sum())
    # The knobs really steer the mix.
    other = generate_crawl(600, seed=1, p_spam=0.3, p_zh=0.0, p_exact_dup=0.0).labels()
    assert abs(frac(other["quality"] == "spam") - 0.3) < 0.06
    assert set(other["language"]) <= {"en", "other"} and not (other["dup_kind"] == "exact").any()


def test_pii_spans_are_valid_items(crawl):
    kinds = Counter()
    for p in crawl.pages:
        assert list(p.pii) == sorted(p.pii, key=lambda s: s.start)
        for a, b in zip(p.pii, p.pii[1:]):
            assert a.end <= b.start
        for s in p.pii:
            item = p.text[s.start:s.end]
            kinds[s.kind] += 1
            digits = re.sub(r"[^0-9]", "", item)
            if s.kind == "email":
                assert re.fullmatch(r"[a-z0-9._]+@[a-z0-9.]+\.[a-z]{2,}", item), item
            elif s.kind == "phone":
                assert re.fullmatch(r"[0-9+() .\-]+", item) and 10 <= len(digits) <= 13, item
            elif s.kind == "ipv4":
                assert ipv4_valid(item), item
            elif s.kind == "cn_id":
                assert cn_id_valid(item) and item[17] == cn_id_check_char(item[:17]), item
            else:
                assert re.fullmatch(r"[0-9 \-]+", item) and 13 <= len(digits) <= 19 and luhn_valid(digits), item
    assert set(kinds) == set(PII_KINDS) and min(kinds.values()) > 20


# Decoy shapes, found in the text by their form: none may overlap a PII span, and each shape must occur.
_DECOY_SHAPES = {
    "bad_card": re.compile(r"(?<![0-9])[0-9]{4}([ \-])[0-9]{4,6}\1[0-9]{4,5}(?:\1[0-9]{1,4})*(?![0-9])"),
    "id_like": re.compile(r"(?<![0-9])[1-8][0-9]{16}[0-9X](?![0-9])"),
    "version": re.compile(r"(?<![0-9.])[0-9]+(?:\.[0-9]+){4}(?![0-9])"),
    "bad_ip": re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9])"),
}


def test_decoys_are_present_and_not_in_spans(crawl):
    seen = Counter()
    for p in crawl.pages:
        for name, rx in _DECOY_SHAPES.items():
            for m in rx.finditer(p.text):
                item, digits = m.group(), re.sub(r"[^0-9X]", "", m.group())
                is_decoy = {"bad_card": lambda: not luhn_valid(digits), "id_like": lambda: not cn_id_valid(item),
                            "version": lambda: True, "bad_ip": lambda: not ipv4_valid(item)}[name]()
                if is_decoy:
                    seen[name] += 1
                    assert not any(s.start < m.end() and m.start() < s.end for s in p.pii), (p.id, item)
    assert all(seen[k] > 5 for k in _DECOY_SHAPES), seen


def _shingles(text: str, lang: str, k: int = 5) -> set:
    units = re.findall(r"[\u4e00-\u9fff]", text) if lang == "zh" else text.split()
    return {tuple(units[i:i + k]) for i in range(len(units) - k + 1)}


def test_duplicates(crawl):
    ps = crawl.pages
    originals = set()
    n_near = 0
    for p in ps:
        if p.duplicate_of is None:
            assert p.dup_kind is None
            continue
        o = ps[p.duplicate_of]
        originals.add(o.id)
        assert o.id < p.id and o.duplicate_of is None and o.quality == "clean" and p.quality == "clean"
        assert (p.language, p.register, p.contaminated, len(p.pii)) == (o.language, o.register, o.contaminated,
                                                                        len(o.pii))
        assert p.html != o.html and p.url != o.url
        if p.dup_kind == "exact":
            assert p.text == o.text and p.pii == o.pii
        else:
            assert p.dup_kind == "near" and p.text != o.text
            a, b = _shingles(p.text, p.language), _shingles(o.text, o.language)
            assert len(a & b) / len(a | b) > 0.5, p.id
            assert [p.text[s.start:s.end] for s in p.pii] == [o.text[s.start:s.end] for s in o.pii]
            n_near += 1
    assert n_near > 50 and len(originals) > 100
    fresh = [p.text for p in ps if p.duplicate_of is None]
    assert len(set(fresh)) == len(fresh)          # no unlabelled exact duplicates


def test_contamination(crawl):
    evals = crawl.eval_texts
    assert len(evals) == 50 and len(set(evals)) == 50
    n = 0
    for p in crawl.pages:
        hits = [e for e in evals if e in p.text]
        assert bool(hits) == p.contaminated, p.id
        if p.contaminated:
            assert p.language == "en" and p.quality == "clean"
            assert any(line in evals for line in p.text.split("\n"))   # a whole paragraph, verbatim
            n += 1
    assert n > 10


def _upper_ratio(text: str) -> float:
    letters = [c for c in text if c.isascii() and c.isalpha()]
    return sum(c.isupper() for c in letters) / max(1, len(letters))


def test_informal_pages_are_clean_and_chatty(crawl):
    inf = [p for p in crawl.pages if p.register == "informal"]
    formal = [p for p in crawl.pages if p.register == "formal" and p.quality == "clean" and p.language == "en"]
    assert all(p.quality == "clean" and p.language in ("en", "zh") for p in inf)
    inf_en = [p for p in inf if p.language == "en" and not p.contaminated and not p.pii]
    assert len(inf_en) > 30
    # Only a decoy sentence ("Version 1.2.3.4.5 is out now.") can bring a capital into an informal page.
    assert max(_upper_ratio(p.text) for p in inf_en) < 0.5 * min(_upper_ratio(p.text) for p in formal)
    markers = ("lol", "tbh", "gonna", "!!", "ngl", "haha", "lmao", "omg", "😂", "🙃", "😭", "😊", "...", " u ")
    assert frac([any(m in p.text for m in markers) for p in inf_en]) > 0.9
    mean_line = lambda ps: np.mean([len(x) for p in ps for x in p.text.split("\n")])  # noqa: E731
    assert mean_line(inf_en) < 0.5 * mean_line(formal)


def _extract(page_html: str) -> str:
    """The extraction contract of minillm.data.crawl, as a few regexes (enough for these pages)."""
    m = (re.search(r"<(main|article)\b[^>]*>(.*?)</\1>", page_html, re.S)
         or re.search(r'<(div) class="content">(.*?)</div>', page_html, re.S))
    body = m.group(2)
    body = re.sub(r"<!--.*?-->", "", body, flags=re.S)
    body = re.sub(r"<(aside|script)\b.*?</\1>", "", body, flags=re.S)
    body = re.sub(r"<br\s*/?>|</(?:p|li|h1|h2)>", "\n", body)
    body = re.sub(r"<[^>]+>", "", body)
    lines = (" ".join(htmllib.unescape(x).split()) for x in body.split("\n"))
    return "\n".join(x for x in lines if x)


def test_text_is_recoverable_from_html(crawl):
    for p in crawl.pages:
        assert _extract(p.html) == p.text, p.id
        for line in p.text.split("\n"):
            assert line and line == " ".join(line.split())
    htmls = "".join(crawl.htmls())
    for needle in ("&amp;", "&lt;", "&#39;", "&#x27;", "<br", "<article", '<div class="content">', "<li>", "<h",
                   '<aside class="ad">', "<!--"):
        assert needle in htmls, needle
    # The boilerplate is real work: the whole page's text is far from the main text.
    p = crawl.pages[0]
    assert "<nav>" in p.html and "<footer>" in p.html and p.text not in htmllib.unescape(p.html.split("<nav>")[0])


def test_scripts_and_languages(crawl):
    for p in crawl.pages:
        if p.language == "other":
            assert p.quality == "clean" and p.script in ("cyrillic", "greek", "arabic", "devanagari")
            letters = [c for c in p.text if c.isalpha()]   # Latin only in PII and decoy sentences
            assert sum(c.isascii() for c in letters) < 0.1 * len(letters), p.id
        elif p.language == "zh" and p.quality in ("clean", "spam", "low_quality"):
            assert p.script == "han" and re.search(r"[\u4e00-\u9fff]", p.text)
        elif p.language == "en":
            assert p.script == "latin" and not re.search(r"[\u4e00-\u9fff]", p.text) or p.quality == "garbled"


def test_bad_knobs_raise_clear_errors():
    with pytest.raises(ValueError, match="p_spam must be a probability"):
        generate_crawl(10, p_spam=1.5)
    with pytest.raises(ValueError, match="unknown crawl knob"):
        generate_crawl(10, p_spamm=0.1)
    with pytest.raises(ValueError, match="at least 10% of pages"):
        generate_crawl(10, p_low_quality=0.5, p_spam=0.4)
    with pytest.raises(ValueError, match="n_pages must be"):
        generate_crawl(0)
    with pytest.raises(ValueError, match="n_pages must be an int"):
        generate_crawl(10.5)
    with pytest.raises(ValueError, match="near_dup_edit"):
        generate_crawl(10, near_dup_edit=0.0)
    with pytest.raises(ValueError, match="n_eval >= 1"):
        CrawlConfig(n_eval=0, p_contaminated=0.1)
    with pytest.raises(ValueError, match="seed"):
        generate_crawl(10, seed=-1)


def test_small_crawl_and_types():
    c = generate_crawl(1, seed=0, n_eval=0, p_contaminated=0.0)
    assert len(c) == 1 and c.eval_texts == [] and isinstance(c.pages[0], Page)
    assert c.pages[0].duplicate_of is None          # nothing to copy yet: the first page is always fresh
    assert all(isinstance(s, PIISpan) for p in generate_crawl(50, seed=2, p_pii=1.0).pages for s in p.pii)
