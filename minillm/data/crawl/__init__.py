"""A seeded synthetic "web crawl" with exact ground truth, for chapter 03 (data processing). Survey §4.1.1
(web pages as a data source) and §4.1.2 (quality filtering, de-duplication, privacy reduction).

Real crawls (Common Crawl and its descendants) are mostly junk, and a pipeline is judged by how much junk
it removes and how much good text it keeps. On real data nobody knows the answer; here every page says
what it is, so every cleaning step gets an exact precision and recall.

    >>> crawl = generate_crawl(1000, seed=0, p_spam=0.1)
    >>> crawl.pages[3].html, crawl.pages[3].text, crawl.pages[3].quality
    >>> crawl.labels()["quality"], crawl.summary()

Page kinds (all content from minillm's own corpora: story, story_zh, facts):
  clean formal   English/Chinese prose, 300-1200 characters (120-500 in Chinese), sometimes with a title line
  clean informal the same content, chatty: lowercase, one short line per sentence, "lol", "tbh", "gonna", "!!",
                 emoji (register="informal"). Real content a classifier filter may wrongly drop.
  low_quality    bullet fragments ("• ..."), navigation-only text, a line repeated, tables, error stubs
  spam           keyword stuffing ("cheap casino free click here ...")
  garbled        shuffled letters, mojibake, symbol noise, broken words
  other          clean prose in Cyrillic/Greek/Arabic/Devanagari: our English transliterated letter by letter
  duplicates     exact copies (identical text, different HTML and URL) and near copies (a few words edited)
                 of an earlier fresh clean en/zh page; duplicate_of is that page's id
  contaminated   a clean English page with one of `eval_texts` pasted verbatim as a paragraph
  PII            emails, phones, IPv4, Chinese resident IDs, credit cards in some pages, each a PIISpan of
                 Page.text; decoys (Luhn failures, IDs with wrong check character, versions like 1.2.3.4.5,
                 years, prices) are plain text and never in Page.pii. The footer of the HTML may hold a
                 webmaster e-mail: boilerplate, so neither in Page.text nor in Page.pii.
Each fresh page's text is unique; duplicates are only those labelled. Junk pages drawn from small
vocabularies (spam, navigation) can still resemble one another without being labelled duplicates.

THE EXTRACTION CONTRACT (what a perfect extractor must return: Page.text, exactly)
  1. The main content is inside exactly one container element: <main ...>, <article ...> or
     <div class="content">. Everything outside it is boilerplate: <head> (title, script, style), <header>,
     <nav>, <div class="ad">, <aside class="sidebar">, <footer>, scripts after the container.
  2. Inside the container, these are boilerplate too and must be dropped with their contents:
     <aside ...>...</aside> (in-content ads), <script>...</script>, <!-- comments -->. The container never
     contains nested <div>s.
  3. Every remaining line of content is one block: <p ...>, <h1>, <h2> or <li> (inside <ul>); inside a
     <p>, <br>, <br/> or <br /> also ends a line. Inline tags (<b>, <em>, <strong>, <a href=...>,
     <span ...>) are removed, their text kept.
  4. Text nodes are HTML-escaped: decode entities once (html.unescape): &amp; &lt; &gt; &quot; &#34; &#39;
     &#x27;. Content never contains a raw "<" or "&"; a raw ">" or quote may appear.
  5. Page.text is the lines in document order joined by "\\n". Every line is non-empty, has no leading or
     trailing whitespace and no runs of whitespace, so an extractor may strip lines, collapse whitespace
     runs to one space, and drop empty lines (the source's newlines/indentation between blocks are not
     content) and still match exactly.
PII spans and eval passages index into Page.text, never into the HTML.

Files: model.py (labels, Page, CrawlConfig, Crawl), pages.py (content of each kind), items.py (PII items,
decoys), dups.py (near-duplicate edits), html.py (HTML chrome), words.py (word lists), build.py (the crawl itself).
"""
from minillm.data.crawl.build import generate_crawl
from minillm.data.crawl.model import (DUP_KINDS, LANGUAGES, PII_KINDS, QUALITIES, REGISTERS, Crawl, CrawlConfig, Page,
                    PIISpan)

__all__ = ["generate_crawl", "Crawl", "CrawlConfig", "Page", "PIISpan", "QUALITIES", "LANGUAGES", "REGISTERS",
           "DUP_KINDS", "PII_KINDS"]
