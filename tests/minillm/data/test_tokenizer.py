"""Tests for minillm.data.tokenizer: CharTokenizer, BPETokenizer (HF tokenizers), load_tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minillm.data.tokenizer import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer

EOT = "<|endoftext|>"
MIXED = "Hello, 世界! 🙂🚀 naïve café\n\ttabs\r\nand\u00a0nbsp\u3000ideographic  spaces   \n\n"
TRICKY = [
    "",
    " ",
    "\n\n\n",
    "中文分词很难。汉字没有空格",
    "emoji 👩‍👩‍👧‍👦 family, flags 🇫🇷🇯🇵, skin 👍🏽",
    "mixed\twhitespace \u2003em\u2009thin\u200bzero-width\u00a0nbsp \r\n end ",
    "it's they'll we've I'm you'd 12345 3.14159 $$$ ...!!!",
    "\x00\x01 control \x7f bytes",
]


# ------------------------------------------------------------------------------------------- CharTokenizer


def test_char_ids_specials_first_then_sorted_chars():
    tok = CharTokenizer.from_text("cab" + EOT + "ba", special_tokens=[EOT, "<pad>"])
    # Special tokens take ids 0..S-1; the characters follow in sorted order. The special's own
    # characters ('<', '|', ...) are not in the vocabulary, since they only occurred inside the special.
    assert tok.vocab_size == 5
    assert [tok.id_to_token(i) for i in range(5)] == [EOT, "<pad>", "a", "b", "c"]
    assert tok.encode("abc" + EOT + "<pad>") == [2, 3, 4, 0, 1]


def test_char_round_trip_chinese_emoji_specials():
    text = "床前明月光，疑是地上霜。🙂🚀 hello\n" + EOT + "world 🙂"
    tok = CharTokenizer.from_text(text, special_tokens=[EOT])
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids.count(0) == 1  # the special is one token, not 13 characters
    assert len(ids) == len(text) - len(EOT) + 1
    assert tok.decode(np.array(ids)) == text  # arrays decode too


def test_char_encode_to_array_matches_encode_and_dtype():
    text = MIXED * 50 + EOT + MIXED
    tok = CharTokenizer.from_text(text, special_tokens=[EOT])
    arr = tok.encode_to_array(text, dtype=np.uint16)
    assert arr.dtype == np.uint16 and arr.shape == (len(text) - len(EOT) + 1,)
    assert arr.tolist() == tok.encode(text)
    # The vectorised path must agree with the obvious per-character dict lookup.
    assert tok.encode(MIXED) == [tok.token_to_id(c) for c in MIXED]
    with pytest.raises(ValueError, match="cannot hold ids up to"):
        CharTokenizer.from_text("".join(map(chr, range(300, 600)))).encode_to_array("Ĭ", dtype=np.uint8)


def test_char_unknown_character_error_names_it():
    tok = CharTokenizer.from_text("hello world")
    with pytest.raises(ValueError, match=r"character '🙂' \(U\+1F642\) at index 6 .*rebuild the tokenizer"):
        tok.encode("hello 🙂")
    with pytest.raises(ValueError, match=r"'x' \(U\+0078\) at index 0"):  # below the largest known code point
        tok.encode("x")


def test_char_bad_inputs():
    with pytest.raises(ValueError, match="empty text"):
        CharTokenizer.from_text("")
    with pytest.raises(ValueError, match="unpaired surrogate U\\+D800 at index 1"):
        CharTokenizer.from_text("a\ud800")
    with pytest.raises(ValueError, match="sequence of strings"):
        CharTokenizer.from_text("abc", special_tokens=EOT)
    with pytest.raises(ValueError, match="distinct"):
        CharTokenizer.from_text("abc", special_tokens=[EOT, EOT])
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"token id 3 is outside the vocabulary \[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match=r"token id -1 is outside"):
        tok.decode([-1])


def test_char_save_load_and_hash(tmp_path):
    tok = CharTokenizer.from_text(MIXED, special_tokens=[EOT])
    tok.save(tmp_path / "tok.json")
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temp file left behind
    loaded = CharTokenizer.load(tmp_path / "tok.json")
    assert loaded.encode(MIXED + EOT) == tok.encode(MIXED + EOT)
    assert loaded.hash == tok.hash and len(tok.hash) == 64
    assert isinstance(load_tokenizer(tmp_path / "tok.json"), CharTokenizer)
    # The hash is a fingerprint of the vocabulary: one more character, or another special, changes it.
    assert CharTokenizer.from_text(MIXED + "z", special_tokens=[EOT]).hash != tok.hash
    assert CharTokenizer.from_text(MIXED, special_tokens=["<eos>"]).hash != tok.hash
    assert CharTokenizer.from_text(MIXED[::-1], special_tokens=[EOT]).hash == tok.hash  # same set of chars


def test_char_save_to_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CharTokenizer.from_text("ab").save(tmp_path / "nope" / "tok.json")


# -------------------------------------------------------------------------------------------- BPETokenizer


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    # Small and multilingual, so every test below runs in milliseconds.
    return [MIXED * 3, *TRICKY, "the quick brown fox jumps over the lazy dog " * 20, "中文的文字和中文的词 " * 10]


@pytest.fixture(scope="module")
def bpe(corpus) -> BPETokenizer:
    return BPETokenizer.train(corpus, vocab_size=320, special_tokens=[EOT, "<pad>"])


def test_bpe_layout_and_size(bpe):
    assert isinstance(bpe, Tokenizer)
    assert bpe.vocab_size == 320
    assert (bpe.token_to_id(EOT), bpe.token_to_id("<pad>")) == (0, 1)  # specials first
    assert bpe.id_to_token(0) == EOT


@pytest.mark.parametrize("text", [MIXED, *TRICKY, "never seen: ÆØÅ ∮ E⋅da = Q 😀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"])
def test_bpe_round_trip_any_unicode(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert all(0 <= i < bpe.vocab_size for i in ids)


def test_bpe_special_tokens_kept_whole(bpe):
    text = f"a{EOT}b {EOT}{EOT}<pad>end"
    ids = bpe.encode(text)
    assert ids.count(0) == 3 and ids.count(1) == 1
    assert bpe.decode(ids) == text
    i = ids.index(0)
    assert bpe.decode(ids[:i]) == "a" and bpe.decode(ids[i + 1 : i + 2]) == "b"


def test_bpe_encode_batch_matches_encode(bpe, corpus):
    assert bpe.encode_batch(corpus) == [bpe.encode(t) for t in corpus]


def test_bpe_save_load_identical(bpe, tmp_path):
    bpe.save(tmp_path / "tokenizer.json")
    loaded = BPETokenizer.load(tmp_path / "tokenizer.json")
    for text in [MIXED, *TRICKY]:
        assert loaded.encode(text) == bpe.encode(text)
    assert loaded.hash == bpe.hash
    assert isinstance(load_tokenizer(tmp_path / "tokenizer.json"), BPETokenizer)
    # The file is a standard tokenizers JSON, readable by Hugging Face directly.
    from tokenizers import Tokenizer as HFTokenizer

    assert HFTokenizer.from_file(str(tmp_path / "tokenizer.json")).encode(MIXED).ids == bpe.encode(MIXED)


def test_bpe_hash_changes_with_vocab(bpe, corpus):
    assert BPETokenizer.train(corpus, vocab_size=320, special_tokens=[EOT, "<pad>"]).hash == bpe.hash  # deterministic
    assert BPETokenizer.train(corpus, vocab_size=310, special_tokens=[EOT, "<pad>"]).hash != bpe.hash
    assert BPETokenizer.train(corpus, vocab_size=320, special_tokens=[EOT, "<sep>"]).hash != bpe.hash


def test_bpe_errors(bpe, corpus, tmp_path):
    with pytest.raises(ValueError, match=r"vocab_size must be an int >= 258 \(256 bytes \+ 2 special tokens\)"):
        BPETokenizer.train(corpus, vocab_size=257, special_tokens=[EOT, "<pad>"])
    with pytest.raises(ValueError, match="empty corpus"):
        BPETokenizer.train([], vocab_size=300)
    with pytest.raises(ValueError, match="empty corpus"):
        BPETokenizer.train("", vocab_size=300)
    with pytest.raises(ValueError, match="not a token"):
        bpe.token_to_id("<never>")
    with pytest.raises(ValueError, match=r"token id 320 is outside the vocabulary \[0, 320\)"):
        bpe.decode([5, 320])
    with pytest.raises(ValueError, match="unpaired surrogate"):
        bpe.encode("x\udfff")
    with pytest.warns(UserWarning, match=r"stopped at \d+ < vocab_size=400"):
        BPETokenizer.train("abab", vocab_size=400)


# ------------------------------------------------------------------------------------------ load_tokenizer


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer file not found"):
        load_tokenizer(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not a valid UTF-8 JSON"):
        load_tokenizer(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"kind": "wordpiece"}), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown tokenizer file \\(kind='wordpiece'\\)"):
        load_tokenizer(tmp_path / "other.json")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="expected an object"):
        load_tokenizer(tmp_path / "list.json")
