"""Tests of minillm.data.clean.perplexity: the Kneser-Ney character LM and the perplexity filter."""
import math
import time

import numpy as np
import pytest

from minillm.data.clean import CharNgramLM, perplexity_filter, perplexity_threshold
from minillm.data.synthetic import corpus


def test_unigram_kneser_ney_by_hand():
    # order 1 on "aab": counts a:2, b:1; n1 = n2 = 1 so D = 1/3; T = 3, 2 types, 3 symbols (a, b, unknown).
    lm = CharNgramLM(order=1).fit(["aab"])
    pa, pb, punk = (2 - 1 / 3 + (1 / 3) * 2 / 3) / 3, (1 - 1 / 3 + (1 / 3) * 2 / 3) / 3, ((1 / 3) * 2 / 3) / 3
    assert (pa, pb, punk) == pytest.approx((17 / 27, 8 / 27, 2 / 27))
    assert lm.log_prob("ab") == pytest.approx(math.log(pa) + math.log(pb))
    assert lm.log_prob("c") == pytest.approx(math.log(punk))


def test_bigram_kneser_ney_by_hand():
    # order 2 on "ab": bigrams (BOS,a), (a,b) once each, so D2 = n1/(n1+2 n2) = 1, clipped to 0.95.
    # Unigram continuation counts: a:1 (after BOS), b:1 (after a); D1 = 0.95 too; 3 symbols.
    lm = CharNgramLM(order=2).fit(["ab"])
    D = 0.95
    p1 = (1 - D + D * 2 / 3) / 2                       # P1(a) = P1(b)
    p1_unk = (D * 2 / 3) / 2
    p_a_bos = (1 - D) / 1 + D * 1 / 1 * p1             # context BOS: total 1, 1 type
    assert lm.log_prob("ab") == pytest.approx(2 * math.log(p_a_bos))      # P(b|a) is the same number
    assert lm.log_prob("b") == pytest.approx(math.log(D * p1))           # b never followed BOS
    assert lm.log_prob("ba") == pytest.approx(math.log(D * p1) + math.log(p1))   # context "b" unseen
    assert lm.log_prob("z") == pytest.approx(math.log(D * p1_unk))


@pytest.fixture(scope="module")
def lm_and_docs():
    docs = corpus("story", 1200, seed=1).docs
    return CharNgramLM(order=4).fit(docs[:1000]), docs[1000:]


@pytest.mark.parametrize("context", ["", "M", "Mia w", "zzq", "x" * 10])
def test_probabilities_sum_to_one(lm_and_docs, context):
    lm, _ = lm_and_docs
    alphabet = [chr(c) for c in lm.chars_] + ["\u2603"]           # every known character + one unknown
    total = sum(math.exp(lm.char_log_probs(context + a)[-1]) for a in alphabet)
    assert total == pytest.approx(1.0, abs=1e-9)


def test_clean_text_is_less_perplexing_than_shuffled_text(lm_and_docs):
    lm, held = lm_and_docs
    rng = np.random.default_rng(0)
    shuffled = ["".join(rng.permutation(list(t))) for t in held]
    p_clean, p_shuf = lm.perplexity(held), lm.perplexity(shuffled)
    assert np.all(p_clean < p_shuf)
    assert np.median(p_clean) < 3 < 20 < np.median(p_shuf)
    assert np.all(p_clean >= 1.0)


def test_empty_unicode_and_long_inputs(lm_and_docs):
    lm, _ = lm_and_docs
    ppl = lm.perplexity(["", "😀 cafe\u0301", "中文"])
    assert math.isnan(ppl[0]) and np.all(np.isfinite(ppl[1:])) and lm.log_prob("") == 0.0
    start = time.perf_counter()
    assert np.isfinite(lm.perplexity(["the cat " * 25_000])[0])
    assert time.perf_counter() - start < 0.5


def test_bad_input():
    with pytest.raises(ValueError, match="not fitted"):
        CharNgramLM().log_prob("a")
    with pytest.raises(ValueError, match="every training text is empty"):
        CharNgramLM().fit(["", ""])
    with pytest.raises(ValueError, match="bits per n-gram"):
        CharNgramLM(order=13).fit(["abcdefghijklmnopqrst"])      # 22 ids -> 5 bits x 13 > 64
    with pytest.raises(TypeError, match="text must be str"):
        CharNgramLM().fit(["a"]).log_prob(b"a")
    with pytest.raises(TypeError, match=r"texts\[0\] is int"):
        CharNgramLM().fit([3])
    with pytest.raises(ValueError, match="order"):
        CharNgramLM(order=0)


def test_perplexity_filter_single_and_per_language():
    en = corpus("story", 400, seed=2).docs
    zh = corpus("story_zh", 400, seed=2).docs
    lm_en, lm_zh = CharNgramLM(4).fit(en[:300]), CharNgramLM(3).fit(zh[:300])
    limit = perplexity_threshold(lm_en, en[300:350], quantile=0.9)
    assert np.mean(lm_en.perplexity(en[300:350]) <= limit) == pytest.approx(0.9, abs=0.03)
    rng = np.random.default_rng(1)
    texts = en[350:360] + ["".join(rng.permutation(list(t))) for t in en[360:370]] + [""]
    res = perplexity_filter(texts, lm_en, limit * 1.5)
    assert res.keep.tolist() == [True] * 10 + [False] * 11
    assert res.reasons[-1] == ["empty"] and res.reasons[-2] == ["perplexity"]
    # One model and one threshold per language, as CCNet does.
    limits = {"en": limit * 1.5, "zh": perplexity_threshold(lm_zh, zh[300:350], 1.0) * 1.5}
    mixed, langs = en[350:355] + zh[350:355], ["en"] * 5 + ["zh"] * 5
    res = perplexity_filter(mixed, {"en": lm_en, "zh": lm_zh}, limits, langs)
    assert res.keep.all()
    assert not perplexity_filter(zh[350:355], lm_en, limit * 1.5).keep.any()   # English model on Chinese
    with pytest.raises(ValueError, match="no language model for \\['other'\\]"):
        perplexity_filter(["x"], {"en": lm_en}, 10.0, ["other"])
    with pytest.raises(ValueError, match="pass languages"):
        perplexity_filter(["x"], {"en": lm_en}, 10.0)
    with pytest.raises(TypeError, match="lm must be"):
        perplexity_filter(["x"], "lm", 10.0)
    with pytest.raises(ValueError, match="max_perplexity"):
        perplexity_filter(["x"], lm_en, 0.5)


def test_crawl_junk_is_more_perplexing_than_clean_pages(crawl):
    from minillm.data.clean import roc_auc

    # Reference models trained on clean synthetic text (not on the crawl), one per language.
    lms = {"en": CharNgramLM(4).fit(corpus("story", 500, seed=7).docs + corpus("facts", 500, seed=7).docs),
           "zh": CharNgramLM(3).fit(corpus("story_zh", 500, seed=7).docs)}
    pages = [p for p in crawl.pages if p.language in lms]
    ppl = np.array([lms[p.language].perplexity([p.text])[0] for p in pages])
    junk = np.array([p.quality != "clean" for p in pages])
    assert roc_auc(ppl, junk) >= 0.9
