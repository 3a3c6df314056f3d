"""Tests of book/ch03_data/studies_datatrove.py: the crawl through datatrove beside the teaching pipeline."""
import json

import numpy as np
import pytest

from datatrove.data import Document
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter

from book.ch03_data.studies_datatrove import (DATATROVE_STAGES, TEACHING_STAGES, EnglishGopherQuality,
                                              RegexWords, ScriptLanguage, comparison_rows, datatrove_pipeline,
                                              datatrove_study, good_pages, score_kept, teaching_pipeline)
from minillm.data.crawl import generate_crawl
from minillm.data.curation import PipelineConfig, run_pipeline

CFG = PipelineConfig(n_reference_docs=100)


@pytest.fixture(scope="module")
def crawl():
    return generate_crawl(120, seed=3)


@pytest.fixture(scope="module")
def datatrove_run(crawl, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("dt")
    keeps, timing = datatrove_pipeline(crawl, tasks=3, workers=2, workdir=workdir)
    return keeps, timing, workdir


def test_good_pages_and_score_by_hand(crawl):
    labels = crawl.labels()
    good = good_pages(crawl)
    dup_of = labels["duplicate_of"]
    expected = [(q == "clean") and (lang != "other") and d < 0
                for q, lang, d in zip(labels["quality"], labels["language"], dup_of)]
    assert good.tolist() == expected and 0 < good.sum() < len(crawl)
    assert score_kept(good, crawl) == {"kept": good.sum(), "good": good.sum(), "precision": 1.0, "recall": 1.0,
                                       "redundant": 0}
    everything = score_kept(np.ones(len(crawl), bool), crawl)
    assert everything["precision"] == pytest.approx(good.sum() / len(crawl))
    assert everything["recall"] == 1.0 and everything["redundant"] == (dup_of >= 0).sum()
    # keep a copy instead of its good original: the content is still kept once
    copied = np.unique(dup_of[(dup_of >= 0) & good[np.maximum(dup_of, 0)]])
    assert len(copied) >= 2
    swap = good.copy()
    swap[copied] = False
    swap[[int(np.flatnonzero(dup_of == o)[0]) for o in copied]] = True
    assert score_kept(swap, crawl) == score_kept(good, crawl)
    # half the good pages plus some junk
    half = good & (np.arange(len(crawl)) % 2 == 0)
    junk = (labels["quality"] != "clean") & (dup_of < 0) & (np.arange(len(crawl)) % 3 == 0)
    s = score_kept(half | junk, crawl)
    assert s["precision"] == pytest.approx(half.sum() / (half.sum() + junk.sum()))
    assert s["recall"] == pytest.approx(half.sum() / good.sum()) and s["redundant"] == 0
    with pytest.raises(ValueError, match="one decision per page"):
        score_kept(np.ones(3, bool), crawl)


def test_teaching_pipeline_equals_run_pipeline_before_decontamination(crawl):
    keeps, seconds = teaching_pipeline(crawl, CFG)
    assert list(keeps) == list(TEACHING_STAGES) == list(seconds)
    res = run_pipeline(crawl, CFG)
    f = res.flags
    expected = ~f["language"] & ~f["exact_dup"] & ~f["near_dup"]
    for name in CFG.use_filters:
        expected &= ~f[name]
    assert np.array_equal(keeps["near_dup"], expected)
    stages = list(keeps.values())
    assert all((later <= earlier).all() for earlier, later in zip(stages, stages[1:]))  # each stage only removes


def test_regex_words_and_custom_filters():
    words = RegexWords()
    assert words.word_tokenize("Tom's cat, 3 apples! 猫在。") == ["Tom's", "cat", ",", "3", "apples", "!", "猫", "在", "。"]
    assert words.sent_tokenize("One. Two? Three") == ["One.", "Two?", "Three"]
    zh, other = Document(text="我们今天去公园玩。", id="0"), Document(text="Ἐν ἀρχῇ ἦν ὁ λόγος", id="1")
    lang = ScriptLanguage()
    assert lang.filter(zh) is True and zh.metadata["language"] == "zh"
    assert lang.filter(other) == (False, "other_script")
    short_en = Document(text="Too short.", id="2", metadata={"language": "en"})
    assert EnglishGopherQuality(language=words).filter(short_en) == (False, "gopher_short_doc")
    assert EnglishGopherQuality(language=words).filter(zh) is True  # English rules leave Chinese pages alone


def test_datatrove_stages_match_the_filters_run_directly(crawl, datatrove_run):
    """The executor (3 tasks, 2 workers) decides each page as the same steps called in this process do."""
    keeps, timing, _ = datatrove_run
    assert list(keeps) == list(DATATROVE_STAGES)
    words = RegexWords()
    extractor, lang = Trafilatura(favour_precision=True, deduplicate=False), ScriptLanguage()
    filters = [GopherRepetitionFilter(language=words), GopherQualityFilter(language=words), C4QualityFilter(language=words)]
    expected = {s: np.zeros(len(crawl), bool) for s in DATATROVE_STAGES[:-1]}
    for i, page in enumerate(crawl.pages):
        text = extractor.extract(page.html)
        if not text:
            continue
        expected["extract"][i] = True
        doc = Document(text=text, id=str(page.id))
        if lang.filter(doc) is not True:
            continue
        expected["language"][i] = True
        for stage, flt in zip(DATATROVE_STAGES[2:5], filters):
            if doc.metadata["language"] == "en" and flt.filter(doc) is not True:
                break
            expected[stage][i] = True
    for stage in DATATROVE_STAGES[:-1]:
        assert np.array_equal(keeps[stage], expected[stage]), stage
    assert set(timing["seconds"]) == {"filter", "minhash_signatures", "minhash_buckets", "minhash_clusters", "minhash_filter"}


def test_datatrove_minhash_removes_exact_copies(crawl, datatrove_run):
    keeps, _, workdir = datatrove_run
    before, after = keeps["c4_quality"], keeps["minhash"]
    assert (after <= before).all() and after.sum() < before.sum()
    read = lambda folder: [json.loads(line) for f in sorted((workdir / folder).glob("*.jsonl")) for line in open(f)]  # noqa: E731
    filtered, output = read("filtered"), read("output")
    assert sorted(int(d["id"]) for d in output) == np.flatnonzero(after).tolist()
    texts = [d["text"] for d in output]
    assert len(set(texts)) == len(texts)  # no two kept pages are the same text
    surplus = len(filtered) - len({d["text"] for d in filtered})
    assert before.sum() - after.sum() >= surplus > 0  # at least every exact copy beyond the first went


def test_datatrove_study_rows_and_summary():
    out = datatrove_study(n_pages=60, seed=5, tasks=2, workers=2, cfg=CFG)
    rows = out["rows"]
    assert [r["stage"] for r in rows] == list(TEACHING_STAGES) + list(DATATROVE_STAGES)
    for pipeline in ("teaching", "datatrove"):
        last = [r for r in rows if r["pipeline"] == pipeline][-1]
        final = out["summary"][pipeline]
        assert {k: last[k] for k in ("kept", "precision", "recall", "redundant")} == \
            {k: final[k] for k in ("kept", "precision", "recall", "redundant")}
        assert final["pages_per_s"] == pytest.approx(60 / final["seconds"])
        assert all(r["seconds"] >= 0 for r in rows if r["pipeline"] == pipeline)
    assert [r["pipeline"] for r in comparison_rows(out["summary"])] == ["teaching", "datatrove"]
    by_lang = {(r["pipeline"], r["language"]): r for r in out["by_language"]}
    assert sum(by_lang["teaching", lang]["good"] for lang in ("en", "zh")) == out["summary"]["teaching"]["good"]


def test_datatrove_pipeline_refuses_what_cannot_run(crawl, monkeypatch):
    import sys

    with pytest.raises(ValueError, match="positive ints"):
        datatrove_pipeline(crawl, tasks=0)
    with pytest.raises(TypeError, match="generate_crawl"):
        datatrove_pipeline(["<html></html>"])
    monkeypatch.setattr(sys.modules["__main__"], "__file__", "<stdin>", raising=False)
    with pytest.raises(RuntimeError, match="workers=1"):  # forkserver workers would never start (they hang)
        datatrove_pipeline(crawl, tasks=2, workers=2)
