"""Wrap a page's main content in realistic HTML chrome. Survey §4.1.2: before any filtering, a pipeline must
extract the main text of a page from navigation, ads, scripts and footers; this module writes pages that
make an extractor do that work, while keeping an exact contract (see minillm.data.crawl's docstring).

Variety: the content container is <main>, <article> or <div class="content">; lines are <p>, <h1>/<h2>,
<li> or <br>-separated; inline <b>/<em>/<a>/<span> inside paragraphs; ads (<aside>), <script> and HTML
comments inside the container; entities (&amp; &lt; &gt; &quot; &#39; &#x27;) in both content and chrome.
"""
from __future__ import annotations

import re

from minillm.data.crawl import words as W
from minillm.data.crawl.words import Rng

_HAN_RUN = re.compile(r"[\u4e00-\u9fff]{2,6}")


def _escape(s: str, style: int) -> str:
    """HTML-escape text content; the style varies how quotes and '>' are written (all decode the same)."""
    s = s.replace("&", "&amp;").replace("<", "&lt;")
    if style != 2:
        s = s.replace(">", "&gt;")
    if style == 0:
        s = s.replace('"', "&quot;").replace("'", "&#39;")
    elif style == 1:
        s = s.replace('"', "&#34;").replace("'", "&#x27;")
    return s


def _inline(r: Rng, s: str) -> str:
    """Wrap one word (or a run of Han characters) in an inline tag; whole tokens only, so no entity is split."""
    tag = r.pick(("b", "em", "a", "span", "strong"))
    open_ = {"a": f'<a href="/tag/{r.int(1, 999)}">', "span": '<span class="hl">'}.get(tag, f"<{tag}>")
    toks = s.split(" ")
    if len(toks) > 1:
        i = r.int(0, len(toks) - 1)
        toks[i] = f"{open_}{toks[i]}</{tag}>"
        return " ".join(toks)
    runs = list(_HAN_RUN.finditer(s))
    if not runs:
        return s
    m = r.pick(runs)
    return f"{s[:m.start()]}{open_}{m.group()}</{tag}>{s[m.end():]}"


def _blocks(r: Rng, lines: list[str], layout: str, esc) -> list[str]:
    if layout == "list":
        return ["<ul>"] + [f"  <li>{esc(x)}</li>" for x in lines] + ["</ul>"]
    out, start = [], 0
    if layout == "title_prose":
        h = r.int(1, 2)
        out.append(f"<h{h}>{esc(lines[0])}</h{h}>")
        start = 1
    i = start
    while i < len(lines):
        if layout == "lines" and r.chance(0.5):  # a few short lines in one <p>, separated by <br>
            k = r.int(2, 4)
            br = r.pick(("<br>", "<br/>", "<br />"))
            out.append("<p>" + br.join(esc(x) for x in lines[i:i + k]) + "</p>")
            i += k
        else:
            p = esc(lines[i])
            if r.chance(0.25):
                p = _inline(r, p)
            out.append(r.pick(("<p>", "<p>", '<p class="text">')) + p + "</p>")
            i += 1
    return out


def render(r: Rng, text: str, layout: str, lang: str, url: str) -> str:
    """The full HTML of a page whose main content is `text` (lines joined by "\\n"); `lang` is "en", "zh" or
    the script of an other-language page."""
    lines = text.split("\n")
    style = r.int(0, 2)
    esc = lambda s: _escape(s, style)  # noqa: E731
    site = url.split("/")[2]
    blocks = _blocks(r, lines, layout, esc)
    # Boilerplate inside the container: an ad, a script, a comment, between content blocks.
    for extra in ('<aside class="ad">' + r.pick(W.AD_TEXTS) + "</aside>", "<script>ads.push({slot: 3});</script>",
                  f"<!-- {r.pick(W.SITE_WORDS)} block -->"):
        if r.chance(0.2):
            blocks.insert(r.int(0, len(blocks)), extra)
    container = r.pick(("main", "main", "article", "div"))
    open_ = {"main": r.pick(("<main>", '<main id="content">')), "article": '<article class="post">',
             "div": '<div class="content">'}[container]
    nav_words = W.NAV_ZH if lang == "zh" else W.NAV_EN
    nav = " | ".join(f'<a href="/{i}">{r.pick(nav_words)}</a>' for i in range(r.int(3, 7)))
    title = esc(lines[0][:60]) + " &mdash; " if r.chance(0.5) else ""
    head = [f"<title>{title}{site}</title>", '<meta charset="utf-8">']
    if r.chance(0.8):
        head.append(f"<script>{r.pick(W.JS_SNIPPETS)}</script>")
    if r.chance(0.7):
        head.append(f"<style>{r.pick(W.CSS_SNIPPETS)}</style>")
    body = []
    if r.chance(0.5):
        body.append(f"<header><h1>{site}</h1></header>")
    body.append(f"<nav>{nav} &nbsp;&raquo;</nav>")
    if r.chance(0.7):
        body.append(f'<div class="ad">{r.pick(W.AD_TEXTS)}</div>')
    body.append(open_)
    body += ["  " + b for b in blocks]
    body.append(f"</{container}>")
    if r.chance(0.4):
        body.append('<aside class="sidebar"><h3>Popular</h3><ul><li><a href="/p/1">Top 10 &amp; more</a></li>'
                    f"<li>{r.pick(W.LOW_EN)}</li></ul></aside>")
    footer = f"&copy; {r.int(2005, 2024)} {site}. All rights reserved. Privacy &amp; Terms"
    if r.chance(0.3):  # an address in the boilerplate: not main content, so not in Page.pii
        footer += f" | webmaster@{site.removeprefix('www.')}"
    body.append(f"<footer>{footer}</footer>")
    if r.chance(0.3):
        body.append(f"<script>{r.pick(W.JS_SNIPPETS)}</script>")
    doctype = "<!DOCTYPE html>\n" if r.chance(0.7) else ""
    lang_attr = {"en": "en", "zh": "zh-CN", "cyrillic": "ru", "greek": "el", "arabic": "ar", "devanagari": "hi"}[lang]
    return (f"{doctype}<html lang=\"{lang_attr}\">\n<head>\n" + "\n".join(head) + "\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
