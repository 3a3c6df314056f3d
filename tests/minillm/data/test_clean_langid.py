"""Tests of minillm.data.clean.langid: script heuristics and the n-gram naive-Bayes identifier."""
import math
import time

import numpy as np
import pytest

from minillm.data.clean import SCRIPTS, NgramLanguageID, script_counts, script_language, script_of
from minillm.data.synthetic import corpus

CYRILLIC = dict(zip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                    "абцдефгхийклмнопqрстуввксызАБЦДЕФГХИЙКЛМНОПQРСТУВВКСЫЗ"))
GREEK = dict(zip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                 "αβψδεφγηιξκλμνοπqρστθωωχυζΑΒΨΔΕΦΓΗΙΞΚΛΜΝΟΠQΡΣΤΘΩΩΧΥΖ"))


def transliterate(text: str, table: dict) -> str:
    """English written in another alphabet: pseudo-text of an 'other' language (q stays Latin, rarely used)."""
    return text.translate(str.maketrans(table))


@pytest.mark.parametrize("text,script", [
    ("hello world", "latin"), ("Ünïcödé façade", "latin"), ("你好，世界", "han"), ("привет мир", "cyrillic"),
    ("γειά σου κόσμε", "greek"), ("مرحبا بالعالم", "arabic"), ("नमस्ते दुनिया", "devanagari"),
    ("שלום עולם", "other"), ("こんにちは", "other"), ("안녕하세요", "other"),
    ("", "other"), ("123 !!! 😀 ...", "other"),     # no letters at all
    ("Mia 去了学校", "han"),                         # 4 Han letters beat 3 Latin ones
    ("ab 中文", "latin"),                           # a tie goes to the script listed first
])
def test_script_of(text, script):
    assert script_of(text) == script


def test_script_counts_exact():
    # combining marks, digits, punctuation and emoji are not letters; é (precomposed) and e are Latin.
    counts = script_counts("Ab1 中文 é e\u0301 Ωж! 😀")
    expected = dict.fromkeys(SCRIPTS, 0) | {"latin": 4, "han": 2, "greek": 1, "cyrillic": 1}
    assert counts.tolist() == [expected[s] for s in SCRIPTS]


def test_script_language():
    assert [script_language(t) for t in ("the cat", "小猫", "кошка", "")] == ["en", "zh", "other", "other"]


def test_script_of_is_vectorized_on_a_long_document():
    text = "abc 中文 " * 30_000                           # 240k characters
    start = time.perf_counter()
    assert script_of(text) == "latin"
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("bad", [None, b"abc", 5])
def test_non_str_raises(bad):
    with pytest.raises(TypeError, match="must be str"):
        script_of(bad)


def test_naive_bayes_scores_match_hand_computation():
    # Unigrams of " ab " (x) and " b " (y), add-1: V = {" ", a, b}, denominators 4+1*(3+1)=8 and 3+4=7.
    lid = NgramLanguageID(orders=(1,), k=1.0).fit(["ab", "b"], ["x", "y"])
    s = lid.log_scores(["a"])[0]                 # n-grams of " a ": " ", "a", " "
    assert s[0] == pytest.approx(math.log(0.5) + 2 * math.log(3 / 8) + math.log(2 / 8))
    assert s[1] == pytest.approx(math.log(0.5) + 2 * math.log(3 / 7) + math.log(1 / 7))
    s = lid.log_scores(["z"])[0]                 # "z" unseen: the add-k mass of the unseen bucket
    assert s[1] == pytest.approx(math.log(0.5) + 2 * math.log(3 / 7) + math.log(1 / 7))
    assert lid.predict(["a", "bbb"]) == ["x", "y"]


def _docs(seed: int, n: int) -> tuple[list[str], list[str]]:
    en = corpus("story", n, seed).docs + corpus("facts", n, seed).docs
    zh = corpus("story_zh", n, seed).docs
    other = [transliterate(t, CYRILLIC if i % 2 else GREEK) for i, t in enumerate(corpus("story", n, seed + 99).docs)]
    return en + zh + other, ["en"] * len(en) + ["zh"] * len(zh) + ["other"] * len(other)


def test_ngram_language_id_is_accurate_on_held_out_docs():
    train_x, train_y = _docs(seed=1, n=150)
    test_x, test_y = _docs(seed=2, n=100)
    lid = NgramLanguageID().fit(train_x, train_y)
    pred = lid.predict(test_x)
    acc = np.mean([p == y for p, y in zip(pred, test_y)])
    assert acc >= 0.95
    proba = lid.predict_proba(test_x[:5])
    assert proba.shape == (5, 3) and lid.classes_ == ["en", "other", "zh"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # Bilingual text: the model follows the majority of the n-grams.
    assert lid.predict(["小红在老磨坊玩。后来她很快地吃了一个梨。 Nora sang."]) == ["zh"]


def test_ngram_language_id_bad_input():
    with pytest.raises(ValueError, match="not fitted"):
        NgramLanguageID().predict(["a"])
    with pytest.raises(ValueError, match="at least two languages"):
        NgramLanguageID().fit(["a", "b"], ["en", "en"])
    with pytest.raises(ValueError, match="one label per text"):
        NgramLanguageID().fit(["a", "b"], ["en"])
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        NgramLanguageID().fit(["a", 3], ["en", "zh"])
    with pytest.raises(ValueError, match="orders"):
        NgramLanguageID(orders=(1, 4))
    with pytest.raises(ValueError, match="k must be"):
        NgramLanguageID(k=0)
    with pytest.raises(ValueError, match="empty"):
        NgramLanguageID().fit([], [])


def test_empty_and_unicode_documents_are_scored():
    lid = NgramLanguageID().fit(["the cat", "猫"], ["en", "zh"])
    assert len(lid.predict(["", "😀", "cafe\u0301", "x" * 200_000])) == 4


def test_crawl_scripts_and_languages(crawl):
    pages = [p for p in crawl.pages if p.quality == "clean"]
    assert np.mean([script_of(p.text) == p.script for p in pages]) >= 0.98
    assert np.mean([script_language(p.text) == p.language for p in pages]) >= 0.98
