"""book.grade: a folder of crafted lab-00 submissions becomes the expected gradebook, reports and Gradescope JSON.

The submissions are built here from the lab's own solution notebook with nbformat (no committed fixtures): full
marks, a partial one, and each misbehaviour a grader meets in practice.
"""
import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from book import confine, grade, grading

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "labs" / "00_foundations.ipynb"
SOLUTION = REPO / "labs" / "solutions" / "00_foundations.ipynb"
CHECKS = ["softmax", "cross_entropy", "attention_head"]


def _solution() -> nbformat.NotebookNode:
    """The solution up to its last check (the training demo after it earns no points and costs each kernel seconds;
    test_gradescope.py and nbval run the whole notebook)."""
    nb = nbformat.read(SOLUTION, as_version=4)
    nb.cells = nb.cells[:_index(nb, 'grading.check("attention_head"') + 1]
    return nb


def _index(nb, prefix: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.startswith(prefix))


def _with(prefix: str, source: str, after: bool = False) -> nbformat.NotebookNode:
    """The solution with the cell starting with ``prefix`` replaced by (or followed by) ``source``."""
    nb = _solution()
    i = _index(nb, prefix)
    if after:
        nb.cells.insert(i + 1, nbformat.v4.new_code_cell(source))
    else:
        nb.cells[i] = nbformat.v4.new_code_cell(source)
    return nb


NAIVE = "import torch\ndef softmax(x, dim):\n    e = torch.exp(x)\n    return e / e.sum(dim, keepdim=True)\n"
# A wrapper around torch's softmax: its own function (module __main__), so only the call watch can catch it.
WRAPPED = "import torch\ndef softmax(x, dim):\n    return helper(x, dim)\ndef helper(x, dim):\n    return x.softmax(dim)\n"
SUPPORT = confine.available()
CONFINED = bool(SUPPORT.landlock and SUPPORT.network)


def _escape(outside: Path, port: int) -> str:
    """A cell that tries to write and delete outside its copy and to reach the grader's loopback, then deletes
    every file of its own copy."""
    return (f"import os, socket, subprocess\n"
            f"for attempt in (lambda: open({str(outside / 'escaped.txt')!r}, 'w').write('x'),\n"
            f"                lambda: os.remove({str(outside / 'keep.txt')!r}),\n"
            f"                lambda: subprocess.run(['touch', {str(outside / 'touched')!r}]),\n"
            f"                lambda: socket.create_connection(('127.0.0.1', {port}), timeout=2)):\n"
            f"    try:\n        attempt()\n    except OSError:\n        pass\n"
            f"for f in os.listdir('.'):  # its own copy: allowed, and harmless to the submission\n"
            f"    os.remove(f)\n")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    subs, outside = tmp_path_factory.mktemp("subs"), tmp_path_factory.mktemp("outside")
    (outside / "keep.txt").write_text("the teacher's file")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    nbs = {
        "full": _solution(),
        "stub": nbformat.read(LAB, as_version=4),
        "partial": _with("def softmax(", NAIVE),
        "first_cell_raises": _with("import math", "raise RuntimeError('broken import cell')"),
        "loops": _with('grading.check("softmax"', "while True:\n    pass", after=True),
        "prints": _with('grading.check("softmax"', "print('x' * 5_000_000)", after=True),
        "reference": _with("def softmax(", "from minillm.model.layers import softmax"),
        "solution_run": _with("import math", f"%run {SOLUTION}", after=True),
        "dies": _with('grading.check("softmax"', "import os\nos._exit(1)", after=True),
        "empty": nbformat.v4.new_notebook(),
        "old_version": _solution(),
        "wrapped": _with("def softmax(", WRAPPED),
        "tamper": _with('grading.check("softmax"', "import os\nopen(os.environ['MINILLM_GRADE_LOG'], 'a')", after=True),
        "escape": _with("import math", _escape(outside, listener.getsockname()[1]), after=True),
    }
    nbs["old_version"].metadata["minillm_lab"] = {"name": "00_foundations", "version": "000000000000"}
    for name, nb in nbs.items():
        nbformat.write(nb, subs / f"{name}.ipynb")
    (subs / "not_json.ipynb").write_text("this is not a notebook {", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in subs.iterdir()}
    out = tmp_path_factory.mktemp("out")
    grade.grade(LAB, subs, out / "grades.csv", jobs=2, cell_timeout=10, timeout=120, max_output=100_000,
                confine=CONFINED)
    try:
        listener.accept()[0].close()
        reached = True
    except (socket.timeout, BlockingIOError):
        reached = False
    listener.close()
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    book = {(r["student"], r["check"]): r for r in rows}
    return {"rows": rows, "book": book, "out": out, "subs": subs, "before": before, "outside": outside,
            "reached": reached}


def _statuses(graded, student):
    return [graded["book"][(student, c)]["status"] for c in CHECKS]


def test_gradebook_layout(graded):
    students = sorted({r["student"] for r in graded["rows"]})
    assert len(students) == 15
    assert list(graded["rows"][0]) == list(grade.FIELDS)
    # one row per check + TOTAL per student, and one version_mismatch row
    assert len(graded["rows"]) == 15 * (len(CHECKS) + 1) + 1


def test_full_marks_and_stub(graded):
    assert _statuses(graded, "full") == ["passed"] * 3
    total = graded["book"][("full", "TOTAL")]
    assert (total["status"], total["points"], total["max_points"]) == ("complete", "3", "3")
    assert _statuses(graded, "stub") == ["todo"] * 3
    assert graded["book"][("stub", "TOTAL")]["points"] == "0"
    assert "not implemented" in graded["book"][("stub", "softmax")]["hint"]


def test_partial_names_the_failing_case_and_hint(graded):
    row = graded["book"][("partial", "softmax")]
    assert row["status"] == "failed" and row["points"] == "0"
    assert "large logits" in row["case"] and "subtract the maximum" in row["hint"]
    # cross-entropy is independent and still earns its point; the attention head uses the broken softmax
    assert graded["book"][("partial", "cross_entropy")]["status"] == "passed"
    assert graded["book"][("partial", "attention_head")]["status"] == "failed"
    assert graded["book"][("partial", "TOTAL")]["points"] == "1"


def test_misbehaviour_rows(graded):
    assert _statuses(graded, "not_json") == ["invalid_notebook"] * 3
    assert _statuses(graded, "empty") == ["invalid_notebook"] * 3
    assert _statuses(graded, "first_cell_raises") == ["not_reached"] * 3  # `grading` was never imported
    assert _statuses(graded, "loops") == ["passed", "timeout", "timeout"]
    assert _statuses(graded, "prints") == ["passed"] * 3  # output capped, grading unaffected
    assert _statuses(graded, "reference") == ["reference_used", "passed", "passed"]
    assert _statuses(graded, "solution_run") == ["solution_read"] * 3
    assert _statuses(graded, "dies") == ["passed", "error", "error"]
    # a wrapper that calls Tensor.softmax: caught by the call watch (inside an attention head softmax is allowed)
    assert _statuses(graded, "wrapped") == ["reference_used", "passed", "passed"]
    assert "torch.Tensor.softmax" in graded["book"][("wrapped", "softmax")]["hint"]
    assert _statuses(graded, "tamper") == ["tamper_suspected"] * 3
    assert graded["book"][("tamper", "TOTAL")]["points"] == "0"
    for student in ("not_json", "loops", "reference", "solution_run", "dies"):
        assert graded["book"][(student, "TOTAL")]["status"] == "partial"
    assert graded["book"][("loops", "TOTAL")]["points"] == "1"


@pytest.mark.skipif(not CONFINED, reason=f"this machine cannot confine kernels: {SUPPORT.describe()}")
def test_escape_is_confined(graded):
    """Writes outside the copy, a child process's writes and a connection to the grader's loopback all fail."""
    assert sorted(p.name for p in graded["outside"].iterdir()) == ["keep.txt"]
    assert (graded["outside"] / "keep.txt").read_text() == "the teacher's file"
    assert not graded["reached"]
    assert _statuses(graded, "escape") == ["passed"] * 3  # the rest ran normally, though it emptied its own copy
    assert "writes confined to the copy" in (graded["out"] / "reports" / "escape.md").read_text()


@pytest.mark.skipif(SUPPORT.landlock < 4, reason="Landlock TCP rules need ABI >= 4 (Linux >= 6.7)")
def test_kernel_runs_under_the_landlock_tcp_fallback():
    """Where user namespaces are off, the kernel still starts and reports (the client talks over Unix sockets)."""
    outcomes, note = grade.execute(LAB, CHECKS, cell_timeout=30, timeout=120, net="landlock-tcp")
    assert [outcomes[c]["status"] for c in CHECKS] == ["todo"] * 3 and note == ""


def test_unconfinable_machine_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(confine, "available", lambda: confine.Support(landlock=0, netns=False))
    (tmp_path / "subs").mkdir()
    nbformat.write(_solution(), tmp_path / "subs" / "a.ipynb")
    with pytest.raises(RuntimeError, match="--unconfined"):
        grade.grade(LAB, tmp_path / "subs", tmp_path / "grades.csv")
    assert not (tmp_path / "grades.csv").exists()


def test_version_mismatch_is_flagged_and_graded_anyway(graded):
    version = grading.core.lab_version(CHECKS)
    assert nbformat.read(LAB, as_version=4).metadata["minillm_lab"] == {"name": "00_foundations", "version": version}
    row = graded["book"][("old_version", "(lab version)")]
    assert row["status"] == "version_mismatch" and row["max_points"] == "0"
    assert row["hint"] == f"submitted for lab version 000000000000, graded against version {version}"
    assert _statuses(graded, "old_version") == ["passed"] * 3
    assert graded["book"][("old_version", "TOTAL")]["points"] == "3"
    assert ("stub", "(lab version)") not in graded["book"]  # the committed student notebook carries today's version
    assert "graded against version" in (graded["out"] / "reports" / "old_version.md").read_text()


def test_lab_version_changes_with_the_checks():
    v = grading.core.lab_version(CHECKS)
    assert len(v) == 12 and v == grading.core.lab_version(CHECKS)
    assert v != grading.core.lab_version(CHECKS[:2]) and v != grading.core.lab_version(CHECKS[::-1])
    with pytest.raises(ValueError, match="no checks named"):
        grading.core.lab_version(["not_a_check"])


def test_submissions_untouched_and_reports(graded):
    assert {p.name: p.read_bytes() for p in graded["subs"].iterdir()} == graded["before"]
    report = (graded["out"] / "reports" / "partial.md").read_text()
    assert "Score: **1 / 3**" in report and "| softmax | failed | 0 / 1 | large logits" in report
    assert "timed out" in (graded["out"] / "reports" / "loops.md").read_text()


def test_gradescope_needs_one_submission(graded, tmp_path):
    with pytest.raises(ValueError, match="holds 15 notebooks"):
        grade.grade(LAB, graded["subs"], tmp_path / "g.csv", gradescope_out=tmp_path / "results.json")
    assert not (tmp_path / "g.csv").exists()


@pytest.mark.parametrize("source, flagged", [
    ("import os\nos.environ['MINILLM_GRADE_LOG']", True),
    ("from book.grading import core\ncore._log('softmax', 'passed', f)", True),
    ("import book.grading.core as c", True),
    ("grading.CHECKS['softmax'] = None", True),
    ("import sys\nsys.setprofile(None)", True),
    ("def _log(x):\n    return torch.log(x)", False),  # a student's own helper names
    ("def my_compare(a, b):\n    return a == b\ngrading.check('softmax', softmax)", False),
    ("from book import grading\ngrading.list_checks()", False),
])
def test_tamper_heuristic(source, flagged):
    assert bool(grade._TAMPER.search(source)) == flagged


def test_grade_rows_and_gradescope_hand_values():
    outcomes = {"a": {"status": "passed"}, "b": {"status": "failed", "case": "c1", "hint": "h"}}
    rows = grade.grade_rows("s", outcomes, {"a": 2, "b": 3})
    assert [(r["check"], r["points"], r["max_points"]) for r in rows] == [("a", 2, 2), ("b", 0, 3), ("TOTAL", 2, 5)]
    gs = grade.gradescope(rows)
    assert gs["score"] == 2 and gs["tests"][1] == {"name": "b", "score": 0, "max_score": 3, "status": "failed",
                                                  "output": "failed: case 'c1'. h"}


def test_lab_checks_reads_the_lab():
    assert grade.lab_checks(LAB) == CHECKS
    assert grade.check_points(CHECKS) == {c: 1 for c in CHECKS}


def test_check_logs_each_outcome(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("MINILLM_GRADE_LOG", str(log))
    def stable(x, dim):
        e = (x - x.amax(dim, keepdim=True)).exp()
        return e / e.sum(dim, keepdim=True)

    grading.check("softmax", stable)
    with pytest.raises(AssertionError):
        grading.check("softmax", lambda x, dim: torch.exp(x) / torch.exp(x).sum(dim, keepdim=True))

    def stub(x, dim):
        raise NotImplementedError

    with pytest.raises(NotImplementedError):
        grading.check("softmax", stub)
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["status"] for r in recs] == ["passed", "failed", "todo"]
    assert recs[1]["case"] == "large logits (|x| up to ~1e4)" and "subtract the maximum" in recs[1]["hint"]
    assert recs[0]["fn_module"] == __name__
    from minillm.model.layers import softmax

    with pytest.raises(AssertionError, match="calls minillm.model.layers.softmax"):
        grading.check("softmax", softmax)
    last = json.loads(log.read_text().splitlines()[-1])
    assert (last["status"], last["fn_module"]) == ("shortcut", "minillm.model.layers")


def test_check_points_validated():
    with pytest.raises(ValueError, match="points"):
        grading.Check(name="x", summary="", hint="", reference=torch.relu,
                      cases=(grading.Case("c", lambda: (torch.zeros(1),)),), points=-1)


def test_cli_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "book.grade", str(LAB), str(tmp_path / "missing")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "no submissions folder" in r.stderr
