"""What bench/kernel_speed.py and bench/mfu.py share so that a short GPU lease loses nothing: rows written to disk the
moment they are measured, a time budget that stops a run cleanly, a SIGTERM that does the same, and a table
printed as the rows come in. Not a script (the leading underscore): the benches import it from their folder.

    log = RowLog(path, "kernels", {"device": ..., "dtype": ...})   # path None: print only, write nothing
    log.row(row)                                                     # one line, fsynced, per measured row
    log.run({"rows": rows, "summary": ...})                          # the run's record, last

Every line of the JSONL file is a record with a "rows" field (book.results reads any of them): a row line is
{"record": "row", "run_id", ..., "rows": [row], "provenance"}; the run's record, written at the end (also after a
budget stop or a SIGTERM), is {"record": "run", "run_id", ..., "rows": [every row], "skipped": ..., "complete"}.
A run killed outright (SIGKILL, a lost machine) leaves its row lines: group them by run_id to recover it.
"""
from __future__ import annotations

import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class Stopped(Exception):
    """SIGTERM arrived (a caller's time limit): stop measuring and write what was measured."""


_STOP: list[str] = []  # why a stop was requested (SIGTERM), once it was


def stop_on_sigterm() -> None:
    """Turn SIGTERM into `Stopped`, raised in the main thread between Python bytecodes (not inside a CUDA call).

    Code in between may catch it and raise its own error instead (Triton's interpreter, torch.compile's backend):
    a bench's `except Exception` around one measurement must therefore re-raise when `stop_requested()`."""

    def handler(signum, frame):  # noqa: ARG001 (signal handler signature)
        _STOP.append("stopped by SIGTERM (the caller's time limit)")
        raise Stopped(_STOP[0])

    signal.signal(signal.SIGTERM, handler)


def stop_requested() -> str | None:
    """The reason a stop was requested (SIGTERM arrived), or None."""
    return _STOP[0] if _STOP else None


class Budget:
    """Wall-clock budget of a run made of items (sizes, variants) of unknown cost.

    An item starts only if the time used so far plus its estimate fits: the estimate is the longest item of the
    same kind measured so far (conservative: compile times vary), else `first_guess` for that kind, else 0
    (the first item of a run always starts). seconds=None: no budget, everything fits.
    """

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic):
        if seconds is not None and not seconds >= 0:
            raise ValueError(f"budget seconds={seconds!r} must be >= 0 (or None for no budget)")
        self.seconds, self.clock = seconds, clock
        self.start = clock()
        self.durations: dict[str, list[float]] = {}

    def elapsed(self) -> float:
        return self.clock() - self.start

    def estimate(self, kind: str = "", first_guess: float = 0.0) -> float:
        seen = self.durations.get(kind)
        return max(seen) if seen else first_guess

    def fits(self, kind: str = "", first_guess: float = 0.0) -> bool:
        return self.seconds is None or self.elapsed() + self.estimate(kind, first_guess) <= self.seconds

    def why_not(self, kind: str = "", first_guess: float = 0.0) -> str:
        left = max(0.0, self.seconds - self.elapsed()) if self.seconds is not None else float("inf")
        estimate = self.estimate(kind, first_guess)
        return (f"budget: {left:.0f} s of --budget-s {self.seconds:g} left" +
                (f", and one takes about {estimate:.0f} s" if estimate else ""))

    def record(self, kind: str, seconds: float) -> None:
        self.durations.setdefault(kind, []).append(seconds)


class RowLog:
    """Appends each measured row (and at the end the run's record) to a JSONL file, flushed and fsynced per line,
    each with its provenance (command, date, git commit, host, versions). path None: nothing is written."""

    def __init__(self, path: str | Path | None, bench: str, common: dict[str, Any]):
        self.path = Path(path) if path is not None else None
        self.run_id = uuid.uuid4().hex[:12]
        self.head = {"bench": bench, "run_id": self.run_id, **common}

    def _append(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        from minillm.provenance import append_jsonl, provenance

        append_jsonl(self.path, {**record, "provenance": provenance()})

    def row(self, row: dict[str, Any]) -> None:
        self._append({**self.head, "record": "row", "rows": [row]})

    def run(self, record: dict[str, Any]) -> None:
        self._append({**self.head, "record": "run", **record})


def fmt(v: Any, spec: str = ".4g") -> str:
    if v is None:
        return ""
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


class LiveTable:
    """A fixed-width table printed one row at a time (stdout, flushed), as the rows are measured.
    columns: (key, width, format spec or a function of the row)."""

    def __init__(self, columns: Sequence[tuple[str, int, str | Callable[[dict], str]]], stream=None):
        self.columns, self.stream, self.started = list(columns), stream or sys.stdout, False

    def _line(self, cells: list[str]) -> str:
        return "  ".join(c[:w].ljust(w) for c, (_, w, _) in zip(cells, self.columns, strict=True)).rstrip()

    def row(self, row: dict[str, Any]) -> None:
        if not self.started:
            print(self._line([k for k, _, _ in self.columns]), file=self.stream, flush=True)
            self.started = True
        cells = [f(row) if callable(f) else fmt(row.get(k), f) for k, _, f in self.columns]
        print(self._line(cells), file=self.stream, flush=True)
