"""Turn documents into training-ready token shards (Survey §4.1, data preparation; §4.1.2 tokenization).

    documents --encode--> token ids (+ EOS after each document) --split by document--> train.bin / val.bin
    documents --encode--> one stream (EOS between documents) --split off a contiguous tail--> train.bin / val.bin

The first (holdout="documents") suits a corpus of separate documents: whole documents go to validation, spread
evenly through the corpus. The second (holdout="tail") suits one long text, such as a play or a book kept
verbatim: the last `val_fraction` of its tokens are held out, exactly the split `DataSplits.from_tokens` makes,
so validation is text the model never saw rather than paragraphs interleaved with its training text.

The output directory holds everything needed to train and to decode later:

    out_dir/
      train.bin        token shard (see shards.py)
      val.bin          token shard (may hold 0 tokens when val_fraction=0)
      tokenizer.json   the tokenizer that produced the ids
      meta.json        counts, vocab size, tokenizer hash, split rule, source, creation time

The whole directory appears at once or not at all: it is built in a temporary sibling directory and
renamed into place at the end, so an interrupted or failed prepare never leaves a half-written
`out_dir` that a later training run could mistake for complete data.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from minillm.data.loader import DataSplits
from minillm.data.shards import write_shard
from minillm.io import atomic_write_text, replace_dir

DOCS_PER_BATCH = 1024  # documents handed to the tokenizer at once (encode_batch runs them in parallel)
HOLDOUTS = ("documents", "tail")


@dataclass(frozen=True)
class PreparedData:
    """What `prepare` wrote, and where."""

    out_dir: Path
    train_path: Path
    val_path: Path
    tokenizer_path: Path
    meta_path: Path
    n_train_tokens: int
    n_val_tokens: int
    n_train_docs: int
    n_val_docs: int
    vocab_size: int
    tokenizer_hash: str

    def load(self, mmap: bool = True):
        """Open the shards as a DataSplits, ready for get_batch / the Trainer."""

        return DataSplits.from_dir(self.out_dir, mmap=mmap)


def tokenizer_hash_of(tokenizer: Any) -> str:
    """The tokenizer's stable hex digest ('' if it has none): a `hash` attribute, property or method."""
    h = getattr(tokenizer, "hash", "")
    h = h() if callable(h) else h
    if not isinstance(h, str):
        raise ValueError(f"tokenizer.hash must be a hex string, got {type(h).__name__}")
    return h


def _is_val(i: int, frac: Fraction) -> bool:
    """Document i goes to validation when the running quota floor((i+1)·f) ticks up.

    Deterministic, needs no total count (so it works on a stream), spreads validation documents
    evenly through the corpus, and after n documents exactly floor(n·f) are in validation.
    Integer arithmetic on a Fraction avoids float rounding deciding a document's side.
    """
    return (i + 1) * frac.numerator // frac.denominator > i * frac.numerator // frac.denominator


def _batches(docs: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for i, doc in enumerate(docs):
        if not isinstance(doc, str):
            raise ValueError(f"document {i} is a {type(doc).__name__}, expected str")
        batch.append(doc)
        if len(batch) == DOCS_PER_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _encode_batch(tokenizer: Any, batch: list[str]) -> list[list[int]]:
    if hasattr(tokenizer, "encode_batch"):
        return tokenizer.encode_batch(batch)
    return [tokenizer.encode(doc) for doc in batch]


def _encoded(docs: Iterable[str], tokenizer: Any) -> tuple[list[np.ndarray], int]:
    """(each non-empty document's ids, number of empty documents skipped)."""
    out: list[np.ndarray] = []
    n_empty = 0
    for batch in _batches(docs):
        for doc, ids in zip(batch, _encode_batch(tokenizer, batch)):
            if doc:
                out.append(np.asarray(ids, dtype=np.int64))
            else:
                n_empty += 1
    return out, n_empty


def _join(encoded: list[np.ndarray], eos_id: int | None) -> np.ndarray:
    eos = np.array([] if eos_id is None else [eos_id], dtype=np.int64)
    pieces = [p for i, ids in enumerate(encoded) for p in ((eos, ids) if i else (ids,))]
    return np.concatenate(pieces) if pieces else np.empty(0, np.int64)


def token_stream(docs: Iterable[str], tokenizer: Any, eos_id: int | None = None) -> np.ndarray:
    """The documents encoded and joined into one stream, `eos_id` between documents (none after the last): (N,).

    This is the stream `prepare(..., holdout="tail")` splits, so scoring a text with it (e.g. `eval --text`)
    sees the same tokens training saw; a single document is exactly `tokenizer.encode(doc)`.
    Empty documents are skipped, as `prepare` skips them.
    """
    return _join(_encoded(docs, tokenizer)[0], eos_id)


def _split_documents(docs: Iterable[str], tokenizer: Any, eos_id: int | None,
                     val_fraction: float) -> tuple[dict[str, np.ndarray], dict[str, int], int]:
    """holdout="documents": whole documents, each followed by EOS, to train or val by `_is_val`."""
    frac = Fraction(val_fraction).limit_denominator(1_000_000)
    eos = np.array([] if eos_id is None else [eos_id], dtype=np.int64)
    pieces: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    n_docs = {"train": 0, "val": 0}
    n_seen = n_empty = 0
    for batch in _batches(docs):
        for doc, ids in zip(batch, _encode_batch(tokenizer, batch)):
            if not doc:
                n_empty += 1
                continue
            side = "val" if _is_val(n_seen, frac) else "train"
            pieces[side] += [np.asarray(ids, dtype=np.int64), eos]
            n_docs[side] += 1
            n_seen += 1
    if n_seen == 0:
        raise ValueError(f"no documents to prepare (got {n_empty} empty ones): check the source")
    if val_fraction > 0 and n_docs["val"] == 0:
        raise ValueError(
            f"val_fraction={val_fraction} of {n_seen} document(s) selects no validation document: pass more "
            f"documents (e.g. read_text_files(..., split='paragraph')), a larger val_fraction, val_fraction=0, "
            f"or holdout='tail' (a contiguous tail of the token stream)"
        )
    tokens = {k: np.concatenate(v) if v else np.empty(0, np.int64) for k, v in pieces.items()}
    return tokens, n_docs, n_empty


def _split_tail(docs: Iterable[str], tokenizer: Any, eos_id: int | None,
                val_fraction: float) -> tuple[dict[str, np.ndarray], dict[str, int], int]:
    """holdout="tail": one stream, its last val_fraction of tokens held out as `DataSplits.from_tokens` does.

    A document cut by the boundary counts on both sides in the returned document counts."""
    encoded, n_empty = _encoded(docs, tokenizer)
    stream = _join(encoded, eos_id)  # (N,)
    if stream.size == 0:
        raise ValueError(f"no documents to prepare (got {n_empty} empty ones): check the source")
    splits = DataSplits.from_tokens(stream, val_fraction=val_fraction)  # the API's split, not a copy of it
    train = np.asarray(splits.train, dtype=np.int64)
    val = np.asarray(splits.val, dtype=np.int64) if splits.val is not None else np.empty(0, np.int64)
    # Document i spans stream[starts[i]:ends[i]] (each separator adds one token): train if it starts before the
    # cut, val if it ends after it.
    lengths = np.array([len(ids) for ids in encoded])
    sep = 0 if eos_id is None else 1
    starts = np.concatenate([[0], np.cumsum(lengths + sep)[:-1]])
    ends = starts + lengths
    cut = train.size
    n_docs = {"train": int((starts < cut).sum()), "val": int((ends > cut).sum())}
    return {"train": train, "val": val}, n_docs, n_empty


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {out_dir} exists and is a file; choose a directory path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ValueError(f"out_dir {out_dir} already exists and is not empty: pass overwrite=True to replace it")
    if not out_dir.parent.is_dir():
        raise FileNotFoundError(f"cannot create {out_dir}: its parent {out_dir.parent} does not exist")


def prepare(
    docs: Iterable[str],
    tokenizer: Any,
    out_dir: str | os.PathLike,
    val_fraction: float = 0.05,
    eos_id: int | None = None,
    overwrite: bool = False,
    source: str = "",
    holdout: str = "documents",
    meta: dict[str, Any] | None = None,
) -> PreparedData:
    """Encode `docs` with `tokenizer` and write train/val shards, tokenizer and metadata to `out_dir`.

    docs: iterable of str (e.g. from minillm.data.sources); read once, so a generator is fine.
    tokenizer: has encode(str) -> list[int] (or encode_batch), vocab_size, hash and save(path).
    val_fraction: share held out: of documents (holdout="documents") or of tokens (holdout="tail").
    eos_id: if given, marks where documents end (after every document, or between documents for "tail"), so
        the model never learns that the end of one text predicts the start of an unrelated next one.
    source: free-text description of where the documents came from, stored in meta.json.
    holdout: "documents" = whole documents, chosen by `_is_val` (evenly spread, deterministic; reads a
        stream once); "tail" = the documents joined into one stream (`token_stream`) and its last
        val_fraction of tokens held out, as `DataSplits.from_tokens` does (holds all documents in memory).
    meta: extra fields stored in meta.json (e.g. how the documents were cut from text files).
    Empty documents are skipped (and counted in meta.json).
    """
    out_dir = Path(out_dir)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    vocab_size = int(tokenizer.vocab_size)
    if eos_id is not None and not 0 <= eos_id < vocab_size:
        raise ValueError(f"eos_id={eos_id} is outside the tokenizer's vocabulary [0, {vocab_size})")
    extra = dict(meta or {})
    if holdout not in HOLDOUTS:
        raise ValueError(f"holdout must be one of {HOLDOUTS}, got {holdout!r}")
    tok_hash = tokenizer_hash_of(tokenizer)
    _check_out_dir(out_dir, overwrite)
    if holdout == "tail":
        tokens, n_docs, n_empty = _split_tail(docs, tokenizer, eos_id, val_fraction)
        split_rule = ("documents joined with eos_id between them into one stream; the last "
                      "round(len*val_fraction) tokens are validation (DataSplits.from_tokens)")
    else:
        tokens, n_docs, n_empty = _split_documents(docs, tokenizer, eos_id, val_fraction)
        split_rule = ("document i (0-based, empty documents excluded) is validation iff "
                      "floor((i+1)*val_fraction) > floor(i*val_fraction)")
    if tokens["train"].size < 2:
        raise ValueError(f"the training split has {tokens['train'].size} token(s); need at least 2 to train on")

    # Write everything into a temp dir next to out_dir (same filesystem, so the final rename is atomic).
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        for side in ("train", "val"):
            write_shard(tmp / f"{side}.bin", tokens[side], vocab_size, tok_hash)
        tokenizer.save(tmp / "tokenizer.json")
        meta_out = {
            "format": "minillm-prepared-data",
            "version": 1,
            "source": source,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "vocab_size": vocab_size,
            "tokenizer_hash": tok_hash,
            "tokenizer_class": type(tokenizer).__name__,
            "eos_id": eos_id,
            "val_fraction": val_fraction,
            "holdout": holdout,
            "split_rule": split_rule,
            "train_tokens": int(tokens["train"].size),
            "val_tokens": int(tokens["val"].size),
            "train_docs": n_docs["train"],
            "val_docs": n_docs["val"],
            "empty_docs_skipped": n_empty,
        }
        clash = sorted(set(extra) & set(meta_out))
        if clash:
            raise ValueError(f"meta= may not replace the fields prepare writes itself: {clash}")
        meta_out.update(extra)
        atomic_write_text(tmp / "meta.json", json.dumps(meta_out, indent=2) + "\n")
        replace_dir(tmp, out_dir)  # an old out_dir is moved aside first and deleted only once the new one is in
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    return PreparedData(
        out_dir=out_dir,
        train_path=out_dir / "train.bin",
        val_path=out_dir / "val.bin",
        tokenizer_path=out_dir / "tokenizer.json",
        meta_path=out_dir / "meta.json",
        n_train_tokens=meta_out["train_tokens"],
        n_val_tokens=meta_out["val_tokens"],
        n_train_docs=n_docs["train"],
        n_val_docs=n_docs["val"],
        vocab_size=vocab_size,
        tokenizer_hash=tok_hash,
    )
