"""Lab builder: turn instructor notebooks into student notebooks, and check they have not drifted.

The labs practise what the survey's chapters explain (Survey §4.2, architecture; §4.3, training): a
student re-implements a piece of an LLM, a `book.grading` check says whether it is right, and the
piece is then plugged into a real model. Teachers keep ONE file per lab, the solution notebook
``labs/solutions/NN_topic.ipynb``, and generate the student version ``labs/NN_topic.ipynb`` from it:

* every region between a line ``### BEGIN SOLUTION`` and a line ``### END SOLUTION`` is replaced by
  ``raise NotImplementedError("...")`` at the same indentation; the message is the text of the region's
  ``### HINT: ...`` lines (several are joined), or a generic one;
* outputs and execution counts are cleared;
* the notebook's metadata gets ``minillm_lab: {name, version}``, the version being a hash of the definitions of
  the checks it calls (`book.grading.core.lab_version`), so `python -m book.grade` can flag a submission made
  against an older set of checks (a notebook calling checks that no lab registers gets no stamp);
* cells that cannot run before the student has done the work get the tag ``raises-exception`` (so
  ``pytest --nbval-lax`` accepts the error): every check cell (one calling ``check(`` or using
  ``book.grading``), every cell tagged ``needs-solution`` in the source, and every cell whose solution
  region sits at the top level of the cell (its stub raises as soon as the cell runs).

The output is deterministic (nbformat's JSON layout: sorted keys, one-space indent, trailing newline), so
``python -m book.labs check`` can compare the committed student notebooks with freshly generated ones
byte for byte and fail when someone edited one without the other. Command line::

    python -m book.labs build [--src labs/solutions] [--out labs]   # (re)generate student notebooks
    python -m book.labs check [--src labs/solutions] [--out labs]   # exit 1 if they differ
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

from minillm.io import atomic_write_text

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HINT = "### HINT:"
DEFAULT_MESSAGE = "exercise: replace this line with your implementation"
RAISES_TAG = "raises-exception"
NEEDS_SOLUTION_TAG = "needs-solution"
LAB_META = "minillm_lab"  # notebook metadata key: {"name": lab stem, "version": hash of its checks}
_CHECK_NAME = re.compile(r"""(?:^|[^\w])check\(\s*["']([A-Za-z_]\w*)["']""")
# A check cell calls `check(...)` (e.g. `grading.check("softmax", softmax)`) or uses `book.grading`.
_CHECK_CALL = re.compile(r"(^|[^\w])check\(|minillm\.grading")


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def strip_solutions(source: str, where: str = "cell") -> tuple[str, bool]:
    """Replace each solution region of one cell's source by a `raise NotImplementedError(...)` stub.

    Returns the new source and whether any region sat at indentation 0 (so the cell itself raises).
    ``where`` names the cell in error messages. Malformed markers raise ValueError.
    """
    out: list[str] = []
    region: list[str] | None = None  # lines of the open region, None outside one
    begin_indent = ""
    top_level = False
    for lineno, line in enumerate(source.split("\n"), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if region is not None:
                raise ValueError(f"{where}, line {lineno}: nested '{BEGIN}'; close the previous region first")
            region, begin_indent = [], _indent(line)
        elif marker == END:
            if region is None:
                raise ValueError(f"{where}, line {lineno}: '{END}' without a matching '{BEGIN}'")
            if _indent(line) != begin_indent:
                raise ValueError(f"{where}, line {lineno}: '{END}' is indented differently from its '{BEGIN}'; "
                                 "indent both markers like the code they enclose")
            hints = [r.strip()[len(HINT):].strip() for r in region if r.strip().startswith(HINT)]
            message = " ".join(h for h in hints if h) or DEFAULT_MESSAGE
            # json.dumps gives a valid double-quoted Python string literal for any text.
            out.append(f"{begin_indent}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})")
            top_level = top_level or begin_indent == ""
            region = None
        elif region is not None:
            region.append(line)
        else:
            out.append(line)
    if region is not None:
        raise ValueError(f"{where}: '{BEGIN}' is never closed; add a '{END}' line after the solution")
    return "\n".join(out), top_level


def student_notebook(nb: dict, name: str = "notebook") -> dict:
    """The student version of a solution notebook (a plain nbformat-4 dict); ``nb`` is not modified."""
    if nb.get("nbformat") != 4:
        raise ValueError(f"{name}: only nbformat 4 notebooks are supported, got nbformat={nb.get('nbformat')!r}")
    student = copy.deepcopy(nb)
    for i, cell in enumerate(student["cells"]):
        where = f"{name}, cell {i}"
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] != "code":
            if BEGIN in source or END in source:  # a marker in markdown would leak the solution
                raise ValueError(f"{where}: solution markers are only allowed in code cells")
            continue
        new_source, raises_now = strip_solutions(source, where)
        metadata = cell.setdefault("metadata", {})
        metadata.pop("execution", None)  # timing metadata some Jupyter front-ends add
        tags = list(metadata.get("tags", []))
        if (raises_now or NEEDS_SOLUTION_TAG in tags or _CHECK_CALL.search(new_source)) and RAISES_TAG not in tags:
            tags.append(RAISES_TAG)
        if tags:
            metadata["tags"] = tags
        cell["source"] = new_source
        cell["outputs"] = []
        cell["execution_count"] = None
    names: list[str] = []
    for cell in student["cells"]:
        if cell["cell_type"] == "code":
            names += [n for n in _CHECK_NAME.findall(cell["source"]) if n not in names]
    if names:  # stamp the lab's version so a grader can flag a submission made against other checks
        import book.grading  # noqa: F401  (registers every lab's checks); imported here: it imports torch
        from book.grading.core import CHECKS, lab_version

        if any(n not in CHECKS for n in names):  # not a lab (a toy notebook in a test): nothing to version
            return student
        student.setdefault("metadata", {})[LAB_META] = {"name": Path(name).stem, "version": lab_version(names)}
    return student


def render(nb: dict) -> str:
    """Deterministic text of a notebook: nbformat's own JSON layout plus a trailing newline."""
    import nbformat  # imported here so `import minillm` stays light

    node = nbformat.from_dict(nb)
    try:
        nbformat.validate(node)
    except nbformat.ValidationError as err:
        raise ValueError(f"not a valid nbformat-4 notebook: {err.message}; open and re-save it in Jupyter") from err
    text = nbformat.writes(node)
    return text if text.endswith("\n") else text + "\n"


def _read(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"lab source {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid notebook JSON ({err}); open and re-save it in Jupyter") from err


def _sources(src: Path) -> list[Path]:
    if not src.is_dir():
        raise FileNotFoundError(f"no lab source folder {src}; run from the repository root or pass --src")
    paths = sorted(src.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no *.ipynb lab sources in {src}")
    return paths


def generate(src: Path) -> dict[str, str]:
    """File name -> student notebook text, for every solution notebook in ``src``."""
    return {p.name: render(student_notebook(_read(p), name=str(p))) for p in _sources(src)}


def build(src: Path | str = "labs/solutions", out: Path | str = "labs") -> list[Path]:
    """Write the student notebooks into ``out``; return the paths written (unchanged files are left alone)."""
    src, out = Path(src), Path(out)
    notebooks = generate(src)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in notebooks.items():
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
            written.append(path)
    return written


def drift(src: Path | str = "labs/solutions", out: Path | str = "labs") -> list[str]:
    """Problems that `build` would fix: missing or out-of-date student notebooks, and orphans without a source."""
    src, out = Path(src), Path(out)
    notebooks = generate(src)
    problems = []
    for name, text in notebooks.items():
        path = out / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif path.read_bytes() != text.encode("utf-8"):
            problems.append(f"{path} differs from what {src / name} generates")
    for path in sorted(out.glob("*.ipynb")):
        if path.name not in notebooks:
            problems.append(f"{path} has no source {src / path.name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m book.labs", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "check"],
                        help="build: write student notebooks; check: exit 1 if the committed ones drifted")
    parser.add_argument("--src", default="labs/solutions", help="folder of solution notebooks (default: %(default)s)")
    parser.add_argument("--out", default="labs", help="folder of student notebooks (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            written = build(args.src, args.out)
            print(f"wrote {len(written)} student notebook(s) to {args.out}" + "".join(f"\n  {p}" for p in written))
            return 0
        problems = drift(args.src, args.out)
    except (FileNotFoundError, ValueError) as err:  # bad input: one clear line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    if problems:
        print("student notebooks are out of date:\n  " + "\n  ".join(problems)
              + f"\nrun: python -m book.labs build --src {args.src} --out {args.out}", file=sys.stderr)
        return 1
    print(f"student notebooks in {args.out} match their sources in {args.src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
