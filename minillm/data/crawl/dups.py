"""Near-duplicate pages: a copy of a page with a few words edited. Survey §4.1.2 (de-duplication: the same
content is re-posted across the web with small changes, which exact hashing misses and MinHash finds).

Edits are made on "units": whitespace-separated words for English and other scripts, Han characters for
Chinese (a Chinese text has no spaces, so its n-grams are character n-grams). Units inside protected spans
(PII items, an embedded benchmark passage) are never touched, and neither are units holding digits or
deletions next to them, so every PII item stays valid, keeps its boundaries and keeps its label.
"""
from __future__ import annotations

import re

from minillm.data.synthetic.lexicon import CHINESE, ENGLISH
from minillm.data.crawl.words import Rng

_WORD = re.compile(r"\S+")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_EN_VOCAB = tuple(ENGLISH.adjectives + ENGLISH.feelings + tuple(n for n, _ in ENGLISH.nouns))
_ZH_VOCAB = tuple(sorted(set(_HAN.findall("".join(CHINESE.places + CHINESE.feelings + CHINESE.adjectives)))))

Span = tuple  # (start, end, tag): tag is a PII kind or "eval"


def _has_digit(s: str) -> bool:
    return any(c.isdigit() for c in s)


def near_duplicate(text: str, spans: list[Span], frac: float, lang: str, r: Rng) -> tuple[str, list[Span]]:
    """Edit about `frac` of the units of `text` (at least one): replace, delete or insert a word (or Han
    character). Returns the new text and `spans` moved to their new offsets (their text is unchanged)."""
    zh = lang == "zh"
    units = [m.span() for m in (_HAN if zh else _WORD).finditer(text)]
    ok = [i for i, (s, e) in enumerate(units)
          if not _has_digit(text[s:e]) and not any(s < pe and ps < e for ps, pe, _ in spans)]
    if not ok:
        raise ValueError("near_duplicate: no editable unit outside protected spans")  # pages are never this bare
    n_edit = min(len(ok), max(1, round(frac * len(units))))
    chosen = sorted((ok[j] for j in r.g.choice(len(ok), size=n_edit, replace=False)), reverse=True)
    spans = [list(sp) for sp in spans]
    for i in chosen:  # right to left, so the offsets of the units still to edit stay valid
        s, e = units[i]
        old = text[s:e]
        op = r.pick(("replace", "replace", "replace", "delete", "insert"))
        if op == "delete":
            left = text[s - 1] if s > 0 else "\n"
            right = text[e] if e < len(text) else "\n"
            neighbours = text[max(0, s - 12):s] + text[e:e + 12]
            if zh:
                cut = (s, e) if not (left.isdigit() or right.isdigit()) else None
            elif left == " " and not _has_digit(neighbours):
                cut = (s - 1, e)
            elif right == " " and left == "\n" and not _has_digit(neighbours):
                cut = (s, e + 1)
            else:
                cut = None  # a lone word on its line, or digits nearby: replace instead
            if cut is not None:
                text = text[:cut[0]] + text[cut[1]:]
                _shift(spans, cut[1], cut[0] - cut[1])
                continue
            op = "replace"
        vocab = _ZH_VOCAB if zh else _EN_VOCAB
        core = old.rstrip(".,!?;:") or old  # keep a word's trailing punctuation, so sentences stay sentences
        new = r.pick(vocab)
        while new == core:
            new = r.pick(vocab)
        if op == "insert":
            new = old + new if zh else f"{core} {new}{old[len(core):]}"
        else:
            new += old[len(core):]
        text = text[:s] + new + text[e:]
        _shift(spans, e, len(new) - (e - s))
    return text, [tuple(sp) for sp in spans]


def _shift(spans: list[list], at: int, delta: int) -> None:
    for sp in spans:
        if sp[0] >= at:
            sp[0] += delta
            sp[1] += delta
