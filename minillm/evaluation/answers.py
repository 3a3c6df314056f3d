"""Answer parsers: the final number of a GSM8K-style response, the chosen letter of an MMLU-style one. Survey
§7.1.3 (reasoning: GSM8K is scored by the exact final number), §7.1.2 / §7.3 (MMLU: multiple choice answered in
text), §6.3 (chain-of-thought: the working comes first, so the answer must be found in it).

`parse_number(text)` reads the final answer and writes it in one canonical form, so equal values give equal
strings and string equality is exact value equality (no float noise):
- where the text holds "####" (GSM8K's mark), the first number on the rest of the line after the LAST "####";
  None when that line holds no number (a model that wrote the mark committed to an answer; falling back to a
  number in its working would reward answers it never gave). Without "####", the last number in the text.
- a number: an optional sign glued to it ("-3", "+5", "−3", "-$5"; not after a letter, digit or bracket, so
  "10-20" is a range and "5 - 3" a subtraction), then digits with optional thousands commas ("1,234,567"; any
  other comma separates numbers: "1,5" is 1 and 5), then an optional decimal part (".5", "3.25"; a "." not
  followed by a digit ends a sentence). "$1,234.50" reads 1234.5; units and "%" are ignored. A fraction of two
  integers "3/4" is read as its value (a zero denominator is not a fraction: "1/0" reads as 1 and 0).
  Scientific notation is not read ("1e5" is 1 and 5).
- canonical form: no commas, sign or leading zeros ("+5" -> "5", "-0" -> "0", "007" -> "7"), no trailing
  fractional zeros ("42.0" -> "42", "2.50" -> "2.5"); fractions are reduced and written as a decimal where
  one is exact ("1/2" -> "0.5", "6/3" -> "2"), else as p/q ("4/6" -> "2/3"). GSM8K golds are integers, and
  "18.00 dollars" is the answer 18.

`parse_choice(text, options)` returns the letter ("A", "B", ...) a response chose, or None when it chose none or
more than one. A response that is only a letter, bare or dressed ("B", "b", "(B)", "B.", "**B**"), chose it.
Otherwise only a capital letter within the options, in one of these positions, is a claim, and the first tier
that claims any letter decides (one letter: chosen; several: ambiguous, None):
1. after the word "answer" (and an optional "is", ":", "=", "would be", "option", ...): "Answer: B", "the
   answer is (C)", "the correct answer is option D";
2. after "option" or "choice" ("I pick option B"), in brackets anywhere ("(B)", "[B]"), or opening a line and
   followed by "." or ")" ("B. Paris", "C) 42").
So "option A is wrong, so the answer is C" chose C, and "A or B" / "the answer is A or B" chose nothing: letters
joined after such a word by "or", "and", "/" or "," are all claimed. There, "A" (or "I") followed by a lower-case
word is the article (pronoun) of a sentence, not a letter: "the answer is A cat" claims nothing.
If no letter is claimed and `options` lists the option texts, a response that quotes exactly one of them
(case-insensitive, whole words; an option quoted only inside a longer quoted option does not count) chose it.

`numbers_match` and `score_numeric` compare parsed values; `minillm.finetune.verifiable` builds RL rewards on them.
"""
from __future__ import annotations

import re
import string
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

_NUMBER = re.compile(
    r"(?:(?<![\w)\]])(?P<sign>[+\-\u2212])\$?)?"  # a sign glued to the number, not after a word or digit
    r"(?:(?<![\d/])(?P<num>\d+)/(?P<den>\d*[1-9]\d*)(?![\d/])"  # a fraction p/q, q != 0
    r"|(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.(?P<frac>\d+))?"  # 1,234.5 or 1234.5
    r"|(?<!\d)\.(?P<frac0>\d+))", re.ASCII)                  # .5; ASCII: "٣" is not read as 3
_MARK = "####"
LETTERS = string.ascii_uppercase

_LETTER = r"[(\[]?(?-i:[A-Z])\b[)\]]?"  # a capital, maybe in brackets (the phrase's words match any case)


def _phrase(words: str) -> re.Pattern:
    """`words`, an optional "is" / ":" / ..., then letters joined by or / and / "/" / "," (and what follows)."""
    return re.compile(rf"\b(?:{words})\b[^\S\n]*(?:(?:is|was|would be|should be|must be)[^\S\n]*)?"
                      r"(?:[:=-][^\S\n]*)?(?:option[^\S\n]+)?(?P<list>" + _LETTER
                      + r"(?:\s*(?:,|/|\bor\b|\band\b)\s*" + _LETTER + r")*)(?P<after>(?-i:\s+[a-z]+))?",
                      re.IGNORECASE)


_ANSWER, _OPTION = _phrase("answer"), _phrase("option|choice")
_BRACKETED = re.compile(r"[(\[]([A-Z])[)\]]")
_LINE_START = re.compile(r"^[^\S\n]*([A-Z])[.)](?=\s|$)", re.MULTILINE)
_SOLE = re.compile(r"[\s*_`'\"]*[(\[]?([A-Za-z])[)\].:]?[\s*_`'\"]*")


def _check_text(text) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected the response as a str, got {type(text).__name__}")
    return text


def _canonical(value: Fraction) -> str:
    """The one spelling of an exact value: an integer, else a terminating decimal, else the reduced p/q."""
    den = value.denominator
    k2 = k5 = 0
    while den % 2 == 0:
        den, k2 = den // 2, k2 + 1
    while den % 5 == 0:
        den, k5 = den // 5, k5 + 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    k = max(k2, k5)  # value * 10**k is an integer
    digits = str(abs(value.numerator) * 10**k // value.denominator).rjust(k + 1, "0")
    body = digits if k == 0 else digits[:-k] + "." + digits[-k:]
    return ("-" if value < 0 else "") + body


def _match_value(m: re.Match) -> str:
    neg = m["sign"] is not None and m["sign"] != "+"
    if m["num"] is not None:
        return _canonical(Fraction(int(m["num"]), int(m["den"])) * (-1 if neg else 1))
    # decimals by string operations: exact, and no limit on how many digits a (degenerate) response writes
    whole = (m["int"] or "").replace(",", "").lstrip("0") or "0"
    frac = (m["frac"] or m["frac0"] or "").rstrip("0")
    body = whole + ("." + frac if frac else "")
    return "-" + body if neg and body != "0" else body


def parse_number(text: str) -> str | None:
    """The final numeric answer of a response in canonical form (rules in the module docstring), None if none.

    ``parse_number("so she has 18 dollars.\\n#### 18") == "18"``; ``parse_number("The answer is -3.") == "-3"``."""
    text = _check_text(text)
    if _MARK in text:
        line = text.rsplit(_MARK, 1)[1].split("\n", 1)[0]
        m = _NUMBER.search(line)
        return None if m is None else _match_value(m)
    last = None
    for last in _NUMBER.finditer(text):
        pass
    return None if last is None else _match_value(last)


def _as_answer(x, what: str) -> str:
    if isinstance(x, bool) or not isinstance(x, (str, int)):
        raise TypeError(f"{what} must be a str or an int, got {type(x).__name__}")
    return str(x)


def numbers_match(pred: str | int, gold: str | int) -> bool:
    """Whether a response's final number equals the gold's, exactly (both go through `parse_number`).
    False when the response has no number; ValueError when the gold has none (the data is wrong)."""
    g = parse_number(_as_answer(gold, "gold"))
    if g is None:
        raise ValueError(f"the gold answer {gold!r} holds no number; give the number, e.g. '18' or '#### 18'")
    return parse_number(_as_answer(pred, "pred")) == g


def score_numeric(responses: Sequence[str], golds: Sequence[str | int]) -> np.ndarray:
    """GSM8K-style accuracy per example: 1.0 where the response's final number equals the gold's, shape (N,)."""
    if isinstance(responses, str) or isinstance(golds, str):
        raise TypeError("score_numeric takes lists (one response and one gold per example), not a single string")
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses for {len(golds)} gold answers; give one gold per response")
    return np.array([float(numbers_match(r, g)) for r, g in zip(responses, golds)], dtype=np.float64)


# ---- multiple choice -----------------------------------------------------------------------------------------


def _option_texts(options) -> tuple[int, list[str] | None]:
    if isinstance(options, bool):
        raise TypeError("options must be the number of choices (an int) or the list of option texts, got a bool")
    if isinstance(options, int):
        n, texts = options, None
    elif isinstance(options, Sequence) and not isinstance(options, str):
        texts = list(options)
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"option texts must be non-empty strings, got {texts!r}")
        n = len(texts)
    else:
        raise TypeError(f"options must be an int or a list of option texts, got {type(options).__name__}")
    if not 2 <= n <= len(LETTERS):
        raise ValueError(f"{n} options: need 2 to {len(LETTERS)} (they are lettered A, B, ...)")
    return n, texts


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def _quoted(text: str, texts: list[str]) -> str | None:
    """The letter of the one option whose text the response quotes (ignoring options inside a longer one)."""
    t = _norm(text)
    found = [i for i, o in enumerate(texts)
             if re.search(r"(?<!\w)" + re.escape(_norm(o)) + r"(?!\w)", t)]
    found = [i for i in found if not any(j != i and _norm(texts[i]) in _norm(texts[j]) for j in found)]
    return LETTERS[found[0]] if len(found) == 1 else None


def _phrase_claims(pattern: re.Pattern, text: str) -> set[str]:
    out: set[str] = set()
    for m in pattern.finditer(text):
        letters = re.findall(r"[A-Z]", m["list"])
        if len(letters) == 1 and letters[0] in "AI" and m["after"] and not m["list"].endswith((")", "]")):
            continue  # "the answer is A cat": an article (or "I"), not a letter
        out.update(letters)
    return out


def parse_choice(text: str, options: int | Sequence[str]) -> str | None:
    """The letter a multiple-choice response chose ("A", "B", ...), None if none or ambiguous.

    `options`: the number of choices, or the option texts (then quoting exactly one of them also counts). The
    recognised positions are listed in the module docstring; ``parse_choice("The answer is (B).", 4) == "B"``,
    ``parse_choice("A or B", 4) is None``, ``parse_choice("A cat.", ["dog", "cat"]) == "B"``."""
    text = _check_text(text)
    n, texts = _option_texts(options)
    valid = set(LETTERS[:n])
    sole = _SOLE.fullmatch(text)
    if sole is not None:
        letter = sole.group(1).upper()
        return letter if letter in valid else None
    # "answer ..." outranks the other positions: "option A is wrong, so the answer is C" chose C
    for claims in (_phrase_claims(_ANSWER, text),
                   _phrase_claims(_OPTION, text) | set(_BRACKETED.findall(text)) | set(_LINE_START.findall(text))):
        claims &= valid
        if claims:
            return claims.pop() if len(claims) == 1 else None
    return None if texts is None else _quoted(text, texts)
