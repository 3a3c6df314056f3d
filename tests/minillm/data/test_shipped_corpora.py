"""The real corpora shipped in data/ (#24): present, intact (sizes and md5 as data/README.md lists them), and read
through minillm's sources, compressed JSON lines included; the .jsonl.xz / .jsonl.gz reader and its errors."""
import gzip
import hashlib
import itertools
import json
import lzma
import re
from pathlib import Path

import pytest

from minillm.cli import main
from minillm.data.sources import read_jsonl, read_text_files

DATA = Path(__file__).resolve().parents[3] / "data"


@pytest.mark.parametrize("name", ["tinyshakespeare.txt", "quantangshi.jsonl.xz"])
def test_shipped_files_match_their_readme(name):
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}`"))
    size, md5 = re.search(r"([\d,]+) bytes.*?`([0-9a-f]{32})`", row).groups()
    data = (DATA / name).read_bytes()
    assert len(data) == int(size.replace(",", "")) and hashlib.md5(data).hexdigest() == md5
    assert "MIT License" in (DATA / "LICENSE.chinese-poetry").read_text()


def test_shipped_corpora_read_through_the_sources():
    (play,) = read_text_files([DATA / "tinyshakespeare.txt"])
    assert play.startswith("First Citizen:\nBefore we proceed any further") and len(play) == 1_115_394
    first = list(itertools.islice(read_jsonl(DATA / "quantangshi.jsonl.xz", field="paragraphs"), 2))
    assert first[0].split("\n")[0] == "秦川雄帝宅，函谷壯皇居。"  # a poem: its lines joined by newlines
    assert len(first[1].split("\n")) == 4


@pytest.mark.parametrize("suffix, opener", [(".jsonl.xz", lzma.open), (".jsonl.gz", gzip.open)])
def test_compressed_jsonl_and_list_fields(tmp_path, suffix, opener):
    rows = [{"title": "a", "paragraphs": ["床前明月光，", "疑是地上霜。"]}, {"title": "b", "paragraphs": ["x"]}]
    path = tmp_path / f"poems{suffix}"
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    assert list(read_jsonl(path, field="paragraphs")) == ["床前明月光，\n疑是地上霜。", "x"]
    assert list(read_jsonl(path, field="title")) == ["a", "b"]
    # the CLI reads it as JSON lines, not as a text file
    (tmp_path / "d").mkdir()
    assert main(["prepare", "--source", str(path), "--field", "paragraphs", "--out", str(tmp_path / "d" / "p"),
                 "--val_fraction", "0.5"]) == 0


def test_corrupt_or_wrong_fields_are_clear_errors(tmp_path):
    bad = tmp_path / "cut.jsonl.xz"
    good = lzma.compress(b'{"text": "hello"}\n' * 1000)
    bad.write_bytes(good[: len(good) // 2])  # truncated download
    with pytest.raises(ValueError, match="corrupt or truncated"):
        list(read_jsonl(bad))
    numbers = tmp_path / "n.jsonl"
    numbers.write_text('{"text": [1, 2]}\n')
    with pytest.raises(ValueError, match="list of strings"):
        list(read_jsonl(numbers))
