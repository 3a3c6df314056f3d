"""Comparing tokenizers: BPE, WordPiece, Unigram, characters (Survey §4.1.2, data preprocessing: tokenization).

The survey names three subword algorithms: byte-pair encoding (GPT-2, LLaMA), WordPiece (BERT) and
Unigram (T5, via SentencePiece). This module trains each on the same text and measures what the choice
costs: how many UTF-8 bytes one token carries (`compression`), on English and on Chinese separately
(`compression_table`), and so how much training compute the same text needs (`sequence_cost`: about
6·N FLOPs per token). It also studies Unicode normalization: web text mixes full-width "Ｎｏｒａ" with
ASCII "Nora", and NFKC folds them together (`widen`, `normalization_effect`).

Kinds (`train_tokenizer(kind, ...)`), and whether decode(encode(x)) == x:

- "bpe": the readable byte-level BPE of `minillm.data.bpe_train` (pure Python). Lossless. Its cost is
  one pass to count pre-tokens plus, per merge, work on the words that contain the merged pair: about
  1.5 s for 200 KB at vocab 2000 on one core, so keep inputs to a few hundred KB.
- "hf_bpe": the same algorithm in Rust (`BPETokenizer.train`, GPT-2 pre-tokenizer). Lossless.
- "wordpiece": HF `models.WordPiece`, BERT's pre-tokenizer (split on whitespace and punctuation) and, as
  BERT does, every CJK ideograph split off as its own word, so a Chinese token is never longer than one
  character (3 UTF-8 bytes) whatever the vocabulary size. NOT lossless: whitespace is dropped (decode
  puts one space between words, and between Chinese characters) and characters not seen in training
  become "[UNK]".
- "unigram": HF `models.Unigram` with SentencePiece's Metaspace pre-tokenizer (space -> "▁"). NOT lossless
  in general: unseen characters become "<unk>" and a leading space is dropped; on text whose characters
  were all seen and which does not start with a space it round-trips exactly (tested). Caveat, measured:
  HF's UnigramTrainer seeds its candidate pieces from the *distinct* pre-tokenized words, each counted
  once, so a frequent word that is not part of another distinct word ("▁felt") never becomes a piece;
  on our small-vocabulary English it stays near 2.4 bytes/token at any vocab size, while Chinese clauses
  (no spaces, many shared substrings) compress best of all. SentencePiece counts whole sentences instead.
- "char": one id per character of the training text (`CharTokenizer`); vocab_size is only an upper bound.
  Lossless; encoding a character not seen in training raises ValueError.

With normalization="nfkc" the text is NFKC-normalized before tokenizing (HF `normalizers.NFKC()` in the HF
pipelines, `unicodedata.normalize` before "bpe" and "char"), so decode returns the normalized text, not
the input. Note that NFKC also turns Chinese full-width punctuation such as "，" (U+FF0C) into ASCII ",":
`nfkc_changes` lists what it changes in a text, `nfkc_mismatch` measures what that does to a tokenizer trained
on Chinese as written (Survey §4.1.2 warns that normalization can degrade tokenization).
"""

from __future__ import annotations

import re
import time
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from minillm.data.special_tokens import check_no_surrogates, check_vocab_size

KINDS = ("bpe", "hf_bpe", "wordpiece", "unigram", "char")
LOSSLESS_KINDS = frozenset({"bpe", "hf_bpe", "char"})  # decode(encode(x)) == x when normalization is None
NORMALIZATIONS = (None, "nfkc")
WORDPIECE_UNK, UNIGRAM_UNK = "[UNK]", "<unk>"
# The CJK ideograph blocks BERT's tokenizer splits into single characters (its _is_chinese_char ranges).
_CJK_PATTERN = (r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}\x{2B740}-\x{2B81F}"
                r"\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]")
# Full-width ASCII variants (U+FF01-U+FF5E) and the ideographic space U+3000: what `widen` produces.
FULLWIDTH_PATTERN = "[\uff01-\uff5e\u3000]"
_HAN_PATTERN = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"  # CJK ideographs: marks a document as Chinese


# ---- Input checks -------------------------------------------------------------------------------


def _check_texts(texts: Any, what: str = "texts") -> list[str]:
    """A non-empty list of str documents with some text in them, as a list."""
    if isinstance(texts, str) or not isinstance(texts, Iterable):
        raise ValueError(f"{what} must be a list of str documents, got {type(texts).__name__}; wrap one text "
                         "as [text]")
    texts = list(texts)
    for t in texts:  # a loop per document
        if not isinstance(t, str):
            raise ValueError(f"{what} must hold str documents, got {type(t).__name__}")
        check_no_surrogates(t, what)
    if not any(texts):
        raise ValueError(f"{what} is empty (no documents, or only empty strings): pass some text")
    return texts


def _check_kind(kind: Any) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; choose one of {KINDS}")
    return kind


def _normalize(texts: list[str], normalization: str | None) -> list[str]:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    return texts if normalization is None else [unicodedata.normalize("NFKC", t) for t in texts]


# ---- One interface over five tokenizers ---------------------------------------------------------


class StudyTokenizer:
    """A trained tokenizer of one `kind`: encode, encode_batch, decode, vocab_size, token_strings.

    `inner` is the wrapped object: a `ByteBPE` ("bpe"), a `tokenizers.Tokenizer` (the HF kinds; for
    "hf_bpe" the one inside `BPETokenizer`) or a `CharTokenizer` ("char").
    """

    def __init__(self, kind: str, inner: Any, normalization: str | None, requested_vocab_size: int,
                 train_seconds: float):
        self.kind, self.inner, self.normalization = _check_kind(kind), inner, normalization
        self.requested_vocab_size, self.train_seconds = requested_vocab_size, train_seconds
        self._hf = kind in ("hf_bpe", "wordpiece", "unigram")

    @property
    def lossless(self) -> bool:
        """True when decode(encode(x)) == x for every text this tokenizer accepts."""
        return self.kind in LOSSLESS_KINDS and self.normalization is None

    @property
    def vocab_size(self) -> int:
        return self.inner.get_vocab_size(with_added_tokens=True) if self._hf else self.inner.vocab_size

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids per document. HF kinds run in Rust (and normalize there); the others loop per document."""
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise ValueError(f"encode needs str texts, got {type(t).__name__}")
            check_no_surrogates(t)
        if self._hf:
            return [e.ids for e in self.inner.encode_batch(texts, add_special_tokens=False)]
        return [self.inner.encode(t) for t in _normalize(texts, self.normalization)]

    def decode(self, ids: Iterable[int]) -> str:
        # Keep "[UNK]"/"<unk>" visible: dropping them would hide what was lost.
        return self.inner.decode(list(ids), skip_special_tokens=False) if self._hf else self.inner.decode(ids)

    def token_strings(self) -> list[str]:
        """Every vocabulary entry as text, in id order. Byte-level tokens that end inside a multi-byte
        character keep only their complete characters (so a fragment of "Ａ" is not counted as "Ａ")."""
        if self.kind == "char":
            return [self.inner.id_to_token(i) for i in range(self.vocab_size)]
        if self.kind == "bpe":
            vocab = self.inner.vocab
            return [vocab[i].decode("utf-8", errors="ignore") for i in range(len(vocab))]
        by_id = sorted(self.inner.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
        if self.kind != "hf_bpe":
            return [tok for tok, _ in by_id]
        from minillm.data.bpe import bytes_to_unicode

        inverse = {c: b for b, c in bytes_to_unicode().items()}  # GPT-2 printable spelling -> byte
        return [bytes(inverse[c] for c in tok).decode("utf-8", errors="ignore") for tok, _ in by_id]

    def __repr__(self) -> str:
        return f"StudyTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, normalization={self.normalization!r})"


def _train_hf_subword(kind: str, texts: list[str], vocab_size: int, normalization: str | None) -> Any:
    """WordPiece (BERT-style pre-tokenization) or Unigram (SentencePiece-style), trained by HF tokenizers."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=WORDPIECE_UNK))
        # BertPreTokenizer does not split Chinese (BERT does that in its normalizer); Split does it here,
        # so that NFKC can be the only normalizer.
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.BertPreTokenizer(),
                                                     pre_tokenizers.Split(Regex(_CJK_PATTERN), "isolated")])
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=[WORDPIECE_UNK], show_progress=False)
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=[UNIGRAM_UNK],
                                          unk_token=UNIGRAM_UNK, show_progress=False)
    if normalization == "nfkc":
        tok.normalizer = normalizers.NFKC()
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def train_tokenizer(kind: str, texts: Sequence[str], vocab_size: int,
                    normalization: str | None = None) -> StudyTokenizer:
    """Train a tokenizer of `kind` (see KINDS and the module docstring) with about `vocab_size` ids.

    The result can be smaller than vocab_size when the text runs out of things to merge (a warning says
    so for the BPE kinds; check `.vocab_size`). vocab_size must at least hold the base alphabet: 256 bytes
    for the BPE kinds, every distinct character (plus "##" forms for WordPiece, plus the unknown token)
    for the others; a smaller one is a ValueError naming the minimum.
    """
    kind = _check_kind(kind)
    texts = _check_texts(texts)
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise ValueError(f"vocab_size must be an int, got {vocab_size!r}")
    normed = _normalize(texts, normalization)  # raises on a bad normalization name
    n_chars = len(set().union(*map(set, normed)))  # distinct characters; set() per document runs in C
    start = time.perf_counter()
    if kind == "bpe":
        from minillm.data.bpe import ByteBPE
        from minillm.data.bpe_train import train_bpe

        check_vocab_size(vocab_size, 0)
        text = "\n".join(normed)
        # A one-line str that looks like a file name would be read as a path by train_bpe: a newline marks text.
        inner = ByteBPE(*train_bpe(text if "\n" in text else text + "\n", vocab_size))
    elif kind == "hf_bpe":
        from minillm.data.tokenizer import BPETokenizer

        check_vocab_size(vocab_size, 0)
        # BPETokenizer.train has no normalizer option: train on NFKC text, then normalize every input alike.
        inner = BPETokenizer.train(normed, vocab_size, special_tokens=()).hf_tokenizer
        if normalization == "nfkc":
            from tokenizers import normalizers

            inner.normalizer = normalizers.NFKC()
    elif kind == "char":
        from minillm.data.tokenizer import CharTokenizer

        if vocab_size < n_chars:
            raise ValueError(f"vocab_size={vocab_size} is too small for 'char': the training text has {n_chars} "
                             f"distinct characters; pass vocab_size >= {n_chars}")
        inner = CharTokenizer.from_text("".join(normed))
    else:
        if vocab_size < n_chars + 1:
            raise ValueError(f"vocab_size={vocab_size} is too small for {kind!r}: the training text has {n_chars} "
                             f"distinct characters, plus one unknown token; pass vocab_size >= {n_chars + 1}")
        inner = _train_hf_subword(kind, texts, vocab_size, normalization)
        got = inner.get_vocab_size(with_added_tokens=True)
        if got > vocab_size:  # WordPiece keeps its whole alphabet (c and ##c) whatever vocab_size says
            raise ValueError(f"vocab_size={vocab_size} is too small for {kind!r}: its base alphabet alone needs "
                             f"{got} ids; pass vocab_size >= {got}")
    return StudyTokenizer(kind, inner, normalization, vocab_size, time.perf_counter() - start)


# ---- Compression and its compute cost -----------------------------------------------------------


def compression(tokenizer: Any, texts: Sequence[str]) -> dict[str, float]:
    """UTF-8 bytes and characters per token of `tokenizer` over `texts` (each document encoded alone).

    Returns {bytes_per_token, chars_per_token, tokens, bytes, chars}. Works with any object that has
    `encode` (and uses `encode_batch` when present), e.g. StudyTokenizer, CharTokenizer, BPETokenizer.
    """
    texts = _check_texts(texts)
    if not callable(getattr(tokenizer, "encode", None)):
        raise ValueError(f"tokenizer must have an encode(text) method, got {type(tokenizer).__name__}")
    batch = getattr(tokenizer, "encode_batch", None)
    ids = batch(texts) if callable(batch) else [tokenizer.encode(t) for t in texts]
    n_tokens, n_bytes, n_chars = sum(map(len, ids)), sum(len(t.encode("utf-8")) for t in texts), sum(map(len, texts))
    if n_tokens == 0:
        raise ValueError("the tokenizer produced no tokens for these texts; pass non-empty text")
    return {"bytes_per_token": n_bytes / n_tokens, "chars_per_token": n_chars / n_tokens,
            "tokens": n_tokens, "bytes": n_bytes, "chars": n_chars}


def split_by_language(texts: Sequence[str]) -> dict[str, list[str]]:
    """{"en": documents without Chinese characters, "zh": documents with any}."""
    texts = _check_texts(texts)
    out: dict[str, list[str]] = {"en": [], "zh": []}
    for t in texts:
        out["zh" if re.search(_HAN_PATTERN, t) else "en"].append(t)
    return out


def bilingual_splits(n_train: int = 1000, n_eval: int = 300, seed: int = 0) -> tuple[list[str], dict[str, list[str]]]:
    """A mixed English+Chinese training set and held-out {"en": [...], "zh": [...]} evaluation sets.

    Both come from the synthetic "bilingual" corpus (about half of its documents are Chinese, ~210 B
    each), with different seeds; 1000 training documents are about 200 KB.
    """
    from minillm.data.synthetic import corpus

    train = corpus("bilingual", n_train, seed).docs
    held_out = split_by_language(corpus("bilingual", n_eval, seed + 1).docs)
    if not held_out["en"] or not held_out["zh"]:
        raise ValueError(f"n_eval={n_eval} documents gave no English or no Chinese one; use n_eval >= 20")
    return train, held_out


def compression_table(kinds: Sequence[str], vocab_sizes: Sequence[int],
                      corpora: dict[str, list[str]] | None = None, train_texts: Sequence[str] | None = None,
                      normalization: str | None = None) -> list[dict[str, Any]]:
    """Train every (kind, vocab size) once on `train_texts`, measure it on each corpus of `corpora`.

    Defaults: `bilingual_splits()` (train on mixed English+Chinese, evaluate on held-out "en" and "zh").
    Rows: kind, vocab_size (asked), actual_vocab_size (a small corpus can run out of merges; those
    warnings are silenced here because the row records it), normalization, corpus, bytes_per_token,
    chars_per_token, n_tokens, train_seconds.
    """
    kinds = [_check_kind(k) for k in kinds]
    vocab_sizes = list(vocab_sizes)
    if not kinds or not vocab_sizes:
        raise ValueError("compression_table needs at least one kind and one vocab size")
    if corpora is None or train_texts is None:
        default_train, default_eval = bilingual_splits()
        corpora = default_eval if corpora is None else corpora
        train_texts = default_train if train_texts is None else train_texts
    if not isinstance(corpora, dict) or not corpora:
        raise ValueError("corpora must be a non-empty dict {name: list of documents}, e.g. {'en': [...], 'zh': [...]}")
    corpora = {name: _check_texts(docs, f"corpora[{name!r}]") for name, docs in corpora.items()}
    rows = []
    for kind in kinds:
        for v in vocab_sizes:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                tok = train_tokenizer(kind, train_texts, v, normalization)
            for name, docs in corpora.items():
                c = compression(tok, docs)
                rows.append({"kind": kind, "vocab_size": v, "actual_vocab_size": tok.vocab_size,
                             "normalization": normalization, "corpus": name,
                             "bytes_per_token": c["bytes_per_token"], "chars_per_token": c["chars_per_token"],
                             "n_tokens": c["tokens"], "train_seconds": tok.train_seconds})
    return rows


def sequence_cost(rows: Sequence[dict[str, Any]], n_params: float, n_bytes: float = 1e9,
                  baseline: str | tuple[str, int] | None = "char", d_model: int | None = None) -> list[dict[str, Any]]:
    """Training FLOPs to consume `n_bytes` of text under each row's tokenizer (rows of compression_table).

    tokens = n_bytes / bytes_per_token and flops = 6 · n_params · tokens (forward + backward, Kaplan et al.).
    With d_model, the output layer's 6 · d_model · actual_vocab_size FLOPs per token are added too, so a
    bigger vocabulary is not free. `cheaper_than_baseline` = 1 - flops / flops of the baseline row with
    the same corpus: baseline is a kind ("char") or (kind, vocab_size); None skips the comparison.
    """
    for name, value in (("n_params", n_params), ("n_bytes", n_bytes)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if d_model is not None and (not isinstance(d_model, int) or d_model < 1):
        raise ValueError(f"d_model must be a positive int or None, got {d_model!r}")
    rows = [dict(r) for r in rows]
    if not rows:
        raise ValueError("sequence_cost needs at least one row (from compression_table)")
    for r in rows:
        if not {"kind", "corpus", "bytes_per_token"} <= r.keys() or not r["bytes_per_token"] > 0:
            raise ValueError(f"each row needs kind, corpus and a positive bytes_per_token; got {r}")
        per_token = 6.0 * n_params + (6.0 * d_model * r.get("actual_vocab_size", r.get("vocab_size", 0))
                                      if d_model else 0.0)
        r["tokens"] = n_bytes / r["bytes_per_token"]
        r["flops"] = per_token * r["tokens"]
    if baseline is None:
        return rows
    b_kind, b_vocab = (baseline, None) if isinstance(baseline, str) else tuple(baseline)
    for corpus_name in dict.fromkeys(r["corpus"] for r in rows):
        base = [r for r in rows if r["corpus"] == corpus_name and r["kind"] == b_kind
                and (b_vocab is None or r.get("vocab_size") == b_vocab)]
        if not base:
            raise ValueError(f"no baseline row {baseline!r} for corpus {corpus_name!r}; include that kind in the "
                             "table, or pass baseline=None")
        if len({r["flops"] for r in base}) > 1:
            raise ValueError(f"baseline {baseline!r} matches rows of different cost for corpus {corpus_name!r}; "
                             f"name one as baseline=({b_kind!r}, vocab_size)")
        for r in rows:
            if r["corpus"] == corpus_name:
                r["cheaper_than_baseline"] = 1.0 - r["flops"] / base[0]["flops"]
    return rows


# ---- Unicode normalization: full-width forms ----------------------------------------------------


def widen(text: str, share: float, seed: int) -> str:
    """Turn round(share · n) of the n printable ASCII characters (U+0020-U+007E) into full-width forms.

    "!".."~" become U+FF01..U+FF5E (code point + 0xFEE0) and the space becomes the ideographic space
    U+3000, as in mixed-width Chinese/English web text. Which characters change is drawn with `seed`.
    NFKC undoes it exactly: unicodedata.normalize("NFKC", widen(x, s, seed)) == x for ASCII x (tested
    for all 95 characters). Other characters (newlines, Chinese) are left alone.
    """
    if not isinstance(text, str):
        raise ValueError(f"widen needs a str, got {type(text).__name__}")
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be a number in [0, 1], got {share!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    check_no_surrogates(text)
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).copy()  # (N,) code points
    eligible = np.flatnonzero((cps >= 0x20) & (cps <= 0x7E))  # (E,)
    k = int(np.floor(share * eligible.size + 0.5))
    chosen = np.random.default_rng(seed).choice(eligible, size=k, replace=False)  # (k,)
    c = cps[chosen]
    cps[chosen] = np.where(c == 0x20, 0x3000, c + 0xFEE0)
    return cps.tobytes().decode("utf-32-le")


def fullwidth_slots(tokenizer: StudyTokenizer) -> int:
    """Vocabulary entries whose text contains a full-width ASCII variant or U+3000 (FULLWIDTH_PATTERN)."""
    pattern = re.compile(FULLWIDTH_PATTERN)
    return sum(1 for s in tokenizer.token_strings() if pattern.search(s))


def normalization_effect(kind: str, vocab_size: int, texts: Sequence[str], share: float,
                         seed: int = 0) -> list[dict[str, Any]]:
    """What full-width noise costs a tokenizer, and what NFKC buys back (measured on the training texts).

    Three rows, setting = "clean" (the texts as given, no normalization), "widened" (each document
    widen()ed with `share`, no normalization) and "widened+nfkc" (same widened text, NFKC). Each row:
    setting, normalization, share, vocab_size, tokens_per_char (per character of the text it was given),
    bytes_per_token, fullwidth_slots. Caveats: Chinese punctuation "，" is itself a full-width form, so
    "clean" Chinese text already spends slots on it, and NFKC turns it into ","; for "unigram" on
    English-only text the widened run can need fewer tokens than the clean one, an effect of HF's seed
    artifact (module docstring): widened variants make words repeat as substrings, so they become pieces.
    """
    texts = _check_texts(texts)
    widened = [widen(t, share, seed + i) for i, t in enumerate(texts)]  # a loop per document
    rows = []
    for setting, docs, norm in (("clean", texts, None), ("widened", widened, None), ("widened+nfkc", widened, "nfkc")):
        tok = train_tokenizer(kind, docs, vocab_size, norm)
        c = compression(tok, docs)
        rows.append({"setting": setting, "normalization": norm, "share": share, "vocab_size": tok.vocab_size,
                     "tokens_per_char": 1.0 / c["chars_per_token"], "bytes_per_token": c["bytes_per_token"],
                     "fullwidth_slots": fullwidth_slots(tok)})
    return rows


# ---- Unicode normalization: what else NFKC changes ----------------------------------------------


def nfkc_changes(text: str) -> list[dict[str, str]]:
    """Every distinct character of `text` that NFKC changes, in order of first appearance.

    Rows: char, nfkc (what it becomes), code_point ("U+FF0C"), name (its Unicode name). NFKC folds
    full-width Latin letters and digits ("Ｎ", "３"), ligatures ("ﬁ") and superscripts ("²" -> "2") into ASCII,
    and with them Chinese full-width punctuation "，：；？！（）"; the ideographic full stop "。" (U+3002), "、" and
    the corner brackets have no compatibility mapping and stay, so normalized Chinese text mixes two
    punctuation systems.
    """
    if not isinstance(text, str):
        raise ValueError(f"nfkc_changes needs a str, got {type(text).__name__}")
    check_no_surrogates(text)
    rows = []
    for ch in dict.fromkeys(text):  # distinct characters, first-appearance order
        folded = unicodedata.normalize("NFKC", ch)
        if folded != ch:
            rows.append({"char": ch, "nfkc": folded, "code_point": f"U+{ord(ch):04X}",
                         "name": unicodedata.name(ch, "?")})
    return rows


def nfkc_mismatch(kind: str, vocab_size: int, train_texts: Sequence[str],
                  eval_texts: Sequence[str]) -> list[dict[str, Any]]:
    """A tokenizer trained on text as written, fed `eval_texts` as written and NFKC-normalized.

    This is what happens when a pipeline normalizes its data after the tokenizer was made (or an application
    normalizes its input): pieces that contain a character NFKC changes ("，" in "，天气很好。") can no longer
    match, and the ASCII replacement may never have been seen in training. Two rows, setting "as written" and
    "nfkc": tokens, chars, tokens_per_char (per character of the text given), unknown (tokens that are the
    unknown token: characters the tokenizer cannot represent; always 0 for the byte-level kinds), and
    spanning_pieces (vocabulary pieces containing a character NFKC changes, the same in both rows). "char"
    is refused: it cannot encode a character it did not see.
    """
    kind = _check_kind(kind)
    if kind == "char":
        raise ValueError("nfkc_mismatch needs a subword kind: 'char' cannot encode characters unseen in training")
    eval_texts = _check_texts(eval_texts, "eval_texts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a small corpus may run out of merges
        tok = train_tokenizer(kind, train_texts, vocab_size)
    unk = None
    if kind in ("wordpiece", "unigram"):
        unk = tok.inner.token_to_id(WORDPIECE_UNK if kind == "wordpiece" else UNIGRAM_UNK)
    spanning = sum(1 for s in tok.token_strings() if any(unicodedata.normalize("NFKC", c) != c for c in s))
    rows = []
    for setting, docs in (("as written", eval_texts), ("nfkc", _normalize(eval_texts, "nfkc"))):
        ids = tok.encode_batch(docs)
        n_tokens, n_chars = sum(map(len, ids)), sum(map(len, docs))
        rows.append({"setting": setting, "kind": kind, "vocab_size": tok.vocab_size, "tokens": n_tokens,
                     "chars": n_chars, "tokens_per_char": n_tokens / n_chars,
                     "unknown": 0 if unk is None else sum(seq.count(unk) for seq in ids),
                     "spanning_pieces": spanning})
    return rows
