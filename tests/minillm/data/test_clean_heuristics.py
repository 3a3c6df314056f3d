"""Tests of minillm.data.clean.heuristics: Gopher/C4 rules and the keyword filter, on hand-computed cases."""
import time

import numpy as np
import pytest

from minillm.data.clean import (RULE_NAMES, QualityRules, heuristic_filter, keyword_filter, keyword_hits,
                                rule_results, text_stats)
from minillm.data.clean.heuristics import tokens
from minillm.data.synthetic import corpus


def stat(text, key, language="en"):
    return text_stats(text, language)[key]


def test_words_and_mean_length():
    assert tokens("The cat sat. Don't stop!", "en") == ["The", "cat", "sat", "Don't", "stop"]
    assert stat("The cat sat.", "n_words") == 3 and stat("The cat sat.", "mean_word_length") == 3.0
    assert stat("a bb cccccc", "mean_word_length") == 3.0
    assert tokens("cafe\u0301 😀 x", "en") == ["cafe\u0301", "x"]      # combining mark stays in its word
    assert tokens("我在公园玩ok 123。", "zh") == ["我", "在", "公", "园", "玩", "ok", "123"]


def test_symbol_ratio():
    assert stat("# a b c ...", "symbol_ratio") == pytest.approx(2 / 3)
    assert stat("a b … c d", "symbol_ratio") == pytest.approx(1 / 4)
    assert stat("###", "symbol_ratio") == float("inf")          # symbols and no words


def test_line_rules():
    assert stat("• a\n- b\nc\n\n", "bullet_lines") == pytest.approx(2 / 3)   # empty lines are not lines
    assert stat("a...\nb…\nc", "ellipsis_lines") == pytest.approx(2 / 3)
    assert stat("Hello.\nhi\nok!\n“quoted”", "terminal_punct") == pytest.approx(3 / 4)
    assert stat("你好。\n好的", "terminal_punct", "zh") == pytest.approx(1 / 2)


def test_alpha_and_stop_words():
    assert stat("abc 123 x1", "alpha_words") == pytest.approx(2 / 3)
    assert stat("The cat and the dog", "stop_words") == 3


def test_duplicate_lines():
    text = "aa\nb\naa\nc"                    # 4 lines, one repeat; characters 2+1+2+1 = 6, repeated 2
    assert stat(text, "dup_lines") == pytest.approx(1 / 4)
    assert stat(text, "dup_line_chars") == pytest.approx(2 / 6)


def test_top_ngram_coverage():
    s = text_stats("the cat the cat sat")   # "the cat" twice covers words 0..3: 12 of 15 characters
    assert s["top_2gram"] == pytest.approx(12 / 15)
    assert s["top_3gram"] == 0.0            # every 3-gram occurs once: no repetition
    # A tie between "x yy" and "zzz w" (both twice) goes to the longer one: words 4..7, 8 of 14 characters.
    assert stat("x yy x yy zzz w zzz w", "top_2gram") == pytest.approx(8 / 14)


def test_duplicated_ngram_coverage():
    s = text_stats("a b c d e x a b c d e")   # "a b c d e" twice: 10 of 11 words (all 1 character)
    assert s["dup_5gram"] == pytest.approx(10 / 11)
    assert s["dup_6gram"] == 0.0


def test_chinese_ngrams_are_twice_as_long_in_characters():
    s = text_stats("心里很高兴心里很高兴", "zh")     # the "2-gram" is 4 characters: 心里很高 covers 8 of 10
    assert s["top_2gram"] == pytest.approx(8 / 10)
    assert s["top_3gram"] == 0.0 and s["dup_5gram"] == 0.0


def test_c4_rules():
    r = rule_results("Lorem ipsum dolor. function() { return 1; } Enable JavaScript.")
    assert not r["lorem_ipsum"] and not r["curly_braces"] and not r["javascript"]


def test_rule_results_thresholds_and_languages():
    text = " ".join(["The cat and the dog sat with me."] * 1)
    r = rule_results(text, "en", QualityRules(min_words=5))
    assert set(r) == set(RULE_NAMES) and r["word_count"] and r["stop_words"]
    assert not rule_results(text, "en", QualityRules(min_words=9))["word_count"]      # 8 words
    assert not rule_results(text, "en", QualityRules(min_stop_words=5))["stop_words"]  # 4 stop words
    zh = rule_results("小明在公园玩。", "zh")
    assert "stop_words" not in zh and "mean_word_length" not in zh and not zh["word_count"]
    assert rule_results("小明在公园玩。", "zh", QualityRules(min_zh_chars=6))["word_count"]
    assert "stop_words" not in rule_results("abc", "other")
    assert set(rule_results("a", "en", QualityRules(disabled={"top_2gram", "javascript"}))) == \
        set(RULE_NAMES) - {"top_2gram", "javascript"}


def test_empty_document():
    r = rule_results("", "en")
    assert not r["word_count"] and not r["mean_word_length"] and r["dup_lines"] and r["bullet_lines"]


@pytest.mark.parametrize("kwargs,err", [
    (dict(min_words=100, max_words=10), ValueError), (dict(max_dup_lines=1.5), ValueError),
    (dict(max_top_ngram=(0.2, 0.2)), ValueError), (dict(disabled={"nope"}), ValueError),
    (dict(min_words=True), TypeError), (dict(min_terminal_punct="0.1"), TypeError),
    (dict(max_symbol_ratio=float("nan")), ValueError),
])
def test_quality_rules_are_validated(kwargs, err):
    with pytest.raises(err):
        QualityRules(**kwargs)


def test_disabled_must_be_a_set_of_names():
    with pytest.raises(TypeError, match="set of rule names"):
        QualityRules(disabled="top_2gram")


def test_heuristic_filter_keeps_prose_and_names_failed_rules():
    story = "\n".join(corpus("story", 8, seed=3).docs)
    bullets = "\n".join(f"• item {i} ..." for i in range(60))
    res = heuristic_filter([story, bullets, ""], ["en", "en", "en"])
    assert res.keep.tolist() == [True, False, False]
    assert res.reasons[0] == []
    assert {"bullet_lines", "ellipsis_lines", "symbol_ratio"} <= set(res.reasons[1])
    assert res.reasons[2] == ["word_count", "mean_word_length", "alpha_words", "stop_words", "terminal_punct"]
    assert res.scores.tolist() == [0, len(res.reasons[1]), 5]
    assert heuristic_filter([story], "en").keep.tolist() == [True]             # one language for all
    with pytest.raises(ValueError, match="one language per text"):
        heuristic_filter([story, story], ["en"])
    with pytest.raises(ValueError, match="language must be one of"):
        heuristic_filter([story], ["fr"])
    with pytest.raises(TypeError, match=r"texts\[0\] is bytes"):
        heuristic_filter([b"abc"], "en")


def test_clean_synthetic_pages_mostly_pass():
    en = corpus("story", 200, seed=5).docs
    zh = corpus("story_zh", 200, seed=5).docs
    pages = ["\n".join(en[i:i + 5]) for i in range(0, 200, 5)] + ["\n".join(zh[i:i + 5]) for i in range(0, 200, 5)]
    res = heuristic_filter(pages, ["en"] * 40 + ["zh"] * 40)
    assert res.keep[:40].mean() >= 0.85 and res.keep[40:].mean() >= 0.85


def test_very_long_single_line_is_fast():
    for text, lang in (("lorem " * 40_000, "en"), ("中文字" * 70_000, "zh"), ("x" * 200_000, "en")):
        start = time.perf_counter()
        rule_results(text, lang)
        assert time.perf_counter() - start < 1.5, lang
    assert stat("word " * 40_000, "top_2gram") == pytest.approx(1.0)


def test_keyword_hits_whole_words_case_and_spacing():
    assert keyword_hits("CASINO casino casinos cheapest cheap!") == 3       # casinos/cheapest are other words
    assert keyword_hits("Click   here,\nclick\there") == 2
    assert keyword_hits("免费免费，点击这里") == 3                             # Chinese matches anywhere
    assert keyword_hits("free money free", ["free money", "free"]) == 2    # the longer entry wins
    with pytest.raises(ValueError, match="blocklist"):
        keyword_hits("a", [])
    with pytest.raises(ValueError, match="blocklist"):
        keyword_hits("a", "casino")


def test_keyword_filter():
    res = keyword_filter(["a cheap hat", "cheap cheap casino", "nothing here"])
    assert res.keep.tolist() == [True, False, True]
    assert res.scores.tolist() == [1, 3, 0] and res.reasons == [[], ["keywords"], []]
    assert keyword_filter(["a cheap hat"], max_hits=0).keep.tolist() == [False]
    with pytest.raises(ValueError, match="max_hits"):
        keyword_filter(["a"], max_hits=-1)


def test_crawl_heuristic_and_keyword_filters(crawl):
    from minillm.data.clean import precision_recall

    texts = [p.text for p in crawl.pages]
    junk = np.array([p.quality != "clean" for p in crawl.pages])
    h = precision_recall(heuristic_filter(texts, [p.language for p in crawl.pages]).drop, junk)
    assert h["precision"] >= 0.6 and h["recall"] >= 0.5, h
    spam = np.array([p.quality == "spam" for p in crawl.pages])
    k = keyword_filter(texts).drop
    assert k[spam].mean() >= 0.8 and (k & ~spam).mean() <= 0.05
