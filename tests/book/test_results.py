"""Provenance records: every shipped figure says what ran, where and when."""
import json

import pytest

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


def test_run_studies_appends_a_record_per_study(tmp_path):
    from book.results import run_studies

    out = tmp_path / "r.jsonl"
    studies = {"a": lambda: [{"x": 1}], "b": lambda: [{"x": 2}, {"x": 3}]}
    recs = list(run_studies(studies, out, ["b"], summaries={"b": lambda rows: {"n": len(rows)}}, run={"steps": 5}))
    assert [r["study"] for r in recs] == ["b"] and recs[0]["summary"] == {"n": 2} and recs[0]["run"] == {"steps": 5}
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["provenance"]["command"]
    with pytest.raises(ValueError, match="unknown studies"):
        list(run_studies(studies, out, ["c"]))


def test_studies_cli_runs_the_chosen_studies_with_size_and_summary(tmp_path, capsys):
    from book.results import read_records, studies_cli

    def make(size):
        return {"a": (lambda: [{"x": size}], lambda rows: {"n": len(rows)}), "b": (lambda: [{"y": 2}], None)}

    out = tmp_path / "s.jsonl"
    studies_cli("test", out, make, ["--size", "ci", "--only", "a", "--out", str(out)])
    (rec,) = read_records(out)
    assert rec["study"] == "a" and rec["size"] == "ci" and rec["rows"] == [{"x": "ci"}] and rec["summary"] == {"n": 1}
    assert "a: 1 rows" in capsys.readouterr().out
