"""The Makefile's promises: `make lab` starts JupyterLab, `make test` runs everything at the ci size.

Running `make lab` itself would first build a venv (minutes), so the server is started from the same
command the lab target runs (Makefile LAB_CMD, via `make print-lab-cmd`); see the `lab_server` fixture.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="`make` is not on PATH")


def run_make(*args: str, cwd: Path = REPO_ROOT, check: bool = True) -> subprocess.CompletedProcess:
    # Under `make test` this process inherits the outer make's flags (-n, -j, "Entering directory"
    # messages); the make we start here must behave as if typed at a prompt.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=check, timeout=30)


def make_dry_run(*args: str, cwd: Path = REPO_ROOT) -> str:
    """What make would run (-n), without running it."""
    return run_make("-n", *args, cwd=cwd).stdout


def test_make_lab_serves_jupyterlab(lab_server) -> None:
    with urllib.request.urlopen(lab_server.url("/lab"), timeout=30) as resp:
        assert resp.status == 200
        page = resp.read().decode("utf-8", errors="replace")
    assert "JupyterLab" in page


def test_lab_target_runs_lab_cmd() -> None:
    # The lab recipe's last line must be the very command the server test above started.
    lab_cmd = run_make("-s", "print-lab-cmd").stdout.strip()
    assert "jupyter lab" in lab_cmd
    assert make_dry_run("lab").strip().splitlines()[-1] == lab_cmd


def test_make_test_runs_notebooks_at_ci_size() -> None:
    cmd = make_dry_run("test")
    assert "MINILLM_SIZE=ci" in cmd
    assert "--nbval-lax" in cmd and "--nbval-current-env" in cmd
    assert "--dist loadscope" in cmd
    assert "tests/nbval_sanitize.cfg" in cmd
    assert (REPO_ROOT / "tests" / "nbval_sanitize.cfg").is_file()


def test_setup_installs_torch_first(tmp_path: Path) -> None:
    # In a copy without .venv, setup must: make the venv, pin torch, install the rest, then minillm itself.
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    lines = make_dry_run("setup", "TORCH_VERSION=9.9.9", "TORCH_INDEX_URL=https://example.invalid/whl/cu999",
                         cwd=tmp_path).splitlines()

    def index_of(fragment: str) -> int:
        hits = [i for i, line in enumerate(lines) if fragment in line]
        assert hits, f"no setup step contains {fragment!r}:\n" + "\n".join(lines)
        return hits[0]

    torch_step = index_of('"torch==9.9.9"')
    assert "--index-url https://example.invalid/whl/cu999" in lines[torch_step]
    assert index_of("-m venv .venv") < torch_step < index_of("-r requirements.txt") < index_of("--no-deps -e .")


def test_setup_rejects_old_python(tmp_path: Path) -> None:
    # A python3 older than 3.10 must stop setup, before any venv exists, with a message saying what to do.
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    old = tmp_path / "python3.8"  # answers `-c CODE` like a Python 3.8 would
    old.write_text(
        "#!/bin/sh\n"
        f"exec {shlex.quote(sys.executable)} -c "
        "'import sys; sys.version_info = (3, 8, 0); sys.version = \"3.8.0\"; exec(sys.argv[1])' \"$2\"\n"
    )
    old.chmod(0o755)
    run = run_make("setup", f"PYTHON={old}", cwd=tmp_path, check=False)
    assert run.returncode != 0
    assert "minillm needs Python >= 3.10" in run.stderr and "is 3.8.0" in run.stderr
    assert "make PYTHON=" in run.stderr
    assert not (tmp_path / ".venv").exists()


def test_help_lists_the_targets() -> None:
    out = run_make("-s", "help").stdout
    for target in ("lab", "test", "labs", "setup", "clean"):
        assert any(line.startswith(target) for line in out.splitlines()), f"`make help` lacks {target}:\n{out}"
