"""Token shards: the binary file format a tokenized corpus is stored in (Survey §4.1, data preparation).

Pre-training reads the same tokens many times, so we tokenize once and store the ids in a flat binary
file that can be memory-mapped: the OS pages in only the windows a batch touches, and a corpus larger
than RAM costs nothing to open. This is the layout nanoGPT (`train.bin`) and most LLM codebases use,
plus a small header so that a file can say what it is and which tokenizer produced it.

Layout (all integers little-endian, so a shard written on one machine reads the same on any other):

    offset  size  field
         0     8  magic            b"MINILLM\\0"   -- "is this file one of ours at all?"
         8     4  version          uint32 = 1     -- lets a future format change fail loudly
        12     2  dtype code       uint16         -- 1: uint16 tokens, 2: uint32 tokens
        14     2  reserved         zero           -- keeps the next field 8-byte aligned
        16     8  vocab_size       uint64         -- every token is in [0, vocab_size)
        24    64  tokenizer hash   ASCII, NUL-padded (sha256 hex, or empty when unknown)
        88     8  token count      uint64
        96   160  zero padding up to HEADER_SIZE = 256, so the tokens start at an aligned offset
       256  ...   the tokens

uint16 holds any vocabulary up to 65,536 entries (GPT-2's 50,257 fits), halving disk and page-cache
use compared with uint32; larger vocabularies (Llama 3: 128k) switch to uint32 automatically.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from minillm.io import atomic_write  # shared with the other writers; still importable from here

MAGIC = b"MINILLM\0"
VERSION = 1
HEADER_SIZE = 256
HASH_FIELD_SIZE = 64
# "<": little-endian, no implicit alignment padding -- the offsets in the table above are exact.
_HEADER = struct.Struct("<8sIHHQ64sQ")
# Codes stored in the header -> numpy dtypes with an explicit byte order.
_DTYPES = {1: np.dtype("<u2"), 2: np.dtype("<u4")}
_WRITE_CHUNK = 1 << 22  # tokens converted and written per step: bounds the extra memory a write needs

PREPARE_HINT = "run `python -m minillm prepare` (or minillm.data.prepare.prepare) to make shards"


@dataclass(frozen=True)
class ShardHeader:
    """What the 256-byte header of a shard says."""

    path: Path
    version: int
    dtype: np.dtype  # on-disk token dtype: <u2 or <u4
    vocab_size: int
    tokenizer_hash: str  # "" when the writer did not know its tokenizer
    num_tokens: int


@dataclass(frozen=True)
class Shard:
    """A shard opened for reading. `tokens` is read-only (np.memmap when mmap=True)."""

    path: Path
    tokens: np.ndarray  # (N,) uint16 or uint32
    vocab_size: int
    tokenizer_hash: str
    dtype: np.dtype
    version: int

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """The smallest on-disk dtype that can hold every id of a vocabulary of this size."""
    return _DTYPES[1] if vocab_size <= 2**16 else _DTYPES[2]


def _as_token_array(tokens: Any) -> np.ndarray:
    """list / tuple / np.ndarray / torch.Tensor -> 1-D integer numpy array (no copy when possible)."""
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.detach().cpu().numpy()
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"tokens must be a 1-D sequence of ids, got shape {arr.shape}: flatten it first")
    if arr.size and (arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"tokens must be integers, got dtype {arr.dtype}: convert with .astype(np.int64)")
    return arr


def _check_hash(tokenizer_hash: str) -> bytes:
    if not isinstance(tokenizer_hash, str):
        raise ValueError(f"tokenizer_hash must be a str (hex digest or ''), got {type(tokenizer_hash).__name__}")
    try:
        raw = tokenizer_hash.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"tokenizer_hash must be ASCII (a hex digest), got {tokenizer_hash!r}") from None
    if len(raw) > HASH_FIELD_SIZE or b"\0" in raw:
        raise ValueError(
            f"tokenizer_hash must be at most {HASH_FIELD_SIZE} ASCII characters without NUL "
            f"(a sha256 hex digest is 64), got {len(raw)}"
        )
    return raw


def write_shard(
    path: str | os.PathLike, tokens: Any, vocab_size: int, tokenizer_hash: str = ""
) -> ShardHeader:
    """Write token ids to `path` atomically; returns the header written.

    tokens: list, numpy array or torch tensor of ints, each in [0, vocab_size).
    tokenizer_hash: the tokenizer's stable hex digest, so readers can refuse a mismatched tokenizer.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
        raise ValueError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    vocab_size = int(vocab_size)
    if not 1 <= vocab_size <= 2**32:
        raise ValueError(f"vocab_size must be in [1, 2**32], got {vocab_size}")
    hash_bytes = _check_hash(tokenizer_hash)
    arr = _as_token_array(tokens)

    # Range check of every token, vectorised: min/max need no temporary array; only when they show a
    # problem do we build the (N,) mask to report where the first offending id is.
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= vocab_size):
        where = np.flatnonzero((arr < 0) | (arr >= vocab_size))
        i = int(where[0])
        raise ValueError(
            f"{where.size} token id(s) outside [0, {vocab_size}); the first is tokens[{i}] = {int(arr[i])}. "
            f"Pass the tokenizer's vocab_size (it must exceed the largest id, {int(arr.max())})"
        )

    dtype = dtype_for_vocab(vocab_size)
    code = next(c for c, d in _DTYPES.items() if d == dtype)
    header = _HEADER.pack(MAGIC, VERSION, code, 0, vocab_size, hash_bytes, arr.size)
    header += b"\0" * (HEADER_SIZE - len(header))

    def write(f: BinaryIO) -> None:
        f.write(header)
        # Chunked so a 1B-token array does not need a second full-size copy in the on-disk dtype.
        for start in range(0, arr.size, _WRITE_CHUNK):
            f.write(arr[start : start + _WRITE_CHUNK].astype(dtype, copy=False).tobytes())

    atomic_write(path, write)
    return ShardHeader(Path(path), VERSION, dtype, vocab_size, tokenizer_hash, int(arr.size))


def read_header(path: str | os.PathLike) -> ShardHeader:
    """Parse and validate a shard's header, including that the file holds exactly the tokens it claims."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no token shard at {path}: {PREPARE_HINT}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file; pass the path of a .bin shard such as {path / 'train.bin'}")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path} is an empty file (0 bytes), not a token shard; {PREPARE_HINT} again")
    with open(path, "rb") as f:
        raw = f.read(HEADER_SIZE)
    if raw[: len(MAGIC)] != MAGIC:
        raise ValueError(
            f"{path} is not a minillm token shard: it starts with {raw[:len(MAGIC)]!r}, not {MAGIC!r}. "
            f"Did you pass a text file? {PREPARE_HINT}"
        )
    if len(raw) < HEADER_SIZE:
        raise ValueError(f"{path} is truncated: its header needs {HEADER_SIZE} bytes, the file has {size}")
    magic, version, code, _reserved, vocab_size, hash_raw, count = _HEADER.unpack_from(raw)
    if version != VERSION:
        raise ValueError(
            f"{path} uses shard format version {version}; this minillm reads version {VERSION}. "
            f"Re-create it with this version: {PREPARE_HINT}"
        )
    if code not in _DTYPES:
        raise ValueError(f"{path} has unknown dtype code {code} (known: {sorted(_DTYPES)}); the file is corrupt")
    dtype = _DTYPES[code]
    expected = HEADER_SIZE + count * dtype.itemsize
    if size < expected:
        raise ValueError(
            f"{path} is truncated: the header says {count} tokens, so {expected} bytes expected, "
            f"but found {size} bytes. The write was probably interrupted; {PREPARE_HINT} again"
        )
    if size > expected:
        raise ValueError(
            f"{path} has {size - expected} unexpected bytes after its {count} tokens "
            f"({expected} bytes expected, found {size}); the file is corrupt: {PREPARE_HINT} again"
        )
    tokenizer_hash = hash_raw.rstrip(b"\0").decode("ascii", errors="replace")
    return ShardHeader(path, version, dtype, int(vocab_size), tokenizer_hash, int(count))


def read_shard(path: str | os.PathLike, mmap: bool = True) -> Shard:
    """Open a shard. mmap=True maps the file (lazy, nothing read yet); False reads it all into memory."""
    h = read_header(path)
    if h.num_tokens == 0:
        tokens = np.empty(0, dtype=h.dtype)  # mmap cannot map zero bytes
    elif mmap:
        tokens = np.memmap(h.path, dtype=h.dtype, mode="r", offset=HEADER_SIZE, shape=(h.num_tokens,))
    else:
        tokens = np.fromfile(h.path, dtype=h.dtype, count=h.num_tokens, offset=HEADER_SIZE)
    # Read-only either way: training must never scribble on the corpus by accident.
    tokens.flags.writeable = False
    return Shard(h.path, tokens, h.vocab_size, h.tokenizer_hash, h.dtype, h.version)


def check_compatible(shard: Any, vocab_size: int | None = None, tokenizer_hash: str | None = None) -> None:
    """Raise ValueError when data and model/tokenizer do not fit together.

    `shard` is anything with `vocab_size` and `tokenizer_hash` attributes (Shard, ShardHeader,
    DataSplits). An embedding table smaller than the shard's vocabulary would index out of range;
    a different tokenizer would decode the ids into the wrong text. An empty hash on either side
    means "unknown", and nothing is compared.
    """
    where = getattr(shard, "path", None) or "the data"
    data_vocab = getattr(shard, "vocab_size", None)
    if vocab_size is not None and data_vocab is not None and vocab_size < data_vocab:
        raise ValueError(
            f"{where}: the shard was written with vocab_size={data_vocab}, the model has {vocab_size}: "
            f"set ModelConfig.vocab_size >= {data_vocab}"
        )
    data_hash = getattr(shard, "tokenizer_hash", "") or ""
    if tokenizer_hash and data_hash and tokenizer_hash != data_hash:
        raise ValueError(
            f"{where}: tokenizer mismatch: the shard was written with tokenizer {data_hash[:12]}..., "
            f"you are using {tokenizer_hash[:12]}...; load the tokenizer.json saved next to the shards, "
            f"or re-run prepare with this tokenizer"
        )
