"""The one reader of the results shipped with the book: the append-only JSONL records under bench/results/.

The records live in the git checkout beside the packages (bench/results/*.jsonl, bench/results/sweeps/*.jsonl),
never inside minillm, so they are found from the repository root: the first directory holding bench/results
walking up from the current directory (a notebook in chapters/ or labs/solutions/, pytest or a bench script at
the root), else walking up from this package (an editable install used from elsewhere). $MINILLM_RESULTS, if
set, names the results directory itself (tests point it at a tmp_path).

    results.latest("arch_studies.jsonl")                  # {study: its latest record}   (chapters 01-07)
    results.latest("data_experiments.jsonl", key="experiment")
    results.last("kv_cache.jsonl")                        # the newest record
    results.last("kernels.jsonl", where=lambda r: not r.get("smoke"), missing_ok=True)   # or None
    results.records("mfu.jsonl", require=("rows", "device"))                            # all, oldest first
    results.sweep("laptop_isoflop.jsonl")                 # rows of bench/results/sweeps/NAME (checked)
    results.path("sweeps/laptop_isoflop.jsonl")           # a shipped file's path (FileNotFoundError if absent)

`name` is a file name under bench/results ("x.jsonl", "sweeps/x.jsonl"); a Path (or an absolute path) is used
as it is, so a reader can be pointed at any file. A missing file raises FileNotFoundError saying how to get or
make it (the bench script that writes it); a malformed line raises ValueError naming its line number.

Writers (bench scripts) use `path(name, must_exist=False)` for their default --out, and `append`, `run_studies`
and `studies_cli` (moved here from minillm.provenance; `provenance` and `append_jsonl` stay in the library,
whose sweep writes with them). Nothing here uses `minillm.__file__`: the library does not know where the book is.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ENV", "MAKERS", "GPU_MAKERS", "root", "path", "date_of", "records", "latest", "last", "sweep", "append",
           "recording", "note", "run_studies", "studies_cli"]

ENV = "MINILLM_RESULTS"
RESULTS = ("bench", "results")
# The command that makes each shipped file, {out} its output: the hint a missing file's error ends with. Keyed by
# file name ("sweeps/" for any sweep). Scripts without --out always append to bench/results; GPU_MAKERS need CUDA.
MAKERS: dict[str, str] = {
    "arch_studies.jsonl": "python bench/arch_studies.py --out {out}",
    "bpe_speed.jsonl": "python bench/bpe_speed.py",
    "data_experiments.jsonl": "python bench/data_experiments.py --out {out}",
    "ddp_scaling.jsonl": "python bench/ddp_scaling.py",
    "dedup_speed.jsonl": "python bench/dedup_speed.py",
    "emergence_studies.jsonl": "python bench/emergence_studies.py --out {out}",
    "finetune_studies.jsonl": "python bench/finetune_studies.py --out {out}",
    "capstone_studies.jsonl": "python bench/capstone_studies.py --out {out}",
    "shakespeare_race.jsonl": "python bench/shakespeare_race.py --out {out}",
    "kernels.jsonl": "python bench/kernel_speed.py --out {out}",
    "attention.jsonl": "python bench/attention_bench.py --out {out}",
    "kv_cache.jsonl": "python bench/kv_cache.py --out {out}",
    "mfu.jsonl": "python bench/mfu.py --out {out}",
    "scaling_studies.jsonl": "python bench/scaling_studies.py --out {out}",
    "story_floor.jsonl": "python bench/story_floor.py --out {out}",
    "train_studies.jsonl": "python bench/train_studies.py --out {out}",
    "trainer_overhead.jsonl": "python bench/trainer_overhead.py",
    "utilization_studies.jsonl": "python bench/utilization_studies.py --out {out}",
    "sweeps/": "python -m minillm sweep --out {out}",
}
GPU_MAKERS = frozenset({"kernels.jsonl", "mfu.jsonl", "attention.jsonl"})
_CLONE = ("They come with the git checkout of minillm (bench/results/): clone it and install it editable "
          "(`make lab`)")


def _hint(name: str, out: str | None = None) -> str:
    """'or make your own with `<command>`' for a shipped file name (or a generic line). out: the --out to show
    [default: bench/results/NAME, where the reader looks when run from the checkout's root]."""
    key = "sweeps/" if name.startswith("sweeps/") else Path(name).name
    cmd = MAKERS.get(key)
    if cmd is None:
        return "or run the bench/ script that writes it"
    if out is None:
        out = f"{'/'.join(RESULTS)}/{name}"
    return f"or make your own with `{cmd.format(out=out)}`{' on a CUDA machine' if key in GPU_MAKERS else ''}"


def root() -> Path:
    """The bench/results directory: $MINILLM_RESULTS, else the first bench/results above the current directory,
    else the first above this package. FileNotFoundError when there is none (an install without the checkout)."""
    env = os.environ.get(ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    starts = (Path.cwd().resolve(), Path(__file__).resolve().parent)
    for start in starts:
        for d in (start, *start.parents):
            if (d.joinpath(*RESULTS)).is_dir():
                return d.joinpath(*RESULTS)
    raise FileNotFoundError(f"no {'/'.join(RESULTS)} directory above {starts[0]} or {starts[1]}. {_CLONE}, run "
                            f"from inside it, or set ${ENV} to a results directory")


def _is_given_path(name: str | os.PathLike) -> bool:
    return isinstance(name, os.PathLike) or os.path.isabs(name)


def path(name: str | os.PathLike, *, must_exist: bool = True) -> Path:
    """The path of shipped file `name` (under root()), or `name` itself when it is a Path / absolute path.
    must_exist: raise FileNotFoundError (with how to get or make it) when the file is absent."""
    if _is_given_path(name):  # its hint is keyed by the file name: ".../sweeps/x.jsonl" is a sweep
        p = Path(name)
        shown = f"sweeps/{p.name}" if p.parent.name == "sweeps" else p.name
        out = str(p)
    else:
        if not isinstance(name, str) or not name or ".." in Path(name).parts:
            raise ValueError(f"name={name!r} must be a file name under bench/results, e.g. 'arch_studies.jsonl'")
        try:
            p = root() / name
        except FileNotFoundError as e:
            if must_exist:
                raise FileNotFoundError(f"no shipped results for {name}: {e}; {_hint(name)}") from None
            raise
        shown, out = name, None
    if must_exist and not p.is_file():
        what = "sweep" if shown.startswith("sweeps/") else "results"
        raise FileNotFoundError(f"no shipped {what} at {p}. {_CLONE}, {_hint(shown, out)}")
    return p


def date_of(record: Mapping[str, Any]) -> str:
    """When a record was written: its provenance's ISO date (or a top-level "date"); "" when it has none."""
    prov = record.get("provenance")
    date = prov.get("date") if isinstance(prov, Mapping) else None
    return str(date or record.get("date") or "")


def records(name: str | os.PathLike, require: Sequence[str] = ("rows",), *,
            where: Callable[[dict], bool] | None = None, missing_ok: bool = False) -> list[dict[str, Any]]:
    """Every record of a JSONL results file, oldest first by date (`date_of`; records without a date count as
    oldest, equal dates keep file order: two scripts appending at once may interleave lines), those `where`
    accepts. Each line must be a JSON object with the fields in `require`. missing_ok: an absent file (or results
    directory) gives []."""
    try:
        p = path(name)
    except FileNotFoundError:
        if missing_ok:
            return []
        raise
    out = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{i} is not valid JSON ({e.msg}); the file is append-only JSONL") from None
        if not isinstance(rec, dict) or not set(require) <= rec.keys():
            fields = " and ".join(repr(k) for k in require)
            raise ValueError(f"{p}:{i} has no {fields} field{'s' if len(require) > 1 else ''}: not a record of "
                             f"this file")
        if where is None or where(rec):
            out.append(rec)
    return sorted(out, key=date_of)  # a stable sort: file order among equal dates


def latest(name: str | os.PathLike, key: str = "study", require: Sequence[str] = ("rows",)) -> dict[str, dict]:
    """The newest record of each `key` value ({"cot": record, ...}): a later record of a study (by date) replaces
    an earlier one; the file keeps the history. Every record needs `key` and `require`."""
    return {rec[key]: rec for rec in records(name, require=(key, *require))}


def last(name: str | os.PathLike, *, where: Callable[[dict], bool] | None = None,
         require: Sequence[str] = ("rows",), missing_ok: bool = False) -> dict[str, Any] | None:
    """The newest record (that `where` accepts), or None when there is none (or, with missing_ok, no file)."""
    recs = records(name, require, where=where, missing_ok=missing_ok)
    return recs[-1] if recs else None


def sweep(name: str | os.PathLike = "laptop_isoflop.jsonl") -> list[dict]:
    """The rows of a shipped sweep, bench/results/sweeps/NAME (a Path is read as is), checked by the library's
    own sweep reader: every line a JSON object with all of its ROW_FIELDS."""
    from minillm.scaling.sweep import load_sweep

    return load_sweep(path(name if _is_given_path(name) else f"sweeps/{name}"))


# ---- writers (the bench scripts) ----------------------------------------------------------------------------

_RECORDINGS: list[list[dict]] = []  # the open `recording()` blocks, innermost last


@contextlib.contextmanager
def recording() -> Iterator[list[dict]]:
    """Collect the settings of what is trained inside the block: `book.runs.train` notes each run it trains (model
    shape, "params" = every parameter, embeddings included, steps, batch, lr, warmup, seed) and a study notes its own (evaluation sizes, RL steps)
    with `note`. Yields the list of distinct entries, in order; `run_studies` stores it as a record's "settings"
    so that a shipped number says how it was made."""
    seen: list[dict] = []
    _RECORDINGS.append(seen)
    try:
        yield seen
    finally:
        _RECORDINGS.remove(seen)


def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v if v is None or isinstance(v, (bool, int, float, str)) else repr(v)


def note(**settings: Any) -> None:
    """Add one entry of settings to every open `recording()` (a no-op outside one), unless an equal entry is
    there already. Values are stored as JSON (anything else by its repr)."""
    entry = _jsonable(settings)
    for seen in _RECORDINGS:
        if entry not in seen:
            seen.append(entry)


def append(name: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Append one record (fsynced; earlier lines are never rewritten) to `name`; returns its path."""
    from minillm.provenance import append_jsonl

    p = path(name, must_exist=False)
    append_jsonl(p, dict(record))
    return p


def run_studies(studies: Mapping[str, Callable[[], list]], out: str | os.PathLike, only: Sequence[str] | None = None,
                *, summaries: Mapping[str, Callable[[list], dict]] | None = None, **common: Any) -> Iterator[dict]:
    """Run each named study (or those in `only`) and append {"study", **common, "rows", "summary"?, "settings",
    "seconds", "provenance"} to the file `out` (a filesystem path, as given on a --out) as each finishes, yielding
    the record. "settings" lists what `recording()` saw while the study ran (shared setup a study triggers is
    seen by the first study that triggers it)."""
    import time

    from minillm.provenance import append_jsonl, provenance

    unknown = sorted(set(only or ()) - set(studies))
    if unknown:
        raise ValueError(f"unknown studies {unknown}; choose from {', '.join(studies)}")
    for name, fn in studies.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        with recording() as settings:
            rows = fn()
        record = {"study": name, **common, "rows": rows, "settings": settings,
                  "seconds": round(time.perf_counter() - t0, 1)}
        if summaries and name in summaries:
            record["summary"] = summaries[name](rows)
        record["provenance"] = provenance()
        append_jsonl(out, record)
        yield record


def studies_cli(description: str, name: str | os.PathLike,
                make_studies: Callable[[str], Mapping[str, tuple[Callable[[], list], Callable[[list], dict] | None]]],
                argv: Sequence[str] | None = None) -> None:
    """The command line of bench/*_studies.py: --out (a path; default: bench/results/NAME), --size, --threads,
    --only. Builds `make_studies(size)` ({name: (run, summary or None)}) and prints a line per record."""
    import argparse

    import torch

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", default=None, help=f"JSONL file the records are appended to [default: "
                                                f"bench/results/{name}]")
    ap.add_argument("--size", default="laptop", choices=("ci", "laptop", "gpu"))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads [default: 1]")
    ap.add_argument("--only", action="append", help="run only these studies (repeatable)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out).resolve() if args.out else path(name, must_exist=False)
    table = make_studies(args.size)
    runs = {k: fn for k, (fn, _) in table.items()}
    summaries = {k: s for k, (_, s) in table.items() if s is not None}
    for rec in run_studies(runs, out, args.only, summaries=summaries, size=args.size):
        print(f"{rec['study']}: {len(rec['rows'])} rows in {rec['seconds']:.0f} s; {rec.get('summary', '')}",
              flush=True)
