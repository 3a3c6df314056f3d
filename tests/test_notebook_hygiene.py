"""Every committed notebook (chapters/, labs/, labs/solutions/) follows the textbook's conventions.

Notebooks stay thin: the ideas live in minillm/, where they are tested; a notebook calls them, shows the
result and says what to see. These checks catch what review misses: committed outputs, a missing title
or size parameter, a cell that grew into a module, and path hacks that only work on one machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIRS = [REPO_ROOT / "chapters", REPO_ROOT / "labs"]
MAX_LOGIC_LINES = 25  # non-blank, non-comment lines in one code cell
# Reading the size profile: the variable itself or the presets helper that reads it.
SIZE_READ = re.compile(r"MINILLM_SIZE|size_profile\s*\(|get_size\s*\(")
PATH_HACK = re.compile(r"sys\.path\s*[.\[+=]|\.\./shared|\.\.\\shared")


def find_notebooks() -> list[Path]:
    found = []
    for d in NOTEBOOK_DIRS:
        found += [p for p in d.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
    return sorted(found)


NOTEBOOKS = find_notebooks()
IDS = [str(p.relative_to(REPO_ROOT)) for p in NOTEBOOKS]


def load(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)  # a malformed notebook fails here, naming the broken field
    return nb


def code_cells(nb: nbformat.NotebookNode) -> list[tuple[int, nbformat.NotebookNode]]:
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def logic_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


def test_notebook_directories_exist() -> None:
    # Runs even before any notebook exists, so the suite never reports "no tests ran" here.
    for d in NOTEBOOK_DIRS:
        assert d.is_dir(), f"{d.relative_to(REPO_ROOT)}/ is missing: the textbook's notebooks live there"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_without_outputs(path: Path) -> None:
    nb = load(path)
    dirty = [i for i, c in code_cells(nb) if c.outputs or c.execution_count is not None]
    assert not dirty, (f"cells {dirty} carry outputs or execution counts; clear them before committing "
                       "(JupyterLab: Edit > Clear Outputs of All Cells, then save)")
    assert "widgets" not in nb.metadata, "saved widget state in the notebook metadata; clear outputs and save"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_cell_is_a_title(path: Path) -> None:
    nb = load(path)
    assert nb.cells, "the notebook is empty"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), (
        "the first cell must be markdown starting with '# Title' (then summary and learning goals)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_parameters_cell_reads_size(path: Path) -> None:
    # The first code cell is tagged `parameters` and reads MINILLM_SIZE, so `ci` runs stay small
    # and a reader on a GPU can ask for more, before anything sized has been built.
    cells = code_cells(load(path))
    assert cells, "the notebook has no code cell"
    i, first = cells[0]
    assert "parameters" in first.metadata.get("tags", []), (
        f"the first code cell (cell {i}) must be tagged `parameters` (cell metadata tags)")
    assert SIZE_READ.search(first.source), (
        f"the parameters cell (cell {i}) must read the size profile: MINILLM_SIZE or minillm.presets' helper")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_code_cells_are_thin(path: Path) -> None:
    fat = {i: n for i, c in code_cells(load(path)) if (n := logic_lines(c.source)) > MAX_LOGIC_LINES}
    assert not fat, (f"cells with more than {MAX_LOGIC_LINES} lines of logic {fat} (cell: lines); "
                     "move the code into minillm/ (tested there) and call it from the notebook")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_path_hacks(path: Path) -> None:
    bad = [i for i, c in code_cells(load(path)) if PATH_HACK.search(c.source)]
    assert not bad, (f"cells {bad} edit sys.path or reach into ../shared; import the installed minillm "
                     "package instead (`make` installs it editable)")


# The checks themselves must catch what they claim to; a check that can never fail protects nothing.
def test_checks_catch_bad_notebooks(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("Title without a hash"),
        nbformat.v4.new_code_cell("size = 'ci'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import sys\nsys.path.insert(0, '..')"),
        nbformat.v4.new_code_cell("\n".join(f"x{i} = {i}  # note" for i in range(26)) + "\n\n# comment"),
    ]
    nb.cells[2].execution_count = 3
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    for check, message in [
        (test_committed_without_outputs, r"cells \[2\] carry outputs"),
        (test_first_cell_is_a_title, "first cell must be markdown"),
        (test_parameters_cell_reads_size, "must read the size profile"),
        (test_code_cells_are_thin, r"\{3: 26\}"),
        (test_no_path_hacks, r"cells \[2\] edit sys.path"),
    ]:
        with pytest.raises(AssertionError, match=message):
            check(path)


def test_checks_accept_a_good_notebook(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 0. Welcome\n\nWhat this chapter shows."),
        nbformat.v4.new_code_cell('import os\nSIZE = os.environ.get("MINILLM_SIZE", "laptop")',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("\n".join(f"x{i} = {i}" for i in range(25)) + "\n# why\n\n"),
    ]
    path = tmp_path / "good.ipynb"
    nbformat.write(nb, path)
    for check in (test_committed_without_outputs, test_first_cell_is_a_title, test_parameters_cell_reads_size,
                  test_code_cells_are_thin, test_no_path_hacks):
        check(path)
