"""The textbook's shape, enforced (see book/__init__.py): one package per chapter notebook, named alike; a
chapter imports `minillm` and `book.{runs,results,viz}` only, never another chapter; the shared modules import
no chapter; studies and plots are named `studies[_<section>].py` and `plots[_<section>].py`."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BOOK = REPO / "book"
SHARED = {"book.runs", "book.results", "book.viz"}
CHAPTERS = sorted(p for p in BOOK.iterdir() if p.is_dir() and re.fullmatch(r"ch\d\d_\w+", p.name))


def _book_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a `book` module in a file, nested imports included."""
    out = []
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] == "book":
            out += [(n.lineno, f"{n.module}.{a.name}" if n.module == "book" else n.module) for a in n.names]
        elif isinstance(n, ast.Import):
            out += [(n.lineno, a.name) for a in n.names if a.name.split(".")[0] == "book"]
    return out


def test_one_package_per_chapter_notebook():
    notebooks = {p.stem for p in (REPO / "chapters").glob("[0-9][0-9]_*.ipynb")}
    packages = {p.name[2:] for p in CHAPTERS}
    assert packages == notebooks, f"book/chNN_<stem>/ must mirror chapters/NN_<stem>.ipynb: {packages ^ notebooks}"


def test_chapters_import_only_minillm_and_the_shared_modules():
    bad = []
    for chapter in CHAPTERS:
        own = f"book.{chapter.name}"
        for p in chapter.rglob("*.py"):
            for line, mod in _book_imports(p):
                if not (mod == own or mod.startswith(own + ".") or mod in SHARED):
                    bad.append(f"{p.relative_to(REPO)}:{line} imports {mod}")
    assert not bad, ("a chapter imports minillm and book.{runs,results,viz} only; move what two chapters share "
                     "down:\n" + "\n".join(bad))


def test_shared_modules_import_no_chapter():
    bad = [f"{name}:{line} imports {mod}" for name in SHARED
           for line, mod in _book_imports(BOOK / (name.split(".")[1] + ".py"))
           if re.match(r"book\.ch\d\d_", mod) or mod.startswith("book.grading")]
    assert not bad, bad


def test_chapter_modules_are_named_studies_or_plots():
    bad = [str(p.relative_to(REPO)) for chapter in CHAPTERS for p in chapter.glob("*.py")
           if p.name != "__init__.py" and not re.fullmatch(r"(studies|plots)(_[a-z0-9]+)*\.py", p.name)]
    assert not bad, f"name a chapter's modules studies[_<section>].py or plots[_<section>].py: {bad}"


def test_every_chapter_init_maps_its_modules():
    for chapter in CHAPTERS:
        doc = ast.get_docstring(ast.parse((chapter / "__init__.py").read_text(encoding="utf-8"))) or ""
        missing = [p.name for p in chapter.glob("*.py") if p.name != "__init__.py" and p.name not in doc]
        assert not missing, f"{chapter.name}/__init__.py does not map {missing}"
