"""Lab 03 tokenizer checks (Survey §4.1.2): a student's own right answers pass; each usual mistake (unweighted or
once-per-word pair counts, a right-to-left merge, ties broken on ids or to the smallest pair, merges across pre-tokens,
counts not updated after a merge, off-by-one ids, characters instead of bytes, special tokens split or matched
shortest first, decoding token by token) fails with the hint that names it; minillm's own functions are refused;
the cases hold what their labels say (hand-computed)."""
import re
from collections import Counter
from functools import partial

import pytest

import book.grading.lab03_tokenizer as lab  # registers the lab's checks (until book/grading/__init__.py imports it)
import book.grading.lab03_tokenizer_mistakes as mistakes
from book import grading
from minillm import ByteBPE, train_bpe as minillm_train_bpe
from minillm.data.bpe import pretokenize

# ------------------------------------------------------------------------------------------------ right answers
# Written independently of book.grading.lab03_tokenizer, the way the lab's solution notebook does it.


def get_pair_counts(words, weighted=True, overlapping=True):
    counts = Counter()
    for word, n in words.items():
        pairs = list(zip(word, word[1:])) if overlapping else list(set(zip(word, word[1:])))
        for pair in pairs:
            counts[pair] += n if weighted else 1
    return counts


def merge_word(word, pair, new_id, right_to_left=False):
    if right_to_left:
        return tuple(reversed(merge_word(tuple(reversed(word)), pair[::-1], new_id)))
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def merge_pair(words, pair, new_id, right_to_left=False):
    return {merge_word(w, pair, new_id, right_to_left): n for w, n in words.items()}


def merge_pair_in_place(words, pair, new_id):
    merged = merge_pair(words, pair, new_id)
    words.clear()
    words.update(merged)
    return words


def train_bpe(text, vocab_size, tie="bytes", pretokens=True, first_id=256, recount=True, overlapping=True):
    words = Counter(tuple(p.encode("utf-8")) for p in (pretokenize(text) if pretokens else [text]))
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    counts = get_pair_counts(words, overlapping=overlapping)
    while len(merges) < vocab_size - 256:
        if recount:
            counts = get_pair_counts(words, overlapping=overlapping)
        counts = {p: c for p, c in counts.items() if c > 0}
        if not counts:
            break
        keys = {"bytes": lambda p: (counts[p], vocab[p[0]], vocab[p[1]]), "ids": lambda p: (counts[p], p),
                "count only": counts.get}
        best = max(counts, key=keys[tie])
        new_id = first_id + len(merges)
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        merges.append((vocab[best[0]], vocab[best[1]]))
        words = merge_pair(words, best, new_id)
        counts.pop(best)
    return vocab, merges


def _encode_word(data, ranks, leftmost=False):
    ids = list(data)
    while len(ids) > 1:
        pairs = list(zip(ids, ids[1:]))
        pair = next((p for p in pairs if p in ranks), pairs[0]) if leftmost else \
            min(pairs, key=lambda p: ranks.get(p, (float("inf"), 0))[0])
        if pair not in ranks:
            break
        ids = list(merge_word(tuple(ids), pair, ranks[pair][1]))
    return ids


def encode(text, merges, special_tokens=(), specials_whole=True, longest_first=True, use_bytes=True, leftmost=False):
    if not use_bytes:
        return [ord(c) for c in text]
    ids_of = {bytes([i]): i for i in range(256)}
    ranks = {}
    for r, (a, b) in enumerate(merges):
        ranks[(ids_of[a], ids_of[b])] = (r, 256 + r)
        ids_of[a + b] = 256 + r
    special_id = {s: 256 + len(merges) + k for k, s in enumerate(special_tokens)}
    order = sorted(special_tokens, key=len, reverse=True) if longest_first else list(special_tokens)
    pieces = re.split("(" + "|".join(map(re.escape, order)) + ")", text) if special_tokens and specials_whole \
        else [text]
    out = []
    for piece in pieces:
        if piece in special_id:
            out.append(special_id[piece])
        else:
            for p in pretokenize(piece):
                out += _encode_word(p.encode("utf-8"), ranks, leftmost)
    return out


def decode(ids, merges, special_tokens=(), per_token=False):
    vocab = [bytes([i]) for i in range(256)] + [a + b for a, b in merges] + [s.encode() for s in special_tokens]
    if per_token:
        return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


RIGHT = [("bpe_pair_counts", get_pair_counts), ("bpe_merge_pair", merge_pair), ("bpe_train", train_bpe),
         ("bpe_encode", encode), ("bpe_decode", decode)]


@pytest.mark.parametrize("name, fn", RIGHT, ids=[n for n, _ in RIGHT])
def test_a_right_answer_passes(name, fn, capsys):
    grading.check(name, fn)
    assert f"PASS {name}" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ usual mistakes

MISTAKES = [
    ("bpe_pair_counts", partial(get_pair_counts, weighted=False), "Weight each pair by its word's count"),
    ("bpe_pair_counts", partial(get_pair_counts, overlapping=False), "'aaa' holds \\(a, a\\) twice"),
    ("bpe_merge_pair", partial(merge_pair, right_to_left=True), "Scan left to right"),
    ("bpe_merge_pair", merge_pair_in_place, "your function modified its input"),
    ("bpe_train", partial(train_bpe, tie="ids"), "Break ties on the pair's BYTES"),
    ("bpe_train", partial(train_bpe, tie="count only"), "Ties go to the GREATEST pair|Break ties explicitly"),
    ("bpe_train", partial(train_bpe, pretokens=False), "Pre-tokenize first"),
    ("bpe_train", partial(train_bpe, recount=False), "Recount the pairs after every merge"),
    ("bpe_train", partial(train_bpe, overlapping=False), "Count overlapping pairs|holds \\(a, a\\) twice"),
    ("bpe_train", partial(train_bpe, first_id=257), "The first merge gets id 256"),
    ("bpe_encode", partial(encode, use_bytes=False), "Start from the UTF-8 BYTES"),
    ("bpe_encode", partial(encode, specials_whole=False), "Cut the text at the special tokens first"),
    ("bpe_encode", partial(encode, longest_first=False), "Match the LONGEST special token first"),
    ("bpe_encode", partial(encode, leftmost=True), "Merge the pair with the LOWEST RANK"),
    ("bpe_decode", partial(decode, per_token=True), "Join all the bytes first"),
]


@pytest.mark.parametrize("name, fn, advice", MISTAKES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(MISTAKES)])
def test_each_usual_mistake_fails_with_its_hint(name, fn, advice, capsys):
    with pytest.raises(AssertionError, match=f"{name} failed on case"):
        grading.check(name, fn)
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL {name}") and re.search(advice, out), out


SIMULATED = {"bpe_pair_counts": mistakes.COUNT_MISTAKES, "bpe_merge_pair": mistakes.MERGE_MISTAKES,
             "bpe_train": mistakes.TRAIN_MISTAKES, "bpe_encode": mistakes.ENCODE_MISTAKES,
             "bpe_decode": mistakes.DECODE_MISTAKES}


@pytest.mark.parametrize("name", SIMULATED)
def test_every_simulated_mistake_is_caught_by_some_case(name):
    spec = grading.CHECKS[name]
    for wrong, advice in SIMULATED[name]:
        caught = []
        for case in spec.cases:
            try:
                got = wrong(*case.make())
            except Exception:
                continue
            caught.append(not lab._same_output(got, spec.reference(*case.make())))
        assert any(caught), f"no case of {name} separates the mistake: {advice}"


def test_the_simulated_trainer_without_mistakes_is_minillm():
    for case in grading.CHECKS["bpe_train"].cases:
        assert lab._same_output(mistakes.naive_train(*case.make()), lab._train_reference(*case.make())), case.label


def test_decoding_strictly_fails_on_a_cut_character(capsys):
    def strict(ids, merges, special_tokens=()):
        vocab = [bytes([i]) for i in range(256)] + [a + b for a, b in merges] + [s.encode() for s in special_tokens]
        return b"".join(vocab[i] for i in ids).decode("utf-8")  # errors="strict"

    with pytest.raises(AssertionError, match="cut a character.*UnicodeDecodeError"):
        grading.check("bpe_decode", strict)
    assert "errors='replace'" in capsys.readouterr().out


@pytest.mark.parametrize("name, fn", [
    ("bpe_train", minillm_train_bpe),
    ("bpe_train", partial(minillm_train_bpe)),
    ("bpe_encode", ByteBPE(lab.vocab_of([]), []).encode),
])
def test_minillm_itself_is_refused(name, fn, capsys):
    with pytest.raises(AssertionError, match="minillm's own function"):
        grading.check(name, fn)
    assert "Implement it" in capsys.readouterr().out


def test_a_stub_is_not_implemented_yet():
    def stub(*args):
        raise NotImplementedError("count the pairs")

    with pytest.raises(NotImplementedError, match="not implemented yet: bpe_pair_counts \\(count the pairs\\)"):
        grading.check("bpe_pair_counts", stub)


# ------------------------------------------------------------------------------------------------ the cases, by hand


def test_hand_computed_values():
    assert get_pair_counts({(104, 105): 2, (32, 104, 105): 1}) == {(104, 105): 3, (32, 104): 1}
    assert get_pair_counts({(97,) * 4: 5}) == {(97, 97): 15}  # 3 overlapping positions x 5
    assert merge_pair({(97, 97, 97): 1, (97,) * 4: 2}, (97, 97), 256) == {(256, 97): 1, (256, 256): 2}
    # "aaa xy": (a,a)=2 wins; then (aa,a), (' ',x), (x,y) tie at 1 -> greatest bytes (x,y); then b"aa" > b" ".
    vocab, merges = lab._train_reference("aaa xy", 259)
    assert merges == [(b"a", b"a"), (b"x", b"y"), (b"aa", b"a")] and vocab[258] == b"aaa"
    # "xy zw": a tie on every pair; (z, w) is the greatest.
    assert lab._train_reference("xy zw", 259)[1] == [(b"z", b"w"), (b"x", b"y"), (b" ", b"zw")]
    # The merged-token tie: the id of "ab" (256) is above ord("z"), its bytes b"ab" below b"z".
    assert train_bpe("ab ab zc zc abab abc", 262, tie="ids")[1] != lab._train_reference("ab ab zc zc abab abc", 262)[1]
    assert lab._encode_reference("abc", lab.ORDER_MERGES, []) == [258]
    assert lab._encode_reference("the the", lab.CROSS_MERGES, []) == [116, 258, 257, 258]
    assert lab._decode_reference(list(lab.CUT), [], []) == "世\ufffd"
    eot = 256 + 80
    assert lab._encode_case("en", 80, "a<|endoftext|>b", [lab.EOT])[0] == "a<|endoftext|>b"
    assert encode("a<|endoftext|>b", list(lab.trained_merges("en", 80)), [lab.EOT]) == [97, eot, 98]


def test_random_unicode_is_valid_and_round_trips():
    merges = list(lab.trained_merges("en", 80))
    tok = ByteBPE(lab.vocab_of(merges), merges)
    texts = [lab.random_unicode(seed) for seed in range(20)]
    for text in texts:
        assert len(text) == 40 and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        assert tok.decode(tok.encode(text)) == text == decode(encode(text, merges), merges)
    chars = "".join(texts)
    assert any(ord(c) > 0xFFFF for c in chars) and any("\u4e00" <= c <= "\u9fff" for c in chars)  # emoji, CJK
    assert lab.random_unicode(3) == lab.random_unicode(3) != lab.random_unicode(4)


def test_samples_are_english_and_chinese():
    en, zh = lab.english_sample(), lab.chinese_sample()
    assert len(en) == lab.N_EN_CHARS and en.startswith("First Citizen")
    assert zh.startswith("秦川雄帝宅") and zh.count("\n\n") == lab.N_POEMS - 1
    assert len(zh.encode("utf-8")) > 2.5 * len(zh)  # mostly 3-byte characters
