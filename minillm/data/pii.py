"""Privacy reduction: find and mask personally identifiable information (PII). Survey §4.1.2
("privacy reduction": pre-training corpora scraped from the web contain e-mail addresses, phone numbers,
ID and card numbers; pipelines remove them with rules before training, so a model cannot memorize and
later regurgitate them).

    >>> find_pii("mail tom.carver@example.com or call (415) 555-0134")
    [PIISpan(start=5, end=27, kind='email'), PIISpan(start=36, end=50, kind='phone')]
    >>> mask_pii("card 4111 1111 1111 1111, ip 10.0.0.1")
    ('card [CARD], ip [IP]', {'email': 0, 'phone': 0, 'ipv4': 1, 'cn_id': 0, 'credit_card': 1})

Rules, not a model: a regular expression proposes candidates and a *validator* keeps only the real ones.
The validators matter as much as the patterns; they are what separates PII from look-alikes:

- credit cards: 13-19 digits (optionally grouped by single spaces or dashes) that pass the Luhn checksum
  (1 in 10 random digit strings does, so the checksum removes 90% of false alarms);
- Chinese resident IDs (GB 11643-1999): 17 digits + a check character (ISO 7064 MOD 11-2, "X" for 10),
  with a real birth date YYYYMMDD at positions 7-14;
- IPv4: four octets 0-255, no leading zeros, not part of a longer dotted number ("1.2.3.4.5" is a version);
- phones: "+1 415-555-0134", "(415) 555-0134", "415.555.0134", "+86 138 1234 5678", "13812345678", ...
  never a part of a longer digit run (years, prices, card and ID numbers are left alone).

North-American (NANP) numbers are 3 + 3 + 4 digits: area code, exchange, line. Their written forms are a
phone by shape alone: 415-555-0134, 415.555.0134, (415) 555-0134, (415)-555-0134, (415)555-0134 and
415 555 0134, each optionally after "+1 " or a trunk "1-" / "1 " / "1.", and +1 4155550134. The shape is
the evidence: no date, time, version, amount (thousands come in threes) or ISBN is grouped 3-3-4. Forms
closer to other numbers (single spaces, a trunk 1, +1 then ten digits, ten bare digits) also need an area
code starting 2-9, as the NANP requires; the dash, dot and parenthesis forms take any area code, so they
also catch other plans' numbers written the same way. The exchange is never checked: numbers as people
write them (e.g. 283-182-3829) often break the NANP's rule that it starts with 2-9.

Ten bare digits ("4155550134") are the one ambiguous form: order, invoice, account and tracking numbers,
ISBN-10s and amounts look the same. The rule: a bare ten-digit run with an area code starting 2-9 is a
phone only when a *phone cue* is the nearest cue word before it, within 32 characters on the same line.
Phone cues: call, phone, tel, mobile, cell, fax, contact, text, sms, reach, dial, hotline, 电话, 手机, 致电,
拨打, 联系, 传真, ☎, 📞. Decoy cues: order, invoice, id, account, tracking, ref, isbn, serial, sku, ticket,
customer, booking, ..., 订单, 编号, 单号, 账号. Other words ("no.", "#", "at", "my") are neutral, so
"Phone No. 4155550134" is a phone and "Order No. 4155550134" is not, and "call about order 4155550134" is
not. Without any cue a bare run is left alone: recall is traded for precision where the text gives no hint.

Kinds are matched in a fixed order, e-mail, ID, card, IPv4, phone, and a later match may not overlap an
earlier one: an 18-digit ID is never read as a card, and the digits of a card never as a phone.
Digits are ASCII [0-9] only: Python's \\d would also match full-width digits, which these formats never use.
"""
from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass
from typing import Iterable

PII_KINDS = ("email", "phone", "ipv4", "cn_id", "credit_card")
MASK_TAGS = {"email": "[EMAIL]", "phone": "[PHONE]", "ipv4": "[IP]", "cn_id": "[ID]", "credit_card": "[CARD]"}
MASK_STYLES = ("tag", "hash")
# Matching order; see the module docstring for why.
_ORDER = ("email", "cn_id", "credit_card", "ipv4", "phone")
_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"  # check character for (weighted sum mod 11) = 0, 1, ..., 10


@dataclass(frozen=True)
class PIISpan:
    """One PII item: text[start:end] is the item, kind is one of PII_KINDS."""

    start: int
    end: int
    kind: str

    def __post_init__(self):
        if not (isinstance(self.start, int) and isinstance(self.end, int) and 0 <= self.start < self.end):
            raise ValueError(f"PIISpan needs integer offsets 0 <= start < end, got start={self.start!r}, "
                             f"end={self.end!r}")
        if self.kind not in PII_KINDS:
            raise ValueError(f"unknown PII kind {self.kind!r}; valid kinds: {', '.join(PII_KINDS)}")


# ---- validators (shared with the crawl generator, which builds valid items and invalid decoys) ----------
def _need_str(name: str, value) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")


def _ascii_digits(s: str) -> bool:
    return s.isascii() and s.isdigit()


def luhn_valid(digits: str) -> bool:
    """True if `digits` (ASCII digits only, no separators) passes the Luhn checksum used by card numbers."""
    _need_str("digits", digits)
    if not digits or not _ascii_digits(digits):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):  # a loop over <= 19 digits of one candidate: not a hot path
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """The digit to append to `partial` (ASCII digits) so that the result passes the Luhn checksum."""
    _need_str("partial", partial)
    if not partial or not _ascii_digits(partial):
        raise ValueError(f"partial must be a non-empty string of ASCII digits, got {partial!r}")
    for d in "0123456789":
        if luhn_valid(partial + d):
            return d
    raise AssertionError("unreachable: exactly one Luhn check digit exists")


def cn_id_check_char(first17: str) -> str:
    """GB 11643-1999 check character of a Chinese resident ID: ISO 7064 MOD 11-2 over the first 17 digits,
    weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2; (sum mod 11) = 0..10 maps to "1 0 X 9 8 7 6 5 4 3 2"."""
    _need_str("first17", first17)
    if len(first17) != 17 or not _ascii_digits(first17):
        raise ValueError(f"first17 must be exactly 17 ASCII digits, got {first17!r}")
    total = sum(int(c) * w for c, w in zip(first17, _CN_ID_WEIGHTS))
    return _CN_ID_CHECK[total % 11]


def cn_id_valid(s: str) -> bool:
    """True for an 18-character Chinese resident ID: region code starting 1-8, a real birth date
    YYYYMMDD (1900-2099) at positions 7-14, and the right check character ("x" is accepted for "X")."""
    _need_str("s", s)
    if len(s) != 18 or not _ascii_digits(s[:17]) or s[0] not in "12345678":
        return False
    year, month, day = int(s[6:10]), int(s[10:12]), int(s[12:14])
    if not 1900 <= year <= 2099:
        return False
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return s[17].upper() == cn_id_check_char(s[:17])


def ipv4_valid(s: str) -> bool:
    """True for a dotted-quad IPv4 address: four octets 0-255, no leading zeros ("01" is not an octet)."""
    _need_str("s", s)
    parts = s.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p or len(p) > 3 or not _ascii_digits(p) or (len(p) > 1 and p[0] == "0") or int(p) > 255:
            return False
    return True


# ---- candidate patterns --------------------------------------------------------------------------------
# A number must not continue a longer digit run, directly or across one separator: this is what keeps a
# phone out of a card, a card out of an ID and an address out of a version string.
_NUM_BEFORE = r"(?<![0-9A-Za-z+])(?<![0-9][ .\-])"
_NUM_AFTER = r"(?![0-9A-Za-z])(?![ .\-][0-9])"

_PATTERNS = {
    "email": re.compile(
        r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9\-@])"),
    "cn_id": re.compile(_NUM_BEFORE + r"[1-8][0-9]{16}[0-9Xx]" + _NUM_AFTER),
    "credit_card": re.compile(_NUM_BEFORE + r"""(?:
          [0-9]{13,19}                                                     # 4111111111111111
        | [0-9]{4}([ \-])[0-9]{4}\1[0-9]{4}\1[0-9]{1,4}(?:\1[0-9]{1,3})?  # 4111 1111 1111 1111 (13-19)
        | [0-9]{4}([ \-])[0-9]{6}\2[0-9]{4,5}                              # 3782 822463 10005 (Amex)
        )""" + _NUM_AFTER, re.X),
    "ipv4": re.compile(r"(?<![0-9A-Za-z.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9A-Za-z])(?!\.[0-9])"),
    "phone": re.compile(_NUM_BEFORE + r"""(?:
          \+[0-9]{1,3}[ \-]?                                               # country code, then
          (?: \([0-9]{1,4}\)[ \-]?[0-9]{3,4}[ \-.][0-9]{4}                 #   (415) 555-0134
            | 1[3-9][0-9][ \-]?[0-9]{4}[ \-]?[0-9]{4}                      #   138 1234 5678
            | [0-9]{2,4}(?:[ \-.][0-9]{2,4}){1,3} )                        #   415-555-0134, 20 7946 0958
        | \([0-9]{3}\)[ \-]?[0-9]{3}[ \-.][0-9]{4}                         # (415) 555-0134, (415)-555-0134
        | [0-9]{3}([\-.])[0-9]{3}\1[0-9]{4}                                # 415-555-0134, 415.555.0134
        | 1[3-9][0-9](?:[0-9]{8}|([ \-])[0-9]{4}\2[0-9]{4})                # 13812345678, 138-1234-5678
        | \+1[ \-]?[2-9][0-9]{9}                                           # +1 4155550134: "+1" is the cue
        | [2-9][0-9]{2}[ ][0-9]{3}[ ][0-9]{4}                              # 415 555 0134
        | 1[ \-.](?: \([2-9][0-9]{2}\)[ \-]?[0-9]{3}[ \-.][0-9]{4}         # 1 (415) 555-0134
                  | [2-9][0-9]{2}([ \-.])[0-9]{3}\3[0-9]{4} )             # 1-415-555-0134, 1 415 555 0134
        | (?P<bare>[2-9][0-9]{9})                                          # 4155550134: only after a cue
        )""" + _NUM_AFTER, re.X),
}

# Cue words for bare ten-digit runs (see the module docstring). ASCII words must stand alone (no letter on
# either side) so "recall" is no "call" and "idea" no "id"; CJK and symbol cues are matched anywhere, since
# Chinese has no spaces between words.
_PHONE_CUES = (r"call(?:s|ed|ing)?", r"(?:tele|cell|mobile)?phone[sd]?", r"tel", r"mob(?:ile)?", r"cell",
               r"fax", r"contact(?:s|ed|ing)?", r"text(?:s|ed|ing)?", r"sms", r"whatsapp", r"reach(?:ed|ing)?",
               r"dial(?:s|ed|ing|led|ling)?", r"hotline", "电话", "手机", "致电", "拨打", "联系", "传真", "热线",
               "☎", "📞", "✆")
_DECOY_CUES = (r"orders?", r"invoices?", r"ids?", r"accounts?", r"acct", r"tracking", r"ref", r"reference",
               r"isbn", r"serial", r"sku", r"items?", r"products?", r"codes?", r"pin", r"tickets?",
               r"transactions?", r"customers?", r"members?(?:hip)?", r"policy", r"booking", r"confirmation",
               r"case", r"receipt", r"batch", r"parcel", r"shipment", "订单", "编号", "单号", "账号", "帐号",
               "卡号", "发票", "快递", "序列号")
_CUE_WINDOW = 32  # characters before a bare run searched for cues: a short phrase such as "call me at"


def _cue_regex(cues: tuple[str, ...]) -> str:
    return "|".join(rf"(?<![A-Za-z])(?:{c})(?![A-Za-z])" if c.isascii() else c for c in cues)


_CUES = re.compile(rf"(?P<phone>{_cue_regex(_PHONE_CUES)})|(?P<decoy>{_cue_regex(_DECOY_CUES)})", re.I)


def _card_ok(m: re.Match) -> bool:
    digits = m.group().replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _phone_cue_before(text: str, start: int) -> bool:
    """True when the nearest cue in the _CUE_WINDOW characters before `start`, same line, is a phone cue."""
    lo = max(start - _CUE_WINDOW, text.rfind("\n", 0, start) + 1)
    last = None
    for last in _CUES.finditer(text, lo, start):
        pass
    return last is not None and last.group("phone") is not None


def _phone_ok(m: re.Match) -> bool:
    n = sum(c.isdigit() for c in m.group())
    if not 10 <= n <= 15:  # E.164 allows at most 15 digits; local numbers have at least 10 here
        return False
    return m.group("bare") is None or _phone_cue_before(m.string, m.start())


# Each validator sees the whole match (m.string is the text), so a rule may read the context around it.
_VALIDATORS = {"email": lambda m: True, "cn_id": lambda m: cn_id_valid(m.group()), "credit_card": _card_ok,
               "ipv4": lambda m: ipv4_valid(m.group()), "phone": _phone_ok}


def _check_kinds(kinds) -> tuple[str, ...]:
    if isinstance(kinds, str):
        raise TypeError(f"kinds must be a sequence of kind names, e.g. ({kinds!r},), not a bare str")
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in PII_KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {PII_KINDS}, got {kinds!r}")
    return kinds


def find_pii(text: str, kinds: Iterable[str] = PII_KINDS) -> list[PIISpan]:
    """Every PII item of the given kinds in `text`, as non-overlapping spans sorted by start."""
    if not isinstance(text, str):
        raise TypeError(f"find_pii takes one str, got {type(text).__name__}; for many texts loop over them "
                        f"or use mask_pii_batch")
    wanted = _check_kinds(kinds)
    taken: list[PIISpan] = []
    for kind in _ORDER:
        if kind not in wanted:
            continue
        valid = _VALIDATORS[kind]
        for m in _PATTERNS[kind].finditer(text):
            s, e = m.span()
            if valid(m) and not any(s < t.end and t.start < e for t in taken):
                taken.append(PIISpan(s, e, kind))
    return sorted(taken, key=lambda sp: sp.start)


def _replacement(item: str, kind: str, style: str) -> str:
    if style == "tag":
        return MASK_TAGS[kind]
    # "hash": the same item always gets the same pseudonym, so co-reference survives masking.
    return f"{MASK_TAGS[kind][:-1]}:{hashlib.sha256(item.encode('utf-8')).hexdigest()[:8]}]"


def mask_pii(text: str, kinds: Iterable[str] = PII_KINDS, style: str = "tag") -> tuple[str, dict[str, int]]:
    """Replace every PII item by a placeholder; returns (masked text, {kind: count} for all PII_KINDS).

    style="tag" writes [EMAIL], [PHONE], [IP], [ID], [CARD]; style="hash" writes e.g. [EMAIL:1f3a9c0b], a
    stable pseudonym of the item. Placeholders contain no PII, so masking masked text changes nothing.
    """
    if not isinstance(text, str):
        raise TypeError(f"mask_pii takes one str, got {type(text).__name__}; for a list of texts use "
                        f"mask_pii_batch")
    if style not in MASK_STYLES:
        raise ValueError(f"style must be one of {MASK_STYLES}, got {style!r}")
    counts = {k: 0 for k in PII_KINDS}
    out, pos = [], 0
    for sp in find_pii(text, kinds):
        out.append(text[pos:sp.start])
        out.append(_replacement(text[sp.start:sp.end], sp.kind, style))
        counts[sp.kind] += 1
        pos = sp.end
    out.append(text[pos:])
    return "".join(out), counts


def mask_pii_batch(texts: Iterable[str], kinds: Iterable[str] = PII_KINDS,
                   style: str = "tag") -> tuple[list[str], dict[str, int]]:
    """mask_pii over a list of texts; returns (masked texts, {kind: total count over all texts})."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("mask_pii_batch takes a list of str; for one text use mask_pii")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
    kinds = _check_kinds(kinds)
    totals = {k: 0 for k in PII_KINDS}
    masked = []
    for t in texts:
        m, c = mask_pii(t, kinds, style)
        masked.append(m)
        for k, v in c.items():
            totals[k] += v
    return masked, totals
