"""The rendered book (book/site.py): the pages in order, the staged Jupyter Book source, a failing chapter failing the
build, and a real build of two pages (~15 s at ci) whose links and figures resolve, then read in headless Chromium
as a reader would: the contents, chapter 00 with its figures loaded, and on to its lab."""
from __future__ import annotations

from pathlib import Path

import os
import shutil

import nbformat
import pytest

from book import site

CHROMIUM = shutil.which("chromium")
# Every image of the page's article has loaded (a broken src leaves naturalWidth at 0).
IMAGES_JS = """() => [...document.querySelectorAll('article img')].map(i => [i.getAttribute('src'), i.complete,
                                                                           i.naturalWidth])"""

needs_jb = pytest.mark.skipif(site.jupyter_book() is None,
                              reason="jupyter-book is not installed (make setup installs requirements.txt)")


def test_pages_come_in_reading_order_chapters_executed_labs_not():
    got = site.pages()
    rels = [p.rel for p in got]
    chapters = [r for r in rels if r.startswith("chapters/")]
    labs = [r for r in rels if r.startswith("labs/")]
    assert rels == chapters + labs and chapters == sorted(chapters) and labs == sorted(labs)
    assert chapters[0] == "chapters/00_welcome.ipynb" and "chapters/09_capstone.ipynb" in chapters
    assert all(p.execute for p in got if p.rel.startswith("chapters/"))
    assert not any(p.execute for p in got if p.rel.startswith("labs/"))
    assert not any("solutions" in r for r in rels)  # solutions are never published
    assert [p.rel for p in site.pages(["labs/00_foundations.ipynb", "chapters/01_scaling_laws.ipynb"])] == [
        "chapters/01_scaling_laws.ipynb", "labs/00_foundations.ipynb"]
    with pytest.raises(ValueError, match="not a notebook of the book.*chapters/00_welcome.ipynb"):
        site.pages(["labs/solutions/00_foundations.ipynb"])


def test_stage_writes_the_toc_the_config_and_marks_labs_not_to_execute(tmp_path):
    sel = site.pages(["chapters/00_welcome.ipynb", "labs/00_foundations.ipynb"])
    site.stage(sel, tmp_path / "src", size="laptop", execute=True)
    toc = (tmp_path / "src" / "_toc.yml").read_text()
    assert "root: intro" in toc and "caption: Chapters" in toc and "caption: Labs" in toc
    assert toc.index("file: chapters/00_welcome") < toc.index("file: labs/00_foundations")
    cfg = (tmp_path / "src" / "_config.yml").read_text()
    assert "execute_notebooks: force" in cfg and "allow_errors: false" in cfg
    intro = (tmp_path / "src" / "intro.md").read_text()
    assert "MINILLM_SIZE=laptop" in intro and "](chapters/00_welcome)" in intro
    lab = nbformat.read(tmp_path / "src" / "labs" / "00_foundations.ipynb", as_version=4)
    chapter = nbformat.read(tmp_path / "src" / "chapters" / "00_welcome.ipynb", as_version=4)
    assert lab.metadata["mystnb"]["execution_mode"] == "off" and "mystnb" not in chapter.metadata
    site.stage(sel[:1], tmp_path / "src", size="ci", execute=False)  # restaging replaces the folder
    assert not (tmp_path / "src" / "labs").exists()
    assert "execute_notebooks: off" in (tmp_path / "src" / "_config.yml").read_text()
    with pytest.raises(ValueError, match="size='huge'"):
        site.build(tmp_path / "x", size="huge")


@needs_jb
def test_a_chapter_that_raises_fails_the_build_and_keeps_the_old_site(tmp_path):
    root = tmp_path / "repo"
    (root / "chapters").mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 00 · Fine"), nbformat.v4.new_code_cell("print('fine')")]
    nbformat.write(nb, root / "chapters" / "00_fine.ipynb")
    html = site.build(tmp_path / "out", root=root)
    assert (html / "chapters" / "00_fine.html").exists()
    nb.cells.append(nbformat.v4.new_code_cell("1 / 0"))
    nbformat.write(nb, root / "chapters" / "00_fine.ipynb")
    failed = r"(?s)failed to execute at MINILLM_SIZE=ci: 00_fine.*1 / 0.*ZeroDivisionError"
    with pytest.raises(RuntimeError, match=failed):
        site.build(tmp_path / "out", root=root)
    assert (html / "chapters" / "00_fine.html").exists()  # the last good site is still there


@pytest.fixture(scope="module")
def two_pages(tmp_path_factory) -> Path:
    if site.jupyter_book() is None:
        pytest.skip("jupyter-book is not installed (make setup installs requirements.txt)")
    out = tmp_path_factory.mktemp("site")
    before = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "Agg"  # as `make test` sets it: the build must still show figures
    try:
        return site.build(out, size="ci", only=["chapters/00_welcome.ipynb", "labs/00_foundations.ipynb"])
    finally:
        if before is None:
            del os.environ["MPLBACKEND"]
        else:
            os.environ["MPLBACKEND"] = before


@pytest.mark.slow
def test_two_pages_build_with_figures_and_every_link_resolves(two_pages):
    res = site.check(two_pages)
    assert res["broken"] == []
    assert {"intro.html", "chapters/00_welcome.html", "labs/00_foundations.html"} <= set(res["pages"])
    chapter_images = [i for i in res["images"] if i.startswith("chapters/00_welcome.html")]
    assert len(chapter_images) >= 2, res["images"]  # the executed chapter shows its figures
    lab = (two_pages / "labs" / "00_foundations.html").read_text()
    assert "raise" in lab and "NotImplementedError" in lab  # the stubs, as handed out
    outputs = 'class="cell_output'
    assert outputs not in lab and outputs in (two_pages / "chapters" / "00_welcome.html").read_text()
    intro = (two_pages / "intro.html").read_text()
    assert 'href="chapters/00_welcome.html"' in intro and 'href="labs/00_foundations.html"' in intro
    (two_pages / "chapters" / "00_welcome.html").rename(two_pages / "moved.html")
    try:
        assert any(b.endswith("chapters/00_welcome.html") for b in site.check(two_pages)["broken"])
    finally:
        (two_pages / "moved.html").rename(two_pages / "chapters" / "00_welcome.html")
    with pytest.raises(FileNotFoundError, match="no index.html"):
        site.check(two_pages / "chapters")


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH (CI: .ci/run installs it with apt-get)")
def test_a_reader_follows_the_contents_to_chapter00_and_on_to_its_lab(two_pages, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        try:
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((two_pages / "intro.html").as_uri())
            assert "minillm" in page.locator("article h1").first.inner_text()
            page.locator("article a[href='chapters/00_welcome.html']").first.click()
            page.wait_for_url("**/chapters/00_welcome.html")
            assert page.locator("article h1").first.inner_text().strip() != ""
            images = page.evaluate(IMAGES_JS)
            assert len(images) >= 2, images  # the executed chapter's figures
            assert all(done and width > 0 for _, done, width in images), images
            page.locator("a.right-next").first.click()  # the theme's "next" link, at the page's foot
            page.wait_for_url("**/labs/00_foundations.html")
            assert "NotImplementedError" in page.locator("article").inner_text()  # the stubs, as handed out
            assert not [e for e in errors if "thebe" not in e.lower() and "mathjax" not in e.lower()], errors
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            raise
        finally:
            browser.close()
