"""Package one lab as a Gradescope autograder: the zip a course uploads, which runs `book.grade` per submission.

    python -m book.gradescope labs/00_foundations.ipynb --out autograder.zip

Gradescope builds a container from the zip once (``setup.sh``: Python venv, torch's CPU wheel, requirements.txt,
minillm) and then runs ``run_autograder`` for every submission: it grades the notebook(s) a student uploaded to
``/autograder/submission`` with ``python -m book.grade ... --gradescope /autograder/results/results.json`` and
Gradescope shows each check as a test with its points and hint. The container is itself Gradescope's throw-away
sandbox, one per submission, so the grader runs ``--unconfined`` there (Docker's seccomp profile may refuse
Landlock and namespaces). The zip holds the code a kernel imports (``minillm/``, ``book/``), the lab's student
notebook, the shipped corpora and records, and the install files; no tests, chapters or solutions.
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
import zipfile
from pathlib import Path

from minillm.io import atomic_write

_REPO = Path(__file__).resolve().parent.parent
# What a kernel needs: the two packages, the shipped corpora (labs 03 and 09 read them), the shipped records (lab 01
# fits a sweep) and the install files: every path git tracks under these, about 1 MB zipped without data, 8 MB with.
_SHIPPED = ("minillm", "book", "data", "bench/results", "pyproject.toml", "requirements.txt", "README.md")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder's image (network available).
set -euo pipefail
cd /autograder/source
apt-get update -q && apt-get install -y -q python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install -q "torch=={torch}" --index-url https://download.pytorch.org/whl/cpu
/autograder/venv/bin/pip install -q -r requirements.txt
/autograder/venv/bin/pip install -q --no-deps -e .
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this once per submission. AUTOGRADER and PYTHON can be overridden to try it locally.
set -uo pipefail
root="${{AUTOGRADER:-/autograder}}"
python="${{PYTHON:-$root/venv/bin/python}}"
mkdir -p "$root/results"
cd "$root/source"
"$python" -m book.grade {lab} "$root/submission" --out "$root/results/grades.csv" \\
    --reports "$root/results/reports" --gradescope "$root/results/results.json" --unconfined {limits}
status=$?
if [ ! -s "$root/results/results.json" ]; then  # the grader itself failed: tell the student, score 0
    printf '{{"score": 0, "output": "The autograder could not grade this submission (exit %s). Upload exactly one .ipynb file, the lab notebook."}}\\n' "$status" > "$root/results/results.json"
fi
"""


def _tracked(paths: tuple[str, ...]) -> list[str]:
    """Files git tracks under ``paths`` (so caches, .venv and build outputs never ship)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *paths], cwd=_REPO, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise ValueError(f"{_REPO} is not a git checkout (or git is missing): the autograder packs the files git "
                         "tracks, so run python -m book.gradescope from a clone of the repository") from None
    return sorted(p for p in out.stdout.decode().split("\0") if p)


def build(lab: Path, out: Path, cell_timeout: float = 120, timeout: float = 600) -> list[str]:
    """Write the autograder zip for ``lab`` (a student notebook under labs/) to ``out``; return its file names."""
    lab = Path(lab).resolve()
    try:
        lab_rel = lab.relative_to(_REPO).as_posix()
    except ValueError:
        raise ValueError(f"{lab} is not inside the repository {_REPO}; pass labs/NN_name.ipynb") from None
    if not lab.is_file() or not lab_rel.startswith("labs/") or "/solutions/" in lab_rel:
        raise ValueError(f"{lab_rel}: pass a student lab notebook such as labs/00_foundations.ipynb")
    from book.grade import check_points, lab_checks

    check_points(lab_checks(lab))  # fails early for a notebook without registered checks
    import torch

    files = [*_tracked(_SHIPPED), lab_rel]
    limits = f"--cell-timeout {cell_timeout:g} --timeout {timeout:g}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", SETUP_SH.format(torch=torch.__version__.split("+")[0])),
                           ("run_autograder", RUN_AUTOGRADER.format(lab=lab_rel, limits=limits))):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16  # executable, as Gradescope requires
            z.writestr(info, text)
        for f in files:  # Gradescope unpacks the whole zip into /autograder/source (run_autograder is copied up)
            z.write(_REPO / f, f)
    atomic_write(Path(out), lambda f: f.write(buf.getvalue()))
    return ["setup.sh", "run_autograder", *files]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m book.gradescope", description=__doc__.split("\n\n")[0])
    p.add_argument("lab", type=Path, help="the lab's student notebook, e.g. labs/00_foundations.ipynb")
    p.add_argument("--out", type=Path, default=Path("autograder.zip"), help="zip to write (default: %(default)s)")
    p.add_argument("--cell-timeout", type=float, default=120, help="seconds per cell (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per notebook (default: %(default)s)")
    a = p.parse_args(argv)
    try:
        names = build(a.lab, a.out, a.cell_timeout, a.timeout)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}: {len(names)} files; upload it as the assignment's autograder on Gradescope")
    return 0


if __name__ == "__main__":
    sys.exit(main())
