"""Tests for minillm.data.sources (documents from files) and minillm.data.prepare (documents -> shards)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from minillm.data import prepare as prepare_module
from minillm.data.loader import DataSplits, get_batch
from minillm.data.prepare import prepare
from minillm.data.shards import read_shard
from minillm.data.sources import load_hf_dataset, read_jsonl, read_text_files
from minillm.data.tokenizer import BPETokenizer, CharTokenizer, load_tokenizer

EOS = "<eos>"


def _tok(docs):
    """A character tokenizer for `docs`, with an end-of-document special token (id 0)."""
    return CharTokenizer.from_text("".join(docs), special_tokens=[EOS])


# --------------------------------------------------------------------------- read_text_files


def test_read_text_files_split_modes(tmp_path):
    a = tmp_path / "a.txt"
    a.write_bytes(b"First para\r\nline two\r\n\r\n  \nSecond para\n")
    b = tmp_path / "b.txt"
    b.write_text("only line\n")
    assert list(read_text_files([a, b])) == ["First para\nline two\n\n  \nSecond para\n", "only line\n"]
    assert list(read_text_files([a, b], split="paragraph")) == ["First para\nline two", "Second para", "only line"]
    assert list(read_text_files(str(a), split="line")) == ["First para", "line two", "Second para"]


def test_read_text_files_bad_utf8_names_file_and_offset(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt: not valid utf-8 at byte offset 3 .*iconv.*errors='replace'"):
        list(read_text_files(p))
    assert list(read_text_files(p, errors="replace")) == ["caf\ufffd au lait"]
    assert list(read_text_files(p, encoding="latin-1")) == ["café au lait"]


def test_read_text_files_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file: .*missing\.txt"):
        read_text_files([tmp_path / "missing.txt"])  # fails at the call, before iteration
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.txt is empty \(0 bytes\)"):
        read_text_files(tmp_path / "empty.txt")
    (tmp_path / "blank.txt").write_text(" \n\n")
    with pytest.raises(ValueError, match="contains only whitespace"):
        list(read_text_files(tmp_path / "blank.txt"))
    with pytest.raises(ValueError, match="is a directory; pass its files"):
        read_text_files(tmp_path)
    with pytest.raises(ValueError, match=r"split must be one of \('file', 'paragraph', 'line'\), got 'page'"):
        read_text_files(tmp_path / "blank.txt", split="page")
    with pytest.raises(ValueError, match=r"errors must be one of \('strict', 'replace'\)"):
        read_text_files(tmp_path / "blank.txt", errors="ignore")
    with pytest.raises(ValueError, match="no paths given"):
        read_text_files([])


# --------------------------------------------------------------------------- read_jsonl


def test_read_jsonl(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "hello", "id": 1}\n\n{"text": "world"}\n')
    assert list(read_jsonl(p)) == ["hello", "world"]
    q = tmp_path / "e.jsonl"
    q.write_text('{"body": "x", "id": 1}\n')
    assert list(read_jsonl(q, field="body")) == ["x"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text": "a"}\n{"text": "b"}\n{"text": oops}\n', r"d\.jsonl:3: invalid JSON \(Expecting value at column 10\)"),
        ('{"text": "a"}\n{"body": "b", "id": 2}\n', r"d\.jsonl:2: no field 'text'; keys present: \['body', 'id'\]"),
        ('["a", "b"]\n', r"d\.jsonl:1: expected a JSON object per line, got list"),
        ('{"text": 3}\n', r"d\.jsonl:1: field 'text' is int, expected a string"),
        ("\n\n", r"holds no JSON lines"),
    ],
)
def test_read_jsonl_errors(tmp_path, content, message):
    p = tmp_path / "d.jsonl"
    p.write_text(content)
    with pytest.raises(ValueError, match=message):
        list(read_jsonl(p))


def test_read_jsonl_bad_utf8(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"d\.jsonl:2: not valid utf-8 at byte offset 28"):
        list(read_jsonl(p))
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_jsonl(tmp_path / "missing.jsonl")


# --------------------------------------------------------------------------- load_hf_dataset


def test_load_hf_dataset_without_datasets_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ImportError, match=r"optional package `datasets`: install it with `pip install datasets`"):
        load_hf_dataset(tmp_path / "x.txt")


def test_load_hf_dataset_local_files(tmp_path):
    pytest.importorskip("datasets")
    txt = tmp_path / "d.txt"
    txt.write_text("line one\nline two\n")
    assert list(load_hf_dataset(txt)) == ["line one", "line two"]
    js = tmp_path / "d.jsonl"
    js.write_text('{"body": "a"}\n{"body": "b"}\n')
    assert list(load_hf_dataset(js, field="body")) == ["a", "b"]
    assert list(load_hf_dataset(js, field="body", streaming=True)) == ["a", "b"]
    with pytest.raises(ValueError, match=r"has no column 'text'; columns: \['body'\]"):
        load_hf_dataset(js)


# --------------------------------------------------------------------------- prepare

DOCS = [f"document number {i} says {'ab' * (i % 3)}" for i in range(8)]


def test_prepare_round_trip(tmp_path):
    tok = _tok(DOCS)
    out = tmp_path / "prepared"
    eos_id = tok.token_to_id(EOS)
    result = prepare(DOCS, tok, out, val_fraction=0.25, eos_id=eos_id, source="unit test")
    # floor((i+1)/4) ticks up at i = 3 and 7: those two documents are validation.
    val_docs = [DOCS[3], DOCS[7]]
    train_docs = [d for i, d in enumerate(DOCS) if i not in (3, 7)]
    assert (result.n_train_docs, result.n_val_docs) == (6, 2)
    eos = EOS
    splits = DataSplits.from_dir(out)
    assert tok.decode(splits.train.tolist()) == "".join(d + eos for d in train_docs)
    assert tok.decode(splits.val.tolist()) == "".join(d + eos for d in val_docs)
    assert result.n_train_tokens == len(splits.train) == sum(len(d) + 1 for d in train_docs)
    assert (splits.vocab_size, splits.tokenizer_hash) == (tok.vocab_size, tok.hash)

    meta = json.loads((out / "meta.json").read_text())
    assert meta["train_tokens"] == result.n_train_tokens and meta["val_tokens"] == result.n_val_tokens
    assert (meta["train_docs"], meta["val_docs"], meta["eos_id"]) == (6, 2, eos_id)
    assert (meta["vocab_size"], meta["tokenizer_hash"], meta["source"]) == (tok.vocab_size, tok.hash, "unit test")
    assert meta["created"].endswith("+00:00")
    assert load_tokenizer(out / "tokenizer.json").hash == tok.hash == result.tokenizer_hash
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "tokenizer.json", "train.bin", "val.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]  # no temp dirs left behind
    assert result.load().train.tolist() == splits.train.tolist()


def test_prepare_uses_encode_batch_and_skips_empty_docs(tmp_path):
    class BatchTok(CharTokenizer):
        calls = 0

        def encode_batch(self, texts):
            BatchTok.calls += 1
            return super().encode_batch(texts)

    docs = DOCS + [""]
    result = prepare(iter(docs), BatchTok.from_text("".join(DOCS)), tmp_path / "out", val_fraction=0.0)
    assert BatchTok.calls == 1
    assert result.n_val_docs == 0 and result.n_val_tokens == 0 and result.n_train_docs == 8
    assert json.loads(result.meta_path.read_text())["empty_docs_skipped"] == 1
    assert read_shard(result.val_path).tokens.size == 0
    assert DataSplits.from_dir(tmp_path / "out").val is None


def test_prepare_refuses_to_overwrite_then_replaces(tmp_path):
    out = tmp_path / "out"
    prepare(DOCS, _tok(DOCS), out, val_fraction=0.25)
    with pytest.raises(ValueError, match="already exists and is not empty: pass overwrite=True"):
        prepare(DOCS[:4], _tok(DOCS), out, val_fraction=0.25)
    result = prepare(DOCS[:4], _tok(DOCS), out, val_fraction=0.25, overwrite=True)
    assert result.n_train_docs == 3
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    (tmp_path / "empty_dir").mkdir()
    prepare(DOCS, _tok(DOCS), tmp_path / "empty_dir", val_fraction=0.25)  # an empty dir is fine


def test_prepare_failure_leaves_no_partial_output(tmp_path, monkeypatch):
    real_write_shard = prepare_module.write_shard

    def fail_on_val(path, *args, **kwargs):
        if Path(path).name == "val.bin":
            raise OSError("simulated disk full")
        return real_write_shard(path, *args, **kwargs)

    monkeypatch.setattr(prepare_module, "write_shard", fail_on_val)
    with pytest.raises(OSError, match="simulated disk full"):
        prepare(DOCS, _tok(DOCS), tmp_path / "out", val_fraction=0.25)
    assert list(tmp_path.iterdir()) == []  # neither out/ nor the temp dir with train.bin in it

    # With overwrite=True, a failure keeps the previous output intact.
    monkeypatch.undo()
    first = prepare(DOCS, _tok(DOCS), tmp_path / "out", val_fraction=0.25)
    before = first.train_path.read_bytes()
    monkeypatch.setattr(prepare_module, "write_shard", fail_on_val)
    with pytest.raises(OSError):
        prepare(DOCS[:4], _tok(DOCS), tmp_path / "out", val_fraction=0.25, overwrite=True)
    assert first.train_path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_prepare_errors(tmp_path):
    tok = _tok(DOCS)
    with pytest.raises(ValueError, match=r"no documents to prepare \(got 0 empty ones\)"):
        prepare([], tok, tmp_path / "a")
    with pytest.raises(ValueError, match=r"got 2 empty ones"):
        prepare(["", ""], tok, tmp_path / "a")
    with pytest.raises(ValueError, match=r"selects no validation document.*split='paragraph'"):
        prepare(DOCS[:3], tok, tmp_path / "a", val_fraction=0.05)
    with pytest.raises(ValueError, match="document 1 is a int, expected str"):
        prepare(["a", 3], tok, tmp_path / "a")
    with pytest.raises(ValueError, match=r"eos_id=99 is outside the tokenizer's vocabulary \[0, "):
        prepare(DOCS, tok, tmp_path / "a", eos_id=99)
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1.5"):
        prepare(DOCS, tok, tmp_path / "a", val_fraction=1.5)
    with pytest.raises(FileNotFoundError, match="its parent .* does not exist"):
        prepare(DOCS, tok, tmp_path / "no" / "such" / "dir")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is a file"):
        prepare(DOCS, tok, tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_prepare_round_trip_with_bpe(tmp_path):
    docs = [f"the cat number {i} sat on the mat, then the dog number {i} did too." for i in range(40)]
    tok = BPETokenizer.train(docs, vocab_size=300, special_tokens=["<|endoftext|>"])
    eos_id = tok.token_to_id("<|endoftext|>")
    result = prepare(docs, tok, tmp_path / "bpe", val_fraction=0.1, eos_id=eos_id)
    assert (result.n_train_docs, result.n_val_docs) == (36, 4)
    splits = result.load()
    assert splits.train.dtype == np.dtype("<u2") and splits.vocab_size == tok.vocab_size
    loaded = load_tokenizer(result.tokenizer_path)
    assert loaded.hash == splits.tokenizer_hash == tok.hash
    val_docs = [d for i, d in enumerate(docs) if i % 10 == 9]
    assert loaded.decode(splits.val.tolist()) == "".join(d + "<|endoftext|>" for d in val_docs)


def test_prepare_tinyshakespeare(tmp_path, shared_data):
    path = shared_data / "tinyshakespeare.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    text = path.read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text, special_tokens=[EOS])
    docs = read_text_files(path, split="paragraph")  # one document per speech
    result = prepare(docs, tok, tmp_path / "shakespeare", val_fraction=0.1, eos_id=tok.token_to_id(EOS))
    n_docs = result.n_train_docs + result.n_val_docs
    assert n_docs > 7000 and result.n_val_docs == n_docs // 10
    assert 0.05 < result.n_val_tokens / (result.n_train_tokens + result.n_val_tokens) < 0.15
    splits = DataSplits.from_dir(result.out_dir)
    assert splits.train.dtype == np.dtype("<u2") and splits.vocab_size == 66  # 65 characters + <eos>
    first_speech = text.split("\n\n")[0]
    assert tok.decode(splits.train[: len(first_speech) + 1]) == first_speech + EOS
    x, y = get_batch(splits.train, 4, 64, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 64) and int(x.max()) < tok.vocab_size
    torch.testing.assert_close(x[:, 1:], y[:, :-1])
