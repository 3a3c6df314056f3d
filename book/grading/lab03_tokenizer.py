"""Lab 03 (tokenizer) checks: byte-level BPE's merge loop and its encoder, graded against minillm's `train_bpe` and
`ByteBPE` (Survey §4.1.2, tokenization).

Five checks, in the order the lab asks for them:

- `bpe_pair_counts`: get_pair_counts(words) -> {(left id, right id): count}, every adjacent pair of every word
  (overlapping ones too: "aaa" holds (a, a) twice), weighted by the word's count;
- `bpe_merge_pair`: merge_pair(words, pair, new_id) -> a new {word: count}, each word's pairs replaced left to right
  without overlap ("aaa" -> (new, a)), the input left as it was;
- `bpe_train`: train_bpe(text, vocab_size) -> (vocab, merges) equal to minillm's train_bpe(text, vocab_size): GPT-2
  pre-tokens, the most frequent pair merged first, ties to the greatest (left bytes, right bytes), ids 256, 257, ...;
  on hand texts that separate the usual mistakes and on English (tinyshakespeare) and Chinese (全唐詩) samples;
- `bpe_encode`: encode(text, merges, special_tokens) -> ids equal to ByteBPE's (bytes 0..255, merge r -> 256 + r,
  then the special tokens), on English, Chinese, emoji and special-token texts;
- `bpe_decode`: decode(ids, merges, special_tokens) -> text equal to ByteBPE's, on the ids of random Unicode strings
  (so decode(encode(x)) == x) and on ids that cut a character in half (U+FFFD, not a crash).

Each check refuses minillm's own functions (`minillm.train_bpe`, a `ByteBPE`'s bound `encode`: "implement it"), and
on a mismatch recomputes the usual mistakes (book/grading/lab03_tokenizer_mistakes.py) on the same inputs and names
the one the student's output equals.
"""
from __future__ import annotations

import copy
import random
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache, partial
from itertools import islice
from typing import Any

from book.grading.core import Case, Check, _Mismatch, register_check
from book.grading.diagnose import Mistake, diagnosing
from book.grading.lab03_tokenizer_mistakes import (COUNT_MISTAKES, DECODE_MISTAKES, ENCODE_MISTAKES, MERGE_MISTAKES,
                                                   TRAIN_MISTAKES, Merges, Words, vocab_of)

EOT = "<|endoftext|>"
N_EN_CHARS, N_POEMS = 4000, 60  # the real-text samples: small, so a plain recount-every-merge loop takes ~1 s
_REFERENCE_PREFIX = "minillm."

# ------------------------------------------------------------------------------------------------ samples


@lru_cache(maxsize=1)
def english_sample() -> str:
    """The first N_EN_CHARS characters of the shipped tinyshakespeare."""
    from book.ch09_capstone.studies_corpus import SHAKESPEARE, data_path

    return data_path(SHAKESPEARE).read_text(encoding="utf-8")[:N_EN_CHARS]


@lru_cache(maxsize=1)
def chinese_sample() -> str:
    """The first N_POEMS poems of the shipped 全唐詩, read with minillm's JSON-lines reader, one poem per paragraph."""
    from book.ch09_capstone.studies_corpus import TANG, data_path
    from minillm.data.sources import read_jsonl

    return "\n\n".join(islice(read_jsonl(data_path(TANG), field="paragraphs"), N_POEMS))


def _split(text: str) -> tuple[str, str]:
    """(training part, held-out part): the last fifth is encoded with merges learned on the rest."""
    cut = len(text) * 4 // 5
    return text[:cut], text[cut:]


@lru_cache(maxsize=None)
def trained_merges(language: str, n_merges: int) -> tuple[tuple[bytes, bytes], ...]:
    """minillm's merges on the training part of a sample ('en' or 'zh')."""
    from minillm.data.bpe_train import train_bpe

    text = _split(english_sample() if language == "en" else chinese_sample())[0]
    return tuple(train_bpe(text, 256 + n_merges)[1])


def random_unicode(seed: int, n: int = 40) -> str:
    """A random string of letters, CJK, emoji, combining marks, controls and spaces; never a surrogate."""
    rng = random.Random(seed)
    ranges = [(0x20, 0x7E), (0x00, 0x1F), (0xA0, 0x24F), (0x300, 0x36F), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF),
              (0x10000, 0x1FFFF), (0xE000, 0xF8FF), (0xFFF0, 0xFFFD)]  # all outside U+D800..U+DFFF
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)) if rng.random() < 0.8 else " ")
    return "".join(out)


# ------------------------------------------------------------------------------------------------ references


def _byte_bpe(merges: Sequence[tuple[bytes, bytes]], special_tokens: Sequence[str]):
    from minillm.data.bpe import ByteBPE

    return ByteBPE(vocab_of(merges), merges, special_tokens)


def _pair_counts_reference(words: Words) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for word, n in words.items():
        for pair in zip(word, word[1:]):  # every adjacent position, so overlapping pairs count each time
            counts[pair] = counts.get(pair, 0) + n
    return counts


def _merge_pair_reference(words: Words, pair: tuple[int, int], new_id: int) -> Words:
    from minillm.data.bpe_train import _merge_word

    return {tuple(_merge_word(list(w), pair[0], pair[1], new_id)): n for w, n in words.items()}


def _train_reference(text: str, vocab_size: int) -> tuple[dict[int, bytes], Merges]:
    from minillm.data.bpe_train import train_bpe

    with warnings.catch_warnings():  # "ran out of pairs" is a case here, not a problem
        warnings.simplefilter("ignore", UserWarning)
        return train_bpe(text, vocab_size)


def _encode_reference(text: str, merges: Merges, special_tokens: Sequence[str]) -> list[int]:
    return _byte_bpe(merges, special_tokens).encode(text)


def _decode_reference(ids: list[int], merges: Merges, special_tokens: Sequence[str]) -> str:
    return _byte_bpe(merges, special_tokens).decode(ids)


# ------------------------------------------------------------------------------------------------ runners, compares


def _refuse_reference(fn: Callable, name: str) -> None:
    """The answer must be the student's own function, not minillm's (nor a bound method or partial of it)."""
    target = getattr(fn, "func", fn)  # functools.partial
    module = getattr(target, "__module__", None) or ""
    if module.startswith(_REFERENCE_PREFIX) or module == "minillm":
        raise _Mismatch(f"you passed {module}.{getattr(target, '__qualname__', name)}, minillm's own function, not "
                        f"your {name}",
                        f"Implement it: write the body of {name} yourself (pretokenize may be imported from "
                        "minillm.data.bpe; the rest is yours).")


def _pure(name: str, fn: Callable, *args: Any) -> Any:
    """Run fn on the case's arguments; refuse minillm's own function and a function that edits its inputs."""
    _refuse_reference(fn, name)
    before = copy.deepcopy(args)
    got = fn(*args)
    if args != before:
        raise _Mismatch("your function modified its input (a dict or list it was given)",
                        "Build and return a new dict; the words of the previous step must stay as they were.")
    return got


def _compare_equal(kind: str) -> Callable:
    """Exact equality with a message that says where the output first differs."""
    def compare(got: Any, expected: Any, spec: Check, case: Case) -> float:
        if kind == "dict":
            if not isinstance(got, dict):
                raise _Mismatch(f"expected a dict, got {type(got).__name__}", "Return a dict (a Counter is fine).")
            got = {k: v for k, v in got.items() if v}  # a Counter may keep zero counts; they mean "absent"
            for key in sorted(set(got) | set(expected), key=repr):
                if got.get(key) != expected.get(key):
                    raise _Mismatch(f"for {key} you have {got.get(key)}, expected {expected.get(key)} "
                                    f"({len(got)} entries, expected {len(expected)})", case.hint)
        elif kind == "ids":
            if not isinstance(got, list) or not all(isinstance(i, int) for i in got):
                raise _Mismatch(f"expected a list of int ids, got {type(got).__name__}", "Return a list of ints.")
            _first_difference(got, expected, "id", case)
        elif kind == "text":
            if not isinstance(got, str):
                raise _Mismatch(f"expected a str, got {type(got).__name__}", "Return the decoded str.")
            _first_difference(list(got), list(expected), "character", case)
        return 0.0
    return compare


def _first_difference(got: list, expected: list, what: str, case: Case) -> None:
    if got == expected:
        return
    i = next((k for k, (g, e) in enumerate(zip(got, expected)) if g != e), min(len(got), len(expected)))
    g = repr(got[i]) if i < len(got) else "(end)"
    e = repr(expected[i]) if i < len(expected) else "(end)"
    raise _Mismatch(f"{len(got)} {what}s, expected {len(expected)}; {what} {i} is {g}, expected {e}", case.hint)


def _compare_train(got: Any, expected: tuple[dict[int, bytes], Merges], spec: Check, case: Case) -> float:
    want_vocab, want_merges = expected
    if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], dict) and isinstance(got[1], list)):
        raise _Mismatch(f"expected (vocab: dict, merges: list), got {type(got).__name__}",
                        "Return (vocab, merges), as minillm's train_bpe does.")
    vocab, merges = got[0], [tuple(m) for m in got[1]]
    for r, (g, e) in enumerate(zip(merges, want_merges)):
        if g != e:
            raise _Mismatch(f"merge {r} is {g}, expected {e} (merges 0..{r - 1} agree)", case.hint)
    if len(merges) != len(want_merges):
        raise _Mismatch(f"{len(merges)} merges, expected {len(want_merges)}",
                        "vocab_size counts the 256 bytes: learn vocab_size - 256 merges, fewer only when no pair "
                        "is left.")
    for i in sorted(set(vocab) | set(want_vocab)):
        if vocab.get(i) != want_vocab.get(i):
            raise _Mismatch(f"vocab[{i}] is {vocab.get(i)!r}, expected {want_vocab.get(i)!r}",
                            "Ids 0..255 are the bytes; merge r makes id 256 + r, spelled vocab[a] + vocab[b].")
    return 0.0


def _diagnosed(mistakes: tuple[Mistake, ...], compare: Callable, name: str) -> Callable:
    return diagnosing(mistakes, compare, runner=partial(_pure, name), same=_same_output)


def _same_output(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) == 2:
        return a[0] == b[0] and [tuple(m) for m in a[1]] == [tuple(m) for m in b[1]]
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: v for k, v in a.items() if v} == {k: v for k, v in b.items() if v}
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------------------------------------ cases


def _words(*pairs: tuple[str, int]) -> tuple[Words]:
    return ({tuple(w.encode("utf-8")): n for w, n in pairs},)


def _chinese_words() -> tuple[Words]:
    from collections import Counter

    from minillm.data.bpe import pretokenize

    return (dict(Counter(tuple(p.encode("utf-8")) for p in pretokenize(chinese_sample()[:400]))),)


def _encode_case(language: str, n_merges: int, text: str | None = None, specials: Sequence[str] = ()) -> tuple:
    held_out = _split(english_sample() if language == "en" else chinese_sample())[1]
    return (held_out if text is None else text), list(trained_merges(language, n_merges)), list(specials)


def _decode_case(language: str, n_merges: int, text: str, specials: Sequence[str] = ()) -> tuple:
    merges = list(trained_merges(language, n_merges))
    return _encode_reference(text, merges, specials), merges, list(specials)


ORDER_MERGES = [(b"b", b"c"), (b"a", b"b"), (b"a", b"bc")]  # "abc": bc (rank 0) first, then a + bc -> one token
CROSS_MERGES = [(b"e", b" "), (b" ", b"t"), (b"h", b"e")]  # (e, ' ') could only apply across 'the' | ' the'
CUT = "世界".encode("utf-8")[:4]  # all of 世 and the first byte of 界


def _register_lab03_tokenizer() -> None:
    register_check(Check(
        name="bpe_pair_counts",
        shortcuts=("minillm.data.bpe_train.learn_merges",),
        summary="get_pair_counts(words) -> {(left, right): count}: every adjacent pair of every word (overlapping "
                "too), weighted by the word's count",
        hint="for word, n in words.items(): for pair in zip(word, word[1:]): counts[pair] += n.",
        reference=_pair_counts_reference, runner=partial(_pure, "get_pair_counts"),
        compare=_diagnosed(COUNT_MISTAKES, _compare_equal("dict"), "get_pair_counts"),
        cases=(
            Case("'hi' x2 and ' hi' x1", lambda: _words(("hi", 2), (" hi", 1))),
            Case("'aaa' once and 'aaaa' 5 times (overlapping pairs)", lambda: _words(("aaa", 1), ("aaaa", 5)),
                 "'aaa' holds (97, 97) twice: count every adjacent position."),
            Case("single-byte words have no pairs", lambda: _words(("a", 3), (" ", 7), ("ab", 1))),
            Case("no words at all", lambda: ({},), "No words: an empty dict."),
            Case("merged ids above 255 in the words", lambda: ({(256, 99, 256): 2, (104, 256): 3},)),
            Case("pre-tokens of Chinese poems (3-byte characters)", _chinese_words),
        ),
    ))
    register_check(Check(
        name="bpe_merge_pair",
        shortcuts=("minillm.data.bpe_train._merge_word", "minillm.data.bpe_train.learn_merges"),
        summary="merge_pair(words, pair, new_id) -> a NEW {word: count} with each word's `pair` replaced by new_id, "
                "left to right, without overlap",
        hint="For each word scan i = 0, 1, ...: if (word[i], word[i + 1]) == pair, emit new_id and skip 2, else "
             "emit word[i] and skip 1; return a new dict of tuple(new word) -> count.",
        reference=_merge_pair_reference, runner=partial(_pure, "merge_pair"),
        compare=_diagnosed(MERGE_MISTAKES, _compare_equal("dict"), "merge_pair"),
        cases=(
            Case("'hello' and ' hello' on (l, l)", lambda: (*_words(("hello", 3), (" hello", 2)), (108, 108), 256)),
            Case("'aaa' and 'aaaa' on (a, a)", lambda: (*_words(("aaa", 1), ("aaaa", 2)), (97, 97), 256),
                 "Left to right without overlap: 'aaa' -> (256, 97), 'aaaa' -> (256, 256)."),
            Case("'abab ab' twice per word", lambda: (*_words(("abab", 4), (" ab", 1)), (97, 98), 300)),
            Case("the pair is in no word", lambda: (*_words(("xyz", 2),), (97, 98), 256), "Words stay as they are."),
            Case("a pair of merged ids", lambda: ({(256, 257, 256, 257, 99): 2, (256, 256): 1}, (256, 257), 258)),
        ),
    ))
    register_check(Check(
        name="bpe_train",
        shortcuts=("minillm.data.bpe_train.train_bpe", "minillm.data.bpe_train.learn_merges"),
        summary="train_bpe(text, vocab_size) -> (vocab, merges) equal to minillm's train_bpe(text, vocab_size): "
                "GPT-2 pre-tokens, most frequent pair first, ties to the greatest (left bytes, right bytes)",
        hint="words = Counter of pre-tokens as byte tuples; repeat: counts = get_pair_counts(words); "
             "best = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]])); new id 256 + len(merges); "
             "words = merge_pair(...).",
        reference=_train_reference, runner=partial(_pure, "train_bpe"),
        compare=_diagnosed(TRAIN_MISTAKES, _compare_train, "train_bpe"),
        cases=(
            Case("'ab ab ab abc', 3 merges", lambda: ("ab ab ab abc", 259)),
            Case("a tie: 'xy zw', 3 merges", lambda: ("xy zw", 259),
                 "(x, y) and (z, w) are both seen once: the greater pair, (z, w), merges first."),
            Case("a tie between a merged token and bytes", lambda: ("ab ab zc zc abab abc", 262),
                 "Compare the pairs' bytes: b'ab' < b'z', although the id of 'ab' (256) > ord('z')."),
            Case("overlapping pairs: 'aaa xy'", lambda: ("aaa xy", 259),
                 "'aaa' holds (a, a) twice, so (a, a) (count 2) beats (x, y) (count 1)."),
            Case("pre-token boundaries: 'x y x y'", lambda: ("x y x y. x y!", 260),
                 "Merge inside pre-tokens only: 'x y' is the pre-tokens 'x', ' y'; no merge may join 'x' and ' '."),
            Case("vocab_size 256: no merges", lambda: ("hello", 256), "vocab_size 256 leaves room for no merge."),
            Case(f"the first {N_EN_CHARS} characters of tinyshakespeare, 60 merges", lambda: (english_sample(), 316)),
            Case(f"the first {N_POEMS} poems of 全唐詩 (3-byte characters), 60 merges", lambda: (chinese_sample(), 316)),
        ),
    ))
    register_check(Check(
        name="bpe_encode",
        shortcuts=("minillm.data.bpe.ByteBPE.encode",),
        summary="encode(text, merges, special_tokens) -> ids equal to ByteBPE's: specials whole, GPT-2 pre-tokens, "
                "UTF-8 bytes, then the lowest-ranked merge first",
        hint="Split on the special tokens (longest first); pretokenize each other piece; per pre-token start from "
             "list(p.encode('utf-8')) and repeatedly merge the adjacent pair with the lowest rank (id 256 + rank).",
        reference=_encode_reference, runner=partial(_pure, "encode"),
        compare=_diagnosed(ENCODE_MISTAKES, _compare_equal("ids"), "encode"),
        cases=(
            Case("merges applied by rank: 'abc' with (b,c), (a,b), (a,bc)", lambda: ("abc abc", ORDER_MERGES, []),
                 "(b, c) has rank 0, so 'abc' -> a + bc -> abc (one token), although (a, b) comes first in the text."),
            Case("a merge that would cross a pre-token boundary: (e, ' ') on 'the the'",
                 lambda: ("the the", CROSS_MERGES, []),
                 "Pre-tokenize first: 'the the' is 'the' + ' the', so the merge (e, ' ') never applies."),
            Case("held-out tinyshakespeare, 80 English merges", lambda: _encode_case("en", 80)),
            Case("held-out 全唐詩 poems, 80 Chinese merges", lambda: _encode_case("zh", 80)),
            Case("emoji, accents and CJK with English merges", lambda: _encode_case("en", 80, "héllo 🌍 世界, the end!")),
            Case("an end-of-text token between documents",
                 lambda: _encode_case("en", 80, f"the king{EOT}the queen{EOT}", [EOT]),
                 f"{EOT!r} is one id: 256 + len(merges) + its index in special_tokens."),
            Case("overlapping special tokens: the longest wins",
                 lambda: ("x<|a|><|a|>y<|a|>", list(trained_merges("en", 20)), ["<|a|>", "<|a|><|a|>"])),
            Case("empty text", lambda: ("", list(trained_merges("en", 20)), [EOT]), "No text: no ids."),
        ),
    ))
    register_check(Check(
        name="bpe_decode",
        shortcuts=("minillm.data.bpe.ByteBPE.decode",),
        summary="decode(ids, merges, special_tokens) -> str equal to ByteBPE's: every token's bytes joined, then one "
                "UTF-8 decode with errors='replace'",
        hint="vocab = bytes 0..255, then vocab[256 + r] = a + b for merge r, then the special tokens' UTF-8; "
             "b''.join(vocab[i] for i in ids).decode('utf-8', errors='replace').",
        reference=_decode_reference, runner=partial(_pure, "decode"),
        compare=_diagnosed(DECODE_MISTAKES, _compare_equal("text"), "decode"),
        cases=(
            Case("ids of a held-out poem, 80 Chinese merges",
                 lambda: _decode_case("zh", 80, _split(chinese_sample())[1][:200]),
                 "Some merges hold part of a character: decode the joined bytes, not token by token."),
            Case("ids with an end-of-text token", lambda: _decode_case("en", 80, f"to be{EOT}or not", [EOT])),
            *(Case(f"ids of random Unicode (letters, CJK, emoji, controls), seed {s}",
                   lambda s=s: _decode_case("en", 80, random_unicode(s)),
                   "decode(encode(x)) must give x back for any valid Unicode.") for s in range(3)),
            Case("ids that cut a character: 世 and the first byte of 界", lambda: (list(CUT), [], []),
                 "A cut character is not an error: decode(..., errors='replace') gives U+FFFD."),
            Case("no ids", lambda: ([], [], []), "No ids: the empty string."),
        ),
    ))


_register_lab03_tokenizer()  # cheap: builds Check objects only; samples are read and merges trained when a check runs
