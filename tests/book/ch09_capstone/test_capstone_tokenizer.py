"""The capstone's tokenizer section (book/ch09_capstone/studies_tokenizer.py, plots_tokenizer.py), at ci size."""
from __future__ import annotations

import dataclasses
import statistics

import matplotlib
import pytest

matplotlib.use("Agg")

from book.ch09_capstone import plots_tokenizer as P  # noqa: E402
from book.ch09_capstone import studies_tokenizer as S  # noqa: E402
from book.ch09_capstone.studies_corpus import SPECIAL_TOKENS, capstone_corpus  # noqa: E402
from minillm import GPT, ByteBPE, CharTokenizer, train_bpe  # noqa: E402
from minillm.data.tokenizer import BPETokenizer  # noqa: E402


@pytest.fixture(scope="module")
def corpus():
    return capstone_corpus("ci")


@pytest.fixture(scope="module")
def cfg():
    return S.tokenizer_config("ci")


@pytest.fixture(scope="module")
def rows(corpus, cfg):
    return S.bytes_per_token_rows(corpus, cfg)


def test_configs_of_every_profile_validate_and_bad_ones_are_refused():
    for size in ("ci", "laptop", "gpu"):
        c = S.tokenizer_config(size)
        assert c.mixture_vocab in c.vocab_sizes and list(c.vocab_sizes) == sorted(c.vocab_sizes)
    gpu = S.tokenizer_config("gpu").model
    n = sum(p.numel() for p in GPT(dataclasses.replace(gpu, vocab_size=8192)).parameters())
    assert 10e6 <= n <= 30e6  # the gpu profile's model is in the 10-30M range
    with pytest.raises(ValueError, match="distinct ascending"):
        S.tokenizer_config("ci", vocab_sizes=(512, 300))
    with pytest.raises(ValueError, match=">= 261"):
        S.tokenizer_config("ci", vocab_sizes=(260, 512))
    with pytest.raises(ValueError, match="mixture_vocab"):
        S.tokenizer_config("ci", mixture_vocab=400)
    with pytest.raises(TypeError, match="ModelConfig"):
        S.tokenizer_config("ci", model={"n_embd": 64})


def test_a_truncated_bpe_is_the_bpe_trained_at_that_size(corpus):
    docs = corpus.documents("train")
    big = BPETokenizer.train(docs, 700, special_tokens=SPECIAL_TOKENS)
    for v in (262, 300, 512):
        small = S.truncate_bpe(big, v)
        assert small.vocab_size == v
        assert small.hash == BPETokenizer.train(docs, v, special_tokens=SPECIAL_TOKENS).hash
    assert S.truncate_bpe(big, 700).hash == big.hash
    with pytest.raises(ValueError, match="cut to a size it has"):
        S.truncate_bpe(big, 701)


def test_sweep_rows_have_the_keys_and_bytes_per_token_rise_with_vocab(rows, cfg):
    keys = {"tokenizer", "vocab_size", "en_bytes_per_token", "en_chars_per_token", "en_tokens", "zh_bytes_per_token",
            "zh_chars_per_token", "zh_tokens", "lushi_tokens", "non_ascii_tokens", "unknown_chars",
            "unknown_distinct", "embedding_params", "model_params", "embedding_share"}
    assert all(set(r) == keys for r in rows)
    bpe = [r for r in rows if r["tokenizer"] == "bpe"]
    assert [r["vocab_size"] for r in bpe] == list(cfg.vocab_sizes) and [r["tokenizer"] for r in rows][-1] == "char"
    for lang in ("en", "zh"):
        bpt = [r[f"{lang}_bytes_per_token"] for r in bpe]
        assert bpt == sorted(bpt) and bpt[0] < bpt[-1]
    assert bpe[0]["lushi_tokens"] > bpe[-1]["lushi_tokens"]  # fewer tokens per poem with more merges
    assert all(r["unknown_chars"] == 0 for r in bpe)  # byte fallback: BPE can spell anything


def test_sweep_numbers_match_hand_counts_and_a_pytorch_model(rows, corpus, cfg):
    en, zh = corpus.en_val, corpus.poem_documents("heldout")
    tok = S.vocab_ladder(corpus, cfg)[512]
    r512 = next(r for r in rows if r["vocab_size"] == 512)
    n_en, n_zh = len(tok.encode(en)), sum(len(tok.encode(d)) for d in zh)
    assert (r512["en_tokens"], r512["zh_tokens"]) == (n_en, n_zh)
    assert r512["zh_bytes_per_token"] == sum(len(d.encode()) for d in zh) / n_zh
    assert tok.decode(tok.encode(zh[0])) == zh[0] and tok.decode(tok.encode(en)) == en  # exact round trip
    lushi = [p.text for p in corpus.poems_heldout if p.form == "七言律詩"]
    assert r512["lushi_tokens"] == statistics.median(len(tok.encode(t)) for t in lushi)
    for r in rows:  # tied embeddings: V x C parameters, counted against the model PyTorch builds
        model = GPT(dataclasses.replace(cfg.model, vocab_size=r["vocab_size"]))
        assert r["embedding_params"] == model.tok_emb.weight.numel() == r["vocab_size"] * cfg.model.n_embd
        assert r["model_params"] == sum(p.numel() for p in model.parameters())
    untied = S.tokenizer_config("ci", model=dataclasses.replace(cfg.model, tie_embeddings=False))
    assert S._vocab_params(untied, 512)["embedding_params"] == 2 * 512 * cfg.model.n_embd


def test_char_row_counts_characters_and_unknowns(rows, corpus):
    char = rows[-1]
    known = set("".join(corpus.documents("train")))
    heldout = corpus.en_val + "".join(corpus.poem_documents("heldout"))
    assert char["vocab_size"] == len(known) + len(SPECIAL_TOKENS)
    assert char["unknown_chars"] == sum(c not in known for c in heldout) > 0
    assert char["unknown_distinct"] == len({c for c in heldout if c not in known})
    assert char["en_bytes_per_token"] == 1.0 and char["zh_chars_per_token"] == 1.0  # ASCII; one token a character
    assert 2.5 < char["zh_bytes_per_token"] < 3.0  # Han characters are 3 UTF-8 bytes, newlines 1


def test_unknown_chars_on_a_hand_made_example():
    tok = CharTokenizer.from_text("春眠不覺曉 ab")
    assert S.unknown_chars(tok, "春眠不覺曉，處處聞啼鳥 abc") == {"，": 1, "處": 2, "聞": 1, "啼": 1, "鳥": 1, "c": 1}
    assert S.unknown_chars(tok, "ab 春") == {}


def test_mixture_shows_the_majority_language_taking_the_merges(corpus, cfg):
    rows = {r["trained_on"]: r for r in S.mixture_rows(corpus, cfg)}
    assert list(rows) == list(S.MIXTURES) and all(r["vocab_size"] == cfg.mixture_vocab for r in rows.values())
    en, zh, both, bal = rows["en"], rows["zh"], rows["both"], rows["balanced"]
    # English-only merges never touch a non-ASCII byte: every Chinese byte stays one token
    assert en["zh_bytes_per_token"] == 1.0 and en["non_ascii_tokens"] == 0.0 and zh["non_ascii_tokens"] > 0.95
    assert en["en_bytes_per_token"] > bal["en_bytes_per_token"] > both["en_bytes_per_token"]
    assert zh["zh_bytes_per_token"] > both["zh_bytes_per_token"] > bal["zh_bytes_per_token"]
    assert both["non_ascii_tokens"] > bal["non_ascii_tokens"] and both["seconds"] is None
    assert 0.8 < bal["train_zh_bytes"] / bal["train_en_bytes"] < 1.2
    assert both["en_bytes_per_token"] == next(r for r in S.bytes_per_token_rows(corpus, cfg)
                                              if r["vocab_size"] == cfg.mixture_vocab)["en_bytes_per_token"]


def test_ties_break_differently_in_the_teaching_bpe_and_hf():
    text = "ab cd"  # pairs (a,b), (' ',c), (c,d): one occurrence each, a three-way tie
    vocab, merges = train_bpe(text, 257)
    hf = BPETokenizer.train([text], 257, special_tokens=(), min_frequency=1)
    assert merges == [(b"c", b"d")]  # Python: the greatest byte pair
    assert S.as_byte_bpe(hf).merges == [(b"a", b"b")]  # HF: the smallest pair of ids
    # with the same merges, the two encoders agree exactly
    text = "abab cdab"
    assert S.as_byte_bpe(hf).encode(text) == hf.encode(text) and len(hf.encode(text)) == 6  # ab ab ␣ c d ab


def test_teaching_bpe_agrees_with_hf_within_one_percent(corpus, cfg):
    t = S.teaching_comparison(corpus, cfg)
    py, hf = t.rows
    assert (py["implementation"], hf["implementation"]) == ("python", "hf")
    assert py["round_trip"] and hf["round_trip"] and py["vocab_size"] == hf["vocab_size"] == cfg.teaching_vocab
    assert t.same_ids_on_same_merges  # the encoders agree exactly given the same merges
    assert t.token_count_gap <= 0.01 and t.same_merges_share >= 0.9  # training differs only where counts tie
    assert t.first_difference is not None and t.first_pair[0] > t.first_pair[1]  # Python took the greater pair
    assert t.train_speedup > 1.0 and t.train_speedup == py["train_seconds"] / hf["train_seconds"]
    sample = S.teaching_sample(corpus, cfg.teaching_bytes)
    assert cfg.teaching_bytes - 8 <= len(sample.encode()) <= cfg.teaching_bytes + 1 and "，" in sample


def test_token_pieces_show_split_characters_and_unknowns(corpus, cfg):
    bytes_only = ByteBPE({i: bytes([i]) for i in range(256)}, [])
    assert S.token_pieces(bytes_only, "晚 a\n") == ["⟨e6⟩", "⟨99⟩", "⟨9a⟩", "␣", "a", "⏎"]
    char = CharTokenizer.from_text("晚雨")
    assert S.token_pieces(char, "晚雪") == ["晚", "⟨unknown 雪⟩"]
    texts = S.example_texts(corpus)
    assert set(texts) == {"Shakespeare", "poem"} and len(texts["Shakespeare"].split()) >= 6
    tok = S.vocab_ladder(corpus, cfg)[512]
    rows = S.tokenization_rows({"char": S.char_tokenizer(corpus), "BPE 512": tok}, texts)
    assert [(r["text"], r["tokenizer"]) for r in rows] == [("Shakespeare", "char"), ("Shakespeare", "BPE 512"),
                                                          ("poem", "char"), ("poem", "BPE 512")]
    assert all(r["tokens"] == len(r["pieces"]) for r in rows)
    assert "".join(rows[1]["pieces"]).replace("␣", " ") == texts["Shakespeare"]
    assert rows[1]["tokens"] == len(tok.encode(texts["Shakespeare"])) < rows[0]["tokens"]
    with pytest.raises(ValueError, match="at least one tokenizer"):
        S.tokenization_rows({}, texts)


def test_plots_draw_the_rows(rows):
    fig = P.plot_vocab_tradeoff(rows)
    left = fig.axes[0]
    bpe = [r for r in rows if r["tokenizer"] == "bpe"]
    assert list(left.lines[0].get_ydata()) == [r["en_bytes_per_token"] for r in bpe]
    assert list(fig.axes[1].lines[0].get_ydata()) == [r["embedding_params"] / 1e6 for r in bpe]
    assert len(fig.axes) == 3  # bytes/token, parameters, and the share's twin axis
    table = P.tradeoff_table(rows)
    assert table.splitlines()[0].startswith("| tokenizer | vocab_size") and len(table.splitlines()) == len(rows) + 2
    md = P.tokenization_table([{"text": "x", "tokenizer": "t", "tokens": 2, "pieces": ["a|", "␣b"]}])
    assert "a\\| · ␣b" in md
    with pytest.raises(ValueError, match="rows is empty"):
        P.plot_vocab_tradeoff([])
    with pytest.raises(ValueError, match="no row has tokenizer='bpe'"):
        P.plot_vocab_tradeoff([r for r in rows if r["tokenizer"] == "char"])
    with pytest.raises(ValueError, match="lacks"):
        P.tokenization_table([{"text": "x"}])
    import matplotlib.pyplot as plt
    plt.close("all")
