"""PII items and look-alike decoys for the synthetic crawl. Survey §4.1.2 (privacy reduction).

Items are valid *by construction* (checksums computed with minillm.data.pii's validators) and decoys are
invalid by construction (a card with its Luhn digit changed, an ID with a wrong check character, a
five-part version string, a year, a price). So the crawl's ground truth does not depend on the detector
it is used to test: a detector that misses an item or flags a decoy scores below 1.0.

A sentence is a list of segments (text, tag): tag is "" for ordinary text or a PII kind for the item.
"""
from __future__ import annotations

from minillm.data.pii import cn_id_check_char, luhn_check_digit, luhn_valid
from minillm.data.synthetic.lexicon import ENGLISH, LAST_NAMES
from minillm.data.crawl.words import Rng

_DOMAINS = ("example.com", "example.org", "mailbox.test", "post.example.net", "inbox.example", "qq.example.cn")
_REGIONS = ("110105", "310104", "440305", "510107", "330106", "420102", "610113", "230103", "120101")

Segments = list  # list[tuple[str, str]]


def email(r: Rng) -> str:
    first = r.pick(ENGLISH.names)[0].lower()
    last = r.pick(LAST_NAMES).lower()
    local = r.pick((f"{first}.{last}", f"{first}_{last}", f"{first}{r.int(1950, 2009)}", f"{first[0]}{last}",
                    f"{r.int(10000, 99999999)}"))
    return f"{local}@{r.pick(_DOMAINS)}"


def phone(r: Rng) -> str:
    a, b, c = r.int(201, 989), r.int(200, 999), r.digits(4)
    mobile = f"1{r.int(3, 9)}{r.int(0, 9)}"
    return r.pick((f"+1 {a}-{b}-{c}", f"({a}) {b}-{c}", f"{a}.{b}.{c}", f"{a}-{b}-{c}", f"+1 ({a}) {b}-{c}",
                   f"+86 {mobile} {r.digits(4)} {r.digits(4)}", f"+86 {mobile}{r.digits(8)}",
                   f"{mobile}{r.digits(8)}", f"{mobile}-{r.digits(4)}-{r.digits(4)}",
                   f"+44 20 {r.digits(4)} {r.digits(4)}"))


def ipv4(r: Rng) -> str:
    return r.pick((f"10.{r.int(0, 255)}.{r.int(0, 255)}.{r.int(1, 254)}", f"192.168.{r.int(0, 255)}.{r.int(1, 254)}",
                   f"{r.int(1, 223)}.{r.int(0, 255)}.{r.int(0, 255)}.{r.int(0, 255)}"))


def _id17(r: Rng) -> str:
    return f"{r.pick(_REGIONS)}{r.int(1950, 2008)}{r.int(1, 12):02d}{r.int(1, 28):02d}{r.digits(3)}"


def cn_id(r: Rng) -> str:
    first17 = _id17(r)
    return first17 + cn_id_check_char(first17)


def _card_digits(r: Rng) -> tuple[str, str]:
    """(digits, grouping) of a Luhn-valid number: Visa/Mastercard 16, Amex 15, a 19-digit one."""
    kind = r.int(0, 3)
    if kind == 2:
        partial = r.pick(("34", "37")) + r.digits(12)
        return partial + luhn_check_digit(partial), "amex"
    n = 19 if kind == 3 else 16
    partial = r.pick(("4", "51", "52", "53", "55", "62"))
    partial += r.digits(n - 1 - len(partial))
    return partial + luhn_check_digit(partial), "fours"


def _group(digits: str, grouping: str, sep: str) -> str:
    if not sep:
        return digits
    if grouping == "amex":
        return sep.join((digits[:4], digits[4:10], digits[10:]))
    return sep.join(digits[i:i + 4] for i in range(0, len(digits), 4))


def credit_card(r: Rng) -> str:
    digits, grouping = _card_digits(r)
    return _group(digits, grouping, r.pick((" ", "-", " ", "-", "")))


MAKERS = {"email": email, "phone": phone, "ipv4": ipv4, "cn_id": cn_id, "credit_card": credit_card}

# ---- decoys: look like PII, are not --------------------------------------------------------------------
def bad_card(r: Rng) -> str:
    digits, grouping = _card_digits(r)
    wrong = str((int(digits[-1]) + r.int(1, 9)) % 10)  # any other last digit fails Luhn
    return _group(digits[:-1] + wrong, grouping, r.pick((" ", "-")))


def bad_id(r: Rng) -> str:
    first17 = _id17(r)
    right = cn_id_check_char(first17)
    # Neither the right check character nor one that would make the 18 digits a Luhn-valid "card".
    options = [c for c in "0123456789X" if c != right and not (c != "X" and luhn_valid(first17 + c))]
    return first17 + r.pick(options)


def version(r: Rng) -> str:
    return ".".join(str(r.int(0, 20)) for _ in range(5))


def bad_ip(r: Rng) -> str:
    return r.pick((f"{r.int(256, 999)}.{r.int(0, 255)}.{r.int(0, 255)}.{r.int(0, 255)}",
                   f"192.168.0{r.int(1, 9)}.{r.int(1, 254)}"))


def price(r: Rng) -> str:
    return r.pick((f"${r.int(1, 9)},{r.int(100, 999)}.{r.int(10, 99)}", f"¥{r.int(100, 99999)}",
                   f"€ {r.int(1, 999)}.{r.int(10, 99)}", f"RMB {r.int(1000, 99999)}"))


# ---- sentences carrying items and decoys -------------------------------------------------------------
# "{}" is where the item goes. Every template is single-spaced, and the character after the item is
# never a digit or letter, so the item's boundaries are unambiguous. Chinese sentences end in "。" because
# they are appended to a paragraph without a space.
_TEMPLATES = {
    "en": {"email": ("Contact me at {}.", "Send your answers to {} before Friday.", "email: {}"),
           "phone": ("Call {} for details.", "My number is {}, call after six.", "Phone: {}"),
           "ipv4": ("The server at {} was down again.", "Log in from {} only.", "IP: {}"),
           "cn_id": ("ID number {} was on the form.", "Resident ID: {}"),
           "credit_card": ("Card {} expires soon.", "Paid with card {}, thanks.", "card no. {}")},
    "zh": {"email": ("联系邮箱：{}。", "请把作业发到{}。"), "phone": ("电话：{}。", "有事打我手机{}。"),
           "ipv4": ("服务器地址{}又挂了。", "IP：{}。"), "cn_id": ("身份证号：{}。", "他的身份证号码是{}。"),
           "credit_card": ("银行卡号：{}。", "用卡{}付的钱。")},
    "other": {"email": ("✉ {}",), "phone": ("☎ {}",), "ipv4": ("IP: {}",), "cn_id": ("ID: {}",),
              "credit_card": ("▣ {}",)},
}
_DECOY_TEMPLATES = {
    "en": ("Order ref {} was cancelled.", "Version {} is out now.", "Prices start at {}.", "Bad address {} ignored.",
           "Form code {} rejected.", "It happened in {}."),
    "zh": ("订单号{}已取消。", "版本{}已发布。", "价格{}起。", "地址{}无效。", "编号{}有误。", "那是{}年的事。"),
    "other": ("# {}", "v {}", "{} ✓", "≠ {}", "№ {}", "({})"),
}
_DECOYS = (bad_card, version, price, bad_ip, bad_id, lambda r: str(r.int(1950, 2024)))


def pii_sentence(r: Rng, kind: str, lang: str) -> Segments:
    """A sentence in `lang` ("en" | "zh" | "other") carrying one item of `kind`, as tagged segments."""
    before, after = r.pick(_TEMPLATES[lang][kind]).split("{}")
    return [(before, ""), (MAKERS[kind](r), kind), (after, "")]


def decoy_sentence(r: Rng, lang: str) -> Segments:
    """A sentence with one PII look-alike; it is plain text (tag "")."""
    i = r.int(0, len(_DECOYS) - 1)
    return [(_DECOY_TEMPLATES[lang][i].format(_DECOYS[i](r)), "")]
