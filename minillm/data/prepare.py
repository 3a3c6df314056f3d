"""Turn documents into training-ready token shards (Survey §4.1, data preparation; §4.1.2 tokenization).

    documents --encode--> token ids (+ EOS after each document) --split by document--> train.bin / val.bin

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
) -> PreparedData:
    """Encode `docs` with `tokenizer` and write train/val shards, tokenizer and metadata to `out_dir`.

    docs: iterable of str (e.g. from minillm.data.sources); read once, so a generator is fine.
    tokenizer: has encode(str) -> list[int] (or encode_batch), vocab_size, hash and save(path).
    val_fraction: share of documents held out, chosen by `_is_val` (evenly spread, deterministic).
    eos_id: if given, appended after every document, so the model sees where documents end and
        never learns that the end of one text predicts the start of an unrelated next one.
    source: free-text description of where the documents came from, stored in meta.json.
    Empty documents are skipped (and counted in meta.json).
    """
    out_dir = Path(out_dir)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    vocab_size = int(tokenizer.vocab_size)
    if eos_id is not None and not 0 <= eos_id < vocab_size:
        raise ValueError(f"eos_id={eos_id} is outside the tokenizer's vocabulary [0, {vocab_size})")
    tok_hash = tokenizer_hash_of(tokenizer)
    _check_out_dir(out_dir, overwrite)
    frac = Fraction(val_fraction).limit_denominator(1_000_000)
    eos = np.array([] if eos_id is None else [eos_id], dtype=np.int64)

    # Encode. Pieces are per-document int64 arrays; one concatenate per split at the end.
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
            f"documents (e.g. read_text_files(..., split='paragraph')), a larger val_fraction, or val_fraction=0"
        )
    tokens = {k: np.concatenate(v) if v else np.empty(0, np.int64) for k, v in pieces.items()}
    if tokens["train"].size < 2:
        raise ValueError(f"the training split has {tokens['train'].size} token(s); need at least 2 to train on")

    # Write everything into a temp dir next to out_dir (same filesystem, so the final rename is atomic).
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        for side in ("train", "val"):
            write_shard(tmp / f"{side}.bin", tokens[side], vocab_size, tok_hash)
        tokenizer.save(tmp / "tokenizer.json")
        meta = {
            "format": "minillm-prepared-data",
            "version": 1,
            "source": source,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "vocab_size": vocab_size,
            "tokenizer_hash": tok_hash,
            "tokenizer_class": type(tokenizer).__name__,
            "eos_id": eos_id,
            "val_fraction": val_fraction,
            "split_rule": "document i (0-based, empty documents excluded) is validation iff "
            "floor((i+1)*val_fraction) > floor(i*val_fraction)",
            "train_tokens": int(tokens["train"].size),
            "val_tokens": int(tokens["val"].size),
            "train_docs": n_docs["train"],
            "val_docs": n_docs["val"],
            "empty_docs_skipped": n_empty,
        }
        atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=2) + "\n")
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
        n_train_tokens=meta["train_tokens"],
        n_val_tokens=meta["val_tokens"],
        n_train_docs=n_docs["train"],
        n_val_docs=n_docs["val"],
        vocab_size=vocab_size,
        tokenizer_hash=tok_hash,
    )
