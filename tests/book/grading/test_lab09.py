"""Lab 09 checks (Survey §5.1.1, §5.2): a student's own right answers pass; each usual mistake (marks missing from
the split, lines not stripped, empty lines kept, the first line's length trusted, Han characters unchecked, titles
not stripped, the prompt ignored by the reward, partial credit, the wrong dtype) fails with the hint that names
it; the chapter's reference functions themselves are refused; the cases hold what their labels say."""
import re
from functools import partial

import pytest
import torch

import book.grading.lab09 as lab09  # registers the lab's checks (until book/grading/__init__.py imports it)
from book import grading
from book.ch09_capstone import studies_poems as P
from book.ch09_capstone.studies_poems import FORMS, form_prompt, is_han

MARKS = "，。？！；、：,.?!;:\n"


# ------------------------------------------------------------------------------------------------ right answers


def verse_lines(text, marks=MARKS, strip=True, drop_empty=True):
    pieces = re.split(f"[{re.escape(marks)}]+", text)
    pieces = [p.strip() for p in pieces] if strip else pieces
    return [p for p in pieces if p] if drop_empty else pieces


def verse_lines_by_hand(text):
    """No regex: a character loop, as a student might write it."""
    lines, cur = [], ""
    for ch in text + "\n":
        if ch in MARKS:
            if cur.strip():
                lines.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return lines


def classify_form(text, lines_fn=verse_lines, han=True, first_only=False, none=None, n_map=None, k_map=None):
    lines = lines_fn(text)
    if not lines:
        return none
    lengths = {len(lines[0])} if first_only else {len(s) for s in lines}
    if len(lengths) != 1 or (han and not all(is_han(c) for s in lines for c in s)):
        return none
    shape = ((n_map or int)(len(lines)), (k_map or int)(len(lines[0])))
    return next((f for f, s in FORMS.items() if s == shape), none)


def classify_form_crashes_on_empty(text):
    lines = verse_lines(text)
    n = len(lines[0])  # IndexError on "" (no lines)
    return classify_form(text) if n else None


def build_pairs(poems, classify=classify_form, strip=str.strip, text=lambda p: p.text, prompt=form_prompt,
                keep_untitled=False):
    out = []
    for p in poems:
        form, title = classify(p.text), strip(p.title)
        if form is not None and (title.strip() or keep_untitled):
            out.append({"prompt": prompt(title, form), "response": text(p), "form": form, "title": title})
    return out


def first_form(prompt):
    return min((prompt.index(f), f) for f in FORMS if f in prompt)[1]


def form_reward(responses, prompts, find=first_form, dtype=torch.float32):
    return torch.tensor([float(classify_form(r) == find(p)) for r, p in zip(responses, prompts)], dtype=dtype)


RIGHT = [("verse_lines", verse_lines), ("verse_lines", verse_lines_by_hand), ("classify_form", classify_form),
         ("build_pairs", build_pairs), ("form_reward", form_reward)]


@pytest.mark.parametrize("name, fn", RIGHT)
def test_right_answers_pass(name, fn, capsys):
    grading.check(name, fn)
    out = capsys.readouterr().out
    assert f"PASS {name}" in out and "FAIL" not in out


# ------------------------------------------------------------------------------------------------ wrong answers


WRONG = [
    ("verse_lines", partial(verse_lines, marks="，。\n"), "ASCII punctuation ,.?!;: ends a line too"),  # first case
    ("verse_lines", partial(verse_lines, marks="，。,.?!;:\n"), "Only ，。 and newlines split: ？！；、："),
    ("verse_lines", partial(verse_lines, marks="，。？！；、：\n"), "ASCII punctuation ,.?!;: ends a line too"),
    ("verse_lines", partial(verse_lines, marks="\n"), "not only at the end of a couplet"),
    ("verse_lines", partial(verse_lines, strip=False), "Strip the spaces around each line"),
    ("verse_lines", partial(verse_lines, drop_empty=False), "Drop empty pieces"),
    ("verse_lines", lambda t: tuple(verse_lines(t)), "expected a list of str"),
    ("classify_form", partial(classify_form, han=False), "Han character (is_han)"),
    ("classify_form", partial(classify_form, first_only=True), "check all of them, not only the first"),
    ("classify_form", partial(classify_form, n_map=lambda n: 4 if n <= 4 else 8), "Exactly 4 lines (絕句) or exactly 8"),
    ("classify_form", partial(classify_form, k_map=lambda k: 5 if k <= 5 else 7),
     "Exactly 5 characters per line (五言) or exactly 7"),
    ("classify_form", partial(classify_form, none=""), "Return None (not '')"),
    ("classify_form", classify_form_crashes_on_empty, "your function raised IndexError"),
    ("classify_form", partial(classify_form, lines_fn=partial(verse_lines, marks="，。？！；、：\n")),
     "ASCII , . ? ! ; : end a line too"),
    ("build_pairs", partial(build_pairs, strip=lambda t: t), "Strip the title"),
    ("build_pairs", partial(build_pairs, strip=lambda t: t.replace(" ", "")), "Strip only the ends of the title"),
    ("build_pairs", partial(build_pairs, strip=lambda t: t.strip(" ")), "strips every kind of space (a tab"),
    ("build_pairs", partial(build_pairs, text=lambda p: "".join(p.paragraphs)), "couplets joined by newlines"),
    ("build_pairs", partial(build_pairs, prompt=lambda t, f: f"{f}:{t}"), "a FULL-WIDTH colon"),
    ("build_pairs", partial(build_pairs, prompt=lambda t, f: f"{t}：{f}"), "the form first, then the title"),
    ("build_pairs", partial(build_pairs, keep_untitled=True), "Skip a poem without a title"),
    ("build_pairs", lambda ps: sorted(build_pairs(ps), key=lambda d: d["form"]), "Keep the poems' order"),
    ("build_pairs", lambda ps: [{k: v for k, v in d.items() if k != "title"} for d in build_pairs(ps)],
     "exactly the keys prompt, response, form, title"),
    ("build_pairs", lambda ps: (d for d in build_pairs(ps)), "expected a list of dicts, got generator"),
    ("form_reward", lambda rs, ps: torch.tensor([float(classify_form(r) is not None) for r in rs]),
     "The reward is for the form the PROMPT asks for"),
    ("form_reward", partial(form_reward, find=lambda p: next(f for f in FORMS if f in p)),
     "the FIRST form name in the prompt"),
    ("form_reward", lambda rs, ps: P.form_reward(shaped=True)(rs, ps).clone().requires_grad_(False) * 1.0,
     "no partial credit"),
    ("form_reward", lambda rs, ps: form_reward(rs, ps).tolist(), "expected a torch.Tensor, got list"),
    ("form_reward", partial(form_reward, dtype=torch.float64), "dtype torch.float64, expected torch.float32"),
    ("form_reward", partial(form_reward, dtype=torch.bool), "dtype torch.bool"),
    ("form_reward", lambda rs, ps: form_reward(rs, ps).sum() / len(rs), "shape (), expected (4,)"),
    ("form_reward", partial(form_reward, find=lambda p: FORMS and p[:4] if p[:4] in FORMS else {}[p[:4]]),
     "your function raised KeyError"),
]


@pytest.mark.parametrize("name, fn, message", WRONG, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WRONG)])
def test_wrong_answers_fail_with_the_right_hint(name, fn, message, capsys):
    with pytest.raises(AssertionError):
        grading.check(name, fn)
    out = capsys.readouterr().out
    assert f"FAIL {name}" in out and message in out, out


@pytest.mark.parametrize("name, reference", [
    ("verse_lines", P.verse_lines), ("classify_form", P.classify_form), ("build_pairs", P.instruction_pairs),
    ("form_reward", P.form_reward()), ("form_reward", P.form_reward(shaped=False)),
    ("classify_form", partial(P.classify_form)),
])
def test_the_reference_itself_is_refused(name, reference, capsys):
    with pytest.raises(AssertionError, match="the reference itself"):
        grading.check(name, reference)
    assert "Implement it" in capsys.readouterr().out


def test_a_stub_reports_not_implemented():
    def stub(*args):
        raise NotImplementedError("write it")

    for name in ("verse_lines", "classify_form", "build_pairs", "form_reward"):
        with pytest.raises(NotImplementedError, match=f"not implemented yet: {name}"):
            grading.check(name, stub)


# ------------------------------------------------------------------------------------------------ the cases


def test_hand_texts_have_the_forms_their_labels_say():
    want = {"ASCII punctuation": "五言絕句", "？！；": "五言絕句", "without a newline": "五言絕句", "□": None,
            "Latin": None, "6 lines": None, "mixed": None, "4 lines of 6": None, "empty": None,
            "trailing newline": "五言絕句", "two marks": "五言絕句"}
    got = {label: P.classify_form(text) for label, text, _ in lab09.TEXTS}
    for key, form in want.items():
        (label,) = [k for k in got if key in k]
        assert got[label] == form, label
    assert [P.classify_form(t) for t in lab09.BY_FORM.values()] == list(FORMS)
    assert P.verse_lines(lab09.TEXTS[13][1]) == ["白日依山盡", "黃河入海流", "欲窮千里目", "更上一層樓"]


def test_reward_cases_hold_both_answers():
    """Hand-computed rewards: each case has 1s and (but one) 0s, so a constant reward cannot pass."""
    cases = {c.label: c for c in grading.CHECKS["form_reward"].cases}
    want = {"one 五言絕句 under the prompts of all four forms": [1, 0, 0, 0],
            "one poem of each form, each under its own prompt": [1, 1, 1, 1],
            "near misses: 3 lines, a □, a Latin letter, 6 lines, empty, a trailing newline, one line of 6":
                [0, 0, 0, 0, 0, 1, 0]}
    for label, values in want.items():
        assert P.form_reward()(*cases[label].make()).tolist() == values
    tags = next(c for label, c in cases.items() if label.startswith("prompts wrapped"))
    assert P.form_reward()(*tags.make()).tolist() == [1, 1, 1, 1, 0, 1]
    corpus = next(c for label, c in cases.items() if label.startswith("the pairs of the first"))
    r = P.form_reward()(*corpus.make())
    assert r.shape[0] > 40 and 0 < r.mean() < 1


def test_hand_poems_keep_four_pairs_with_stripped_titles():
    (poems,) = lab09._hand_poems()
    pairs = P.instruction_pairs(poems)
    assert [p["title"] for p in pairs] == ["登鸛雀樓", "秋興八首 一", "涼州詞二首 一", "春望"]
    assert pairs[1]["prompt"] == "七言律詩：秋興八首 一" and pairs[0]["response"] == lab09.JUEJU5
    (padded,) = lab09._padded_poems()
    assert [(p["title"], p["response"].count("\n")) for p in P.instruction_pairs(padded)] == [("登鸛雀樓", 3),
                                                                                            ("涼州詞", 1)]
