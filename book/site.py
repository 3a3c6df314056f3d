"""The rendered book: the chapters and labs as a static website, for reading before installing anything.

    python -m book.site build                          # every chapter executed at MINILLM_SIZE=ci (~5 min), labs as
                                                       # exercises; the site lands in _build/site/html
    python -m book.site build --size laptop            # outputs from a laptop-size execution (about an hour)
    python -m book.site build --no-execute             # text and code only, in seconds
    python -m book.site build --only chapters/00_welcome.ipynb --out /tmp/site    # a few pages
    python -m book.site check _build/site/html         # every internal link and image of a built site resolves

`make book` runs the first line (`make book MINILLM_SIZE=laptop` the second). The site is built by Jupyter Book 1
(Sphinx with myst-nb and the book theme; Jupyter Book 2 fetches its theme from the internet at build time, so it is
not used) from a staging folder: the notebooks are copied there with a generated `_toc.yml` (chapters in order,
then the labs) and `_config.yml`, so the repository is never written to and a chapter's run folders stay in the
staging copy. Chapters are executed in a fresh kernel each, at the size asked; a cell that raises fails the build
(the book never shows a traceback as a result). Labs are rendered as students receive them (`labs/`, stubs and
all) and are not executed: their stub cells raise by design, and solutions are never published. Widgets need a
live kernel; where a chapter also draws its widget's figure once (`render()`), that figure is what the site shows.

Publish by copying the `html` folder to any static host, e.g. a `gh-pages` branch for GitHub Pages.
"""
from __future__ import annotations

import argparse
import html.parser
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parents[1]
SIZES = ("ci", "laptop", "gpu")
TITLE = "minillm: an interactive LLM textbook and lab"


@dataclass(frozen=True)
class Page:
    """One notebook of the site: its path in the repository (chapters/... or labs/...) and whether it is executed."""

    source: Path
    execute: bool

    @property
    def rel(self) -> str:  # "chapters/00_welcome.ipynb"
        return f"{self.source.parent.name}/{self.source.name}"


def pages(only: list[str] | None = None, root: Path = ROOT) -> list[Page]:
    """The site's notebooks in reading order: chapters/NN_*.ipynb, then the student labs/NN_*.ipynb.

    only: repository paths ("chapters/00_welcome.ipynb") to keep; each must be one of the book's notebooks.
    """
    chapters = sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb"))
    labs = sorted((root / "labs").glob("[0-9][0-9]_*.ipynb"))
    if not chapters:
        raise FileNotFoundError(f"no chapters/NN_*.ipynb under {root}: run this from a minillm checkout")
    found = [Page(p, True) for p in chapters] + [Page(p, False) for p in labs]
    if only is None:
        return found
    known = {p.source.relative_to(root).as_posix(): p for p in found}
    unknown = [o for o in only if Path(o).as_posix() not in known]
    if unknown:
        raise ValueError(f"--only {', '.join(unknown)}: not a notebook of the book; choose from "
                         f"{', '.join(sorted(known))}")
    keep = {Path(o).as_posix() for o in only}
    return [p for p in found if p.source.relative_to(root).as_posix() in keep]


def _title(nb_path: Path) -> str:
    """The notebook's first markdown heading ("# 01 · Scaling laws" -> "01 · Scaling laws"), else its file stem."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return nb_path.stem


def stage(selected: list[Page], src: Path, *, size: str, execute: bool, timeout_s: int = 900) -> None:
    """Write the Jupyter Book source folder: notebooks (labs marked not to execute), intro.md, _toc.yml, _config.yml."""
    import nbformat

    if src.exists():
        shutil.rmtree(src)
    for page in selected:
        dest = src / page.rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        nb = nbformat.read(page.source, as_version=4)
        if not page.execute:  # myst-nb's per-notebook switch: rendered as stored
            nb.metadata.setdefault("mystnb", {})["execution_mode"] = "off"
        nbformat.write(nb, dest)
    chapters = [p for p in selected if p.execute]
    labs = [p for p in selected if not p.execute]
    how = (f"executed at `MINILLM_SIZE={size}`" if execute else "not executed (text and code only)")
    lines = [f"# {TITLE}", "",
             "An interactive textbook and lab that follows *A Survey of Large Language Models* (Zhao et al.). "
             "Each chapter explains a topic and runs real experiments with `minillm`, a compact PyTorch package "
             "that trains real models; each lab asks you to implement a piece of it, graded by tests.", "",
             f"This site shows the chapters {how}. Outputs at `ci` size are quick smoke runs: the prose quotes the "
             "shipped laptop-size records. The labs are shown as students receive them. To run everything yourself: "
             "`make lab` in a clone of the repository.", ""]
    for caption, group in (("Chapters", chapters), ("Labs", labs)):
        if group:
            lines += [f"## {caption}", ""]
            lines += [f"- [{_title(p.source)}]({Path(p.rel).with_suffix('').as_posix()})" for p in group]
            lines.append("")
    (src / "intro.md").write_text("\n".join(lines), encoding="utf-8")
    toc = ["format: jb-book", "root: intro", "parts:"]
    for caption, group in (("Chapters", chapters), ("Labs", labs)):
        if group:
            toc += [f"  - caption: {caption}", "    chapters:"]
            toc += [f"      - file: {Path(p.rel).with_suffix('').as_posix()}" for p in group]
    (src / "_toc.yml").write_text("\n".join(toc) + "\n", encoding="utf-8")
    config = [f'title: "{TITLE}"', 'author: "the minillm authors"', "only_build_toc_files: true",
              "execute:", f"  execute_notebooks: {'force' if execute else 'off'}", f"  timeout: {timeout_s}",
              "  allow_errors: false", "  stderr_output: remove-warn",
              "html:", "  use_repository_button: false", "  use_issues_button: false",
              "sphinx:", "  config:", "    html_show_copyright: false", "    nb_merge_streams: true",
              "    suppress_warnings: [\"mystnb.unknown_mime_type\"]"]
    (src / "_config.yml").write_text("\n".join(config) + "\n", encoding="utf-8")


def jupyter_book() -> str | None:
    """The jupyter-book command beside this Python (the venv's), else on PATH; None when it is not installed."""
    beside = Path(sys.executable).with_name("jupyter-book")
    return str(beside) if beside.exists() else shutil.which("jupyter-book")


def build(out: str | Path = ROOT / "_build" / "site", *, size: str = "ci", execute: bool = True,
          only: list[str] | None = None, quiet: bool = True, root: Path = ROOT) -> Path:
    """Stage the notebooks under out/src and build the site into out/html; returns the html folder.

    Raises RuntimeError with Jupyter Book's last output when the build fails (a chapter cell raised, a timeout),
    and leaves the previous site in place until the new one is complete (built aside, then swapped in)."""
    if size not in SIZES:
        raise ValueError(f"size={size!r} is not valid; choose one of {', '.join(SIZES)}")
    exe = jupyter_book()
    if exe is None:
        raise RuntimeError("jupyter-book is not installed: run `make setup` (it installs requirements.txt, which "
                           "holds jupyter-book<2)")
    out = Path(out).resolve()
    src, work = out / "src", out / "work"
    stage(pages(only, root), src, size=size, execute=execute)
    if work.exists():
        shutil.rmtree(work)
    # Figures are outputs only with the inline backend: an inherited MPLBACKEND=Agg (as `make test` sets for
    # nbval) would make every plt.show() draw nothing, and the site would have no figures.
    env = {**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline", "MINILLM_SIZE": size,
           "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    cmd = [exe, "build", str(src), "--path-output", str(work),
           "--builder", "html"] + (["-q"] if quiet else [])
    proc = subprocess.run(cmd, env=env, capture_output=quiet, text=True)
    built = work / "_build" / "html"
    if proc.returncode != 0 or not (built / "index.html").exists():
        tail = ((proc.stdout or "") + (proc.stderr or ""))[-4000:] if quiet else ""
        reports = sorted((work / "_build" / "html" / "reports").glob("**/*.err.log")) if built.exists() else []
        detail = "\n".join(r.read_text(encoding="utf-8", errors="replace")[-2000:] for r in reports[:2])
        raise RuntimeError(f"the book did not build (exit {proc.returncode}): {' '.join(cmd)}\n{tail}\n{detail}")
    failed = sorted((built / "reports").glob("**/*.err.log")) if (built / "reports").exists() else []
    if failed:  # myst-nb reports a failed execution as a warning and renders the page without outputs
        log = re.sub(r"\x1b\[[0-9;]*m", "", failed[0].read_text(encoding="utf-8", errors="replace"))
        where = log.find("An error occurred while executing")
        raise RuntimeError(f"a notebook failed to execute at MINILLM_SIZE={size}: "
                           + ", ".join(f.name.removesuffix(".err.log") for f in failed)
                           + f" (the site was not updated)\n{log[where if where >= 0 else 0:][-3000:]}")
    final = out / "html"
    if final.exists():
        shutil.rmtree(final)
    built.rename(final)
    shutil.rmtree(work, ignore_errors=True)
    return final


class _Refs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        elif tag == "img" and a.get("src"):
            self.images.append(a["src"] or "")


def check(html_dir: str | Path) -> dict[str, list[str]]:
    """{"pages", "images", "broken"}: every built page, every image it shows, and each internal link or image whose
    file does not exist ("page -> target"). External links (http:, mailto:) and in-page anchors are not followed."""
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").exists():
        raise FileNotFoundError(f"{html_dir} holds no index.html: build the site first (python -m book.site build)")
    found: dict[str, list[str]] = {"pages": [], "images": [], "broken": []}
    for page in sorted(html_dir.rglob("*.html")):
        rel = page.relative_to(html_dir).as_posix()
        if rel.startswith(("_static/", "reports/", "genindex", "search")):
            continue
        found["pages"].append(rel)
        refs = _Refs()
        refs.feed(page.read_text(encoding="utf-8", errors="replace"))
        for kind, targets in (("link", refs.links), ("image", refs.images)):
            for t in targets:
                url = urlparse(t)
                if url.scheme or t.startswith(("#", "//")) or not url.path:
                    continue
                target = (page.parent / unquote(url.path)).resolve()
                if kind == "image":
                    found["images"].append(f"{rel} -> {url.path}")
                if not target.exists():
                    found["broken"].append(f"{rel} -> {t}")
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m book.site", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the site")
    b.add_argument("--out", default=str(ROOT / "_build" / "site"), help="output folder [default: _build/site]")
    b.add_argument("--size", default=os.environ.get("MINILLM_SIZE") or "ci", choices=SIZES,
                   help="MINILLM_SIZE the chapters execute at [default: $MINILLM_SIZE or ci]")
    b.add_argument("--no-execute", action="store_true", help="render the notebooks as stored, without outputs")
    b.add_argument("--only", action="append", default=None, help="a notebook to include (repeatable)")
    b.add_argument("--verbose", action="store_true", help="show Jupyter Book's output")
    c = sub.add_parser("check", help="check a built site's internal links and images")
    c.add_argument("html_dir")
    args = ap.parse_args(argv)
    if args.cmd == "build":
        html_dir = build(args.out, size=args.size, execute=not args.no_execute, only=args.only,
                         quiet=not args.verbose)
    else:
        html_dir = Path(args.html_dir)
    res = check(html_dir)
    print(f"{html_dir}: {len(res['pages'])} pages, {len(res['images'])} images, {len(res['broken'])} broken")
    for b in res["broken"]:
        print("  broken:", b)
    if args.cmd == "build":
        print(f"open {html_dir / 'index.html'}")
    return 1 if res["broken"] else 0


if __name__ == "__main__":
    sys.exit(main())
