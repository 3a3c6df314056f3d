"""HTML to main text: the first step of cleaning a web crawl (Survey §4.1.2, "Quality filtering"; web pages
"from which the text content is extracted" before any filter can read it, §4.1.1).

A crawled page is mostly *boilerplate*: navigation menus, cookie banners, ads, sidebars, footers and
scripts. Left in, it becomes millions of copies of "Accept all cookies" in the training set. This module
is a small rule-based extractor (the family of jusText/trafilatura, much simplified) on top of the standard
library's `html.parser.HTMLParser`:

* drop whole subtrees that are never content: <script>, <style>, <nav>, <footer>, <header>, <aside>,
  <head>, <form>, ..., elements marked hidden, and elements whose class/id/role names boilerplate
  ("ad", "advert", "banner", "cookie", "sidebar", "menu", ...);
* if the page has <main> or <article> (or role="main"), keep only the text inside them;
* block elements (<p>, <div>, <li>, headings, <br>, table cells, ...) end a paragraph; each paragraph
  becomes one line, its runs of HTML whitespace collapsed to one space; paragraphs are joined by "\\n";
* entities (&amp;, &#x4e2d;, &nbsp;) are decoded by the parser (convert_charrefs=True).

The content of <script> and <style> is raw text for an HTML parser (CDATA), so a "<p>" inside a
JavaScript string never opens a paragraph. Whitespace is collapsed as HTML does: only ASCII whitespace;
a decoded &nbsp; (U+00A0) stays, since an author wrote it on purpose. <pre> is treated like <p> (its
line breaks are collapsed too): the crawl's pages are prose.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

from minillm.data.clean._common import check_text

# Subtrees that are never main content.
SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "nav", "footer", "header", "aside",
                       "head", "title", "form", "iframe", "svg", "canvas", "button", "select", "object"})
# Tags that end a paragraph where they open or close.
BLOCK_TAGS = frozenset({"p", "div", "li", "ul", "ol", "dl", "dt", "dd", "br", "hr", "h1", "h2", "h3", "h4", "h5",
                        "h6", "table", "tr", "td", "th", "thead", "tbody", "tfoot", "caption", "section",
                        "article", "main", "blockquote", "pre", "figure", "figcaption", "address", "body",
                        "html", "details", "summary"})
# HTML elements that never have an end tag: they must not be pushed on the open-element stack.
VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                       "source", "track", "wbr"})
MAIN_TAGS = frozenset({"main", "article"})
# class/id words that mark boilerplate; matched as whole words of the attribute ("ad-slot" yes, "header"
# not via "ad", "loading" not via "ad").
BOILERPLATE_WORDS = frozenset({"ad", "ads", "advert", "adverts", "advertisement", "advertising", "banner",
                               "cookie", "cookies", "consent", "sidebar", "menu", "navbar", "nav", "promo",
                               "sponsor", "sponsored", "popup", "newsletter", "share", "social", "related",
                               "breadcrumb", "breadcrumbs", "footer", "header"})
BOILERPLATE_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search", "dialog"})
_ATTR_WORD = re.compile(r"[a-z0-9]+")
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")


def _is_boilerplate(tag: str, attrs: dict[str, str | None]) -> bool:
    if tag in SKIP_TAGS or "hidden" in attrs or attrs.get("aria-hidden") == "true":
        return True
    style = (attrs.get("style") or "").replace(" ", "").lower()
    if "display:none" in style or "visibility:hidden" in style:
        return True
    if (attrs.get("role") or "").lower() in BOILERPLATE_ROLES:
        return True
    words = _ATTR_WORD.findall(f"{attrs.get('class') or ''} {attrs.get('id') or ''}".lower())
    return any(w in BOILERPLATE_WORDS for w in words)


class _MainTextParser(HTMLParser):
    """Walks the tag stream once, keeping paragraphs with a flag 'inside <main>/<article>'."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool]] = []   # (tag, opened a skipped subtree, opened a main)
        self.skip_depth = 0                              # open skipped subtrees around the cursor
        self.main_depth = 0                              # open <main>/<article> around the cursor
        self.buf: list[str] = []                         # text pieces of the current paragraph
        self.buf_in_main = False                         # whether any piece came from inside main
        self.paragraphs: list[tuple[str, bool]] = []     # (paragraph, inside main)

    def _flush(self) -> None:
        if self.buf:
            para = _HTML_SPACE.sub(" ", "".join(self.buf)).strip(" ")
            if para:
                self.paragraphs.append((para, self.buf_in_main))
        self.buf, self.buf_in_main = [], False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in BLOCK_TAGS:
            self._flush()
        if tag in VOID_TAGS:
            return
        a = dict(attrs)
        skip = _is_boilerplate(tag, a)
        main = tag in MAIN_TAGS or (a.get("role") or "").lower() == "main"
        self.stack.append((tag, skip, main))
        self.skip_depth += skip
        self.main_depth += main

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in BLOCK_TAGS:        # <br/>, <hr/>: a paragraph break; a self-closed <div/> opens nothing
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in BLOCK_TAGS:
            self._flush()
        # Close up to the matching open tag: browsers close unclosed <p>/<li>/<span> inside it implicitly.
        # A stray end tag with no matching open tag is ignored, as browsers do.
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                for _, skip, main in self.stack[i:]:
                    self.skip_depth -= skip
                    self.main_depth -= main
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        if self.skip_depth == 0:
            self.buf.append(data)
            self.buf_in_main |= self.main_depth > 0


def _decode(html: str | bytes | bytearray) -> str:
    if isinstance(html, (bytes, bytearray)):
        try:
            # utf-8-sig: a byte-order mark at the start is dropped rather than becoming text.
            return bytes(html).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ValueError(f"html bytes are not valid UTF-8 (byte {e.start}: {e.reason}); decode them "
                             f"yourself with the page's charset and pass a str") from None
    return check_text(html, "html")


def extract_paragraphs(html: str | bytes) -> list[str]:
    """The main-content paragraphs of a page, in order (see the module docstring for the rules).

    `html` is a str, or bytes that must be UTF-8 (a ValueError names the first bad byte otherwise; this
    extractor does not guess charsets). Anything else raises TypeError.
    """
    p = _MainTextParser()
    p.feed(_decode(html))
    p.close()
    p._flush()
    in_main = [para for para, m in p.paragraphs if m]
    return in_main if in_main else [para for para, _ in p.paragraphs]


def extract_text(html: str | bytes) -> str:
    """HTML to its main text: the main-content paragraphs joined by "\\n" ("" for a page with none).

    `html` is a str or UTF-8 bytes (other bytes raise a ValueError naming the first bad byte); anything
    else raises TypeError.

    >>> extract_text("<nav>Home</nav><main><p>Tom &amp; Mia</p><p>met.</p></main>")
    'Tom & Mia\\nmet.'
    """
    return "\n".join(extract_paragraphs(html))
