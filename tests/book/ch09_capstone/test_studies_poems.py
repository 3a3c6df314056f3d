"""The poet's task: forms from shape, splits by title, pairs and the reward (book/ch09_capstone/studies_poems.py)."""
from __future__ import annotations

import json
import lzma

import pytest
import torch

from book.ch09_capstone import studies_poems as P

JUEJU5 = "春眠不覺曉，處處聞啼鳥。\n夜來風雨聲，花落知多少。"
LUSHI7 = "\n".join(["昔人已乘黃鶴去，此地空餘黃鶴樓。", "黃鶴一去不復返，白雲千載空悠悠。",
                    "晴川歷歷漢陽樹，芳草萋萋鸚鵡洲。", "日暮鄉關何處是，煙波江上使人愁。"])


def test_verse_lines_split_on_every_break():
    assert P.verse_lines("床前明月光，疑是地上霜。\n舉頭望明月？低頭思故鄉！") == ["床前明月光", "疑是地上霜", "舉頭望明月",
                                                                                     "低頭思故鄉"]
    assert P.verse_lines("a, b. ;\n\n") == ["a", "b"]
    assert P.verse_lines("") == []


@pytest.mark.parametrize("text,form", [
    (JUEJU5, "五言絕句"),
    (LUSHI7, "七言律詩"),
    ("白日依山盡，黃河入海流。欲窮千里目，更上一層樓。\n", "五言絕句"),   # no newline between couplets, trailing newline
    ("朝辭白帝彩雲間，千里江陵一日還。\n兩岸猿聲啼不住，輕舟已過萬重山。", "七言絕句"),
    ("春眠不覺曉，處處聞啼鳥。\n夜來風雨聲，花落知多□。", None),           # a missing character
    ("春眠不覺曉，處處聞啼鳥。\n夜來風雨聲，花落知多A。", None),           # a Latin letter
    ("春眠不覺曉，處處聞啼鳥。\n夜來風雨聲，花落知多少。\n一二三四五，六七八九十。", None),   # 6 lines
    ("春眠不覺曉，處處聞啼鳥。\n夜來風雨聲聲，花落知多少。", None),       # mixed 5 and 6
    ("春眠不覺曉曉，處處聞啼鳥鳥。\n夜來風雨聲聲，花落知多少少。", None),  # 4 lines of 6
    ("", None),
])
def test_classify_form(text, form):
    assert P.classify_form(text) == form


def test_split_by_title_keeps_a_title_on_one_side_and_is_stable():
    poems = [P.Poem(f"題{i % 50}", "某", ("一二三四五，六七八九十。",)) for i in range(500)]
    train, held = P.split_by_title(poems, 0.2)
    assert len(train) + len(held) == 500 and held and train
    assert not {p.title for p in train} & {p.title for p in held}
    assert P.split_by_title(poems, 0.2) == (train, held)
    assert 0.05 < len({p.title for p in held}) / 50 < 0.4
    with pytest.raises(ValueError, match="heldout_frac"):
        P.split_by_title(poems, 1.0)


def test_instruction_pairs_and_prompts():
    poems = [P.Poem(" 春曉 ", "孟浩然", tuple(JUEJU5.split("\n"))), P.Poem("", "某", tuple(JUEJU5.split("\n"))),
             P.Poem("古風", "李白", ("一二三，四五六。",))]
    pairs = P.instruction_pairs(poems)
    assert pairs == [{"prompt": "五言絕句：春曉", "response": JUEJU5, "form": "五言絕句", "title": "春曉"}]
    assert P.form_of_prompt("<|user|>七言律詩：登高<|end|><|assistant|>") == "七言律詩"
    with pytest.raises(ValueError, match="names no form"):
        P.form_of_prompt("寫一首詩")
    with pytest.raises(ValueError, match="unknown form"):
        P.form_prompt("春曉", "五言")


def test_form_adherence_and_reward():
    assert P.follows_form(JUEJU5, "五言絕句") and not P.follows_form(JUEJU5, "五言律詩")
    assert P.form_adherence([JUEJU5, LUSHI7, "亂"], ["五言絕句", "七言絕句", "五言絕句"]) == pytest.approx(1 / 3)
    reward = P.form_reward()
    r = reward([JUEJU5, JUEJU5, LUSHI7], ["五言絕句：春曉", "七言絕句：春曉", "<|user|>七言律詩：黃鶴樓<|end|>"])
    assert r.dtype == torch.float32 and r.tolist() == [1.0, 0.0, 1.0]
    shaped = P.form_reward(shaped=True)
    # right line count, 2 of 4 lines of the right length: 0.5 + 0.5 * 2/4
    half = "春眠不覺曉，處處聞啼鳥鳥。\n夜來風雨聲，花落知多少少。"
    assert shaped([half, JUEJU5, ""], ["五言絕句：a"] * 3).tolist() == [0.75, 1.0, 0.0]
    with pytest.raises(ValueError, match="one prompt per response"):
        reward([JUEJU5], [])


def test_distinct_ratio():
    assert P.distinct_ratio("春春春春") == 0.25
    assert P.distinct_ratio(JUEJU5) == pytest.approx(len(set(JUEJU5) - set("，。\n")) / 20)
    assert P.distinct_ratio("abc") == 0.0


def test_load_poems_reads_xz_and_names_a_bad_line(tmp_path):
    good = tmp_path / "p.jsonl.xz"
    lines = [{"title": "春曉", "author": "孟浩然", "paragraphs": JUEJU5.split("\n")}, {"title": "x", "paragraphs": []}]
    good.write_bytes(lzma.compress("\n".join(json.dumps(o, ensure_ascii=False) for o in lines).encode()))
    poems = P.load_poems(good)
    assert [p.title for p in poems] == ["春曉", "x"] and poems[0].form == "五言絕句" and poems[1].author == ""
    assert len(P.load_poems(good, limit=1)) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "a", "paragraphs": ["x"]}\n{"title": "b", "paragraphs": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: 'paragraphs' must be a list"):
        P.load_poems(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no poems"):
        P.load_poems(empty)
