"""Where raw text comes from: plain files, JSON Lines, Hugging Face datasets (Survey §4.1.1, data sources).

Every source here is an iterator of documents (one `str` each), the unit the rest of the pipeline
works on: cleaning and deduplication judge documents, and `prepare` splits train/validation by
document so that no document is cut in half across the two.

Errors point at the exact place: a bad JSON line gives its line number, a non-UTF-8 byte its offset.
Finding that in a 10 GB crawl dump by hand is painful; the message should make it a one-minute fix.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

_SPLITS = ("file", "paragraph", "line")
_ERRORS = ("strict", "replace")
_PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t]*\n)+")  # one or more blank (or whitespace-only) lines


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; pass its files, e.g. sorted(Path({str(path)!r}).glob('*.txt'))")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes): there is no text to read")


def _decode(data: bytes, path: Path, encoding: str, errors: str, offset: int = 0, where: str = "") -> str:
    """bytes -> str; on a bad byte, say which file, where, and how to fix it."""
    try:
        return data.decode(encoding, errors=errors)
    except UnicodeDecodeError as e:
        bad = data[e.start : e.start + 4]
        raise ValueError(
            f"{path}{where}: not valid {encoding} at byte offset {offset + e.start} (bytes {bad!r}). "
            f"Convert the file, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed.txt`, or pass "
            f"errors='replace' to substitute U+FFFD for undecodable bytes"
        ) from None


def _check_options(encoding: str, errors: str) -> None:
    if errors not in _ERRORS:
        raise ValueError(f"errors must be one of {_ERRORS}, got {errors!r}")
    try:
        "".encode(encoding)
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}") from None


def read_text_files(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    encoding: str = "utf-8",
    split: str = "file",
    errors: str = "strict",
) -> Iterator[str]:
    """Documents from plain-text files.

    split: "file" -> one document per file; "paragraph" -> one per blank-line-separated block;
    "line" -> one per non-blank line. Line endings are normalised to "\\n" (as Python's text mode does).
    All paths are checked before the first document is returned, so a typo fails immediately.
    Each file is read whole: fine for the corpora of this course; stream huge files line by line instead.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    _check_options(encoding, errors)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no paths given: pass a file path or a list of them")
    for p in paths:
        _check_file(p)
    return _iter_text_files(paths, encoding, split, errors)


def _iter_text_files(paths: list[Path], encoding: str, split: str, errors: str) -> Iterator[str]:
    for path in paths:
        text = _decode(path.read_bytes(), path, encoding, errors)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not text.strip():
            raise ValueError(f"{path} contains only whitespace: there is no text to read")
        if split == "file":
            yield text
        elif split == "paragraph":
            yield from (p.strip("\n") for p in _PARAGRAPH_BREAK.split(text) if p.strip())
        else:
            yield from (line for line in text.split("\n") if line.strip())


def read_jsonl(path: str | os.PathLike, field: str = "text", errors: str = "strict") -> Iterator[str]:
    """Documents from a JSON Lines file: one JSON object per line, the text under `field`.

    `.jsonl.xz` and `.jsonl.gz` files are decompressed as they are read (e.g. the shipped data/quantangshi.jsonl.xz).
    A field holding a list of strings (a poem's lines, {"paragraphs": [...]}) is one document, its items joined by
    newlines. Blank lines are skipped. Invalid JSON, a non-object line, a missing field or a value that is not a
    string (or a list of strings) raises ValueError naming the line number (1-based) and, for a missing field, the
    keys present.
    """
    path = Path(path)
    _check_options("utf-8", errors)
    _check_file(path)
    return _iter_jsonl(path, field, errors)


def iter_jsonl_objects(path: str | os.PathLike, encoding: str = "utf-8",
                       errors: str = "strict") -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON Lines file; a bad byte, invalid JSON or a line
    that is not a JSON object raises ValueError naming the file and line."""
    path, offset = Path(path), 0
    with _open_binary(path) as f:
        for lineno, raw in _lines(f, path):
            line = _decode(raw, path, encoding, errors, offset=offset, where=f":{lineno}")
            offset += len(raw)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object per line, got {type(obj).__name__}")
            yield lineno, obj


COMPRESSED = {".xz": lzma.open, ".gz": gzip.open}  # suffix -> opener; read as a stream, never unpacked to disk


def _open_binary(path: Path):
    """The file's bytes, decompressed as they are read when it ends in .xz or .gz."""
    return COMPRESSED.get(path.suffix, open)(path, "rb")


def _lines(f, path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line); a corrupt or truncated compressed file becomes one clear ValueError."""
    try:
        yield from enumerate(f, start=1)
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError) as e:
        raise ValueError(f"{path}: the {path.suffix} stream is corrupt or truncated ({e}): download or copy it "
                         f"again (the shipped corpora list their md5 in data/README.md)") from None


def _iter_jsonl(path: Path, field: str, errors: str) -> Iterator[str]:
    n_docs = 0
    for lineno, obj in iter_jsonl_objects(path, "utf-8", errors):
        if field not in obj:
            raise ValueError(
                f"{path}:{lineno}: no field {field!r}; keys present: {sorted(obj)}. "
                f"Pass field=... to choose the one holding the text"
            )
        value = obj[field]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            value = "\n".join(value)  # e.g. a poem's lines: one document
        if not isinstance(value, str):
            raise ValueError(f"{path}:{lineno}: field {field!r} is {type(value).__name__}, expected a string "
                             f"(or a non-empty list of strings, joined by newlines)")
        n_docs += 1
        yield value
    if n_docs == 0:
        raise ValueError(f"{path} holds no JSON lines, only blank ones")


# File extension -> the generic `datasets` builder that reads it locally, without the network.
_LOCAL_BUILDERS = {".txt": "text", ".text": "text", ".json": "json", ".jsonl": "json",
                   ".csv": "csv", ".parquet": "parquet"}  # fmt: skip


def load_hf_dataset(
    name_or_path: str | os.PathLike,
    split: str = "train",
    field: str = "text",
    streaming: bool = False,
    **kwargs: Any,
) -> Iterator[str]:
    """Documents from a Hugging Face dataset: a Hub name, or a local .txt/.json/.jsonl/.csv/.parquet file.

    Local files go through the generic builders (`load_dataset("text", data_files=...)` etc.), which
    work offline. Hub names need the network unless the dataset is already cached. `streaming=True`
    reads rows lazily instead of converting the whole dataset to Arrow first. Extra keyword arguments
    go to `datasets.load_dataset` unchanged (e.g. `name=` for a configuration).
    `datasets` is an optional dependency, imported only when this function is called.
    """
    try:
        import datasets
    except ImportError as e:
        raise ImportError(
            "load_hf_dataset needs the optional package `datasets`: install it with `pip install datasets` "
            "(or read local files with read_text_files / read_jsonl, which need nothing extra)"
        ) from e
    path = Path(name_or_path)
    if path.suffix.lower() in _LOCAL_BUILDERS:
        _check_file(path)  # a missing local file would otherwise be looked up on the Hub
        ds = datasets.load_dataset(
            _LOCAL_BUILDERS[path.suffix.lower()], data_files=str(path), split=split, streaming=streaming, **kwargs
        )
    else:
        ds = datasets.load_dataset(str(name_or_path), split=split, streaming=streaming, **kwargs)
    columns = getattr(ds, "column_names", None)  # may be None for a streaming dataset
    if columns is not None and field not in columns:
        raise ValueError(f"dataset {str(name_or_path)!r} has no column {field!r}; columns: {columns}. Pass field=...")
    return _iter_hf(ds, str(name_or_path), field)


def _iter_hf(ds: Any, name: str, field: str) -> Iterator[str]:
    for i, row in enumerate(ds):
        if field not in row:
            raise ValueError(f"dataset {name!r} row {i} has no column {field!r}; columns: {sorted(row)}")
        yield row[field]
