"""Moved from `minillm.provenance` (split: the library keeps the reusable part as `minillm.provenance`)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from minillm.provenance import append_jsonl, provenance


def read_records(path: str | os.PathLike, require: Sequence[str] = ("rows",)) -> list[dict[str, Any]]:
    """Every record of an append-only JSONL results file, oldest first.

    Each line must be a JSON object with the fields in `require`; a malformed line raises ValueError naming its
    line number. The file must exist (callers decide what a missing file means)."""
    p = Path(path)
    records = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{i} is not valid JSON ({e.msg}); the file is append-only JSONL") from None
        if not isinstance(rec, dict) or not set(require) <= rec.keys():
            raise ValueError(f"{p}:{i} has no {' and '.join(repr(k) for k in require)} field{'s' if len(require) > 1 else ''}: "
                             "not a record of this file")
        records.append(rec)
    return records


def latest_records(path: str | os.PathLike, key: str, make_hint: str) -> dict[str, dict[str, Any]]:
    """The last record of each `key` value in an append-only JSONL results file (earlier ones are history).

    Every record must be a JSON object with `key` and "rows". A missing file raises FileNotFoundError whose
    message ends with `make_hint` (how to get or make the results); a malformed line raises ValueError with
    its line number."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no shipped results at {p}. They come with the git checkout of minillm "
                                f"(bench/results/); clone it and install editable (`make lab`), or {make_hint}")
    return {rec[key]: rec for rec in read_records(p, require=(key, "rows"))}


def run_studies(studies: Mapping[str, Callable[[], list]], out: str | os.PathLike, only: Sequence[str] | None = None,
                *, summaries: Mapping[str, Callable[[list], dict]] | None = None, **common: Any) -> Iterator[dict]:
    """Run each named study (or those in `only`), append {"study", **common, "rows", "summary"?, "seconds",
    "provenance"} to the JSONL file `out` as each finishes, and yield that record: the shared loop of
    bench/*_studies.py (which print a line per record)."""
    import time

    unknown = sorted(set(only or ()) - set(studies))
    if unknown:
        raise ValueError(f"unknown studies {unknown}; choose from {', '.join(studies)}")
    for name, fn in studies.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        rows = fn()
        record = {"study": name, **common, "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
        if summaries and name in summaries:
            record["summary"] = summaries[name](rows)
        record["provenance"] = provenance()
        append_jsonl(out, record)
        yield record


def studies_cli(description: str, out: str | os.PathLike,
                make_studies: Callable[[str], Mapping[str, tuple[Callable[[], list], Callable[[list], dict] | None]]],
                argv: Sequence[str] | None = None) -> None:
    """The command line of bench/*_studies.py: --out, --size (ci | laptop | gpu), --threads, --only NAME. Builds
    `make_studies(size)` ({name: (run, summary or None)}), runs it through `run_studies` with size recorded, and
    prints one line per record as it lands."""
    import argparse

    import torch

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", default=str(out), help="JSONL file the records are appended to")
    ap.add_argument("--size", default="laptop", choices=("ci", "laptop", "gpu"))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads [default: 1]")
    ap.add_argument("--only", action="append", help="run only these studies (repeatable)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    table = make_studies(args.size)
    runs = {name: run for name, (run, _) in table.items()}
    summaries = {name: summary for name, (_, summary) in table.items() if summary is not None}
    for rec in run_studies(runs, args.out, args.only, summaries=summaries, size=args.size):
        print(f"{rec['study']}: {len(rec['rows'])} rows in {rec['seconds']:.0f} s; {rec.get('summary', '')}",
              flush=True)
