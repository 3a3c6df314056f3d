"""The library's shape, enforced: what the rules at the top of minillm/__init__.py promise, checked by parsing.

- nothing under minillm/ imports `book` (the textbook's package) or reads bench/results;
- subpackages depend on each other one way only (no A -> B and B -> A, counting imports inside functions too);
- imports inside functions stay rare (they hide dependencies; a cycle must be broken by design instead);
- one file name, one meaning: no two modules share a file name, no ordinal names (`_b.py`), no module named
  after a chapter; every __init__.py maps its modules in a docstring;
- the library stays compact (a line budget).
"""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "minillm"
MAX_LINES = 26_000            # the library's budget (21,000 -> 23,000 for #21; -> 26,000 for #22-#23: CLI package, fine-tuning recipe, FlashAttention)
MAX_FUNCTION_IMPORTS = 40     # imports inside functions (optional dependencies, deliberate lazy loads)
CHAPTER_WORDS = ("emergence", "utilization", "welcome", "capstone", "chapter", "lab", "study", "studies", "plots",
                 "landscape", "grading")


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(LIB.rglob("*.py")):
        parts = list(p.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(tree: ast.AST) -> list[tuple[ast.AST, list[str]]]:
    """(node, dotted names it imports) for every import statement, nested ones included."""
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and not n.level:
            out.append((n, [n.module] + [f"{n.module}.{a.name}" for a in n.names]))
        elif isinstance(n, ast.ImportFrom) and n.level:
            raise AssertionError("relative import: minillm uses absolute imports (`from minillm.x import y`)")
        elif isinstance(n, ast.Import):
            out.append((n, [a.name for a in n.names]))
    return out


def _function_imports(tree: ast.AST) -> set[int]:
    return {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}


MODULES = _modules()
TREES = {m: ast.parse(p.read_text(encoding="utf-8"), filename=str(p)) for m, p in MODULES.items()}


def _node(module: str) -> str:
    """The dependency-graph node of a module: its subpackage (minillm.data, ...) or its top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else "minillm"


def test_nothing_in_the_library_imports_the_book():
    bad = [f"{MODULES[m].relative_to(REPO)}:{n.lineno}" for m, tree in TREES.items() for n, names in _imports(tree)
           if any(x == "book" or x.startswith("book.") for x in names)]
    assert not bad, f"minillm must not import book (book imports minillm, never the reverse): {bad}"


def test_nothing_in_the_library_reads_shipped_results():
    bad = []
    for m, tree in TREES.items():
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for n in ast.walk(tree):
            if (isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
                    and re.search(r"bench[/\\]results|^bench$|^results$", n.value)):
                bad.append(f"{MODULES[m].relative_to(REPO)}:{n.lineno} {n.value!r}")
    assert not bad, f"the library must not look for bench/results (book/results.py does): {bad}"


def test_subpackages_depend_one_way():
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for m, tree in TREES.items():
        if MODULES[m].name == "__init__.py" and m == "minillm":
            continue  # the package root re-exports the public API from everywhere
        for n, names in _imports(tree):
            for t in names:
                if t in MODULES and _node(t) != _node(m) and _node(t) != "minillm":
                    edges[_node(m), _node(t)].append(f"{m} -> {t}")
    two_way = {(a, b): edges[a, b] + edges[b, a] for (a, b) in edges if (b, a) in edges and a < b}
    assert not two_way, "two-way dependencies between subpackages:\n" + "\n".join(
        f"{a} <-> {b}: {v}" for (a, b), v in two_way.items())


def test_top_level_modules_do_not_import_each_other_in_a_cycle():
    graph = defaultdict(set)
    for m, tree in TREES.items():
        for _, names in _imports(tree):
            graph[m] |= {t for t in names if t in MODULES and t != m and not t.startswith(m + ".")}
    tops = [m for m in MODULES if m.count(".") == 1 and MODULES[m].name != "__init__.py"]
    cycles = [(a, b) for a in tops for b in tops if a < b and b in graph[a] and a in graph[b]]
    assert not cycles, f"top-level modules importing each other: {cycles}"


def test_imports_inside_functions_are_rare():
    counts = {m: len(_function_imports(tree) & {id(n) for n, _ in _imports(tree)}) for m, tree in TREES.items()}
    total = sum(counts.values())
    worst = sorted(((c, m) for m, c in counts.items() if c), reverse=True)[:8]
    assert total <= MAX_FUNCTION_IMPORTS, (f"{total} imports inside functions (budget {MAX_FUNCTION_IMPORTS}); "
                                           f"hoist them to the top of the module: {worst}")


def test_file_names_have_one_meaning():
    names = defaultdict(list)
    for p in MODULES.values():
        if p.name != "__init__.py":
            names[p.name].append(str(p.relative_to(REPO)))
    dup = {k: v for k, v in names.items() if len(v) > 1}
    assert not dup, f"one file name, one meaning: {dup}"
    ordinal = [str(p) for p in MODULES.values() if re.search(r"_(b|c|2|3|new|old)\.py$", p.name)]
    assert not ordinal, f"ordinal file names: {ordinal}"
    named_after_chapters = [m for m in MODULES if any(w in m.split(".")[-1] for w in CHAPTER_WORDS)]
    assert not named_after_chapters, f"library modules named after the book: {named_after_chapters}"
    singular_plural = {p.stem for p in MODULES.values()} & {p.stem + "s" for p in MODULES.values()}
    assert not singular_plural, f"`x.py` beside `xs.py`: {singular_plural}"


def test_every_init_maps_its_modules():
    for m, p in MODULES.items():
        if p.name != "__init__.py":
            continue
        doc = ast.get_docstring(TREES[m]) or ""
        assert doc, f"{p.relative_to(REPO)} has no docstring mapping its modules"
        children = sorted(c.stem if c.is_file() else c.name for c in p.parent.iterdir()
                          if (c.suffix == ".py" and c.name != "__init__.py") or (c / "__init__.py").is_file())
        missing = [c for c in children if c not in doc and not c.startswith("_")]  # private helpers may go unmapped
        assert not missing, f"{p.relative_to(REPO)}'s docstring does not mention {missing}"
        imports = [n for n in TREES[m].body if isinstance(n, (ast.Import, ast.ImportFrom))]
        has_all = any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets)
                      for n in TREES[m].body)
        assert not imports or has_all, f"{p.relative_to(REPO)} imports names but has no __all__"


def test_the_library_stays_compact():
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in MODULES.values())
    assert lines <= MAX_LINES, f"minillm/ has {lines} lines (budget {MAX_LINES}): is some of it courseware for book/?"


def test_the_library_tests_need_no_book():
    """tests/minillm exercises the library alone, as a user of `pip install minillm` would have it."""
    bad = []
    for p in sorted((REPO / "tests" / "minillm").rglob("*.py")):
        for n, names in _imports(ast.parse(p.read_text(encoding="utf-8"))):
            if any(x == "book" or x.startswith("book.") for x in names):
                bad.append(f"{p.relative_to(REPO)}:{n.lineno}")
    assert not bad, f"library tests import book (move the test to tests/book/): {bad}"
