"""Tests for book.ch03_data.studies_tokenizers: five tokenizers, compression, compute cost, NFKC vs full-width text."""

from __future__ import annotations

import unicodedata
import warnings

import pytest

from minillm.data.synthetic import corpus
from book.ch03_data.studies_tokenizers import (KINDS, LOSSLESS_KINDS, compression, compression_table, fullwidth_slots, nfkc_changes, nfkc_mismatch, normalization_effect, sequence_cost, split_by_language, train_tokenizer, widen)

PRINTABLE_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))  # the 95 characters widen may change


@pytest.fixture(scope="module")
def train() -> list[str]:
    return corpus("bilingual", 200, seed=0).docs  # ~40 KB, mixed English and Chinese documents


@pytest.fixture(scope="module")
def held_out(train: list[str]) -> dict[str, list[str]]:
    """Held-out documents whose characters all occur in `train` (char, WordPiece and Unigram need that)."""
    seen = set("".join(train))
    split = split_by_language([d for d in corpus("bilingual", 100, seed=1).docs if set(d) <= seen])
    assert len(split["en"]) >= 30 and len(split["zh"]) >= 20
    return split


@pytest.fixture(scope="module")
def trained(train: list[str]) -> dict[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a small corpus may run out of merges
        return {kind: train_tokenizer(kind, train, 400) for kind in KINDS}


# ---- Each kind trains, encodes, and round-trips where it claims to ---------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_trains_and_encodes(trained, held_out, kind):
    tok = trained[kind]
    assert tok.kind == kind and tok.lossless == (kind in LOSSLESS_KINDS)
    assert 0 < tok.vocab_size <= 400 and tok.requested_vocab_size == 400 and tok.train_seconds >= 0
    for doc in held_out["en"][:5] + held_out["zh"][:5]:
        ids = tok.encode(doc)
        assert ids and all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
    assert tok.encode_batch(held_out["zh"][:3]) == [tok.encode(d) for d in held_out["zh"][:3]]
    assert len(tok.token_strings()) == tok.vocab_size


@pytest.mark.parametrize("kind", sorted(LOSSLESS_KINDS))
def test_lossless_kinds_round_trip_exactly(trained, held_out, train, kind):
    tok = trained[kind]
    # Whitespace that WordPiece and Unigram lose: leading, doubled, trailing.
    odd = " " + "  ".join(train[:4]) + " "
    for doc in held_out["en"] + held_out["zh"] + [odd]:
        assert tok.decode(tok.encode(doc)) == doc
    if kind != "char":  # byte-level: even characters never seen in training, and any whitespace
        text = "Ω ünïcödé 🙂\t≠\n\n  x\r\n\u3000"
        assert tok.decode(tok.encode(text)) == text


def test_char_refuses_unseen_characters(trained):
    with pytest.raises(ValueError, match="not in this CharTokenizer's vocabulary"):
        trained["char"].encode("Ω")


def test_unigram_round_trips_seen_text_but_loses_leading_space_and_unseen_chars(trained, held_out):
    tok = trained["unigram"]
    for doc in held_out["en"] + held_out["zh"]:  # every character seen in training, no leading space
        assert tok.decode(tok.encode(doc)) == doc
    assert tok.decode(tok.encode(" Mia")) == "Mia"
    assert "<unk>" in tok.decode(tok.encode("Mia Ω"))


def test_wordpiece_loses_whitespace_and_unseen_chars(trained, held_out):
    tok = trained["wordpiece"]
    zh = held_out["zh"][0]
    # BERT-style: one token per CJK character, decoded with spaces between them.
    assert len(tok.encode(zh)) == len(zh)
    assert tok.decode(tok.encode(zh)) == " ".join(zh)
    assert tok.decode(tok.encode("Mia  was\n\nat the mill.")) == "Mia was at the mill."
    assert tok.decode(tok.encode("Mia Ω")) == "Mia [UNK]"


# ---- Compression ---------------------------------------------------------------------------------


def test_compression_hand_computed(trained):
    c = compression(trained["char"], ["Mia.", "大山"])  # 4 + 6 bytes, 6 characters, 6 tokens
    assert c == {"bytes_per_token": 10 / 6, "chars_per_token": 1.0, "tokens": 6, "bytes": 10, "chars": 6}


def test_char_tokenizer_is_exactly_three_bytes_per_token_on_cjk(trained, held_out):
    zh = corpus("story_zh", 50, seed=3).docs
    # Ground truth: every character of these documents is in U+0800..U+FFFF, i.e. 3 bytes in UTF-8.
    assert all(0x800 <= ord(ch) <= 0xFFFF for doc in zh for ch in doc)
    c = compression(train_tokenizer("char", zh, 1000), zh)
    assert c["bytes_per_token"] == 3.0 and c["chars_per_token"] == 1.0
    # BERT-style WordPiece splits every ideograph off too, so it can do no better on Chinese ...
    assert compression(trained["wordpiece"], held_out["zh"])["bytes_per_token"] == 3.0
    # ... Unigram keeps every character and merges them into words ...
    assert compression(trained["unigram"], held_out["zh"])["bytes_per_token"] > 3.0
    # ... and byte-level BPE with 400 ids (144 merges) cannot even give each of the ~200 Chinese characters
    # its own token: it spends more tokens on Chinese than a character tokenizer does.
    assert compression(trained["bpe"], held_out["zh"])["bytes_per_token"] < 3.0


def test_bpe_bytes_per_token_grows_with_vocab_size(train, held_out):
    toks = [train_tokenizer("bpe", train, v) for v in (300, 600, 1200)]
    bpt = {lang: [compression(t, docs)["bytes_per_token"] for t in toks] for lang, docs in held_out.items()}
    for lang, (small, mid, large) in bpt.items():
        assert small < mid < large, (lang, bpt[lang])
    assert bpt["zh"][2] > 3.0  # with 1200 ids, byte-level BPE beats one token per Chinese character


def test_compression_table_rows(train, held_out):
    rows = compression_table(["hf_bpe", "char"], [300, 700], held_out, train_texts=train)
    assert [(r["kind"], r["vocab_size"], r["corpus"]) for r in rows] == [
        (k, v, c) for k in ("hf_bpe", "char") for v in (300, 700) for c in ("en", "zh")]
    for r in rows:
        assert set(r) == {"kind", "vocab_size", "actual_vocab_size", "normalization", "corpus", "bytes_per_token",
                          "chars_per_token", "n_tokens", "train_seconds"}
        assert r["n_tokens"] == compression(train_tokenizer(r["kind"], train, r["vocab_size"]),
                                            held_out[r["corpus"]])["tokens"]
    char_zh = [r for r in rows if r["kind"] == "char" and r["corpus"] == "zh"]
    assert all(r["bytes_per_token"] == 3.0 for r in char_zh)


def test_sequence_cost_hand_computed():
    rows = [{"kind": "char", "corpus": "en", "bytes_per_token": 1.0, "actual_vocab_size": 100},
            {"kind": "bpe", "corpus": "en", "bytes_per_token": 4.0, "actual_vocab_size": 1000}]
    out = sequence_cost(rows, n_params=1e6, n_bytes=1e6)
    assert [r["tokens"] for r in out] == [1e6, 2.5e5]
    assert [r["flops"] for r in out] == [6e12, 1.5e12]
    assert [r["cheaper_than_baseline"] for r in out] == [0.0, 0.75]
    # With the output layer: 6 * (N + d * V) per token.
    out = sequence_cost(rows, n_params=1e6, n_bytes=1e6, d_model=100)
    assert out[0]["flops"] == 6 * (1e6 + 100 * 100) * 1e6 and out[1]["flops"] == 6 * (1e6 + 100 * 1000) * 2.5e5
    assert "cheaper_than_baseline" not in sequence_cost(rows, 1e6, baseline=None)[0]
    with pytest.raises(ValueError, match="no baseline row"):
        sequence_cost(rows, 1e6, baseline="unigram")
    two_bpe = rows + [{"kind": "bpe", "corpus": "en", "bytes_per_token": 5.0, "vocab_size": 2000}]
    with pytest.raises(ValueError, match="different cost"):
        sequence_cost(two_bpe, 1e6, baseline="bpe")
    assert sequence_cost(two_bpe, 1e6, baseline=("bpe", 2000))[2]["cheaper_than_baseline"] == 0.0
    with pytest.raises(ValueError, match="n_params"):
        sequence_cost(rows, 0)


# ---- Full-width text and NFKC --------------------------------------------------------------------


def test_widen_is_seeded_and_changes_the_asked_share():
    text = "Nora was at the old mill, 3 times! 大山在老磨坊玩。\n" * 20
    eligible = sum(ch in PRINTABLE_ASCII for ch in text)
    out = widen(text, 0.3, seed=7)
    assert out == widen(text, 0.3, seed=7) and out != widen(text, 0.3, seed=8)
    assert len(out) == len(text)
    changed = [(a, b) for a, b in zip(text, out) if a != b]
    assert len(changed) == round(0.3 * eligible)
    for a, b in changed:  # only printable ASCII changes, and only to its full-width form
        assert b == ("\u3000" if a == " " else chr(ord(a) + 0xFEE0))
    assert widen(text, 0.0, seed=1) == text


def test_nfkc_undoes_widen_for_every_printable_ascii_character():
    full = widen(PRINTABLE_ASCII, 1.0, seed=0)
    assert not set(full) & set(PRINTABLE_ASCII)  # every one of the 95 changed
    assert unicodedata.normalize("NFKC", full) == PRINTABLE_ASCII
    text = "Mia met Tom at noon.\nThen she smiled: (3 + 4) * 2 = 14; ok? ~_~ {a|b} [x] \\ `q` 'p' \"r\" #$%&@^\n"
    for share, seed in [(0.37, 1), (0.9, 2)]:
        assert unicodedata.normalize("NFKC", widen(text, share, seed)) == text


def test_widen_rejects_bad_input():
    for share in (-0.1, 1.5, "0.5", True):
        with pytest.raises(ValueError, match="share"):
            widen("abc", share, 0)
    with pytest.raises(ValueError, match="seed"):
        widen("abc", 0.5, -1)
    with pytest.raises(ValueError, match="str"):
        widen(b"abc", 0.5, 0)


def test_normalization_effect_nfkc_recovers_clean_tokenization():
    english = corpus("story", 120, seed=2).docs  # ASCII only, so NFKC(widen(x)) == x exactly
    rows = {r["setting"]: r for r in normalization_effect("bpe", 500, english, share=0.3, seed=0)}
    assert rows["widened"]["tokens_per_char"] > 1.3 * rows["clean"]["tokens_per_char"]
    assert rows["widened+nfkc"]["tokens_per_char"] < rows["widened"]["tokens_per_char"]
    # The NFKC tokenizer trains on exactly the clean text, so it tokenizes exactly as well.
    assert rows["widened+nfkc"]["tokens_per_char"] == rows["clean"]["tokens_per_char"]
    assert rows["clean"]["fullwidth_slots"] == 0 == rows["widened+nfkc"]["fullwidth_slots"]
    assert rows["widened"]["fullwidth_slots"] > 20


def test_normalization_effect_hf_kind(train):
    rows = {r["setting"]: r for r in normalization_effect("unigram", 600, train, share=0.3, seed=0)}
    assert rows["widened+nfkc"]["tokens_per_char"] < rows["widened"]["tokens_per_char"]
    assert rows["widened+nfkc"]["fullwidth_slots"] == 0 < rows["clean"]["fullwidth_slots"]  # "，" is full-width
    assert rows["widened"]["fullwidth_slots"] > rows["clean"]["fullwidth_slots"]


@pytest.mark.filterwarnings("ignore:BPE training stopped")
def test_fullwidth_slots_counts_byte_level_tokens_by_their_text():
    tok = train_tokenizer("hf_bpe", ["Ｎｏｒａ　ｗａｓ ｈｅｒｅ"] * 50 + ["Nora was here"] * 50, 300)
    assert fullwidth_slots(tok) > 0
    assert "Ｎｏｒａ" in tok.token_strings()  # GPT-2 byte symbols were mapped back to text
    assert fullwidth_slots(train_tokenizer("hf_bpe", ["Nora was here"] * 50, 300)) == 0


# ---- Bad input -----------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors(train):
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        train_tokenizer("sentencepiece", train, 500)
    with pytest.raises(ValueError, match="vocab_size must be an int >= 256"):
        train_tokenizer("bpe", train, 255)
    with pytest.raises(ValueError, match="vocab_size must be an int >= 256"):
        train_tokenizer("hf_bpe", train, 100)
    for kind in ("unigram", "wordpiece", "char"):
        with pytest.raises(ValueError, match="too small"):
            train_tokenizer(kind, train, 20)
    n_chars = len(set("".join(train)))
    with pytest.raises(ValueError, match="base alphabet alone needs"):  # c and ##c forms do not fit
        train_tokenizer("wordpiece", train, n_chars + 1)
    for texts in ([], [""], "just one string"):
        with pytest.raises(ValueError, match="texts"):
            train_tokenizer("char", texts, 500)
    with pytest.raises(ValueError, match="str documents"):
        train_tokenizer("char", ["ok", 3], 500)
    with pytest.raises(ValueError, match="normalization"):
        train_tokenizer("char", train, 500, normalization="nfc")
    with pytest.raises(ValueError, match="vocab_size must be an int"):
        train_tokenizer("unigram", train, 500.0)
    with pytest.raises(ValueError, match="corpora"):
        compression_table(["char"], [500], {}, train_texts=train)
    with pytest.raises(ValueError, match="encode"):
        compression(object(), ["abc"])


# ---- What else NFKC changes ------------------------------------------------------------------------


def test_nfkc_changes_folds_fullwidth_latin_and_chinese_commas_but_not_the_full_stop():
    rows = nfkc_changes("Ｎｏｒａ，ﬁne５m²。、Ｎ")
    assert [(r["char"], r["nfkc"]) for r in rows] == [("Ｎ", "N"), ("ｏ", "o"), ("ｒ", "r"), ("ａ", "a"), ("，", ","),
                                                      ("ﬁ", "fi"), ("５", "5"), ("²", "2")]  # distinct, in order
    assert rows[4]["code_point"] == "U+FF0C" and rows[4]["name"] == "FULLWIDTH COMMA"
    assert nfkc_changes("大山在老磨坊玩。小红、大山") == []  # "。" and "、" have no compatibility mapping
    assert nfkc_changes("plain ASCII, nothing to fold.") == []
    with pytest.raises(ValueError, match="needs a str"):
        nfkc_changes(["，"])


@pytest.fixture(scope="module")
def zh_held_out(held_out: dict[str, list[str]]) -> list[str]:
    assert sum(d.count("，") for d in held_out["zh"]) >= 10 and not any("," in d for d in held_out["zh"])
    return held_out["zh"]


def test_nfkc_mismatch_unigram_loses_the_commas_a_chinese_trained_tokenizer_never_saw(train, zh_held_out):
    assert not any("," in d for d in train)  # the training text has "，" but never ASCII ","
    written, nfkc = nfkc_mismatch("unigram", 600, train, zh_held_out)
    assert (written["setting"], nfkc["setting"]) == ("as written", "nfkc")
    n_commas = sum(d.count("，") for d in zh_held_out)
    assert written["unknown"] == 0 and nfkc["unknown"] == n_commas  # every "," is an unseen character
    assert nfkc["chars"] == written["chars"]  # "，" -> "," keeps the length
    assert written["spanning_pieces"] > 0 and nfkc["tokens_per_char"] > written["tokens_per_char"]
    assert written["tokens_per_char"] == pytest.approx(written["tokens"] / written["chars"])


def test_nfkc_mismatch_byte_level_bpe_splits_punctuation_off_so_nothing_changes(train, zh_held_out):
    written, nfkc = nfkc_mismatch("hf_bpe", 600, train, zh_held_out)
    assert written["tokens"] == nfkc["tokens"] and written["unknown"] == nfkc["unknown"] == 0


def test_nfkc_mismatch_rejects_char_and_bad_input(train, zh_held_out):
    with pytest.raises(ValueError, match="subword kind"):
        nfkc_mismatch("char", 600, train, zh_held_out)
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        nfkc_mismatch("sentencepiece", 600, train, zh_held_out)
    with pytest.raises(ValueError, match="eval_texts"):
        nfkc_mismatch("unigram", 600, train, "，")
