"""Provenance records: every shipped figure says what ran, where and when."""
import json

from minillm.provenance import append_jsonl, provenance


def test_record_fields_and_module_command():
    rec = provenance(["/somewhere/minillm/__main__.py", "sweep", "--size", "ci"])
    assert rec["command"] == "python -m minillm sweep --size ci"
    assert rec["date"].endswith("+00:00")
    assert rec["host"]["cpu_count"] >= 1 and "torch" in rec["versions"]
    assert provenance(["bench/x.py", "--steps", "3"])["command"] == "python bench/x.py --steps 3"


def test_append_jsonl_never_rewrites(tmp_path):
    path = tmp_path / "sub" / "r.jsonl"
    append_jsonl(path, {"a": 1})
    append_jsonl(path, {"a": 2})
    assert [json.loads(line)["a"] for line in path.read_text().splitlines()] == [1, 2]
