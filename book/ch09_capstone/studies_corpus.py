"""The capstone's real text, split once for every study, and the byte-level BPE trained on it (Survey §4.1).

Two shipped corpora (data/README.md gives source, license and md5), so the chapter runs offline:

- English: tinyshakespeare (1.1 MB). nanoGPT's split: the first 90% trains, the last 10% is held out.
- Chinese: 全唐詩 (57,607 poems). Split by title (`poems.split_by_title`, 5% held out), so the poet is later
  asked for titles it never saw, in pretraining or in instruction tuning.

A pretraining document of a poem is its title, a newline, then its couplets one per line; documents are joined
by <|endoftext|>. The tokenizer is one byte-level BPE (Hugging Face `tokenizers`, via minillm's BPETokenizer)
trained on the training side of both languages, with the end-of-text and chat tokens as special tokens so that
instruction tuning needs no new embedding rows.

    corpus = capstone_corpus("laptop")
    tok = capstone_tokenizer(corpus, vocab_size=4096)
    train_ids = encode_documents(tok, corpus.documents("train"))    # one int32 array, EOS between documents
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from minillm.data.special_tokens import EOS_TOKEN
from minillm.data.tokenizer import BPETokenizer
from minillm.finetune.chat import CHAT_TOKENS
from minillm.presets import by_size
from book.ch09_capstone.studies_poems import Poem, load_poems, split_by_title

__all__ = ["SHAKESPEARE", "TANG", "DATA_ENV", "data_path", "CorpusSize", "corpus_size", "Corpus", "capstone_corpus",
           "capstone_tokenizer", "encode_documents", "SPECIAL_TOKENS"]

SHAKESPEARE, TANG = "tinyshakespeare.txt", "quantangshi.jsonl.xz"
DATA_ENV = "MINILLM_DATA"  # names the data directory itself (tests point it elsewhere)
SPECIAL_TOKENS = (EOS_TOKEN, *CHAT_TOKENS)
TRAIN_FRACTION = 0.9  # nanoGPT's Shakespeare split


def data_path(name: str) -> Path:
    """A shipped corpus file: under $MINILLM_DATA, else under the first data/ directory holding it above the current
    directory or this package (the repository checkout). FileNotFoundError says where it looked."""
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        p = Path(env).expanduser() / name
        if not p.is_file():
            raise FileNotFoundError(f"${DATA_ENV}={env} has no {name}; copy the repository's data/{name} there or "
                                    f"unset ${DATA_ENV}")
        return p
    starts = (Path.cwd().resolve(), Path(__file__).resolve().parent)
    for start in starts:
        for d in (start, *start.parents):
            if (d / "data" / name).is_file():
                return d / "data" / name
    raise FileNotFoundError(f"no data/{name} above {starts[0]} or {starts[1]}: the corpora ship in the repository's "
                            f"data/ folder; run from inside a clone, or set ${DATA_ENV} to a folder holding {name}")


@dataclass(frozen=True)
class CorpusSize:
    """How much of each corpus a profile uses: `en_chars` of Shakespeare (None = all), the first `n_poems` poems."""

    en_chars: int | None
    n_poems: int | None
    heldout_frac: float = 0.05


def corpus_size(size: str | None = None) -> CorpusSize:
    """ci: a slice (seconds to tokenize); laptop and gpu: everything."""
    return by_size(ci=CorpusSize(en_chars=120_000, n_poems=3000), laptop=CorpusSize(None, None),
                   gpu=CorpusSize(None, None), size=size)


@dataclass(frozen=True)
class Corpus:
    """Both languages, split: Shakespeare's train/validation text and the train/held-out poems."""

    en_train: str
    en_val: str
    poems_train: tuple[Poem, ...]
    poems_heldout: tuple[Poem, ...]

    def poem_documents(self, split: str) -> list[str]:
        """'title\\npoem' for each poem of `split` ('train' or 'heldout')."""
        return [f"{p.title}\n{p.text}" for p in self._poems(split)]

    def documents(self, split: str) -> list[str]:
        """Every pretraining document of `split`: Shakespeare's part first (one document), then the poems."""
        en = self.en_train if split == "train" else self.en_val
        return [en, *self.poem_documents(split)]

    def _poems(self, split: str) -> tuple[Poem, ...]:
        if split == "train":
            return self.poems_train
        if split == "heldout":
            return self.poems_heldout
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")

    def summary(self) -> dict:
        """Sizes in characters and UTF-8 bytes, per language and split (for the chapter's table)."""
        rows = {}
        for split in ("train", "heldout"):
            en = self.en_train if split == "train" else self.en_val
            zh = "\n".join(self.poem_documents(split))
            rows[split] = {"en_chars": len(en), "en_bytes": len(en.encode()), "zh_chars": len(zh),
                           "zh_bytes": len(zh.encode()), "poems": len(self._poems(split))}
        return rows


def _build(size: CorpusSize) -> Corpus:
    text = data_path(SHAKESPEARE).read_text(encoding="utf-8")
    if size.en_chars is not None:
        text = text[: size.en_chars]
    cut = int(len(text) * TRAIN_FRACTION)
    train, heldout = split_by_title(load_poems(data_path(TANG), limit=size.n_poems), size.heldout_frac)
    return Corpus(text[:cut], text[cut:], tuple(train), tuple(heldout))


@lru_cache(maxsize=4)
def _cached(size: CorpusSize) -> Corpus:
    return _build(size)


def capstone_corpus(size: str | CorpusSize | None = None) -> Corpus:
    """The corpus of a profile (or of an explicit CorpusSize); built once per process."""
    return _cached(size if isinstance(size, CorpusSize) else corpus_size(size))


def capstone_tokenizer(corpus: Corpus, vocab_size: int) -> BPETokenizer:
    """A byte-level BPE of `vocab_size` ids trained on the training documents of both languages, with
    <|endoftext|> and the four chat tags as special tokens."""
    return _tokenizer(corpus, vocab_size)


@lru_cache(maxsize=4)
def _tokenizer(corpus: Corpus, vocab_size: int) -> BPETokenizer:
    return BPETokenizer.train(corpus.documents("train"), vocab_size, special_tokens=SPECIAL_TOKENS)


def encode_documents(tok, documents: list[str]) -> np.ndarray:
    """The documents' ids, each followed by <|endoftext|>, as one int32 array (HF tokenizers encode in parallel)."""
    eos = tok.token_to_id(EOS_TOKEN)
    ids = tok.encode_batch(documents)
    out = np.empty(sum(len(x) + 1 for x in ids), dtype=np.int32)
    i = 0
    for x in ids:  # one loop over documents (not tokens): each is copied as a block
        out[i: i + len(x)] = x
        out[i + len(x)] = eos
        i += len(x) + 1
    return out
