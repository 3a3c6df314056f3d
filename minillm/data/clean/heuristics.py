"""Heuristic quality filters: Gopher's and C4's hand-written rules, and a keyword blocklist (Survey
§4.1.2, "Quality filtering", the heuristic-based approach: language-based, metric-based, statistic-based
and keyword-based filtering).

The rules, each with its threshold in `QualityRules` (defaults are the published values):

* Gopher (Rae et al. 2021, "Scaling Language Models", appendix A, MassiveText quality filter): word count
  in [50, 100 000]; mean word length in [3, 10] characters; symbol-to-word ratio <= 0.1 for "#" and
  ellipses; <= 90 % of lines start with a bullet; <= 30 % of lines end with an ellipsis; >= 80 % of words
  contain a letter; at least 2 occurrences of the stop words the, be, to, of, and, that, have, with;
  repetition: <= 30 % duplicate lines, <= 20 % of characters in duplicate lines, the most common 2/3/4-gram
  covers <= 20/18/16 % of the word characters, duplicated 5..10-grams cover <= 15..10 %.
* C4 (Raffel et al. 2020): lines should end in terminal punctuation (C4 drops each line that does not; here
  a document-level share, >= 12 % as in FineWeb, Penedo et al. 2024), no "lorem ipsum", no curly braces
  (code), no "javascript" (pages asking to enable it).

Words are runs of word characters (`\\w+`, apostrophes inside allowed: "don't" is one word), so "mill."
is the 4-letter word "mill". Lines are the non-empty stripped lines; in the crawl a paragraph is a line.

Chinese has no spaces: for language "zh" every Chinese character is one token (a run of other word
characters, e.g. a Latin word or a number, is one token too). The word-count range becomes a character
range, [min_zh_chars, max_zh_chars] = [100, 200 000] by default: one English word carries about as much
content as 1.5 to 2 Chinese characters, so 50 words ~ 100 characters. Mean word length and the English
stop words do not apply to Chinese and are left out of its results; the n-gram rules count character
n-grams twice as long as the word n-grams they stand for (a Chinese word is about two characters: "top
2-gram" looks at 4-character strings), otherwise every 5-character phrase such as 心里很高兴 would count as a
repeated "5-gram". Language "other" gets the English rules without the stop words.
"""
from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Sequence

import numpy as np
import regex

from minillm.data.clean._common import FilterResult, check_float, check_int, check_text, check_texts

LANGUAGES = ("en", "zh", "other")
STOP_WORDS_EN = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "●", "○", "◦", "▪", "▫", "‣", "⁃", "·", "-", "*", "–", "—", "+", ">")
ELLIPSES = ("...", "…")
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", "。", "！", "？", "」", "』")
TOP_NGRAM_NS = (2, 3, 4)
DUP_NGRAM_NS = (5, 6, 7, 8, 9, 10)
_WORD_EN = regex.compile(r"\w+(?:['’]\w+)*")
_WORD_ZH = regex.compile(r"\p{Han}|(?:(?!\p{Han})\w)+(?:['’](?:(?!\p{Han})\w)+)*")
# A word of the words joined by spaces that has no letter (digits, underscores, marks only).
_NO_LETTER_WORD = regex.compile(r"(?<!\S)[^\s\p{L}]+(?!\S)")

RULE_NAMES = ("word_count", "mean_word_length", "symbol_ratio", "bullet_lines", "ellipsis_lines", "alpha_words",
              "stop_words", "dup_lines", "dup_line_chars", *(f"top_{n}gram" for n in TOP_NGRAM_NS),
              *(f"dup_{n}gram" for n in DUP_NGRAM_NS), "terminal_punct", "lorem_ipsum", "curly_braces",
              "javascript")


@dataclass(frozen=True)
class QualityRules:
    """Thresholds of every rule (a document passes a rule when its statistic is inside the bound)."""

    min_words: int = 50                      # Gopher: 50 <= words <= 100 000
    max_words: int = 100_000
    min_zh_chars: int = 100                  # the same range for Chinese, in characters (module docstring)
    max_zh_chars: int = 200_000
    min_mean_word_length: float = 3.0        # Gopher: mean word length in [3, 10]
    max_mean_word_length: float = 10.0
    max_symbol_ratio: float = 0.1            # Gopher: ("#" + ellipses) / words <= 0.1
    max_bullet_lines: float = 0.9            # Gopher: share of lines starting with a bullet <= 0.9
    max_ellipsis_lines: float = 0.3          # Gopher: share of lines ending with an ellipsis <= 0.3
    min_alpha_words: float = 0.8             # Gopher: share of words containing a letter >= 0.8
    min_stop_words: int = 2                  # Gopher: >= 2 stop-word occurrences (English only)
    max_dup_lines: float = 0.3               # Gopher: duplicate lines / lines <= 0.3
    max_dup_line_chars: float = 0.2          # Gopher: characters in duplicate lines / characters <= 0.2
    max_top_ngram: tuple[float, ...] = (0.20, 0.18, 0.16)                    # n = 2, 3, 4
    max_dup_ngram: tuple[float, ...] = (0.15, 0.14, 0.13, 0.12, 0.11, 0.10)  # n = 5..10
    min_terminal_punct: float = 0.12         # C4 / FineWeb: share of lines ending in . ! ? " ... >= 0.12
    disabled: frozenset[str] = field(default_factory=frozenset)   # rule names (RULE_NAMES) to skip

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("min_words", "max_words", "min_zh_chars", "max_zh_chars", "min_stop_words"):
                check_int(v, f.name, 0)
            elif f.name.startswith(("min_mean", "max_mean")):
                check_float(v, f.name, 0.0)
            elif f.name in ("max_top_ngram", "max_dup_ngram"):
                want = len(TOP_NGRAM_NS if f.name == "max_top_ngram" else DUP_NGRAM_NS)
                if not isinstance(v, tuple) or len(v) != want:
                    raise ValueError(f"{f.name} must be a tuple of {want} fractions, got {v!r}")
                for x in v:
                    check_float(x, f.name, 0.0, 1.0)
            elif f.name == "max_symbol_ratio":
                check_float(v, f.name, 0.0)
            elif f.name != "disabled":
                check_float(v, f.name, 0.0, 1.0)
        for lo, hi in (("min_words", "max_words"), ("min_zh_chars", "max_zh_chars"),
                       ("min_mean_word_length", "max_mean_word_length")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo}={getattr(self, lo)} must be <= {hi}={getattr(self, hi)}")
        if isinstance(self.disabled, str) or not all(isinstance(d, str) for d in self.disabled):
            raise TypeError(f"disabled must be a set of rule names such as {{'top_2gram'}}, got {self.disabled!r}")
        object.__setattr__(self, "disabled", frozenset(self.disabled))
        unknown = sorted(self.disabled - set(RULE_NAMES))
        if unknown:
            raise ValueError(f"disabled names unknown rules {unknown}; valid names: {', '.join(RULE_NAMES)}")


def _check_language(language: object) -> str:
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    return language  # type: ignore[return-value]


def tokens(text: str, language: str) -> list[str]:
    """The words of `text`; for "zh" every Chinese character is its own token."""
    return (_WORD_ZH if _check_language(language) == "zh" else _WORD_EN).findall(check_text(text))


def _covered(starts: np.ndarray, n: int, length: int) -> np.ndarray:
    """(length,) bool: positions inside any n-gram starting at one of `starts` (a difference array)."""
    # starts + n <= length, so both counts have exactly length + 1 entries.
    delta = np.bincount(starts, minlength=length + 1) - np.bincount(starts + n, minlength=length + 1)
    return np.cumsum(delta[:length]) > 0


def _word_ids(words: list[str]) -> np.ndarray:
    """(W,) int64 dense ids of the words (equal words, equal ids); map() keeps the loop in C."""
    index = {w: i for i, w in enumerate(dict.fromkeys(words))}
    return np.fromiter(map(index.__getitem__, words), dtype=np.int64, count=len(words))


def _ngram_fractions(words: list[str], scale: int = 1) -> dict[str, float]:
    """Character shares covered by the top 2/3/4-gram and by duplicated 5..10-grams (Gopher repetition);
    with scale=2 the n-grams are twice as long (Chinese characters, see the module docstring)."""
    out = {f"top_{n}gram": 0.0 for n in TOP_NGRAM_NS} | {f"dup_{n}gram": 0.0 for n in DUP_NGRAM_NS}
    if len(words) < 2:
        return out
    lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))        # (W,) characters per word
    total, csum = lens.sum(), np.concatenate([[0], np.cumsum(lens)])
    uni = _word_ids(words)        # (W,) word ids
    gram = uni                    # (W-m+1,) dense id of the m-gram starting at each position, m = 1, 2, ...
    base = np.int64(len(words) + 1)
    for m in range(2, scale * max(DUP_NGRAM_NS) + 1):
        if len(words) < m:
            break
        # The m-gram is the (m-1)-gram plus one word: an exact id from the pair, re-densified.
        pair = gram[:-1] * base + uni[m - 1:]
        _, gram, cnt = np.unique(pair, return_inverse=True, return_counts=True)
        gram = gram.ravel()
        if m % scale:
            continue
        n = m // scale
        if n in TOP_NGRAM_NS:
            if cnt.max() < 2:        # an n-gram seen once is not repetition
                continue
            # The most common n-gram; among ties, the one with the most characters.
            group_chars = np.bincount(gram, weights=csum[m:] - csum[:-m], minlength=len(cnt))
            top = np.lexsort((group_chars, cnt))[-1]
            out[f"top_{n}gram"] = float(lens[_covered(np.flatnonzero(gram == top), m, len(words))].sum() / total)
        elif n in DUP_NGRAM_NS:
            starts = np.flatnonzero(cnt[gram] > 1)
            if len(starts):
                out[f"dup_{n}gram"] = float(lens[_covered(starts, m, len(words))].sum() / total)
    return out


def text_stats(text: str, language: str = "en") -> dict[str, float]:
    """Every statistic the rules look at, for one document (the numbers behind `rule_results`)."""
    words = tokens(text, language)
    lower = text.lower()
    lines = [s for s in (line.strip() for line in text.split("\n")) if s]
    n_words, n_lines = len(words), max(len(lines), 1)
    n_symbols = text.count("#") + sum(text.count(e) for e in ELLIPSES)
    line_counts = Counter(lines)
    dup_lines = sum(c - 1 for c in line_counts.values())
    dup_chars = sum((c - 1) * len(s) for s, c in line_counts.items())
    line_chars = sum(map(len, lines))
    stats = {
        "n_words": float(n_words),
        "mean_word_length": sum(map(len, words)) / n_words if n_words else 0.0,
        "symbol_ratio": n_symbols / n_words if n_words else (float("inf") if n_symbols else 0.0),
        "bullet_lines": sum(s.startswith(BULLETS) for s in lines) / n_lines,
        "ellipsis_lines": sum(s.endswith(ELLIPSES) for s in lines) / n_lines,
        # Both counts stay in C: one regex over the joined words, one Counter over the lower-cased words.
        "alpha_words": 1 - len(_NO_LETTER_WORD.findall(" ".join(words))) / n_words if n_words else 0.0,
        "stop_words": float(sum(map(Counter(map(str.lower, words)).__getitem__, STOP_WORDS_EN))),
        "dup_lines": dup_lines / n_lines,
        "dup_line_chars": dup_chars / line_chars if line_chars else 0.0,
        "terminal_punct": sum(s.endswith(TERMINAL_PUNCT) for s in lines) / n_lines if lines else 0.0,
        "lorem_ipsum": float("lorem ipsum" in lower),
        "curly_braces": float("{" in text or "}" in text),
        "javascript": float("javascript" in lower),
    }
    return stats | _ngram_fractions(words, scale=2 if language == "zh" else 1)


def rule_results(text: str, language: str = "en", rules: QualityRules | None = None) -> dict[str, bool]:
    """{rule name: passed} for one document. Rules that do not apply to `language` (mean word length and
    stop words for "zh", stop words for "other") and rules in rules.disabled are left out."""
    rules = QualityRules() if rules is None else rules
    if not isinstance(rules, QualityRules):
        raise TypeError(f"rules must be a QualityRules, got {type(rules).__name__}")
    s = text_stats(text, language)
    lo, hi = (rules.min_zh_chars, rules.max_zh_chars) if language == "zh" else (rules.min_words, rules.max_words)
    out = {
        "word_count": lo <= s["n_words"] <= hi,
        "mean_word_length": rules.min_mean_word_length <= s["mean_word_length"] <= rules.max_mean_word_length,
        "symbol_ratio": s["symbol_ratio"] <= rules.max_symbol_ratio,
        "bullet_lines": s["bullet_lines"] <= rules.max_bullet_lines,
        "ellipsis_lines": s["ellipsis_lines"] <= rules.max_ellipsis_lines,
        "alpha_words": s["alpha_words"] >= rules.min_alpha_words,
        "stop_words": s["stop_words"] >= rules.min_stop_words,
        "dup_lines": s["dup_lines"] <= rules.max_dup_lines,
        "dup_line_chars": s["dup_line_chars"] <= rules.max_dup_line_chars,
        **{f"top_{n}gram": s[f"top_{n}gram"] <= t for n, t in zip(TOP_NGRAM_NS, rules.max_top_ngram)},
        **{f"dup_{n}gram": s[f"dup_{n}gram"] <= t for n, t in zip(DUP_NGRAM_NS, rules.max_dup_ngram)},
        "terminal_punct": s["terminal_punct"] >= rules.min_terminal_punct,
        "lorem_ipsum": not s["lorem_ipsum"],
        "curly_braces": not s["curly_braces"],
        "javascript": not s["javascript"],
    }
    skip = set(rules.disabled) | ({"mean_word_length", "stop_words"} if language == "zh" else set()) \
        | ({"stop_words"} if language == "other" else set())
    return {k: v for k, v in out.items() if k not in skip}


def _languages(languages: str | Sequence[str], n: int) -> list[str]:
    if isinstance(languages, str):
        return [_check_language(languages)] * n
    languages = list(languages)
    if len(languages) != n:
        raise ValueError(f"need one language per text: {n} texts, {len(languages)} languages "
                         f"(or pass one language as a str for all)")
    return [_check_language(lang) for lang in languages]


def heuristic_filter(texts: Sequence[str], languages: str | Sequence[str] = "en",
                     rules: QualityRules | None = None) -> FilterResult:
    """Apply every rule to every document; keep[i] is True when document i passes all of them, reasons[i]
    lists the rules it failed and scores[i] counts them. `languages`: one per text, or one str for all."""
    texts = check_texts(texts)
    langs = _languages(languages, len(texts))
    reasons = [[k for k, ok in rule_results(t, lang, rules).items() if not ok] for t, lang in zip(texts, langs)]
    return FilterResult(keep=np.array([not r for r in reasons], dtype=bool), reasons=reasons,
                        scores=np.array([len(r) for r in reasons], dtype=np.float64))


# ---- keyword-based filtering -------------------------------------------------------------------------
# A short spam/adult blocklist written for minillm. Multi-word entries match across any whitespace;
# entries with Chinese characters match anywhere (Chinese has no word boundaries), others as whole words.
BLOCKLIST = ("casino", "click here", "buy now", "cheap", "free money", "viagra", "lottery", "jackpot",
             "act now", "limited offer", "best price", "discount", "earn money", "work from home",
             "100% free", "winner", "xxx", "porn", "bitcoin profit", "miracle cure", "weight loss",
             "免费", "赌场", "点击这里", "立即购买", "优惠", "赚钱", "彩票", "中奖", "代开发票")


@functools.lru_cache(maxsize=32)
def _blocklist_pattern(blocklist: tuple[str, ...]) -> re.Pattern:
    alts = []
    for entry in sorted(blocklist, key=len, reverse=True):   # longest first: "free money" before "free"
        body = r"\s+".join(map(re.escape, entry.split()))
        alts.append(body if regex.search(r"\p{Han}", entry) else rf"(?<!\w){body}(?!\w)")
    return re.compile("|".join(alts), re.IGNORECASE)


def _check_blocklist(blocklist: Sequence[str]) -> tuple[str, ...]:
    if isinstance(blocklist, str) or not all(isinstance(b, str) and b.strip() for b in blocklist):
        raise ValueError("blocklist must be a list of non-empty str entries, e.g. ['casino', 'click here']")
    if not blocklist:
        raise ValueError("blocklist is empty: pass at least one entry")
    return tuple(blocklist)


def keyword_hits(text: str, blocklist: Sequence[str] = BLOCKLIST) -> int:
    """How many times blocklist entries occur in `text` (case-insensitive, whole words)."""
    return len(_blocklist_pattern(_check_blocklist(blocklist)).findall(check_text(text)))


def keyword_filter(texts: Sequence[str], blocklist: Sequence[str] = BLOCKLIST, max_hits: int = 1) -> FilterResult:
    """Drop documents with more than `max_hits` blocklist hits (one stray "cheap" is allowed by default:
    a single word is weak evidence, spam repeats its pitch). scores = hits per document."""
    texts = check_texts(texts)
    max_hits = check_int(max_hits, "max_hits", 0)
    pattern = _blocklist_pattern(_check_blocklist(blocklist))
    hits = np.array([len(pattern.findall(t)) for t in texts], dtype=np.float64)
    keep = hits <= max_hits
    return FilterResult(keep=keep, reasons=[[] if k else ["keywords"] for k in keep], scores=hits)
