"""Task generators of minillm.data.tasks.suites: answers checked by Python, traces column by column, ICL episodes
against their own rule, instruction templates split cleanly, seeds reproducible, bad knobs rejected."""
import re

import numpy as np
import pytest

from minillm.data.tasks.suites import (ANSWER_MARK, FAMILIES, QUERY_MARK, TASKS, TRACE_OPEN, Example, addition_trace, extract_answer, few_shot_prompt, make_examples, multiplication_trace, templates)

STEP = re.compile(r"(\d)([+*])(\d)\+(\d)=(\d+)")


@pytest.mark.parametrize("digits", [1, 2, 3, 4, 5, 6])
def test_addition_answers_are_python_sums(digits):
    for e in make_examples("addition", 200, digits, digits=digits):
        a, b = e.meta["a"], e.meta["b"]
        assert e.prompt == f"{a}+{b}=" and e.answer == str(a + b) and e.trace == ""
        assert e.text == e.prompt + e.answer + "\n"
        assert len(str(a)) == len(str(b)) == digits  # exactly `digits` digits (0..9 for one digit)


@pytest.mark.parametrize("digits,digits_b", [(1, 1), (3, 1), (6, 1), (2, 2), (4, 3)])
def test_multiplication_answers_are_python_products(digits, digits_b):
    for e in make_examples("multiplication", 200, 7, digits=digits, digits_b=digits_b):
        a, b = e.meta["a"], e.meta["b"]
        assert e.prompt == f"{a}*{b}=" and e.answer == str(a * b)
        assert (len(str(a)), len(str(b))) == (digits, digits_b)


def _check_trace(e: Example):
    """Re-derive every step of the working from the operands: columns, carries, running result."""
    a, b, op = e.meta["a"], e.meta["b"], e.prompt[len(str(e.meta["a"]))]
    assert e.prompt.endswith("=" + TRACE_OPEN) and e.trace.endswith(ANSWER_MARK)
    steps = e.trace[:-1].split(",")
    assert len(steps) == len(str(a))
    prev = "0"
    for i, s in enumerate(steps):
        m = STEP.fullmatch(s)
        assert m, s
        x, o, y, c, r = int(m[1]), m[2], int(m[3]), int(m[4]), m[5]
        assert o == op and x == int(str(a)[::-1][i])
        assert y == (int(str(b)[::-1][i]) if op == "+" else b)
        assert c == int(prev[0])  # the carry in is the previous running result's first character
        total = x + y + c if op == "+" else x * y + c
        assert r[:2] == f"{total:02d}" and r[2:] == prev[1:]
        prev = r
    assert str(int(prev)) == e.answer
    assert extract_answer(e.trace + e.answer) == e.answer
    assert extract_answer(e.trace + e.answer + "\nnext line") == e.answer


@pytest.mark.parametrize("digits", [1, 2, 4, 6])
def test_cot_traces_are_correct_column_by_column(digits):
    for name in ("addition", "multiplication"):
        for e in make_examples(name, 150, 3, digits=digits, cot=True):
            _check_trace(e)


def test_trace_format_hand_cases():
    assert addition_trace(37, 48) == "7+8+0=15,3+4+1=085]"
    assert addition_trace(955, 840) == "5+0+0=05,5+4+0=095,9+8+0=1795]"
    assert multiplication_trace(37, 8) == "7*8+0=56,3*8+5=296]"
    with pytest.raises(ValueError, match="one-digit"):
        multiplication_trace(12, 34)


def test_cot_share_and_extract_answer():
    ex = make_examples("addition", 2000, 0, digits=2, cot=0.3)
    share = np.mean([bool(e.trace) for e in ex])
    assert 0.25 < share < 0.35
    assert all(e.prompt.endswith(TRACE_OPEN) == bool(e.trace) for e in ex)
    assert {e.key for e in ex} >= {e.meta["key"] for e in ex if e.trace}  # key = the problem, format-free
    assert extract_answer("85") == "85" and extract_answer("85\n37") == "85"
    assert extract_answer("85", require_marker=True) is None
    assert extract_answer("7+8+0=15,3+4+1=085]85") == "85"


def _pairs(prompt):
    """'ab>3;cd>7;ab=' -> ([('ab','3'), ('cd','7')], 'ab')"""
    *shots, query = prompt.split(";")
    assert query.endswith(QUERY_MARK) and QUERY_MARK not in query[:-1]
    return [tuple(s.split(">")) for s in shots], query[:-1]


@pytest.mark.parametrize("query", ["any", "shown", "rule"])
def test_kv_map_answers_follow_the_episode_map(query):
    ex = make_examples("kv_map", 300, 11, shots=(1, 3, 6), query=query)
    for e in ex:
        pairs, q = _pairs(e.prompt)
        assert len(pairs) == e.meta["shots"] and pairs == [tuple(p) for p in e.meta["pairs"]]
        seen = {}
        for k, v in pairs:  # a key shown twice always shows the same value
            assert seen.setdefault(k, v) == v and v in "0123456789" and 2 <= len(k) <= 3
        if query == "shown":
            assert e.answer == seen[q] and e.meta["bayes"] == 1.0
        elif query == "any":
            assert e.meta["bayes"] == (1.0 if q in seen else 0.1)
            if q in seen:
                assert e.answer == seen[q]
        else:  # the value is the first letter's: the query is new, but its class was shown
            by_first = {}
            for k, v in pairs:
                assert by_first.setdefault(k[0], v) == v
            assert q not in seen and by_first[q[0]] == e.answer
    if query == "any":
        shown = np.mean([e.meta["bayes"] == 1.0 for e in ex])
        assert 0.2 < shown < 0.95  # some queries were never shown: those can only be guessed


def test_kv_map_letter_values_and_chance():
    for e in make_examples("kv_map", 50, 0, values="letters", n_values=26, key_len=1, shots=4, query="shown"):
        pairs, q = _pairs(e.prompt)
        assert all(len(k) == 1 and v.isupper() for k, v in pairs) and len({k for k, _ in pairs}) == 4
    assert TASKS["kv_map"].chance(n_values=5) == pytest.approx(0.2)
    assert TASKS["linear"].chance() == pytest.approx(0.1)


def _bayes_linear(pairs, x):
    """Brute force over the 100 (a, b): accuracy of the best guess at x among the rules that fit the shots."""
    fits = [(a, b) for a in range(10) for b in range(10) if all((a * int(u) + b) % 10 == int(v) for u, v in pairs)]
    votes = np.bincount([(a * x + b) % 10 for a, b in fits], minlength=10)
    return votes.max() / len(fits)


@pytest.mark.parametrize("query", ["new", "any", "shown"])
def test_linear_answers_and_bayes(query):
    for e in make_examples("linear", 200, 5, shots=(1, 2, 3, 5), query=query):
        a, b, x = e.meta["a"], e.meta["b"], e.meta["x"]
        pairs, q = _pairs(e.prompt)
        assert int(q) == x and e.answer == str((a * x + b) % 10)
        assert all(int(v) == (a * int(u) + b) % 10 for u, v in pairs)
        assert len({u for u, _ in pairs}) == len(pairs)
        if query == "new":
            assert q not in {u for u, _ in pairs}
        if query == "shown":
            assert q in {u for u, _ in pairs} and e.meta["bayes"] == 1.0
        assert e.meta["bayes"] == pytest.approx(_bayes_linear(pairs, x))
    zero = make_examples("linear", 20, 0, shots=0, query="any")
    assert all(e.prompt == f"{e.meta['x']}=" and e.meta["bayes"] == pytest.approx(0.1) for e in zero)


def test_instruction_answers_for_every_family_and_template():
    assert [FAMILIES[f][0]("cab") for f in FAMILIES] == ["bac", "CAB", "abc", "3", "c", "b", "cab cab"]
    ex = make_examples("instructions", 3000, 2, templates="all")
    seen = set()
    for e in ex:
        fam, t, w = e.meta["family"], e.meta["template"], e.meta["input"]
        assert e.prompt == t.format(w=w) + " " and e.answer == FAMILIES[fam][0](w)
        assert w.isalpha() and w.islower() and 3 <= len(w) <= 5
        seen.add((fam, t))
    assert seen == {(f, t) for f in FAMILIES for t in templates(f)}  # every template of every family used


def test_heldout_templates_never_in_train():
    for f in FAMILIES:
        train, held = templates(f, "train"), templates(f, "heldout")
        assert len(train) + len(held) == len(templates(f)) >= 8 and len(train) >= 6 and len(held) >= 2
        assert not set(train) & set(held)
    train_prompts = {e.meta["template"] for e in make_examples("instructions", 2000, 0)}
    held_prompts = {e.meta["template"] for e in make_examples("instructions", 2000, 0, templates="heldout")}
    assert not train_prompts & held_prompts
    assert held_prompts == {t for f in FAMILIES for t in templates(f, "heldout")}


def test_pattern_conflict_correct_and_imitation_answers():
    for e in make_examples("pattern_conflict", 300, 4, shots=(2, 4)):
        f, g, w = e.meta["distractor"], e.meta["family"], e.meta["input"]
        assert f != g and e.answer == FAMILIES[g][0](w) and e.meta["imitation"] == FAMILIES[f][0](w)
        assert e.answer != e.meta["imitation"]
        *shots, instr = e.prompt.split(";")
        assert len(shots) == e.meta["shots"] and instr == e.meta["template"].format(w=w) + " "
        assert e.meta["template"] in templates(g, "train")
        for s in shots:  # the in-context pattern follows the distractor rule
            x, y = s.split(">")
            assert y == FAMILIES[f][0](x)


def test_seeds_reproducible_and_distinct():
    for name in TASKS:
        a, b, c = make_examples(name, 30, 1), make_examples(name, 30, 1), make_examples(name, 30, 2)
        assert a == b and [e.text for e in a] != [e.text for e in c]


def test_exclude_skips_problems():
    banned = [f"{a}+{b}" for a in range(10) for b in range(10) if (a + b) % 4]
    ex = make_examples("addition", 300, 0, digits=1, exclude=banned)
    assert len(ex) == 300 and not {e.key for e in ex} & set(banned)
    assert make_examples("addition", 50, 0, digits=1, exclude=make_examples("addition", 5, 9, digits=1))
    with pytest.raises(ValueError, match="exclude"):
        make_examples("addition", 10, 0, digits=1, exclude=[f"{a}+{b}" for a in range(10) for b in range(10)])


def test_few_shot_prompt_format():
    shots = [Example("ab>", "3", "t"), Example("cd>", "7", "t")]
    assert few_shot_prompt(shots, Example("ab=", "3", "t")) == "ab>3;cd>7;ab="
    assert few_shot_prompt([], Example("ab=", "3", "t")) == "ab="
    assert few_shot_prompt(shots, Example("x", "", "t"), sep=" | ") == "ab>3 | cd>7 | x"
    with pytest.raises(ValueError, match="separator"):
        few_shot_prompt([Example("a;b>", "3", "t")], Example("ab=", "", "t"))
    with pytest.raises(ValueError, match="newline"):
        Example("a\nb", "3", "t")


@pytest.mark.parametrize("name,knobs,match", [
    ("addition", {"digits": 0}, "digits"), ("addition", {"digits": 7}, "digits"), ("addition", {"cot": 1.5}, "cot"),
    ("addition", {"digit": 2}, "unknown knob"), ("multiplication", {"digits_b": 2, "cot": True}, "digits_b=1"),
    ("kv_map", {"query": "shown", "shots": 0}, "shots >= 1"), ("kv_map", {"query": "x"}, "query"),
    ("kv_map", {"query": "shown", "shots": 9, "n_keys": 8}, "n_keys"), ("kv_map", {"n_values": 11}, "n_values"),
    ("kv_map", {"query": "rule", "key_len": 1}, "at least 2"), ("linear", {"shots": 10}, "shots"),
    ("instructions", {"templates": "test"}, "templates"), ("instructions", {"families": ["nope"]}, "family"),
    ("pattern_conflict", {"families": ["upper"]}, "two families"),
])
def test_bad_knobs_raise(name, knobs, match):
    with pytest.raises(ValueError, match=match):
        make_examples(name, 3, 0, **knobs)


def test_bad_calls_raise():
    with pytest.raises(ValueError, match="unknown task"):
        make_examples("nope", 3, 0)
    with pytest.raises(ValueError, match="n="):
        make_examples("addition", -1, 0)
    with pytest.raises(ValueError, match="seed"):
        make_examples("addition", 3, -2)
