"""Numbers in the chapters' prose, tied to the shipped records they quote.

A chapter's markdown quotes results ("token accuracy climbs to 0.58"). Each such number carries a key, an HTML
comment right after it that Jupyter and GitHub do not render:

    token accuracy climbs to 0.58<!--= emergence_studies/size_sweep/rows[size=L3-C96].token_accuracy -->
    ALiBi's loss is 1.234<!--= arch_studies/positions/rows[position=alibi,eval_len=128].loss --> at 4x
    the busiest expert takes 45%<!--= arch_studies/moe/rows[n_expert=8,balance=False].max_share|pct -->
    MQA gives up about 0.1<!--= arch_studies/kv_heads/rows[kind=mqa].val_loss|max - arch_studies/kv_heads/rows[kind=mha].val_loss|max --> nats

`check_notebook` resolves every key against the newest record (by date, `book.results.records`) and compares it
with the number as printed, after rounding to the printed precision: 0.58 matches 0.5834, not 0.5867. A test
runs it over every chapter (tests/book/test_prose.py), so re-running a bench script that moves a quoted number
fails the suite until the sentence is rewritten. `unkeyed` lists the numbers of "What to see" paragraphs that
carry no key: every decimal and percentage there must be keyed, or marked `<!--= none: why -->` when it does not
come from a record (a survey's figure, a setting stated for the reader).

A key is FILE/STUDY/PATH, then `|op`s, optionally `A - B` or `A / B` of two keys:
  FILE   a results file under bench/results without ".jsonl" ("arch_studies", "sweeps/laptop_isoflop")
  STUDY  the record's "study" (or "experiment") value; "-" for the file's newest record; "*" for all records
         (a list, as the rows of a sweep)
  PATH   dot-separated: `name` (a field), `name[k=v,k2=v2]` (the rows of list `name` whose fields print as the
         given values: one row, or a list when several match), `name[3]` (an index), `[k=v]` (select from the
         current list); a field after a list maps over it
  ops    max, min, mean, sum, len, abs, pct (x100), *K, /K (K a number)
Also `@module:function/PATH`: the dict a function of no arguments returns (a value computed from records, such
as a fitted exponent).

    python -m book.prose check [NOTEBOOK...]     # every key of the chapters (or these notebooks), mismatches listed
    python -m book.prose todo NOTEBOOK           # the unkeyed numbers of its "What to see" paragraphs
    python -m book.prose value KEY               # what a key resolves to
"""
from __future__ import annotations

import importlib
import json
import math
import re
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from book import results

__all__ = ["TAG", "Quote", "value", "quotes", "check_notebook", "unkeyed", "main"]

NUMBER = r"[−-]?\d[\d,]*(?:\.\d+)?(?:e[−-]?\d+)?"
# a number, then (optionally) a unit mark, then its key
TAG = re.compile(rf"(?<![\w.])({NUMBER})(%|x|×)?<!--=\s*(.*?)\s*-->", re.S)
_SEGMENT = re.compile(r"([A-Za-z_][\w\-]*)?(?:\[([^\]]*)\])?$")
_OPS = {"max": max, "min": min, "sum": sum, "len": len, "mean": statistics.fmean, "abs": abs}


@dataclass(frozen=True)
class Quote:
    """One keyed number of a notebook's markdown."""

    notebook: str
    cell: int
    text: str  # the number as printed ("0.58", "1,234", "3e-3")
    unit: str  # "%", "x", "×" or ""
    key: str

    def printed(self) -> float:
        return float(self.text.replace(",", "").replace("−", "-"))

    def decimals(self) -> int | None:
        """Decimal places printed (None for scientific notation, compared to its significant digits)."""
        if "e" in self.text:
            return None
        return len(self.text.split(".")[1]) if "." in self.text else 0


# ---- resolving keys ---------------------------------------------------------------------------------------------

def _records_of(file: str, study: str) -> Any:
    recs = results.records(f"{file}.jsonl", require=())
    if not recs:
        raise KeyError(f"{file}.jsonl has no records")
    if study == "*":
        return recs
    if study == "-":
        return recs[-1]
    matching = [r for r in recs if r.get("study", r.get("experiment")) == study]
    if not matching:
        names = sorted({str(r.get("study", r.get("experiment"))) for r in recs})
        raise KeyError(f"{file}.jsonl has no record of study {study!r}; it has {', '.join(names)}")
    return matching[-1]  # records() is oldest first by date


def _select(rows: Any, sel: str, where: str) -> Any:
    if not isinstance(rows, list):
        raise KeyError(f"{where}: [{sel}] selects from a list, got {type(rows).__name__}")
    if re.fullmatch(r"-?\d+", sel.strip()):
        return rows[int(sel)]
    conds = [c.split("=", 1) for c in sel.split(",")]
    if any(len(c) != 2 for c in conds):
        raise KeyError(f"{where}: [{sel}] must be an index or k=v,k2=v2")

    def shown(v: Any) -> str:
        return json.dumps(v) if isinstance(v, (list, dict)) else str(v)

    hits = [r for r in rows if isinstance(r, dict) and all(k.strip() in r and shown(r[k.strip()]) == v.strip()
                                                           for k, v in conds)]
    if not hits:
        raise KeyError(f"{where}: no row has {sel}")
    return hits[0] if len(hits) == 1 else hits


def _walk(obj: Any, path: str, where: str) -> Any:
    for seg in filter(None, re.split(r"\.(?![^\[]*\])", path)):  # dots inside [...] are values: [lr=0.01]
        m = _SEGMENT.match(seg)
        if not m:
            raise KeyError(f"{where}: cannot read path segment {seg!r}")
        name, sel = m.groups()
        if name is not None:
            if isinstance(obj, list):
                obj = [r[name] for r in obj]
            elif isinstance(obj, dict) and name in obj:
                obj = obj[name]
            else:
                have = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
                raise KeyError(f"{where}: no field {name!r} (have {have})")
        if sel is not None:
            obj = _select(obj, sel, where)
    return obj


def _one(key: str) -> Any:
    base, *ops = [p.strip() for p in key.split("|")]
    if base.startswith("@"):
        target, _, path = base[1:].partition("/")
        mod, _, fn = target.partition(":")
        obj = _walk(getattr(importlib.import_module(mod), fn)(), path, key)
    else:
        parts = base.split("/")
        if parts[0] == "sweeps":  # sweeps/NAME is one file name
            parts = ["sweeps/" + parts[1], *parts[2:]]
        if len(parts) < 2:
            raise KeyError(f"{key}: write FILE/STUDY/PATH (STUDY '-' for the newest record)")
        obj = _walk(_records_of(parts[0], parts[1]), "/".join(parts[2:]).replace("/", "."), key)
    for op in ops:
        if op in _OPS:
            obj = _OPS[op](obj)
        elif op == "pct":
            obj = obj * 100
        elif op[:1] in "*/" and re.fullmatch(r"[*/]-?[\d.]+(e-?\d+)?", op):
            obj = obj * float(op[1:]) if op[0] == "*" else obj / float(op[1:])
        else:
            raise KeyError(f"{key}: unknown op {op!r}; use {', '.join(_OPS)}, pct, *K or /K")
    return obj


def value(key: str) -> float:
    """The number a key stands for (see the module docstring)."""
    m = re.fullmatch(r"(.+?)\s+([-/])\s+(.+)", key.strip(), re.S)
    if m:
        a, b = _one(m.group(1)), _one(m.group(3))
        out = a - b if m.group(2) == "-" else a / b
    else:
        out = _one(key.strip())
    if isinstance(out, bool) or not isinstance(out, (int, float)):
        raise KeyError(f"{key}: resolves to {out!r}, not a number (select one row, or add |max, |len ...)")
    return float(out)


# ---- notebooks --------------------------------------------------------------------------------------------------

def _markdown(notebook: str | Path) -> Iterator[tuple[int, str]]:
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "markdown":
            yield i, "".join(cell["source"])


def quotes(notebook: str | Path) -> list[Quote]:
    """Every keyed number in a notebook's markdown (`none` keys excluded)."""
    return [Quote(str(notebook), i, m.group(1), m.group(2) or "", " ".join(m.group(3).split()))
            for i, src in _markdown(notebook) for m in TAG.finditer(src)
            if not m.group(3).strip().startswith("none")]


def agrees(q: Quote, v: float) -> bool:
    """Does the printed number equal v rounded to the printed precision? (3e-3: to its significant digits.)"""
    p, d = q.printed(), q.decimals()
    if d is None:
        return v != 0 and math.isclose(p, float(f"{v:.{len(q.text.split('e')[0].replace('.', '')) - 1}e}"))
    return abs(v - p) <= 0.5 * 10 ** -d + 1e-9 * max(1.0, abs(v))


def check_notebook(notebook: str | Path) -> list[str]:
    """One line per keyed number that does not resolve or does not match its record."""
    bad = []
    for q in quotes(notebook):
        where = f"{Path(q.notebook).name} cell {q.cell}: {q.text}{q.unit}"
        try:
            v = value(q.key)
        except (KeyError, IndexError, TypeError, ValueError, FileNotFoundError, ZeroDivisionError) as e:
            bad.append(f"{where} <!--= {q.key} -->: {type(e).__name__}: {e}")
            continue
        if not agrees(q, v):
            bad.append(f"{where} but the record says {v:.6g} ({q.key}): rewrite the sentence for the new record")
    return bad


def _strip_code_and_math(s: str) -> str:
    s = re.sub(r"\$\$.*?\$\$", " ", s, flags=re.S)
    s = re.sub(r"\$[^$\n]*\$", " ", s)
    s = re.sub(r"`[^`\n]*`", " ", s)
    return re.sub(r"\]\([^)]*\)", "]", s)


def unkeyed(notebook: str | Path, marker: str = "What to see") -> list[str]:
    """The decimals and percentages of paragraphs containing `marker` that carry no key (nor a `none` mark)."""
    out = []
    for i, src in _markdown(notebook):
        for para in re.split(r"\n\s*\n", src):
            if marker not in para:
                continue
            text = TAG.sub(" ", para)  # keyed numbers (and `none`-marked ones) are accounted for
            text = _strip_code_and_math(re.sub(r"<!--.*?-->", " ", text, flags=re.S))
            for m in re.finditer(r"(?<![\w.§])(\d[\d,]*\.\d+(?:e[−-]?\d+)?%?|\d+%|\d(?:\.\d+)?e-\d+)", text):
                around = text[max(0, m.start() - 50):m.end() + 20]
                out.append(f"{Path(notebook).name} cell {i}: {m.group(1)} in ...{around!r}")
    return out


def chapters() -> list[Path]:
    """The chapter notebooks of the checkout: chapters/NN_*.ipynb in the first directory above the current one (or
    above this package) that has them; [] outside a checkout. Independent of $MINILLM_RESULTS, so the chapters can
    be checked against another results directory."""
    for start in (Path.cwd().resolve(), Path(__file__).resolve().parent):
        for d in (start, *start.parents):
            found = sorted((d / "chapters").glob("[0-9][0-9]_*.ipynb"))
            if found:
                return found
    return []


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m book.prose", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("check", "todo", "value"))
    ap.add_argument("args", nargs="*")
    a = ap.parse_args(argv)
    if a.command == "value":
        for key in a.args:
            print(f"{value(key):.6g}  {key}")
        return 0
    notebooks = [Path(n) for n in a.args] or chapters()
    lines = [ln for nb in notebooks for ln in (check_notebook(nb) if a.command == "check" else unkeyed(nb))]
    print("\n".join(lines) or f"{a.command}: nothing to report in {len(notebooks)} notebook(s)")
    return 1 if lines else 0


if __name__ == "__main__":
    raise SystemExit(main())
