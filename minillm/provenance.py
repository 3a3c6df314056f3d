"""Provenance of measured results: what ran, where, with which code and versions, and when.

Survey §2.1 and §4.3 report numbers (losses, throughputs, fitted exponents) that only mean something with
their setting attached. Every benchmark and sweep in this project appends JSON records built here, so a
figure shipped in `bench/results/` always says the command, machine, versions, date and the code that produced
it: the git commit of the checkout minillm was imported from and whether it had uncommitted changes.
"""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minillm import __version__


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """command, UTC date, host (platform, cores, torch threads, GPU name) and package versions."""

    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name == "__main__.py" and Path(argv[0]).parent.name == "minillm":
        argv[0:1] = ["-m", "minillm"]  # `python -m minillm ...` puts the module's file path in argv[0]
    host: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        host["gpu"] = torch.cuda.get_device_name()
    if hasattr(os, "getloadavg"):
        host["loadavg_1m"] = round(os.getloadavg()[0], 2)  # a busy machine explains a slow number
    return {
        "command": " ".join(["python", *argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
        "host": host,
        "versions": {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": np.__version__,
                     "minillm": __version__, "cuda": torch.version.cuda, "triton": _version_of("triton")},
    }


def git_state(where: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """{"commit": sha, "dirty": bool} of the git checkout holding `where` (default: this package's source), or
    None outside a checkout (an installed wheel) or without git. dirty: uncommitted changes to tracked files."""
    where = Path(where) if where is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _version_of(package: str) -> str | None:
    """Installed version of `package`, or None when it is not installed (read from metadata: no import)."""

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync it: earlier lines are never rewritten, so no result is ever lost."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
