"""De-duplication and decontamination on the synthetic web crawl, whose pages carry ground truth
(Survey §4.1.2)."""
import numpy as np
import pytest

import minillm.data.crawl as crawl_mod
from minillm.data.dedup import decontaminate, exact_dedup, jaccard, near_dedup, shingle_hashes

UNIT = {"en": ("word", 5, 13), "zh": ("char", 5, 20)}  # language -> (shingle unit, MinHash n, decontam n)


@pytest.fixture(scope="module")
def crawl():
    return crawl_mod.generate_crawl(n_pages=1000, seed=0)


def _pages(crawl, **match):
    return [p for p in crawl.pages if all(getattr(p, k) == v for k, v in match.items())]


def test_exact_duplicates_found(crawl):
    texts = [p.text for p in crawl.pages]
    r = exact_dedup(texts, normalize=False)
    dups = _pages(crawl, dup_kind="exact")
    if not dups:
        pytest.skip("this crawl has no exact duplicates")
    for p in dups:
        assert not r.keep[p.id], f"exact duplicate page {p.id} was kept"
        assert texts[r.duplicate_of[p.id]] == p.text and r.duplicate_of[p.id] < p.id
    # Nothing else is removed: every removed page really repeats an earlier text.
    removed = np.flatnonzero(~r.keep)
    assert all(texts[i] in texts[:i] for i in removed)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_near_duplicates_found(crawl, language):
    unit, n, _ = UNIT[language]
    pages = _pages(crawl, language=language)
    near = [p for p in pages if p.dup_kind == "near"]
    if not near:
        pytest.skip(f"this crawl has no near-duplicate {language} pages")
    index = {p.id: k for k, p in enumerate(pages)}
    # The crawl edits ~3% of the units of a near duplicate: 5-gram Jaccard ~0.75, so a low threshold.
    r = near_dedup([p.text for p in pages], threshold=0.6, num_perm=256, n=n, unit=unit)
    # Ground truth: planted pairs similar enough to count at this threshold (a heavy edit may not be).
    similar = [p for p in near if p.duplicate_of in index and jaccard(
        shingle_hashes(p.text, n, unit), shingle_hashes(crawl.pages[p.duplicate_of].text, n, unit)) >= 0.7]
    if not similar:
        pytest.skip(f"no {language} near-duplicate pair reaches Jaccard 0.7")
    found = [r.cluster[index[p.id]] == r.cluster[index[p.duplicate_of]] for p in similar]
    assert np.mean(found) >= 0.9, f"found {sum(found)} of {len(similar)} planted near duplicates"
    # Precision: removed pages are planted duplicates (exact or near), not unrelated pages.
    removed = [pages[k] for k in np.flatnonzero(~r.keep)]
    assert np.mean([p.duplicate_of is not None for p in removed]) >= 0.9


def test_contaminated_pages_found(crawl):
    if not crawl.eval_texts or not any(p.contaminated for p in crawl.pages):
        pytest.skip("this crawl has no contaminated pages")
    hit = np.zeros(len(crawl.pages), dtype=bool)
    for language, (unit, _, n) in UNIT.items():
        pages = _pages(crawl, language=language)
        if pages:
            r = decontaminate([p.text for p in pages], crawl.eval_texts, n=n, unit=unit)
            hit[[p.id for p in pages]] = ~r.keep
    truth = np.array([p.contaminated for p in crawl.pages])
    assert hit[truth].mean() >= 0.9, f"found {hit[truth].sum()} of {truth.sum()} contaminated pages"
    assert hit[~truth].mean() <= 0.02, f"{hit[~truth].sum()} clean pages flagged"
