"""Tests of chapter 03's cleaning and de-duplication figures and widgets (book.ch03_data.plots_cleaning,
book.ch03_data.plots_dedup): what each figure draws, and the widgets' numbers against independent computations."""
import dataclasses
import math

import matplotlib
import numpy as np
import pytest

from book.ch03_data import plots_cleaning as cp
from book.ch03_data import plots_dedup as dp
from minillm.data.clean import precision_recall
from minillm.data.crawl import generate_crawl
from minillm.data.dedup import near_dedup, shingles
from minillm.data.curation import PipelineConfig, run_pipeline
from minillm.data.synthetic import corpus

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def result():
    return run_pipeline(generate_crawl(200, seed=0), PipelineConfig(n_reference_docs=100))


def _labelled(fig):
    for ax in fig.axes:
        if ax.get_title():
            assert ax.get_xlabel()
    assert any(ax.get_title() for ax in fig.axes) and any(ax.get_ylabel() for ax in fig.axes)


# --------------------------------------------------------------------------------------------- static figures


def test_plot_stage_scores_draws_each_score_per_stage():
    rows = [{"stage": "language", "precision": 1.0, "recall": 0.5, "f1": 2 / 3},
            {"stage": "keyword", "precision": float("nan"), "recall": 0.0, "f1": 0.0},
            {"stage": "pii", "precision": 0.8, "recall": 0.9, "f1": 0.85}]
    fig = cp.plot_stage_scores(rows)
    ax = fig.axes[0]
    assert len(ax.containers) == 3
    for cont, key in zip(ax.containers, ("precision", "recall", "f1")):
        want = [0.0 if math.isnan(r[key]) else r[key] for r in rows]
        assert [p.get_width() for p in cont] == pytest.approx(want)
    assert [t.get_text() for t in ax.texts] == ["n/a"]  # the NaN precision is marked, not drawn
    assert [t.get_text() for t in ax.get_yticklabels()] == ["language", "keyword", "pii"]
    _labelled(fig)


def test_plot_register_bias_side_by_side():
    rows = [{"filter": "heuristic", "dropped_formal": 0.1, "dropped_informal": 0.25, "n_formal": 9, "n_informal": 4},
            {"filter": "perplexity", "dropped_formal": 0.05, "dropped_informal": 1.0, "n_formal": 9, "n_informal": 4}]
    fig = cp.plot_register_bias(rows)
    ax = fig.axes[0]
    heights = [[p.get_height() for p in c] for c in ax.containers]
    assert heights == [pytest.approx([0.1, 0.05]), pytest.approx([0.25, 1.0])]
    assert "clean informal (4 pages)" in [t.get_text() for t in ax.get_legend().get_texts()]
    _labelled(fig)


def test_plot_compression_two_panels_one_line_per_kind():
    rows = [{"kind": k, "vocab_size": v, "actual_vocab_size": v - 1, "corpus": c, "bytes_per_token": bpt}
            for k, base in (("bpe", 3.0), ("unigram", 2.5)) for c, scale in (("en", 1.0), ("zh", 0.8))
            for v, bpt in ((1000, base * scale), (500, (base - 1) * scale))]
    fig = cp.plot_compression(rows)
    assert len(fig.axes) == 2 and [ax.get_title().split()[0] for ax in fig.axes] == ["English", "Chinese"]
    for ax, scale in zip(fig.axes, (1.0, 0.8)):
        assert [ln.get_label() for ln in ax.lines] == ["bpe", "unigram"]
        for ln, base in zip(ax.lines, (3.0, 2.5)):
            assert list(ln.get_xdata()) == [499, 999]  # sorted by the vocabulary actually learned
            assert list(ln.get_ydata()) == pytest.approx([(base - 1) * scale, base * scale])
    _labelled(fig)


def test_row_validation():
    with pytest.raises(ValueError, match="rows is empty"):
        cp.plot_stage_scores([])
    with pytest.raises(TypeError, match="list of dicts"):
        cp.plot_register_bias({"filter": "x"})
    with pytest.raises(TypeError, match=r"rows\[0\] is str"):
        cp.plot_stage_scores(["language"])
    with pytest.raises(ValueError, match=r"no \['f1'\]"):
        cp.plot_stage_scores([{"stage": "x", "precision": 1, "recall": 1}])
    with pytest.raises(ValueError, match="corpus \\['fr'\\]"):
        cp.plot_compression([{"kind": "bpe", "actual_vocab_size": 9, "corpus": "fr", "bytes_per_token": 2.0}])


# --------------------------------------------------------------------------------------------- MinHash estimates


def _edited_docs(n_base=40, seed=0):
    """Long synthetic documents (8 stories each) and copies with 0-30% of their words replaced."""
    stories = corpus("story", 8 * n_base, seed).docs
    docs = [" ".join(stories[8 * i:8 * i + 8]) for i in range(n_base)]
    rng = np.random.default_rng(seed)
    pairs = []
    for i, rate in enumerate(np.linspace(0.0, 0.3, n_base)):
        words = docs[i].split()
        for k in rng.choice(len(words), size=int(rate * len(words)), replace=False):
            words[k] = f"edit{k}"
        docs.append(" ".join(words))
        pairs.append((i, len(docs) - 1))
    return docs, np.array(pairs)


def test_jaccard_estimates_are_accurate_and_cover_the_range():
    docs, pairs = _edited_docs()
    est = dp.jaccard_estimates(docs, num_perm=256, n_pairs=100, pairs=pairs, seed=3)
    assert len(est["exact"]) == len(pairs) + 100 and est["given"].sum() == len(pairs)
    assert np.array_equal(est["pairs"][:len(pairs)], pairs)
    for (a, b), j in list(zip(est["pairs"], est["exact"]))[::15]:  # exact Jaccard from the shingle strings
        sa, sb = set(shingles(docs[a])), set(shingles(docs[b]))
        assert j == pytest.approx(len(sa & sb) / len(sa | sb), abs=0.01)
    assert est["exact"].min() < 0.1 and est["exact"].max() == 1.0  # random pairs ... an unedited copy
    assert np.mean((est["exact"] > 0.3) & (est["exact"] < 0.7)) > 0.05  # and the middle of the range
    assert est["mean_abs_error"] < 0.05 and est["within_2sigma"] > 0.85
    assert est["std"] == pytest.approx(np.sqrt(est["exact"] * (1 - est["exact"]) / 256))
    fig = dp.plot_jaccard_estimates(est)
    ax = fig.axes[0]
    scat = [c for c in ax.collections if c.get_offsets().shape[0] > 0 and hasattr(c, "get_sizes")][-2:]
    offsets = np.concatenate([c.get_offsets() for c in scat])
    assert offsets.shape == (len(est["exact"]), 2)
    assert sorted(map(tuple, offsets)) == sorted(zip(est["exact"], est["estimated"]))
    assert list(ax.lines[0].get_xdata()) == [0, 1] == list(ax.lines[0].get_ydata())  # y = x
    _labelled(fig)


def test_jaccard_estimates_errors():
    docs = ["a b c d e f", "a b c d e g", "x y z"]
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        dp.jaccard_estimates(docs, pairs=[0, 1])
    with pytest.raises(ValueError, match="two different documents"):
        dp.jaccard_estimates(docs, pairs=[(0, 3)])
    with pytest.raises(ValueError, match="two different documents"):
        dp.jaccard_estimates(docs, pairs=[(1, 1)])
    with pytest.raises(ValueError, match="no pairs"):
        dp.jaccard_estimates(docs, n_pairs=0)
    with pytest.raises(ValueError, match="at least 2 texts"):
        dp.jaccard_estimates(docs[:1])
    with pytest.raises(ValueError, match="texts is empty"):
        dp.jaccard_estimates([])
    with pytest.raises(ValueError, match="jaccard_estimates"):
        dp.plot_jaccard_estimates({"exact": []})


# --------------------------------------------------------------------------------------------- FilterExplorer


def _independent(result, language, threshold):
    labels, ppl = result.extras["labels"], result.extras["perplexity"]
    m = ((labels["duplicate_of"] < 0) & (labels["language"] != "other") & (result.extras["languages"] == language)
         & np.isfinite(ppl))
    drop, junk = ppl[m] > threshold, labels["quality"][m] != "clean"
    out = precision_recall(drop, junk)
    for reg in ("formal", "informal"):
        c = ~junk & (labels["register"][m] == reg)
        out[f"dropped_{reg}"] = drop[c].mean() if c.any() else float("nan")
    return out


def test_filter_explorer_matches_an_independent_computation(result):
    w = cp.FilterExplorer(result)
    assert w.result["language"] == "en"
    # It starts at the pipeline's own cut: same decisions as the pipeline's perplexity stage on these pages.
    labels = result.extras["labels"]
    m = w.pages["en"]
    assert np.array_equal(w.scores[m] > w.result["threshold"], result.flags["perplexity"][m])
    for lang, t in (("en", 5.0), ("en", 40.0), ("zh", 30.0)):
        got = w.update(max_perplexity=t, language=lang)
        want = _independent(result, lang, t)
        assert got["threshold"] == pytest.approx(t) and got["language"] == lang
        for k in ("precision", "recall", "f1", "dropped_formal", "dropped_informal"):
            assert got[k] == pytest.approx(want[k], nan_ok=True), k
    assert 0 < w.update(max_perplexity=40.0, language="en")["recall"] < 1
    line = [ln for ln in w.figure.axes[0].lines if ln.get_linestyle() == "--"][0]
    assert list(line.get_xdata()) == pytest.approx([math.log10(40.0)] * 2)
    assert len(w.figure.axes[0].patches) == 3 * 30  # three histograms on shared bins
    assert "precision" in w.summary.value
    huge = w.update(max_perplexity=w.threshold_range[1])
    assert huge["recall"] == 0 and huge["precision"] == 0 and huge["dropped_formal"] == 0
    assert (labels["quality"][m] != "clean").any()
    zh = w.update(language="zh")  # a new language without a threshold: the pipeline's cut for Chinese
    assert zh["threshold"] == w.pipeline_thresholds["zh"]


def test_filter_explorer_errors(result):
    w = cp.FilterExplorer(result)
    lo, hi = w.threshold_range
    with pytest.raises(ValueError, match="outside the slider's range"):
        w.update(max_perplexity=hi * 2)
    with pytest.raises(ValueError, match="outside the slider's range"):
        w.update(max_perplexity=lo / 2)
    with pytest.raises(TypeError, match="must be a number"):
        w.update(max_perplexity="20")
    with pytest.raises(ValueError, match="language='fr'"):
        w.update(language="fr")
    with pytest.raises(TypeError, match="PipelineResult"):
        cp.FilterExplorer({"extras": {}})
    extras = {k: v for k, v in result.extras.items() if k != "perplexity"}
    with pytest.raises(ValueError, match=r"lacks \['perplexity'\]"):
        cp.FilterExplorer(dataclasses.replace(result, extras=extras))
    extras["perplexity"] = np.full(len(result.texts), np.nan)
    with pytest.raises(ValueError, match="no fresh English or Chinese page"):
        cp.FilterExplorer(dataclasses.replace(result, extras=extras))


def test_filter_explorer_controls_redraw(result):
    w = cp.FilterExplorer(result)
    w.controls["language"].value = "zh"  # what a click does: the pipeline's Chinese cut, redrawn
    assert w.result["language"] == "zh" and w.result["threshold"] == w.pipeline_thresholds["zh"]
    w.controls["max_perplexity"].value = 50.0
    assert w.result == w.scores_for("zh", 50.0) and w.figure.axes[0].get_title().startswith("Chinese")


# --------------------------------------------------------------------------------------------- LSHExplorer


@pytest.fixture(scope="module")
def english_crawl():
    crawl = generate_crawl(300, seed=0)
    labels = crawl.labels()
    idx = np.flatnonzero(labels["language"] == "en")
    new = np.full(len(crawl.pages), -1)
    new[idx] = np.arange(len(idx))
    dup = labels["duplicate_of"][idx]
    dup = np.where(dup >= 0, new[np.maximum(dup, 0)], -1)  # re-index into the English subset
    assert (dup[labels["duplicate_of"][idx] >= 0] >= 0).all()
    return [crawl.pages[i].text for i in idx], dup


def test_lsh_explorer_scores_against_the_truth(english_crawl):
    texts, dup = english_crawl
    w = dp.LSHExplorer(texts, dup)
    assert len(w.true_jaccard) == (dup >= 0).sum() and w.true_jaccard.max() == 1.0  # exact copies
    lo = w.update(threshold=0.5, bands=32)
    hi = w.update(threshold=0.9)  # bands unchanged: same candidates, stricter verification
    assert hi["bands"] == 32 and hi["rows"] == 4 and hi["candidates"] == lo["candidates"]
    assert lo["recall"] >= hi["recall"] and lo["recall"] == 1.0 and hi["recall"] < 1.0  # near copies: J ~ 0.75
    ref = near_dedup(texts, threshold=0.5, num_perm=128, n=5, unit="word", seed=1, bands=32)
    want = precision_recall(~ref.keep, dup >= 0)
    got = w.update(threshold=0.5)
    assert (got["precision"], got["recall"]) == pytest.approx((want["precision"], want["recall"]))
    assert got["candidates"] == ref.n_candidates
    ax = w.figure.axes[0]
    curve = ax.lines[0]
    assert np.max(np.abs(curve.get_ydata() - (1 - (1 - curve.get_xdata() ** 4) ** 32))) < 1e-12
    assert list(ax.lines[1].get_xdata()) == [0.5, 0.5]
    assert sum(p.get_height() for p in w.figure.axes[1].patches) == len(w.true_jaccard)
    assert "candidate pairs" in w.summary.value


def test_lsh_explorer_errors():
    texts = ["a b c d e f g", "a b c d e f h", "p q r s t u v"]
    w = dp.LSHExplorer(texts, [-1, 0, -1], num_perm=16)
    with pytest.raises(ValueError, match="must divide num_perm=16"):
        w.update(bands=3)
    with pytest.raises(ValueError, match="must divide"):
        w.update(bands=0)
    with pytest.raises(TypeError, match="bands must be an int"):
        w.update(bands=4.0)
    with pytest.raises(ValueError, match="outside the slider's range"):
        w.update(threshold=0.99)
    with pytest.raises(TypeError, match="threshold must be a number"):
        w.update(threshold="0.5")
    with pytest.raises(ValueError, match="one int per text"):
        dp.LSHExplorer(texts, [-1, 0])
    with pytest.raises(ValueError, match="index of another text"):
        dp.LSHExplorer(texts, [-1, 1, -1])
    with pytest.raises(ValueError, match="index of another text"):
        dp.LSHExplorer(texts, [-1, 5, -1])
