"""Tests of minillm.data.clean.extract: HTML -> main text (Survey §4.1.2)."""
import time

import pytest

from minillm.data.clean import extract_paragraphs, extract_text


def test_entities_and_nested_inline_tags():
    html = "<p>Tom &amp; <b>Mia <i>met</i></b> at&#x20;the &lt;mill&gt; &#20013;&#x6587; &quot;ok&quot;</p>"
    assert extract_text(html) == 'Tom & Mia met at the <mill> 中文 "ok"'


def test_blocks_become_lines_and_whitespace_collapses_inside_a_paragraph():
    html = ("<body><h1>Title</h1><p>one\n   two\t three </p><div>four<br>five<br/>six</div>"
            "<ul><li>a</li><li>b</ul><p></p><p>   </p></body>")
    assert extract_text(html) == "Title\none two three\nfour\nfive\nsix\na\nb"
    assert extract_paragraphs(html) == ["Title", "one two three", "four", "five", "six", "a", "b"]


def test_nbsp_is_kept_but_ascii_whitespace_collapses():
    assert extract_text("<p>a&nbsp;b  \n c</p>") == "a\xa0b c"


def test_scripts_styles_comments_and_p_inside_strings_are_dropped():
    html = ("<p>keep</p><script>var s = \"<p>not text</p>\"; if (a < b) {}</script>"
            "<style>p { color: red } /* <p>x</p> */</style><!-- <p>hidden comment</p> --><p>also</p>"
            "<noscript><p>enable js</p></noscript>")
    assert extract_text(html) == "keep\nalso"


def test_boilerplate_elements_and_classes_are_removed():
    html = ("<html><head><title>Site title</title><meta charset=utf-8></head><body>"
            "<header><h1>Site</h1></header><nav><ul><li>Home<li>About</ul></nav>"
            "<div class='cookie-banner'>We use cookies</div><div id='sidebar'><p>side</p></div>"
            "<div class='main-menu'>Menu</div><div class='ad-slot'><p>Buy now</p></div>"
            "<div class='advert'>x</div><aside>aside</aside><div hidden>h</div>"
            "<div style='display: none'>n</div><div role='navigation'>r</div>"
            "<div class='loading header-less'><p>content</p></div>"  # "header-less" names a header
            "<div class='loading'><p>real content</p></div>"        # "loading" contains "ad" but is not "ad"
            "<footer>(c) 2024</footer></body></html>")
    assert extract_text(html) == "real content"


def test_main_and_article_are_preferred_when_present():
    html = ("<body><p>outside before</p><div class='x'><main><h2>T</h2><p>inside <b>main</b></p></main></div>"
            "<p>outside after</p></body>")
    assert extract_text(html) == "T\ninside main"
    assert extract_text("<p>a</p><article><p>b</p></article><div role='main'><p>c</p></div>") == "b\nc"
    assert extract_text("<div><p>a</p></div><p>b</p>") == "a\nb"     # no main: all non-boilerplate text


def test_unclosed_and_stray_tags_are_tolerated():
    html = "<main><p>one<p>two<div class='ad'><p>ad text</div><p>three</span></main><p>after"
    assert extract_text(html) == "one\ntwo\nthree"
    # An unclosed <li> inside a nav closes with the nav: what follows is content again.
    assert extract_text("<nav><ul><li>Home<li>About</nav><p>body</p>") == "body"


def test_unicode_is_preserved_exactly():
    text = "小明在公园玩。 😀 cafe\u0301 Ünïcödé"
    assert extract_text(f"<p>{text}</p>") == text
    assert extract_text(f"<p>{text}</p>".encode("utf-8")) == text


def test_bytes_are_decoded_as_utf8_or_rejected():
    assert extract_text("<p>你好 &amp; hi</p>".encode("utf-8")) == "你好 & hi"
    assert extract_text(b"\xef\xbb\xbf<p>bom</p>") == "bom"      # a UTF-8 byte-order mark is dropped
    with pytest.raises(ValueError, match="not valid UTF-8.*byte 3"):
        extract_text(b"<p>\xff</p>")
    with pytest.raises(ValueError, match="UTF-8"):
        extract_text("<p>é</p>".encode("latin-1"))


@pytest.mark.parametrize("bad", [None, 3, ["<p>a</p>"]])
def test_non_str_input_raises_type_error(bad):
    with pytest.raises(TypeError, match="html must be str"):
        extract_text(bad)


def test_empty_and_text_only_pages():
    assert extract_text("") == ""
    assert extract_text("<html><body><nav>only nav</nav></body></html>") == ""
    assert extract_text("just text, no tags") == "just text, no tags"


def test_a_very_long_single_line_is_fast():
    words = "word " * 40_000                       # 200k characters in one paragraph
    start = time.perf_counter()
    out = extract_text(f"<main><p>{words}</p><script>{'x' * 200_000}</script></main>")
    assert time.perf_counter() - start < 2.0
    assert out == words.strip()


def test_crawl_pages_extract_to_their_ground_truth_text(crawl):
    exact = [extract_text(p.html) == p.text for p in crawl.pages]
    rate = sum(exact) / len(exact)
    assert rate >= 0.98, f"exact-match rate {rate:.3f}"
