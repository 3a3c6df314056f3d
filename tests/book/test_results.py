"""Provenance records (every shipped figure says what ran, where and when) and book.results, the one reader
(and writer) of the records shipped in bench/results."""
import json
import re
from pathlib import Path

import pytest

from book import results
from minillm.provenance import append_jsonl, provenance

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmp_results(tmp_path, monkeypatch):
    """$MINILLM_RESULTS pointed at an empty results directory."""
    monkeypatch.setenv(results.ENV, str(tmp_path))
    return tmp_path


def _write(path: Path, *records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


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


# ---------------------------------------------------------------------------------------------- finding the files


def test_the_checkout_results_are_found_from_the_root_and_from_another_directory(monkeypatch):
    monkeypatch.delenv(results.ENV, raising=False)
    monkeypatch.chdir(REPO)
    assert results.root() == REPO / "bench" / "results"
    monkeypatch.chdir(REPO / "chapters")  # where a chapter notebook runs
    assert results.root() == REPO / "bench" / "results"
    assert results.path("sweeps/laptop_isoflop.jsonl") == REPO / "bench" / "results" / "sweeps" / "laptop_isoflop.jsonl"
    assert results.latest("arch_studies.jsonl")  # a shipped file reads from there


def test_outside_the_checkout_the_package_location_finds_them(tmp_path, monkeypatch):
    monkeypatch.delenv(results.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert results.root() == REPO / "bench" / "results"
    monkeypatch.setattr(results, "__file__", str(tmp_path / "site-packages" / "book" / "results.py"))
    with pytest.raises(FileNotFoundError, match=r"no bench/results directory .*\$MINILLM_RESULTS"):
        results.root()
    with pytest.raises(FileNotFoundError, match="no shipped results for kv_cache.jsonl.*python bench/kv_cache.py"):
        results.last("kv_cache.jsonl")
    assert results.records("kv_cache.jsonl", missing_ok=True) == []


def test_the_environment_variable_names_the_results_directory(tmp_results, monkeypatch):
    monkeypatch.chdir(REPO)  # even inside the checkout
    assert results.root() == tmp_results.resolve()
    _write(tmp_results / "arch_studies.jsonl", {"study": "moe", "rows": [1]})
    assert results.latest("arch_studies.jsonl") == {"moe": {"study": "moe", "rows": [1]}}


@pytest.mark.parametrize("name", [n for n in results.MAKERS if n != "sweeps/"])
def test_a_missing_file_says_how_to_get_or_make_it(tmp_results, name):
    command = results.MAKERS[name].format(out=f"bench/results/{name}")  # e.g. "python bench/x.py --out ..."
    assert command.startswith("python bench/") and command.split()[1].endswith(".py")
    assert (REPO / command.split()[1]).is_file()  # the script exists
    with pytest.raises(FileNotFoundError, match=rf"no shipped results at .*{name}\. .*git checkout.*"
                                                rf"`{re.escape(command)}`"):
        results.records(name)
    assert results.records(name, missing_ok=True) == [] and results.last(name, missing_ok=True) is None


def test_every_shipped_file_has_its_maker():
    shipped = {p.name for p in (REPO / "bench" / "results").glob("*.jsonl")}
    assert shipped and shipped <= results.MAKERS.keys()


def test_a_missing_sweep_says_how_to_make_it(tmp_results):
    with pytest.raises(FileNotFoundError, match="no shipped sweep at .*python -m minillm sweep --out "
                                                "bench/results/sweeps/none.jsonl"):
        results.sweep("none.jsonl")


def test_the_shipped_sweep_is_read_and_checked():
    rows = results.sweep()
    assert len(rows) >= 30 and {"run_id", "budget", "val_loss"} <= rows[0].keys()
    assert results.sweep(results.path("sweeps/laptop_isoflop.jsonl")) == rows  # a Path is read as it is


def test_names_must_stay_under_the_results_directory():
    for bad in ("", "../secrets.jsonl", "sweeps/../../x.jsonl"):
        with pytest.raises(ValueError, match="must be a file name under bench/results"):
            results.path(bad)


# ---------------------------------------------------------------------------------------------- reading records


def test_latest_keeps_the_last_record_of_each_key(tmp_results):
    _write(tmp_results / "x.jsonl", {"study": "a", "rows": [1]}, {"study": "b", "rows": [2]}, "",
           {"study": "a", "rows": [3]})
    got = results.latest("x.jsonl")
    assert list(got) == ["a", "b"] and got["a"]["rows"] == [3] and got["b"]["rows"] == [2]
    _write(tmp_results / "e.jsonl", {"experiment": "mix", "rows": [1]}, {"experiment": "mix", "rows": [2]})
    assert results.latest("e.jsonl", key="experiment") == {"mix": {"experiment": "mix", "rows": [2]}}
    assert [r["rows"] for r in results.records("x.jsonl")] == [[1], [2], [3]]  # the file keeps the history


def test_last_filters_and_a_path_is_read_as_given(tmp_path):
    p = _write(tmp_path / "k.jsonl", {"rows": [1]}, {"rows": [2], "smoke": True})
    assert results.last(p)["rows"] == [2]
    assert results.last(p, where=lambda r: not r.get("smoke"))["rows"] == [1]
    assert results.last(p, where=lambda r: False) is None
    assert results.last(tmp_path / "none.jsonl", missing_ok=True) is None
    with pytest.raises(FileNotFoundError, match="no shipped results at .*none.jsonl"):
        results.last(tmp_path / "none.jsonl")


@pytest.mark.parametrize("text, match", [
    ('{"study": "a", "rows": []}\n\n{oops\n', r"x.jsonl:3 is not valid JSON"),
    ('{"study": "a", "rows": []}\n{"study": "b"}\n', r"x.jsonl:2 has no 'study' and 'rows' fields"),
    ('[1, 2]\n', r"x.jsonl:1 has no 'study' and 'rows' fields"),
])
def test_a_malformed_line_is_named_by_its_number(tmp_results, text, match):
    (tmp_results / "x.jsonl").write_text(text)
    with pytest.raises(ValueError, match=match):
        results.latest("x.jsonl")


def _dated(date, **fields):
    return {**fields, "provenance": {"date": date}}


def test_records_are_ordered_by_date_not_by_file_position(tmp_results):
    """Two scripts may append at once, or a record may be re-appended from elsewhere: the newest is the latest
    DATE. Here the second line of the file is the older run."""
    _write(tmp_results / "x.jsonl", _dated("2026-03-02T10:00:00+00:00", study="a", rows=["new"]),
           _dated("2026-03-01T10:00:00+00:00", study="a", rows=["old"]),
           _dated("2026-03-01T12:00:00+00:00", study="b", rows=["b"]))
    assert [r["rows"] for r in results.records("x.jsonl")] == [["old"], ["b"], ["new"]]
    assert results.latest("x.jsonl")["a"]["rows"] == ["new"]
    assert results.last("x.jsonl")["rows"] == ["new"]
    assert results.last("x.jsonl", where=lambda r: r["study"] == "b")["rows"] == ["b"]


def test_undated_records_count_as_oldest_and_equal_dates_keep_file_order(tmp_results):
    _write(tmp_results / "x.jsonl", _dated("2026-01-01T00:00:00+00:00", study="a", rows=["dated"]),
           {"study": "a", "rows": ["undated, later in the file"]},
           {"study": "a", "rows": ["top-level date"], "date": "2025-12-31"},
           _dated("2026-02-01T00:00:00+00:00", study="b", rows=[1]),
           _dated("2026-02-01T00:00:00+00:00", study="b", rows=[2]))
    assert results.date_of({"rows": []}) == "" and results.date_of({"date": "2025-12-31", "rows": []}) == "2025-12-31"
    assert [r["rows"][0] for r in results.records("x.jsonl")] == ["undated, later in the file", "top-level date",
                                                                  "dated", 1, 2]
    got = results.latest("x.jsonl")
    assert got["a"]["rows"] == ["dated"] and got["b"]["rows"] == [2]  # the later of two equal dates


# ---------------------------------------------------------------------------------------------- writing records


def test_append_adds_a_line_under_the_results_directory(tmp_results):
    p = results.append("sub/new.jsonl", {"study": "a", "rows": [1]})
    results.append("sub/new.jsonl", {"study": "a", "rows": [2]})
    assert p == tmp_results.resolve() / "sub" / "new.jsonl"
    assert [r["rows"] for r in results.records("sub/new.jsonl")] == [[1], [2]]


def test_run_studies_appends_a_record_per_study(tmp_path):
    out = tmp_path / "r.jsonl"
    studies = {"a": lambda: [{"x": 1}], "b": lambda: [{"x": 2}, {"x": 3}]}
    recs = list(results.run_studies(studies, out, ["b"], summaries={"b": lambda rows: {"n": len(rows)}},
                                    run={"steps": 5}))
    assert [r["study"] for r in recs] == ["b"] and recs[0]["summary"] == {"n": 2} and recs[0]["run"] == {"steps": 5}
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["provenance"]["command"]
    with pytest.raises(ValueError, match="unknown studies"):
        list(results.run_studies(studies, out, ["c"]))


def test_studies_cli_runs_the_chosen_studies_with_size_and_summary(tmp_results, tmp_path, capsys):
    def make(size):
        return {"a": (lambda: [{"x": size}], lambda rows: {"n": len(rows)}), "b": (lambda: [{"y": 2}], None)}

    out = tmp_path / "elsewhere" / "s.jsonl"
    results.studies_cli("test", "s.jsonl", make, ["--size", "ci", "--only", "a", "--out", str(out)])
    (rec,) = results.records(out)
    assert rec["study"] == "a" and rec["size"] == "ci" and rec["rows"] == [{"x": "ci"}] and rec["summary"] == {"n": 1}
    assert "a: 1 rows" in capsys.readouterr().out
    results.studies_cli("test", "s.jsonl", make, ["--size", "ci", "--only", "b"])  # default --out: the results dir
    assert [r["study"] for r in results.records("s.jsonl")] == ["b"]


# ---------------------------------------------------------------------------------------------- settings of a record


def test_note_outside_a_recording_does_nothing():
    results.note(steps=3)  # no error, and nothing leaks into the next recording
    with results.recording() as seen:
        pass
    assert seen == []


def test_recording_collects_distinct_entries_in_order_as_json():
    class Odd:
        def __repr__(self):
            return "Odd()"

    with results.recording() as seen:
        results.note(steps=3, lr=1e-3)
        results.note(steps=3, lr=1e-3)  # equal: kept once
        results.note(lr=1e-3, steps=3)  # equal as a dict too
        results.note(sizes=((1, 16), (2, 32)), knobs={1: {"digits": (2, 3)}}, obj=Odd(), none=None, flag=True)
        results.note(sizes=[[1, 16], [2, 32]], knobs={"1": {"digits": [2, 3]}}, obj="Odd()", none=None, flag=True)
    assert seen == [{"steps": 3, "lr": 1e-3},
                    {"sizes": [[1, 16], [2, 32]], "knobs": {"1": {"digits": [2, 3]}}, "obj": "Odd()", "none": None,
                     "flag": True}]
    json.dumps(seen, allow_nan=False)  # what run_studies stores: plain JSON


def test_nested_recordings_each_see_what_runs_inside_them_and_close_on_error():
    with results.recording() as outer:
        results.note(phase="setup")
        with results.recording() as inner:
            results.note(phase="study")
            results.note(phase="setup")  # already in the outer one: new to the inner one
        results.note(phase="after")
    assert outer == [{"phase": "setup"}, {"phase": "study"}, {"phase": "after"}]
    assert inner == [{"phase": "study"}, {"phase": "setup"}]
    with pytest.raises(RuntimeError):
        with results.recording() as failed:
            raise RuntimeError("a study failed")
    results.note(phase="later")  # the failed block is closed: it sees nothing more
    assert failed == [] and results._RECORDINGS == []


def test_run_studies_stores_the_settings_of_each_run_a_study_trains(tmp_path):
    """A study that trains a tiny book.runs.Run and notes a setting of its own: its record says both, and the
    next study's record only what that study did."""
    from book.runs import Run, train

    text = "".join(f"the cat sat on mat {i % 7}\n" for i in range(200))
    run = Run(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=2, steps=2, warmup=0, eval_windows=2, seed=3)

    def trains():
        results.note(n_eval=5)
        train(run, text)
        return [{"ok": 1}]

    out = tmp_path / "r.jsonl"
    recs = list(results.run_studies({"trains": trains, "plain": lambda: [{"ok": 2}]}, out))
    (on_disk_a, on_disk_b) = [json.loads(line) for line in out.read_text().splitlines()]
    assert on_disk_a["settings"] == recs[0]["settings"] and on_disk_b["settings"] == recs[1]["settings"] == []
    note, trained = on_disk_a["settings"]
    assert note == {"n_eval": 5}
    assert trained["train"] == "tokens"
    assert {k: trained[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "steps", "batch_size", "lr",
                                    "warmup_steps", "seed", "eval_windows")} == \
        dict(n_layer=1, n_head=2, n_embd=16, block_size=16, steps=2, batch_size=2, lr=run.lr, warmup_steps=0,
             seed=3, eval_windows=2)
    assert trained["params"] > 0 and trained["vocab_size"] == len(set(text))
