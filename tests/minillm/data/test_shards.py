"""Tests for minillm.data.shards: the token shard file format."""

import struct

import numpy as np
import pytest
import torch

from minillm.data import shards
from minillm.data.shards import HEADER_SIZE, MAGIC, check_compatible, read_header, read_shard, write_shard

HASH = "ab" * 32  # a 64-character hex digest, like sha256


@pytest.mark.parametrize("kind", ["list", "numpy", "torch"])
def test_round_trip_each_input_type(tmp_path, kind):
    ids = [0, 5, 17, 99, 3, 3, 42]
    tokens = {"list": ids, "numpy": np.array(ids, dtype=np.int32), "torch": torch.tensor(ids)}[kind]
    path = tmp_path / "t.bin"
    header = write_shard(path, tokens, vocab_size=100, tokenizer_hash=HASH)
    assert header.num_tokens == 7
    shard = read_shard(path)
    assert isinstance(shard.tokens, np.memmap)
    assert shard.tokens.tolist() == ids
    assert len(shard) == 7
    assert (shard.vocab_size, shard.tokenizer_hash, shard.version) == (100, HASH, 1)
    assert shard.dtype == np.dtype("<u2")
    assert path.stat().st_size == HEADER_SIZE + 2 * 7


def test_header_layout_is_exact(tmp_path):
    path = tmp_path / "t.bin"
    write_shard(path, np.array([1, 2, 3]), vocab_size=300, tokenizer_hash="beef")
    raw = path.read_bytes()
    assert raw[:8] == MAGIC
    version, code, reserved, vocab = struct.unpack_from("<IHHQ", raw, 8)
    assert (version, code, reserved, vocab) == (1, 1, 0, 300)
    assert raw[24:28] == b"beef" and raw[28:88] == b"\0" * 60
    assert struct.unpack_from("<Q", raw, 88)[0] == 3
    assert raw[96:HEADER_SIZE] == b"\0" * (HEADER_SIZE - 96)
    assert raw[HEADER_SIZE:] == b"\x01\x00\x02\x00\x03\x00"  # little-endian uint16


@pytest.mark.parametrize("vocab, dtype", [(65536, "<u2"), (65537, "<u4"), (128_256, "<u4")])
def test_dtype_chosen_from_vocab_size(tmp_path, vocab, dtype):
    path = tmp_path / "t.bin"
    write_shard(path, [0, vocab - 1], vocab_size=vocab)
    shard = read_shard(path, mmap=False)
    assert shard.dtype == np.dtype(dtype)
    assert shard.tokens.tolist() == [0, vocab - 1]  # the largest id survives the round trip


def test_tokens_are_read_only(tmp_path):
    path = tmp_path / "t.bin"
    write_shard(path, [1, 2, 3], vocab_size=10)
    for mmap in (True, False):
        tokens = read_shard(path, mmap=mmap).tokens
        with pytest.raises(ValueError, match="read-only"):
            tokens[0] = 5


def test_empty_token_list_round_trips(tmp_path):
    path = tmp_path / "t.bin"
    write_shard(path, [], vocab_size=10)
    shard = read_shard(path)
    assert len(shard) == 0 and shard.tokens.dtype == np.dtype("<u2")


def test_large_random_round_trip_matches(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50_257, size=100_000)
    path = tmp_path / "t.bin"
    write_shard(path, ids, vocab_size=50_257)
    np.testing.assert_array_equal(read_shard(path).tokens, ids)


# --------------------------------------------------------------------------- write errors


def test_out_of_range_token_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"2 token id\(s\) outside \[0, 50\); the first is tokens\[2\] = 50"):
        write_shard(tmp_path / "t.bin", [1, 2, 50, 7, 99], vocab_size=50)


def test_negative_token_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"tokens\[1\] = -1"):
        write_shard(tmp_path / "t.bin", np.array([3, -1, 4]), vocab_size=50)


def test_non_integer_and_2d_tokens_rejected(tmp_path):
    with pytest.raises(ValueError, match="must be integers, got dtype float32"):
        write_shard(tmp_path / "t.bin", np.array([1.0, 2.0], dtype=np.float32), vocab_size=50)
    with pytest.raises(ValueError, match=r"1-D .* got shape \(2, 2\)"):
        write_shard(tmp_path / "t.bin", np.zeros((2, 2), dtype=np.int64), vocab_size=50)


def test_bad_vocab_and_hash_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"vocab_size must be in \[1, 2\*\*32\], got 0"):
        write_shard(tmp_path / "t.bin", [], vocab_size=0)
    with pytest.raises(ValueError, match="at most 64 ASCII characters"):
        write_shard(tmp_path / "t.bin", [0], vocab_size=5, tokenizer_hash="a" * 65)
    with pytest.raises(ValueError, match="must be ASCII"):
        write_shard(tmp_path / "t.bin", [0], vocab_size=5, tokenizer_hash="é")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    """A crash after the tokens were written but before the rename: no target, no temp file."""

    def crash(fd):
        raise OSError("simulated power cut")

    monkeypatch.setattr(shards, "_WRITE_CHUNK", 3)  # several chunks, so the crash is truly mid-way
    monkeypatch.setattr(shards.os, "fsync", crash)
    with pytest.raises(OSError, match="simulated power cut"):
        write_shard(tmp_path / "t.bin", np.arange(10), vocab_size=10)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_old_file(tmp_path, monkeypatch):
    """Fail after the header and one chunk of tokens reached the temp file: the old shard survives."""
    path = tmp_path / "t.bin"
    write_shard(path, [1, 2, 3], vocab_size=10)
    before = path.read_bytes()
    real_fdopen = shards.os.fdopen

    class Interrupted(Exception):
        pass

    class FailsOnThirdWrite:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, data):
            self.n += 1
            if self.n == 3:
                raise Interrupted
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(shards, "_WRITE_CHUNK", 2)
    monkeypatch.setattr(shards.os, "fdopen", lambda fd, mode: FailsOnThirdWrite(real_fdopen(fd, mode)))
    with pytest.raises(Interrupted):
        write_shard(path, np.arange(6), vocab_size=10)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.bin"]


# --------------------------------------------------------------------------- read errors


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no token shard at .*nope\.bin.*python -m minillm prepare"):
        read_shard(tmp_path / "nope.bin")


def test_empty_file(tmp_path):
    (tmp_path / "e.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty file \(0 bytes\)"):
        read_shard(tmp_path / "e.bin")


def test_text_file_is_not_a_shard(tmp_path):
    (tmp_path / "input.txt").write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    with pytest.raises(ValueError, match=r"not a minillm token shard.*Did you pass a text file\?.*minillm prepare"):
        read_shard(tmp_path / "input.txt")


def test_directory_is_not_a_shard(tmp_path):
    with pytest.raises(ValueError, match="is not a file"):
        read_header(tmp_path)


def _patched(tmp_path, offset, fmt, value):
    path = tmp_path / "t.bin"
    write_shard(path, [1, 2, 3], vocab_size=10)
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    path.write_bytes(bytes(raw))
    return path


def test_unsupported_version(tmp_path):
    path = _patched(tmp_path, 8, "<I", 2)
    with pytest.raises(ValueError, match="shard format version 2; this minillm reads version 1"):
        read_shard(path)


def test_unknown_dtype_code(tmp_path):
    path = _patched(tmp_path, 12, "<H", 9)
    with pytest.raises(ValueError, match=r"unknown dtype code 9 \(known: \[1, 2\]\)"):
        read_shard(path)


def test_truncated_tokens(tmp_path):
    path = tmp_path / "t.bin"
    write_shard(path, list(range(10)), vocab_size=10)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"truncated: the header says 10 tokens, so 276 bytes expected, but found 271"):
        read_shard(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "t.bin"
    path.write_bytes(MAGIC + b"\x01\x00")
    with pytest.raises(ValueError, match=r"truncated: its header needs 256 bytes, the file has 10"):
        read_header(path)


def test_trailing_bytes(tmp_path):
    path = tmp_path / "t.bin"
    write_shard(path, [1, 2], vocab_size=10)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="1 unexpected bytes after its 2 tokens"):
        read_shard(path)


# --------------------------------------------------------------------------- compatibility


def test_check_compatible(tmp_path):
    path = tmp_path / "t.bin"
    write_shard(path, [1, 2], vocab_size=100, tokenizer_hash=HASH)
    shard = read_shard(path)
    check_compatible(shard, vocab_size=100, tokenizer_hash=HASH)  # exact fit
    check_compatible(shard, vocab_size=128)  # a padded embedding table is fine
    check_compatible(read_header(path), vocab_size=100)
    message = r"written with vocab_size=100, the model has 64: set ModelConfig.vocab_size >= 100"
    with pytest.raises(ValueError, match=message):
        check_compatible(shard, vocab_size=64)
    with pytest.raises(ValueError, match=r"tokenizer mismatch.*abababababab.*cdcdcdcdcdcd.*tokenizer.json"):
        check_compatible(shard, tokenizer_hash="cd" * 32)


def test_check_compatible_unknown_hash_is_not_compared(tmp_path):
    path = tmp_path / "t.bin"
    write_shard(path, [1, 2], vocab_size=100)
    check_compatible(read_shard(path), tokenizer_hash="cd" * 32)
