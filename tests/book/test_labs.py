"""book.labs: solution regions become stubs, student notebooks never drift, and every lab check
fails on the generated stub while passing on the instructor's solution."""
import json
import linecache
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from book import grading, labs

if not torch.cuda.is_available():  # lab 08's cells define Triton kernels; without a GPU they must be interpreted,
    os.environ.setdefault("TRITON_INTERPRET", "1")  # and @triton.jit reads this when a kernel cell is executed

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS, STUDENT = ROOT / "labs" / "solutions", ROOT / "labs"
LAB_NAMES = sorted(p.name for p in SOLUTIONS.glob("*.ipynb"))
CHECK_CALL = re.compile(r"""check\(\s*["'](\w+)["']\s*,\s*(\w+)\s*\)""")


def _nb(*cells):
    """A minimal nbformat-4.5 notebook from (cell_type, source, tags) triples."""
    out = []
    for i, (kind, source, tags) in enumerate(cells):
        cell = {"cell_type": kind, "id": f"c{i}", "metadata": {"tags": tags} if tags else {}, "source": source}
        if kind == "code":
            cell.update(outputs=[{"output_type": "stream", "name": "stdout", "text": "old\n"}], execution_count=3)
        out.append(cell)
    return {"cells": out, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                       "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


EXERCISE = """def f(x):
    \"\"\"Doubles x.\"\"\"
    ### BEGIN SOLUTION
    ### HINT: multiply by "two"
    y = 2 * x
    return y
    ### END SOLUTION

z = 1"""


# ------------------------------------------------------------------------------------------ builder units


def test_strip_solutions_keeps_indent_and_uses_hint():
    source, top_level = labs.strip_solutions(EXERCISE)
    assert source == 'def f(x):\n    """Doubles x."""\n    raise NotImplementedError("multiply by \\"two\\"")\n\nz = 1'
    assert not top_level
    namespace = {}
    exec(source, namespace)  # the stub is valid Python and raises with the hint
    with pytest.raises(NotImplementedError, match='multiply by "two"'):
        namespace["f"](1)


def test_strip_solutions_default_message_multiple_regions_and_top_level():
    source, top_level = labs.strip_solutions(
        "### BEGIN SOLUTION\na = 1\n### END SOLUTION\nb = 2\n### BEGIN SOLUTION\n### HINT: one\n### HINT: two\n"
        "### END SOLUTION")
    assert source == (f'raise NotImplementedError("{labs.DEFAULT_MESSAGE}")\nb = 2\n'
                      'raise NotImplementedError("one two")')
    assert top_level
    assert labs.strip_solutions("x = 1\n") == ("x = 1\n", False)


@pytest.mark.parametrize("source,message", [
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "line 2: nested"),
    ("x = 1\n### END SOLUTION", "line 2: '### END SOLUTION' without a matching"),
    ("if x:\n    ### BEGIN SOLUTION\n    pass\n### END SOLUTION", "line 4: .* indented differently"),
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
])
def test_strip_solutions_rejects_malformed_markers(source, message):
    with pytest.raises(ValueError, match=f"cell 7, {message}" if "line" in message else message):
        labs.strip_solutions(source, where="cell 7")


def test_student_notebook_tags_clears_and_leaves_source_alone():
    nb = _nb(("markdown", "# Title", None),
             ("code", EXERCISE, None),
             ("code", 'grading.check("f", f)', None),
             ("code", "print(f(2))", ["needs-solution"]),
             ("code", "### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION", None),
             ("code", "import os", ["parameters"]))
    before = json.dumps(nb, sort_keys=True)
    student = labs.student_notebook(nb)
    assert json.dumps(nb, sort_keys=True) == before  # the source dict is untouched
    cells = student["cells"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in cells if c["cell_type"] == "code")
    tags = [c["metadata"].get("tags") for c in cells]
    assert tags == [None, None, ["raises-exception"], ["needs-solution", "raises-exception"], ["raises-exception"],
                    ["parameters"]]
    assert "### BEGIN SOLUTION" not in json.dumps(student)
    assert [c["id"] for c in cells] == [c["id"] for c in nb["cells"]]


def test_student_notebook_rejects_markers_in_markdown_and_old_formats():
    with pytest.raises(ValueError, match="cell 0: solution markers are only allowed in code cells"):
        labs.student_notebook(_nb(("markdown", "### BEGIN SOLUTION\nanswer\n### END SOLUTION", None)))
    with pytest.raises(ValueError, match="only nbformat 4"):
        labs.student_notebook({"nbformat": 3, "cells": []})


def test_render_is_deterministic_and_valid():
    text = labs.render(labs.student_notebook(_nb(("code", EXERCISE, None))))
    assert text == labs.render(labs.student_notebook(_nb(("code", EXERCISE, None))))
    assert text.endswith("}\n") and not text.endswith("\n\n")
    nb = json.loads(text)
    assert nb["cells"][0]["source"][0] == "def f(x):\n"  # nbformat's line-list layout
    assert list(nb) == sorted(nb)


def test_render_rejects_invalid_notebooks():
    nb = _nb(("code", "x = 1", None))
    del nb["cells"][0]["outputs"]
    with pytest.raises(ValueError, match="not a valid nbformat-4 notebook: 'outputs' is a required property"):
        labs.render(nb)


def test_build_check_and_cli_in_a_temporary_tree(tmp_path, capsys):
    src, out = tmp_path / "solutions", tmp_path / "student"
    src.mkdir()
    (src / "01_x.ipynb").write_text(json.dumps(_nb(("code", EXERCISE, None))))
    assert labs.main(["check", "--src", str(src), "--out", str(out)]) == 1
    assert "01_x.ipynb is missing" in capsys.readouterr().err
    assert labs.build(src, out) == [out / "01_x.ipynb"]
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "01_x.ipynb").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    assert labs.build(src, out) == []  # unchanged files are not rewritten
    assert labs.drift(src, out) == []
    assert labs.main(["check", "--src", str(src), "--out", str(out)]) == 0

    (out / "01_x.ipynb").write_text((out / "01_x.ipynb").read_text().replace("NotImplementedError", "Oops"))
    (out / "02_orphan.ipynb").write_text("{}")
    problems = labs.drift(src, out)
    assert problems == [f"{out / '01_x.ipynb'} differs from what {src / '01_x.ipynb'} generates",
                        f"{out / '02_orphan.ipynb'} has no source {src / '02_orphan.ipynb'}"]
    assert labs.main(["build", "--src", str(src), "--out", str(out)]) == 0
    assert labs.drift(src, out) == [problems[1]]
    assert labs.main(["check", "--src", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "error: no lab source folder" in capsys.readouterr().err
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files behind


def test_missing_or_broken_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="no lab source folder"):
        labs.build(tmp_path / "nope", tmp_path)
    with pytest.raises(FileNotFoundError, match="no \\*.ipynb lab sources"):
        labs.build(tmp_path, tmp_path / "out")
    (tmp_path / "bad.ipynb").write_text("{not json")
    with pytest.raises(ValueError, match="bad.ipynb is not valid notebook JSON"):
        labs.build(tmp_path, tmp_path / "out")


# ------------------------------------------------------------------------------- the committed labs


def test_there_are_labs():
    assert "00_foundations.ipynb" in LAB_NAMES


def test_committed_student_notebooks_do_not_drift():
    assert labs.drift(SOLUTIONS, STUDENT) == [], "run: python -m book.labs build"


def test_cli_check_on_the_repository():
    result = subprocess.run([sys.executable, "-m", "book.labs", "check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _cells(path):
    return [("".join(c["source"]), c) for c in json.loads(path.read_text())["cells"]]


@pytest.mark.parametrize("name", LAB_NAMES)
def test_student_notebook_has_no_solutions_and_tags_its_checks(name):
    text = (STUDENT / name).read_text()
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text and "### HINT" not in text
    for source, cell in _cells(STUDENT / name):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
            if CHECK_CALL.search(source):
                assert "raises-exception" in cell["metadata"].get("tags", []), source


def _exercises(path):
    """Run a lab's exercise cells (those holding solution regions or stubs) and return the
    (check name, function) pairs its check cells grade."""
    solution = _cells(SOLUTIONS / path.name)
    namespace = {"torch": torch, "math": math}
    pairs = []
    for i, ((source, _), (solution_source, _)) in enumerate(zip(_cells(path), solution)):
        if "### BEGIN SOLUTION" in solution_source:
            # Register the cell's text under its own name, as IPython does: @triton.jit reads its function's source.
            filename = f"<{path.parent.name}/{path.name}, cell {i}>"
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            exec(compile(source, filename, "exec"), namespace)
        pairs += CHECK_CALL.findall(source)
    assert pairs, f"{path.name} has no grading.check(...) cells"
    return [(check, namespace[fn]) for check, fn in pairs]


@pytest.mark.parametrize("name", LAB_NAMES)
def test_every_check_passes_on_the_solution_and_fails_on_the_stub(name, capsys):
    for check, fn in _exercises(SOLUTIONS / name):
        assert check in grading.CHECKS, f"{name} calls an unregistered check {check!r}"
        grading.check(check, fn)
    for check, stub in _exercises(STUDENT / name):
        with pytest.raises(NotImplementedError, match=f"not implemented yet: {check}"):
            grading.check(check, stub)
