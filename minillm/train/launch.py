"""Launch N training processes with torchrun from Python: notebooks, tests and benches. Survey §4.3.2.

`torchrun(argv, nproc)` runs `python -m torch.distributed.run --nproc_per_node=nproc argv...` on this machine
(rendezvous on 127.0.0.1 and a free port) and returns its output. It never hangs and never leaves workers behind:
the launcher gets a session of its own, so on a timeout the whole process group is killed, and a failed run
raises with the tail of what the workers printed.

    torchrun(["-m", "minillm", "train", "--data", "data/story", "--parallel", "ddp", ...], nproc=2)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from minillm.train.parallel.group import free_port


@dataclass(frozen=True)
class LaunchResult:
    returncode: int
    stdout: str
    stderr: str


def torchrun(argv: Sequence[str], nproc: int = 2, *, timeout_s: float = 120, cwd: str | os.PathLike | None = None,
             threads_per_process: int = 1, check: bool = True) -> LaunchResult:
    """Run `argv` (a script path or "-m module" and its arguments) on `nproc` local processes under torchrun.

    Each worker gets OMP_NUM_THREADS=threads_per_process (so N CPU processes do not oversubscribe the cores).
    check=True raises RuntimeError on a non-zero exit, with the last lines of stderr; a timeout always raises.
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc={nproc!r} must be a positive int")
    if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"argv must be a non-empty list of str, e.g. ['-m', 'minillm', 'train', ...]; got {argv!r}")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", *argv]
    # Workers import minillm from this same copy, installed or not: the directory holding the package goes first.
    package_parent = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_process),
           "PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        signal_tree(proc.pid, signal.SIGKILL)  # torchrun and every worker it started
        proc.communicate()
        raise RuntimeError(f"torchrun with {nproc} processes did not finish within {timeout_s} s; all its "
                           f"processes were killed. Command: {' '.join(cmd)}") from None
    result = LaunchResult(proc.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-25:])
        raise RuntimeError(f"torchrun with {nproc} processes failed (exit code {proc.returncode}):\n{tail}")
    return result


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux: /proc/PID/task/TID/children; elsewhere none are found)."""
    out, todo = [], [pid]
    while todo:
        for children in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                kids = [int(c) for c in children.read_text().split()]
            except OSError:  # the task ended while we looked
                continue
            out += kids
            todo += kids
    return out


def signal_tree(pid: int, sig: int) -> None:
    """Send `sig` to the process group of `pid` (a child started with start_new_session) and to every descendant.
    torchrun starts each worker in a session of its own, so signalling the launcher's group alone would leave the
    workers running, holding the output pipes open: the caller would wait for them to finish anyway."""
    victims = _descendants(pid)
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    for child in victims:
        try:
            os.kill(child, sig)
        except ProcessLookupError:
            pass
