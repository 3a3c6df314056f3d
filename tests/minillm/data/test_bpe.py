"""Tests for the teaching byte-level BPE: minillm.data.bpe (ByteBPE) and minillm.data.bpe_train (train_bpe)."""

from __future__ import annotations

import itertools
import json
import random
import re
from collections import Counter

import pytest
import regex

from minillm.data.bpe import GPT2_PRETOKENIZE_PATTERN, ByteBPE, pretokenize
from minillm.data.bpe_train import train_bpe
from minillm.data.tokenizer import load_tokenizer

EOT = "<|endoftext|>"
TRICKY = [
    "",
    "Hello, world! It'll be fine; they've 12,345 reasons.",
    "中文分词很难。汉字之间没有空格，所以字节级 BPE 很有用。",
    "emoji 🙂🚀 family 👩‍👩‍👧‍👦 flags 🇫🇷🇯🇵 skin 👍🏽",
    "weird  whitespace\t\t\n\n \r\n\u00a0\u2003\u200b\u3000 end   ",
    "\x00\x01\x7f controls and a trailing newline\n",
]


def synthetic_text(n_words: int, seed: int) -> str:
    """Deterministic word salad with a Zipf-like vocabulary, punctuation, numbers and some CJK and emoji."""
    rng = random.Random(seed)
    syllables = ["th", "e", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed", "is", "it"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(300)]
    words += ["中文", "字节", "🙂", "it's", "we'll", "1984", "3.14"]
    weights = [1 / (rank + 1) for rank in range(len(words))]
    out = []
    for w in rng.choices(words, weights=weights, k=n_words):
        out.append(w)
        out.append(rng.choice([" ", " ", " ", " ", ", ", ".\n", "  ", "\n\n", "! "]))
    return "".join(out)


def naive_train_bpe(text: str, vocab_size: int, special_tokens: list[str]) -> list[tuple[bytes, bytes]]:
    """Reference BPE: recount every pair after every merge. Slow and obviously right."""
    pieces = re.split("|".join(map(re.escape, sorted(special_tokens, key=len, reverse=True))), text) \
        if special_tokens else [text]
    counts = Counter(w for piece in pieces for w in regex.findall(GPT2_PRETOKENIZE_PATTERN, piece))
    words = {tuple(bytes([b]) for b in w.encode("utf-8")): c for w, c in counts.items()}
    merges = []
    while 256 + len(special_tokens) + len(merges) < vocab_size:
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for word, c in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += c
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))  # most frequent; ties -> greatest byte pair
        merges.append(best)
        new_words = {}
        for word, c in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + c
        words = new_words
    return merges


@pytest.fixture(scope="module")
def trained() -> ByteBPE:
    text = synthetic_text(3000, seed=0) + EOT + "\n".join(TRICKY) + EOT
    vocab, merges = train_bpe(text, 400, [EOT])
    return ByteBPE(vocab, merges, [EOT])


# ----------------------------------------------------------------------------------------------- training


def test_hand_checked_first_merges():
    # Pre-tokens: "ab" x1, " ab" x2, " abc" x1. Pair counts: (a,b)=4, (' ',a)=3, (b,c)=1 -> merge "ab".
    # Then (' ',ab)=3, (ab,c)=1 -> " ab"; then (" ab",c)=1 -> " abc"; then no pairs are left.
    with pytest.warns(UserWarning, match="ran out of pairs after 3 merges"):
        vocab, merges = train_bpe("ab ab ab abc", 300, [])
    assert merges == [(b"a", b"b"), (b" ", b"ab"), (b" ab", b"c")]
    assert [vocab[i] for i in (256, 257, 258)] == [b"ab", b" ab", b" abc"] and len(vocab) == 259


def test_ties_go_to_greatest_pair_and_overlaps_count_twice():
    # All three pairs occur once: the lexicographically greatest (b"z", b"w") wins, then (b"x", b"y") > (b" ", b"zw").
    _, merges = train_bpe("xy zw", 259, [])
    assert merges == [(b"z", b"w"), (b"x", b"y"), (b" ", b"zw")]
    # "aaaa" has (a,a) three times (overlapping); merging left to right gives [aa, aa], then "aaaa".
    _, merges = train_bpe("aaaa", 258, [])
    assert merges == [(b"a", b"a"), (b"aa", b"aa")]


def test_vocab_layout_bytes_then_specials_then_merges():
    vocab, merges = train_bpe("hello hello" + EOT + "help", 262, [EOT, "<pad>"])
    assert all(vocab[i] == bytes([i]) for i in range(256))
    assert vocab[256] == EOT.encode() and vocab[257] == b"<pad>"
    assert [vocab[258 + k] for k in range(len(merges))] == [a + b for a, b in merges]
    assert len(vocab) == 262


@pytest.mark.parametrize("seed,vocab_size", [(1, 330), (2, 420)])
def test_incremental_training_matches_naive_recount(seed, vocab_size):
    text = synthetic_text(800, seed) + EOT + synthetic_text(200, seed + 100)
    _, merges = train_bpe(text, vocab_size, [EOT])
    assert len(merges) == vocab_size - 257
    assert merges == naive_train_bpe(text, vocab_size, [EOT])


def test_training_never_merges_across_special_tokens():
    # "xyz" looks like an ordinary word, so only the special-token split keeps it out of the merges.
    text = "abxyzab xyzxyz abxyz " * 20
    vocab, merges = train_bpe(text, 259, ["xyz"])
    specials_id = 256
    assert all(b"xyz" not in tok for i, tok in vocab.items() if i != specials_id)
    assert (b"b", b"x") not in merges and (b"z", b"a") not in merges
    tok = ByteBPE(vocab, merges, ["xyz"])
    assert tok.encode("abxyzab") == tok.encode("ab") + [specials_id] + tok.encode("ab")


# ------------------------------------------------------------------------------------------ encode / decode


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip(trained, text):
    assert trained.decode(trained.encode(text)) == text


def test_special_tokens_whole_and_never_merged_with_neighbours(trained):
    eot = trained.token_to_id(EOT)
    for left, right in [("a", "b"), ("the", "the"), (" ", "\n"), ("中", "🙂"), ("", "")]:
        ids = trained.encode(left + EOT + EOT + right)
        assert ids == trained.encode(left) + [eot, eot] + trained.encode(right)


def test_overlapping_special_tokens_longest_wins():
    vocab, merges = train_bpe("plain text here", 270, ["<|a|>", "<|a|><|a|>"])
    tok = ByteBPE(vocab, merges, ["<|a|>", "<|a|><|a|>"])
    assert tok.encode("<|a|><|a|><|a|>") == [257, 256]


def test_encode_applies_merges_in_learned_order():
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"bc", 257: b"ab", 258: b"abc"}
    # "bc" was learned first, so "abc" -> a + bc; the merge (ab, c) never applies here.
    tok = ByteBPE(vocab, [(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")])
    assert tok.encode("abc") == [ord("a"), 256]
    assert tok.encode("ab") == [257]


def test_decode_partial_utf8_is_replaced(trained):
    ids = ByteBPE({i: bytes([i]) for i in range(256)}, []).encode("é")  # two byte tokens
    assert trained.decode(ids[:1]) == "\ufffd"
    with pytest.raises(ValueError, match=r"token id 9999 is outside the vocabulary \[0, 400\)"):
        trained.decode([1, 9999])


def test_pretokenize_gpt2_rules():
    assert pretokenize("Hi  there! It'll cost 42 dollars.\n\n") == \
        ["Hi", " ", " there", "!", " It", "'ll", " cost", " 42", " dollars", ".", "\n\n"]


# ----------------------------------------------------------------------------------------- encode_iterable


def random_chunks(text: str, seed: int, max_len: int) -> list[str]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, len(text) // max(1, max_len // 2))))
    return [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]


@pytest.mark.parametrize("seed", range(4))
def test_encode_iterable_equals_encode_on_chunked_input(seed):
    specials = [EOT, "<|a|>", "<|a|><|a|>"]
    text = ("".join(TRICKY) + EOT + "it'l" + "l ok <|a|><|a|><|a|>" + synthetic_text(300, seed)
            + "   \n\n" + EOT + EOT + "we'") * 3
    vocab, merges = train_bpe(text, 350, specials)
    tok = ByteBPE(vocab, merges, specials)
    expected = tok.encode(text)
    chunks = random_chunks(text, seed, max_len=7)  # chunk boundaries inside words and special tokens
    assert "".join(chunks) == text and len(chunks) > 100
    for min_chunk_chars in (1, 16, 1 << 14):  # 1: re-scan after every chunk, the hardest case
        assert list(tok.encode_iterable(chunks, min_chunk_chars=min_chunk_chars)) == expected
    assert list(tok.encode_iterable(text.splitlines(keepends=True))) == expected


@pytest.mark.parametrize("chunks", [
    ["it'l", "l go"],  # "'" alone is punctuation, "'ll" a contraction: the split two pre-tokens back changes
    ["we've  ", " got", " it"],  # a whitespace run's split depends on what follows it
    ["x<|eo", "t|>y"],  # a special token cut in half
    ["<|a|>", "<|a|>", "<|a|>z"],  # a complete special that is a prefix of a longer one
    ["X<|a|><|a|", ">z"],  # the short special fits in the buffer, the long one only after the next chunk
])
def test_encode_iterable_hard_boundaries(chunks):
    specials = ["<|eot|>", "<|a|>", "<|a|><|a|>"]
    vocab, merges = train_bpe("it'll we've got it " * 5 + "x y z", 270, specials)
    tok = ByteBPE(vocab, merges, specials)
    assert list(tok.encode_iterable(chunks, min_chunk_chars=1)) == tok.encode("".join(chunks))


def test_encode_iterable_streams_lazily(trained):
    consumed = 0

    def endless():
        nonlocal consumed
        for line in itertools.cycle(["To be, or not to be: that is the question.\n", "中文 🙂\n"]):
            consumed += 1
            yield line

    first = list(itertools.islice(trained.encode_iterable(endless(), min_chunk_chars=256), 50))
    assert len(first) == 50 and consumed < 50  # ids came out long before the (infinite) input ended


# --------------------------------------------------------------------------------------- files and interop


def test_save_load_and_gpt2_files(trained, tmp_path):
    text = "\n".join(TRICKY) + EOT
    trained.save(tmp_path / "bpe.json")
    loaded = load_tokenizer(tmp_path / "bpe.json")
    assert isinstance(loaded, ByteBPE) and loaded.hash == trained.hash
    assert loaded.encode(text) == trained.encode(text)
    vocab, merges = trained.to_gpt2_format()
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges), "utf-8")
    gpt2 = ByteBPE.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt", [EOT])
    assert gpt2.encode(text) == trained.encode(text) and gpt2.hash == trained.hash
    assert ByteBPE(trained.vocab, trained.merges[:-1], [EOT]).hash != trained.hash


def test_matches_hf_tokenizers_built_from_our_merges(trained):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab, merges = trained.to_gpt2_format()
    hf = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([EOT])
    for text in [*TRICKY, synthetic_text(500, seed=9), f"a{EOT}{EOT}b 中文{EOT}"]:
        assert trained.encode(text) == hf.encode(text).ids


def test_new_special_token_is_appended():
    tok = ByteBPE({i: bytes([i]) for i in range(256)}, [], ["<new>"])
    assert tok.vocab_size == 257 and tok.encode("a<new>") == [97, 256]


def test_tinyshakespeare_compression(shared_data):
    text = (shared_data / "tinyshakespeare.txt").read_text(encoding="utf-8")[:100_000]
    vocab, merges = train_bpe(text, 500, [EOT])
    tok = ByteBPE(vocab, merges, [EOT])
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    bytes_per_token = len(text.encode("utf-8")) / len(ids)
    assert bytes_per_token > 1.5, bytes_per_token


# ------------------------------------------------------------------------------------------------- errors


def test_training_errors(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        train_bpe("", 300, [])
    with pytest.raises(ValueError, match="empty .*only special tokens"):
        train_bpe(EOT + EOT, 300, [EOT])
    with pytest.raises(ValueError, match=r"vocab_size must be an int >= 258 \(256 bytes \+ 2 special tokens\)"):
        train_bpe("some text", 257, [EOT, "<pad>"])
    with pytest.raises(ValueError, match="single byte"):
        train_bpe("some text", 300, ["\n"])
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("abc café".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))} is not valid UTF-8: byte 0xe9 at offset 7.*iconv"):
        train_bpe(bad, 300, [])
    with pytest.raises(FileNotFoundError, match="training file not found"):
        train_bpe(tmp_path / "missing", 300, [])
    with pytest.raises(FileNotFoundError, match="training file not found"):
        train_bpe(str(tmp_path / "missing.txt"), 300, [])  # a str that looks like a file name


def test_path_or_text_rule(tmp_path):
    (tmp_path / "corpus").write_text("hello hello", encoding="utf-8")
    from_path = train_bpe(tmp_path / "corpus", 258, [])
    from_str_path = train_bpe(str(tmp_path / "corpus"), 258, [])  # an existing file named by a str
    from_text = train_bpe("hello hello", 258, [])
    assert from_path == from_str_path == from_text


def test_bytebpe_validation():
    base = {i: bytes([i]) for i in range(256)}
    with pytest.raises(ValueError, match="missing 1, e.g. byte 0xff"):
        ByteBPE({i: bytes([i]) for i in range(255)}, [])
    with pytest.raises(ValueError, match=r"merge #0 \(b'a', b'b'\) uses or makes a token missing"):
        ByteBPE(base, [(b"a", b"b")])
    with pytest.raises(ValueError, match="repeated byte strings"):
        ByteBPE(base | {256: b"a"}, [])
    with pytest.raises(ValueError, match="exactly 0..N-1"):
        ByteBPE(base | {300: b"ab"}, [])
    with pytest.raises(ValueError, match="unpaired surrogate"):
        ByteBPE(base, []).encode("\ud83d")
