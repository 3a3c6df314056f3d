"""minillm.evaluation.contamination: the n-gram report finds planted test items (and nothing in disjoint text); the demo's rows."""
import pytest

from minillm.evaluation.benchmarks import FactsMC, Item
from minillm.evaluation.contamination import contaminated_text, contamination_report

STORIES = "Mia was at the river. She found a red key.\nTom went to the school. He met Lena at noon.\n" * 20


def test_report_finds_planted_items_and_nothing_in_disjoint_text():
    items = FactsMC(world_seed=3, n_people=20).examples(6, seed=0)
    train = STORIES + f"a web page copied {items[1].text} and more\n" + STORIES + items[4].text.upper() + "\n"
    r = contamination_report(train, items, n=5)  # items are 5 words: only a whole item matches
    assert r["indices"] == [1, 4] and r["n_flagged"] == 2 and r["share"] == pytest.approx(2 / 6)
    assert r["overlap"][1] == 1.0 and r["overlap"][0] == 0.0 and r["too_short"] == []  # case-folded: found
    clean = contamination_report(STORIES, items, n=5)
    assert clean["indices"] == [] and clean["share"] == 0.0


def test_report_char_ngrams_word_13grams_and_too_short():
    long_item = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat"  # 17 words
    items = [long_item, "two plus two is four", Item("Ada lives in", " Ashford", (" Ashford", " Dunmere"))]
    train = "intro text " + " ".join(long_item.split()[2:15]) + " unrelated ending\n"  # 13 words of item 0 only
    r = contamination_report(train, items)  # GPT-3's word 13-grams
    assert r["indices"] == [0] and r["too_short"] == [1, 2]  # short items cannot be detected at n=13
    twelve = "intro " + " ".join(long_item.split()[2:14]) + " end\n"
    assert contamination_report(twelve, items)["indices"] == []  # 12 shared words are not a 13-gram
    rc = contamination_report(train + "Ada lives in Ashford\n", items, n=15, unit="char")
    assert rc["indices"] == [0, 2] and 0 < rc["overlap"][0] < 1 and rc["too_short"] == []
    with pytest.raises(ValueError, match="item"):
        contamination_report(train, [3.5])


def test_contaminated_text_inserts_copies_and_keeps_the_base():
    base = "".join(f"doc {i}\n" for i in range(50))
    items = ["leak one", "leak two"]
    text = contaminated_text(base, items, copies=3, seed=0)
    lines = text.splitlines()
    assert lines.count("leak one") == 3 and lines.count("leak two") == 3
    assert [x for x in lines if x.startswith("doc")] == base.splitlines()  # base documents, in order
    assert contaminated_text(base, items, 3, seed=0) == text
    with pytest.raises(ValueError, match="copies"):
        contaminated_text(base, items, 0)
