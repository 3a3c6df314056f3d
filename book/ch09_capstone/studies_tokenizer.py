"""Section 1 of the capstone: one byte-level BPE for Shakespeare and Tang poems (Survey §4.1.2, tokenization).

What a vocabulary buys and costs, measured on the HELD-OUT side of the capstone corpus, per language:

- `bytes_per_token_rows`: a byte-level BPE per vocabulary size (corpus.capstone_tokenizer), and the character
  tokenizer, with UTF-8 bytes and characters per token, the tokens of a typical 七言律詩, and the embedding and
  output parameters V x C (x2 untied) as a share of the chapter's model. Bigger V: shorter sequences, more rows.
  The char tokenizer is no small vocabulary here: the training text has ~9,650 distinct characters, and held-out
  poems still hold characters it never saw (counted as unknown_chars; BPE falls back to bytes and has none).
- `mixture_rows`: at one V, BPE trained on English only, Chinese only, both (as shipped) and both with the Chinese
  cut to English's size. 12 MB of Chinese outvote 1 MB of English in the greedy merge counts, so the shipped
  tokenizer spends most ids on Chinese; see `non_ascii_tokens`.
- `teaching_comparison`: minillm's readable Python BPE (train_bpe / ByteBPE) against Hugging Face's (Rust) on one
  small sample: the same GPT-2 pre-tokenizer regex and the same greedy merge rule, but ties between equally frequent
  pairs break differently (Python: the greatest byte pair; HF: the smallest pair of ids), and in poems ties are
  everywhere ("，" and "。" occur once per couplet each). So the merge lists agree as sets for the most part, not in
  order, and token counts agree within 1%; given the SAME merges, both encoders give identical ids (tested). The
  Rust trainer is several times faster; the Python encoder keeps up on repetitive text thanks to its word cache.
- `tokenization_rows`: a Shakespeare line and a poem line cut into tokens, as text pieces for a table.

One training serves the whole vocabulary sweep: greedy BPE learns merges in an order that does not depend on the
target size, so the first V ids of a larger BPE are exactly the BPE trained at V (`truncate_bpe`; tested).

    cfg = tokenizer_config("laptop")
    corpus = capstone_corpus("laptop")
    rows = bytes_per_token_rows(corpus, cfg)       # one BPE row per vocab size, plus the "char" row
"""
from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from tokenizers import Tokenizer as HFTokenizer

from minillm.config import ModelConfig
from minillm.data.bpe import ByteBPE, bytes_to_unicode
from minillm.data.bpe_train import train_bpe
from minillm.data.tokenizer import BPETokenizer, CharTokenizer
from minillm.model.calculator import param_breakdown
from minillm.presets import by_size
from book.ch09_capstone.studies_corpus import SPECIAL_TOKENS, Corpus, capstone_tokenizer

__all__ = ["TokenizerConfig", "tokenizer_config", "truncate_bpe", "vocab_ladder", "as_byte_bpe", "char_tokenizer",
           "unknown_chars", "bytes_per_token_rows", "MIXTURES", "mixture_rows", "teaching_sample",
           "TeachingComparison", "teaching_comparison", "example_texts", "token_pieces", "tokenization_rows"]

LUSHI = "七言律詩"  # the "typical poem" whose token count the sweep reports
# trained_on -> what the mixture study's tokenizer was trained on
MIXTURES = {"en": "English only", "zh": "Chinese only", "both": "both (as shipped)",
            "balanced": "both, Chinese cut to English's bytes"}


def _llama(n_layer: int, n_head: int, n_embd: int, block_size: int) -> ModelConfig:
    return ModelConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, norm="rmsnorm",
                       activation="swiglu", position="rope", bias=False, tie_embeddings=True)


@dataclass(frozen=True)
class TokenizerConfig:
    """Sizes of the study. `model`: the chapter's model shape (its vocab_size is replaced per row) for the
    embedding-parameter columns; pass the pretraining section's ModelConfig to keep them in step."""

    vocab_sizes: tuple[int, ...]  # BPE sizes swept, ascending; the largest is trained, the rest truncated from it
    mixture_vocab: int  # the one size of the mixture study (one of vocab_sizes: "both" reuses the sweep)
    model: ModelConfig = field(default_factory=lambda: _llama(4, 4, 192, 128))
    teaching_vocab: int = 512  # the Python-vs-Rust comparison's vocabulary (no special tokens)
    teaching_bytes: int = 100_000  # its training sample: half English, half Chinese (UTF-8 bytes)
    teaching_eval_bytes: int = 50_000  # held-out bytes per language both encode

    def __post_init__(self) -> None:
        low = 256 + len(SPECIAL_TOKENS)
        v = self.vocab_sizes
        if not v or any(isinstance(x, bool) or not isinstance(x, int) or x < low for x in v) or list(v) != sorted(
                set(v)):
            raise ValueError(f"TokenizerConfig.vocab_sizes={v!r} must be distinct ascending ints >= {low} (256 bytes "
                             f"+ {len(SPECIAL_TOKENS)} special tokens)")
        if self.mixture_vocab not in v:
            raise ValueError(f"TokenizerConfig.mixture_vocab={self.mixture_vocab!r} must be one of vocab_sizes={v} "
                             "(the mixture study's 'both' row is the sweep's tokenizer)")
        if not isinstance(self.model, ModelConfig):
            raise TypeError(f"TokenizerConfig.model must be a ModelConfig, got {type(self.model).__name__}")
        for k in ("teaching_vocab", "teaching_bytes", "teaching_eval_bytes"):
            x = getattr(self, k)
            if isinstance(x, bool) or not isinstance(x, int) or x < (257 if k == "teaching_vocab" else 1000):
                raise ValueError(f"TokenizerConfig.{k}={x!r} must be an int >= "
                                 f"{257 if k == 'teaching_vocab' else 1000}")


def tokenizer_config(size: str | None = None, **changes: Any) -> TokenizerConfig:
    """The study's sizes per profile. laptop: 512..8192 and the chapter's ~2.6M-parameter model; two trainings on
    the whole corpus dominate (the joint BPE at 8192 on 13 MB, the Chinese-only one at 4096 on 12 MB). Measured
    236 s with the 2 cores shared by ~10 busy processes, where one such training took ~60 s against ~17 s idle:
    so about 45 s idle (estimate). gpu: up to 16384 with a ~14M-parameter model (the tokenizers still train on the
    CPU; unmeasured). ci: a 300 and a 512 BPE on the slice, ~6 s for all four studies."""
    base = by_size(ci=dict(vocab_sizes=(300, 512), mixture_vocab=512, model=_llama(2, 2, 64, 64),
                           teaching_vocab=384, teaching_bytes=30_000, teaching_eval_bytes=8_000),
                   laptop=dict(vocab_sizes=(512, 1024, 2048, 4096, 8192), mixture_vocab=4096),
                   gpu=dict(vocab_sizes=(512, 1024, 2048, 4096, 8192, 16384), mixture_vocab=8192,
                            model=_llama(6, 6, 384, 256)), size=size)
    return replace(TokenizerConfig(**base), **changes)


# ---- One training, every vocabulary size ---------------------------------------------------------


def truncate_bpe(tok: BPETokenizer, vocab_size: int) -> BPETokenizer:
    """The first `vocab_size` ids of a trained BPE: special tokens, the 256 bytes, and the merges up to the one that
    made id vocab_size - 1. Greedy BPE picks each merge from counts that do not depend on the target size, so this
    is the tokenizer that training at `vocab_size` would give (same hash; tested)."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 256 < vocab_size <= tok.vocab_size:
        raise ValueError(f"vocab_size={vocab_size!r} must be an int in (256, {tok.vocab_size}]: a BPE can only be "
                         "cut to a size it has")
    data = json.loads(tok.hf_tokenizer.to_str())
    model = data["model"]
    vocab: dict[str, int] = model["vocab"]
    kept = []
    for m in model["merges"]:  # a loop over merges (thousands), once
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        made = vocab[a + b]
        if made >= vocab_size:
            break
        kept.append(m)
        if made == vocab_size - 1:  # training at vocab_size stops right after the merge that fills it
            break
    model["vocab"] = {t: i for t, i in vocab.items() if i < vocab_size}
    model["merges"] = kept
    return BPETokenizer(HFTokenizer.from_str(json.dumps(data)))


def vocab_ladder(corpus: Corpus, cfg: TokenizerConfig) -> dict[int, BPETokenizer]:
    """{V: the capstone BPE of V ids} for every V of the sweep, from one training at the largest V."""
    big = capstone_tokenizer(corpus, max(cfg.vocab_sizes))
    return {v: big if v == big.vocab_size else truncate_bpe(big, v) for v in cfg.vocab_sizes}


def _token_bytes(tok: Any, i: int) -> bytes:
    """What token id `i` spells, as bytes (BPETokenizer stores GPT-2 printable symbols, ByteBPE raw bytes)."""
    t = tok.id_to_token(i)
    if isinstance(t, bytes):
        return t
    if t in tok.special_tokens:
        return t.encode("utf-8")
    inverse = _printable_to_byte()
    return bytes(inverse[c] for c in t)


@cache
def _printable_to_byte() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def as_byte_bpe(tok: BPETokenizer) -> ByteBPE:
    """The same vocabulary and merges in minillm's Python ByteBPE (raw bytes instead of GPT-2's printable
    spelling), so the two encoders can be compared on identical merges."""
    data = json.loads(tok.hf_tokenizer.to_str())["model"]
    inverse = _printable_to_byte()
    specials = set(tok.special_tokens)

    def raw(s: str) -> bytes:
        return s.encode("utf-8") if s in specials else bytes(inverse[c] for c in s)

    merges = [tuple(raw(s) for s in (m.split(" ", 1) if isinstance(m, str) else m)) for m in data["merges"]]
    return ByteBPE({i: raw(t) for t, i in data["vocab"].items()}, merges, tok.special_tokens)


def _non_ascii_share(tok: BPETokenizer) -> float:
    """Share of the learned tokens (after specials and bytes) holding a non-ASCII byte: here, the Chinese ones."""
    first = len(tok.special_tokens) + 256
    learned = [_token_bytes(tok, i) for i in range(first, tok.vocab_size)]
    return sum(max(b) >= 0x80 for b in learned) / len(learned) if learned else 0.0


# ---- The vocabulary sweep -------------------------------------------------------------------------


def char_tokenizer(corpus: Corpus) -> CharTokenizer:
    """One id per character of the training documents of both languages, plus the capstone's special tokens."""
    return CharTokenizer.from_text("".join(corpus.documents("train")), special_tokens=SPECIAL_TOKENS)


def unknown_chars(tok: CharTokenizer, text: str) -> Counter[str]:
    """{character: occurrences in `text`} of the characters `tok` cannot encode (a char tokenizer has no fallback)."""
    known = {tok.id_to_token(i) for i in range(tok.vocab_size)}
    return Counter({c: n for c, n in Counter(text).items() if c not in known})


def _vocab_params(cfg: TokenizerConfig, vocab_size: int) -> dict[str, float]:
    """Embedding (+ untied output) parameters V x C, the whole model's count, and the share (param_breakdown)."""
    model = replace(cfg.model, vocab_size=vocab_size)
    parts = param_breakdown(model)
    emb = vocab_size * model.n_embd * (1 if model.tie_embeddings else 2)
    total = sum(parts.values())
    return {"embedding_params": emb, "model_params": total, "embedding_share": emb / total}


def _heldout(corpus: Corpus) -> dict[str, list[str]]:
    return {"en": [corpus.en_val], "zh": corpus.poem_documents("heldout")}


def _lushi(corpus: Corpus) -> list[str]:
    poems = [p.text for p in corpus.poems_heldout if p.form == LUSHI]
    if not poems:
        raise ValueError(f"the corpus holds no held-out {LUSHI}: use a corpus with more poems (capstone_corpus('ci') "
                         "has 7)")
    return poems


def _measure(n_tokens: int, docs: Sequence[str]) -> tuple[float, float]:
    n_bytes, n_chars = sum(len(d.encode("utf-8")) for d in docs), sum(map(len, docs))
    return n_bytes / n_tokens, n_chars / n_tokens


def _row(kind: str, vocab_size: int, tokens: Mapping[str, int], heldout: Mapping[str, Sequence[str]],
         cfg: TokenizerConfig, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"tokenizer": kind, "vocab_size": vocab_size}
    for lang, docs in heldout.items():
        bpt, cpt = _measure(tokens[lang], docs)
        row.update({f"{lang}_bytes_per_token": bpt, f"{lang}_chars_per_token": cpt, f"{lang}_tokens": tokens[lang]})
    return {**row, **extra, **_vocab_params(cfg, vocab_size)}


def bytes_per_token_rows(corpus: Corpus, cfg: TokenizerConfig) -> list[dict[str, Any]]:
    """One row per BPE size and one "char" row, measured on held-out English (corpus.en_val) and Chinese
    (held-out poem documents). Keys: tokenizer ("bpe" | "char"), vocab_size, {en,zh}_{bytes_per_token,
    chars_per_token,tokens}, lushi_tokens (median over held-out 七言律詩), non_ascii_tokens (share of learned tokens
    that are Chinese; None for char), unknown_chars and unknown_distinct (held-out characters the tokenizer cannot
    encode; counted as one token each for char), embedding_params, model_params, embedding_share."""
    heldout, lushi = _heldout(corpus), _lushi(corpus)
    rows = []
    for v, tok in vocab_ladder(corpus, cfg).items():
        tokens = {lang: sum(map(len, tok.encode_batch(docs))) for lang, docs in heldout.items()}
        rows.append(_row("bpe", v, tokens, heldout, cfg,
                         lushi_tokens=statistics.median(map(len, tok.encode_batch(lushi))),
                         non_ascii_tokens=_non_ascii_share(tok), unknown_chars=0, unknown_distinct=0))
    char = char_tokenizer(corpus)
    unknown = unknown_chars(char, "".join(d for docs in heldout.values() for d in docs))
    tokens = {lang: sum(map(len, docs)) for lang, docs in heldout.items()}  # one token per character
    rows.append(_row("char", char.vocab_size, tokens, heldout, cfg, lushi_tokens=statistics.median(map(len, lushi)),
                     non_ascii_tokens=None, unknown_chars=sum(unknown.values()), unknown_distinct=len(unknown)))
    return rows


# ---- What the training mixture does to the merges ---------------------------------------------------


def mixture_rows(corpus: Corpus, cfg: TokenizerConfig) -> list[dict[str, Any]]:
    """At cfg.mixture_vocab, a BPE trained on each mixture of MIXTURES, measured on both held-out languages.
    Keys: trained_on, description, train_en_bytes, train_zh_bytes, vocab_size, en_bytes_per_token,
    zh_bytes_per_token, non_ascii_tokens, seconds (training time; None for "both", the sweep's cached tokenizer)."""
    en, zh = [corpus.en_train], corpus.poem_documents("train")
    n_en, n_zh = len(corpus.en_train.encode("utf-8")), sum(len(d.encode("utf-8")) for d in zh)
    cut = zh[::max(1, -(-n_zh // n_en))]  # every k-th poem: about English's bytes, spread over the whole corpus
    # trained_on -> (training documents, or None for the sweep's tokenizer; English bytes; Chinese bytes)
    train_sets = {"en": (en, n_en, 0), "zh": (zh, 0, n_zh), "both": (None, n_en, n_zh),
                  "balanced": (en + cut, n_en, sum(len(d.encode("utf-8")) for d in cut))}
    heldout = _heldout(corpus)
    rows = []
    for name, (docs, b_en, b_zh) in train_sets.items():
        start = time.perf_counter()
        if docs is None:
            tok, seconds = vocab_ladder(corpus, cfg)[cfg.mixture_vocab], None
        else:
            tok = BPETokenizer.train(docs, cfg.mixture_vocab, special_tokens=SPECIAL_TOKENS)
            seconds = time.perf_counter() - start
        bpt = {lang: _measure(sum(map(len, tok.encode_batch(d))), d)[0] for lang, d in heldout.items()}
        rows.append({"trained_on": name, "description": MIXTURES[name], "train_en_bytes": b_en,
                     "train_zh_bytes": b_zh, "vocab_size": tok.vocab_size, "en_bytes_per_token": bpt["en"],
                     "zh_bytes_per_token": bpt["zh"], "non_ascii_tokens": _non_ascii_share(tok),
                     "seconds": seconds})
    return rows


# ---- The teaching BPE beside the Rust one -----------------------------------------------------------


def _prefix(docs: Iterable[str], n_bytes: int) -> str:
    """Documents joined by newlines, cut to at most `n_bytes` UTF-8 bytes (a character cut in two is dropped)."""
    parts, size = [], 0
    for d in docs:  # a loop over documents, stopping once enough are taken
        parts.append(d)
        size += len(d.encode("utf-8")) + 1
        if size >= n_bytes:
            break
    return "\n".join(parts).encode("utf-8")[:n_bytes].decode("utf-8", errors="ignore")


def teaching_sample(corpus: Corpus, n_bytes: int) -> str:
    """The comparison's training text: n_bytes // 2 of Shakespeare, a newline, n_bytes // 2 of training poems."""
    return _prefix([corpus.en_train], n_bytes // 2) + "\n" + _prefix(corpus.poem_documents("train"), n_bytes // 2)


@dataclass(frozen=True)
class TeachingComparison:
    """rows: one per implementation ("python", "hf"): vocab_size, train_seconds, encode_seconds,
    {en,zh}_tokens, {en,zh}_bytes_per_token, round_trip. The rest compares the two."""

    rows: list[dict[str, Any]]
    same_merges_share: float  # merges learned by both (as sets) / merges learned
    first_difference: int | None  # index of the first merge where the ordered lists differ (None: identical)
    first_pair: tuple[tuple[bytes, bytes], tuple[bytes, bytes]] | None  # (python's, hf's) merge at that index
    token_count_gap: float  # max over languages of |python tokens - hf tokens| / hf tokens
    same_ids_on_same_merges: bool  # ByteBPE built from HF's merges encodes the held-out text to HF's ids
    train_speedup: float  # python train seconds / hf train seconds
    encode_speedup: float


def teaching_comparison(corpus: Corpus, cfg: TokenizerConfig) -> TeachingComparison:
    """Train minillm's Python BPE and HF's Rust BPE on the same teaching_sample (no special tokens, min frequency 1
    for both), then encode cfg.teaching_eval_bytes of each held-out language with each."""
    text = teaching_sample(corpus, cfg.teaching_bytes)
    heldout = {"en": _prefix([corpus.en_val], cfg.teaching_eval_bytes),
               "zh": _prefix(corpus.poem_documents("heldout"), cfg.teaching_eval_bytes)}
    start = time.perf_counter()
    python = ByteBPE(*train_bpe(text, cfg.teaching_vocab))
    py_train = time.perf_counter() - start
    start = time.perf_counter()
    hf = BPETokenizer.train([text], cfg.teaching_vocab, special_tokens=(), min_frequency=1)
    hf_train = time.perf_counter() - start
    rows, ids = [], {}
    for name, tok, train_s in (("python", python, py_train), ("hf", hf, hf_train)):
        tok.encode("warm up")  # one-time set-up (HF's thread pool, the regex) is not the encoder's speed
        start = time.perf_counter()
        ids[name] = {lang: tok.encode(t) for lang, t in heldout.items()}
        row = {"implementation": name, "vocab_size": tok.vocab_size, "train_seconds": train_s,
               "encode_seconds": time.perf_counter() - start,
               "round_trip": all(tok.decode(ids[name][lang]) == t for lang, t in heldout.items())}
        for lang, t in heldout.items():
            row[f"{lang}_tokens"] = len(ids[name][lang])
            row[f"{lang}_bytes_per_token"] = len(t.encode("utf-8")) / len(ids[name][lang])
        rows.append(row)
    hf_python = as_byte_bpe(hf)  # HF's vocabulary and merges, run by the Python encoder
    py_merges, hf_merges = python.merges, hf_python.merges
    first = next((k for k, (a, b) in enumerate(zip(py_merges, hf_merges)) if a != b), None)
    if first is None and len(py_merges) != len(hf_merges):
        first = min(len(py_merges), len(hf_merges))
    same_ids = all(hf_python.encode(t) == ids["hf"][lang] for lang, t in heldout.items())
    gap = max(abs(len(ids["python"][lang]) - len(ids["hf"][lang])) / len(ids["hf"][lang]) for lang in heldout)
    pair = None if first is None or first >= min(len(py_merges), len(hf_merges)) else (py_merges[first],
                                                                                       hf_merges[first])
    return TeachingComparison(
        rows=rows, same_merges_share=len(set(py_merges) & set(hf_merges)) / max(len(py_merges), 1),
        first_difference=first, first_pair=pair, token_count_gap=gap, same_ids_on_same_merges=same_ids,
        train_speedup=py_train / hf_train, encode_speedup=rows[0]["encode_seconds"] / rows[1]["encode_seconds"])


# ---- What a tokenization looks like -------------------------------------------------------------------


def example_texts(corpus: Corpus) -> dict[str, str]:
    """{"Shakespeare": the first held-out line of 6+ words, "poem": the first couplet of the first held-out 律詩}."""
    line = next((s for s in corpus.en_val.splitlines() if len(s.split()) >= 6), None)
    if line is None:
        raise ValueError("corpus.en_val has no line of 6 or more words: use a larger English slice")
    return {"Shakespeare": line, "poem": _lushi(corpus)[0].split("\n")[0]}


def _show(b: bytes) -> str:
    """A token's bytes as text; bytes that are only part of a character are shown as hex in ⟨⟩ (not HTML-like
    <> so Markdown keeps them); a space shows as ␣ and a newline as ⏎ so that pieces stay visible in a table."""
    try:
        text = b.decode("utf-8")
    except UnicodeDecodeError as e:
        return _show(b[:e.start]) + "⟨" + b[e.start:e.end].hex(" ") + "⟩" + _show(b[e.end:])
    return text.replace(" ", "␣").replace("\n", "⏎")


def token_pieces(tok: Any, text: str) -> list[str]:
    """`text` cut into the pieces `tok` encodes it as (BPETokenizer, ByteBPE or CharTokenizer); a character the
    char tokenizer cannot encode shows as ⟨unknown X⟩ instead of raising."""
    if isinstance(tok, CharTokenizer):
        unknown = unknown_chars(tok, text)
        return [f"⟨unknown {c}⟩" if c in unknown else _show(c.encode("utf-8")) for c in text]
    return [_show(_token_bytes(tok, i)) for i in tok.encode(text)]


def tokenization_rows(tokenizers: Mapping[str, Any], texts: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per (text, tokenizer): text (its name), tokenizer (its name), tokens, pieces (list of str)."""
    if not tokenizers or not texts:
        raise ValueError("tokenization_rows needs at least one tokenizer and one text, e.g. "
                         "({'BPE 4096': tok}, example_texts(corpus))")
    rows = []
    for text_name, text in texts.items():
        for tok_name, tok in tokenizers.items():
            pieces = token_pieces(tok, text)
            rows.append({"text": text_name, "tokenizer": tok_name, "tokens": len(pieces), "pieces": pieces})
    return rows
