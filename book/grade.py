"""Grade a folder of submitted lab notebooks into a gradebook (the teacher's side of `book.grading`).

The labs teach the survey's building blocks (Survey §4.2, architecture; §4.3, training) by having students
implement them; `book.grading.check` tells a student whether one function is right. This module runs every
submission the way a student would, and collects those same check outcomes::

    python -m book.grade labs/00_foundations.ipynb SUBMISSIONS/ --out grades.csv [--reports REPORTS/]
                         [--jobs N] [--cell-timeout S] [--timeout S] [--gradescope results.json] [--unconfined]

For each ``SUBMISSIONS/<student>.ipynb`` (student id = file stem): the notebook is copied into a fresh
temporary folder (the submission itself is never touched), executed there in a fresh Jupyter kernel with
``MINILLM_SIZE=ci``, a per-cell and a per-notebook time limit, errors allowed (so a later, independent part
still runs) and its output capped. ``book.grading.check`` appends each outcome to the file named by
``$MINILLM_GRADE_LOG``; a check of the lab that never logged is ``not_reached``. The gradebook has one row per
student and check plus a ``TOTAL`` row per student; each student also gets a Markdown report with the hints.

Confinement (`book.confine`): each kernel may write only inside its temporary folder (Landlock) and reaches
no network but its own loopback (a network namespace; where user namespaces are disabled, Landlock refuses all
TCP instead). Without Landlock the grader refuses to run unless ``--unconfined`` is given, for a machine that is
itself a throw-away VM or container.

What is trusted: nothing the submission computes, except the check outcomes that `book.grading` logs from inside
the student's kernel; code that deliberately forges them (writes the log, rebinds `book.grading`) can, and is
flagged ``tamper_suspected`` when its source names those internals. See the README's "Running the labs in a
course" for the whole list.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from minillm.io import atomic_write_text

FIELDS = ("student", "check", "status", "points", "max_points", "case", "hint")
TOTAL = "TOTAL"
# Statuses of a check row. Only "passed" earns points.
PASSED, FAILED, TODO, ERROR = "passed", "failed", "todo", "error"
NOT_REACHED, TIMEOUT, INVALID = "not_reached", "timeout", "invalid_notebook"
REFERENCE_USED, SOLUTION_READ, TAMPER = "reference_used", "solution_read", "tamper_suspected"
VERSION_CHECK, VERSION_MISMATCH = "(lab version)", "version_mismatch"
_CHECK_CALL = re.compile(r"""(?:^|[^\w])check\(\s*["']([A-Za-z_]\w*)["']""")  # as book.labs finds them
# A submission that reads or runs the instructor's notebooks (%run, open, nbformat.read, import_ipynb ...).
_SOLUTION_REF = re.compile(r"labs[/\\]+solutions|solutions[/\\]+\d\d_|import_ipynb")
# A submission that touches the grader's channel or the check registry instead of calling `check(...)`.
_TAMPER = re.compile(r"MINILLM_GRADE_LOG|GRADE_LOG_ENV|grading\.core\b|grading\s+import\s+[^\n]*\bcore\b|"
                     r"\bCHECKS\b|\b_run_case\b|\b_call_watched\b|\bsetprofile\b")
_REPO = Path(__file__).resolve().parent.parent  # the kernel imports `book` and `minillm` from here


def lab_checks(lab: Path) -> list[str]:
    """Names of the checks a lab notebook calls, in order of first call (e.g. softmax, cross_entropy)."""
    nb = json.loads(Path(lab).read_text(encoding="utf-8"))
    names: list[str] = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            names += [n for n in _CHECK_CALL.findall(src) if n not in names]
    if not names:
        raise ValueError(f"{lab} calls no grading check (no `check(\"name\", fn)` cell); pass a lab notebook")
    return names


def submitted_version(path: Path) -> str | None:
    """The lab version stamped in a submission's metadata by `book.labs` (None when absent or unreadable)."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8")).get("metadata", {}).get("minillm_lab", {})
        return str(meta["version"]) if isinstance(meta, dict) and "version" in meta else None
    except (OSError, ValueError, AttributeError):
        return None


def check_points(names: list[str]) -> dict[str, int]:
    """Points of each named check, from the lab's own `Check.points` (imports book.grading, hence torch)."""
    from book.grading import CHECKS

    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"the lab calls unregistered checks {unknown}; is book.grading up to date?")
    return {n: CHECKS[n].points for n in names}


# ------------------------------------------------------------------------------------------------
# Executing one submission


def _client_class() -> type:
    """An nbclient NotebookClient that keeps at most `max_output` characters of output per notebook."""
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        def __init__(self, nb: Any, max_output: int, **kw: Any) -> None:
            super().__init__(nb, **kw)
            self._left, self._capped = max_output, False

        def output(self, outs: list, msg: dict, display_id: Any, cell_index: int) -> Any:
            size = len(json.dumps(msg.get("content", {})))
            if size > self._left:  # drop it: megabytes of prints must not fill the grader's memory
                if not self._capped:
                    self._capped = True
                    outs.append({"output_type": "stream", "name": "stderr", "text": "[grader: output capped]\n"})
                return None
            self._left -= size
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient


def _kernel_manager(sandbox: Path, net: str | None) -> Any:
    """A Jupyter kernel manager whose kernel starts through `book.confine` (``net=None``: unconfined).

    The client talks to the kernel over Unix sockets in ``sandbox`` (``transport="ipc"``): a kernel inside its
    own network namespace could not be reached on the grader's 127.0.0.1.
    """
    from jupyter_client.manager import AsyncKernelManager

    class ConfinedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            cmd = super().format_kernel_cmd(extra_arguments)
            if net is None:
                return cmd
            return [sys.executable, "-m", "book.confine", "--write", str(sandbox), "--net", net, "--", *cmd]

    (sandbox / "ipc").mkdir()
    return ConfinedKernelManager(kernel_name="python3", transport="ipc", ip=str(sandbox / "ipc" / "kernel"))


def execute(path: Path, checks: list[str], cell_timeout: float = 120, timeout: float = 600,
            max_output: int = 1_000_000, threads: int | None = None,
            net: str | None = "namespace") -> tuple[dict[str, dict], str]:
    """Run one submission in a temporary copy; return (check -> outcome record, note for the whole notebook).

    An outcome record has the keys of a `book.grading` log line (status, case, message, hint, fn_module).
    Never raises for anything the submission does: a broken notebook becomes ``invalid_notebook`` records.
    ``threads`` caps the kernel's BLAS/torch threads (OMP_NUM_THREADS), so parallel kernels do not oversubscribe.
    ``net`` is `book.confine`'s network mode ("namespace" or "landlock-tcp"); None runs the kernel unconfined.
    """
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    def everyone(status: str, message: str) -> dict[str, dict]:
        return {c: {"status": status, "case": "", "message": message, "hint": message} for c in checks}

    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8", errors="replace"), as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # not JSON, not a notebook, wrong schema
        msg = f"not a valid Jupyter notebook ({type(err).__name__}: {str(err)[:200]}); re-save it in Jupyter"
        return everyone(INVALID, msg), msg
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code:
        return everyone(INVALID, "the notebook has no code cells"), "the notebook has no code cells"
    suspicious = any(_SOLUTION_REF.search(c.source) for c in code)
    tampering = any(_TAMPER.search(c.source) for c in code)

    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        sandbox = Path(tmp)  # the only folder the kernel may write in: the copy, its home, caches, the log
        work, log = sandbox / "work", sandbox / "log.jsonl"
        for sub in ("work", "home", "tmp"):
            (sandbox / sub).mkdir()
        shutil.copy(path, work / path.name)  # the kernel may write or delete here; the submission stays intact
        home, scratch = str(sandbox / "home"), str(sandbox / "tmp")
        env = {**os.environ, "MINILLM_SIZE": "ci", "MINILLM_GRADE_LOG": str(log), "MPLBACKEND": "Agg",
               "PYTHONPATH": os.pathsep.join(p for p in (str(_REPO), os.environ.get("PYTHONPATH", "")) if p),
               # caches and scratch files (IPython history, matplotlib, torch.compile, Triton) stay in the sandbox
               "HOME": home, "TMPDIR": scratch, "IPYTHONDIR": os.path.join(home, ".ipython"),
               "MPLCONFIGDIR": os.path.join(home, ".matplotlib"), "XDG_CACHE_HOME": os.path.join(home, ".cache"),
               "PYTHONDONTWRITEBYTECODE": "1"}
        if threads is not None:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        client = _client_class()(nb, max_output, km=_kernel_manager(sandbox, net), timeout=cell_timeout,
                                 allow_errors=True, kernel_name="python3", resources={"metadata": {"path": str(work)}},
                                 startup_timeout=120)
        note, deadline = "", time.monotonic() + timeout
        try:
            with client.setup_kernel(env=env, cwd=str(work), cleanup_kc=True):
                for i, cell in enumerate(nb.cells):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise CellTimeoutError(f"the notebook ran past its {timeout:.0f} s limit")
                    client.timeout = max(1, int(min(cell_timeout, left)))
                    client.execute_cell(cell, i)
        except CellTimeoutError:
            note = f"timed out (limits: {cell_timeout:.0f} s per cell, {timeout:.0f} s per notebook)"
        except DeadKernelError:
            note = "the kernel died (the notebook exited the process or ran out of memory)"
        except Exception as err:  # the kernel would not start, or nbclient failed: grade what was logged
            note = f"execution stopped: {type(err).__name__}: {str(err)[:200]}"
        outcomes: dict[str, dict] = {}
        if log.is_file():
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and rec.get("check") in checks:
                    outcomes[rec["check"]] = rec  # the last run of a check is the one that counts
    unreached = TIMEOUT if note.startswith("timed out") else ERROR if note else NOT_REACHED
    for c in checks:
        rec = outcomes.setdefault(c, {"status": unreached, "case": "", "message": note or "check never ran",
                                      "hint": note or "an earlier cell raised, so this check never ran"})
        if rec.get("status") == "shortcut":  # book.grading's call watch: the function called a shortcut
            rec["status"] = REFERENCE_USED
        elif rec.get("status") == PASSED and str(rec.get("fn_module", "")).split(".")[0] == "minillm":
            rec.update(status=REFERENCE_USED, hint=f"you passed minillm's own {rec['fn_module']} function; "
                                                     "implement it yourself")
        if suspicious:
            rec.update(status=SOLUTION_READ, hint="the notebook reads the instructor's solution notebooks")
        elif tampering:
            rec.update(status=TAMPER, hint="the notebook touches the grader's log or check registry "
                                           "(MINILLM_GRADE_LOG, book.grading.core, CHECKS); a teacher must review it")
    return outcomes, note


# ------------------------------------------------------------------------------------------------
# Gradebook, reports


def grade_rows(student: str, outcomes: dict[str, dict], points: dict[str, int]) -> list[dict]:
    """One row per check plus a TOTAL row; only `passed` earns the check's points."""
    rows = [{"student": student, "check": c, "status": outcomes[c]["status"],
             "points": points[c] if outcomes[c]["status"] == PASSED else 0, "max_points": points[c],
             "case": outcomes[c].get("case", ""),
             "hint": outcomes[c].get("hint", "") or outcomes[c].get("message", "")} for c in points]
    got, most = sum(r["points"] for r in rows), sum(points.values())
    status = "complete" if got == most else "partial"
    rows.append({"student": student, "check": TOTAL, "status": status, "points": got, "max_points": most,
                 "case": "", "hint": ""})
    return rows


def report(student: str, lab: str, rows: list[dict], note: str, confinement: str = "") -> str:
    """Markdown report for one student: each check's status, and the hint they got."""
    total = rows[-1]
    lines = [f"# {lab}: report for {student}", "", f"Score: **{total['points']} / {total['max_points']}**", ""]
    if confinement:
        lines += [f"Ran in a fresh kernel, {confinement}.", ""]
    if note:
        lines += [f"Note: {note}", ""]
    lines += ["| check | status | points | failing case | hint |", "|---|---|---|---|---|"]
    for r in rows[:-1]:
        if r["check"] == VERSION_CHECK:
            continue  # said in the note above the table
        cells = [str(r[k]).replace("|", "\\|").replace("\n", " ") for k in ("check", "status", "points", "case", "hint")]
        cells[2] = f"{r['points']} / {r['max_points']}"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def gradescope(rows: list[dict]) -> dict:
    """Gradescope autograder results (one submission): {"score", "tests": [{name, score, max_score, status, output}]}."""
    tests = [{"name": r["check"], "score": r["points"], "max_score": r["max_points"],
              "status": "passed" if r["status"] == PASSED else "failed",
              "output": r["status"] + (f": case '{r['case']}'" if r["case"] else "") + (f". {r['hint']}" if r["hint"] else "")}
             for r in rows if r["check"] not in (TOTAL, VERSION_CHECK)]
    return {"score": sum(t["score"] for t in tests), "tests": tests}


def _grade_one(args: tuple) -> tuple[str, list[dict], str]:
    path, points, version, cell_timeout, timeout, max_output, threads, net = args
    outcomes, note = execute(Path(path), list(points), cell_timeout, timeout, max_output, threads, net)
    student = Path(path).stem
    rows = grade_rows(student, outcomes, points)
    theirs = submitted_version(Path(path))
    if theirs is not None and theirs != version:  # graded anyway, against today's checks; the teacher decides
        mismatch = f"submitted for lab version {theirs}, graded against version {version}"
        note = f"{note}; {mismatch}" if note else mismatch
        rows.insert(-1, {"student": student, "check": VERSION_CHECK, "status": VERSION_MISMATCH, "points": 0,
                         "max_points": 0, "case": "", "hint": mismatch})
    return student, rows, note


def grade(lab: Path, submissions: Path, out: Path, reports: Path | None = None, jobs: int = 1,
          cell_timeout: float = 120, timeout: float = 600, max_output: int = 1_000_000,
          gradescope_out: Path | None = None, confine: bool = True) -> list[dict]:
    """Grade every ``*.ipynb`` in ``submissions``; write the CSV (atomically) and reports; return the rows.

    ``confine=False`` runs the kernels with the grader's own rights (only inside a throw-away VM or container);
    with ``confine=True`` a machine that cannot confine them (`book.confine.available`) is an error.
    """
    lab, submissions, out = Path(lab), Path(submissions), Path(out)
    if not submissions.is_dir():
        raise FileNotFoundError(f"no submissions folder {submissions}")
    paths = sorted(submissions.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no *.ipynb submissions in {submissions}")
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if gradescope_out is not None and len(paths) != 1:
        raise ValueError(f"--gradescope writes one submission's results.json (Gradescope runs the autograder once per "
                         f"submission), but {submissions} holds {len(paths)} notebooks; upload exactly one .ipynb")
    points = check_points(lab_checks(lab))
    from book.grading.core import lab_version

    version = lab_version(list(points))
    net, confinement = None, "unconfined (--unconfined)"
    if confine:
        from book.confine import available

        support = available()
        if not support.landlock or not support.network:
            raise RuntimeError(f"cannot confine the student kernels on this machine ({support.describe()}; needs "
                               "Linux >= 5.13 with Landlock, and user namespaces or Landlock ABI >= 4). Grade "
                               "inside a throw-away VM or container and pass --unconfined.")
        net, confinement = support.network, support.describe()
    # each of `jobs` kernels gets an equal share of the cores (torch would otherwise start one thread per core)
    threads = None if jobs == 1 else max(1, (os.cpu_count() or 1) // jobs)
    work = [(str(p), points, version, cell_timeout, timeout, max_output, threads, net) for p in paths]
    if jobs == 1:
        results = [_grade_one(w) for w in work]
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(_grade_one, work))
    rows = [r for _, student_rows, _ in results for r in student_rows]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, buf.getvalue())
    reports = Path(reports) if reports is not None else out.parent / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    for student, student_rows, note in results:
        atomic_write_text(reports / f"{student}.md", report(student, lab.stem, student_rows, note, confinement))
    if gradescope_out is not None:  # Gradescope grades one submission per run
        atomic_write_text(Path(gradescope_out), json.dumps(gradescope(results[0][1]), indent=1) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m book.grade", description=__doc__.split("\n\n")[0])
    p.add_argument("lab", type=Path, help="the lab's student notebook, e.g. labs/00_foundations.ipynb")
    p.add_argument("submissions", type=Path, help="folder of submitted notebooks, one <student>.ipynb each")
    p.add_argument("--out", type=Path, default=Path("grades.csv"), help="gradebook CSV (default: %(default)s)")
    p.add_argument("--reports", type=Path, default=None, help="folder of per-student reports (default: next to --out)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel processes")
    p.add_argument("--cell-timeout", type=float, default=120, help="seconds per cell (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per notebook (default: %(default)s)")
    p.add_argument("--max-output", type=int, default=1_000_000, help="characters of output kept per notebook")
    p.add_argument("--gradescope", type=Path, default=None, help="also write Gradescope results.json")
    p.add_argument("--unconfined", action="store_true",
                   help="run kernels without write/network confinement (only in a throw-away VM or container)")
    a = p.parse_args(argv)
    try:
        rows = grade(a.lab, a.submissions, a.out, a.reports, a.jobs, a.cell_timeout, a.timeout, a.max_output,
                     a.gradescope, confine=not a.unconfined)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    totals = [r for r in rows if r["check"] == TOTAL]
    print(f"graded {len(totals)} submission(s) into {a.out}")
    for r in totals:
        print(f"  {r['student']}: {r['points']} / {r['max_points']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
