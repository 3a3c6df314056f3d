"""End to end: a reader opens the rendered book (book/site.py) in Chromium, follows the contents to chapter 00, sees
its figures load, and moves on to the next page. Two pages are built here at the ci size (~15 s); `make book`
builds them all."""
from __future__ import annotations

import shutil

import pytest

from book import site

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH (CI: .ci/run installs it with apt-get)"),
    pytest.mark.skipif(site.jupyter_book() is None, reason="jupyter-book is not installed (make setup installs it)"),
]
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -r requirements.txt)")

# Every image of the page's article has loaded (a broken src leaves naturalWidth at 0).
IMAGES_JS = """() => [...document.querySelectorAll('article img')].map(i => [i.getAttribute('src'), i.complete,
                                                                           i.naturalWidth])"""


def test_a_reader_follows_the_contents_to_chapter00_and_on_to_its_lab(tmp_path):
    html = site.build(tmp_path / "site", size="ci", only=["chapters/00_welcome.ipynb", "labs/00_foundations.ipynb"])
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((html / "intro.html").as_uri())
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
