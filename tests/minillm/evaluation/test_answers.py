"""Answer parsers: GSM8K-style final numbers and MMLU-style chosen letters, against hand-written responses."""
from fractions import Fraction

import numpy as np
import pytest

from minillm.evaluation.answers import numbers_match, parse_choice, parse_number, score_numeric


@pytest.mark.parametrize("text, expected", [
    # GSM8K solutions: the number after the last "####"
    ("Natalia sold 48/2 = 24 clips in May.\nSo she sold 48+24 = 72 clips.\n#### 72", "72"),
    ("... so she has 18 dollars.\n#### 18", "18"),
    ("#### 5\nWait, recount.\n#### 6", "6"),
    ("#### $1,234.50", "1234.5"),
    ("#### -7 degrees\nthen 99", "-7"),
    ("working 12 and 30\n#### ", None),            # a mark with nothing after it: no answer, not "30"
    ("#### twelve\n12", None),                      # the number must be on the mark's line
    # no mark: the last number
    ("The answer is -3.", "-3"),
    ("1,000,000", "1000000"),
    ("It costs $1,234.50 in total.", "1234.5"),
    ("She is 42.", "42"),                           # a sentence's full stop is not a decimal point
    ("no answer here", None),
    ("", None),
    ("3 apples and 4 pears, so 7", "7"),
    ("+5", "5"), ("-0", "0"), ("-0.000", "0"), ("42.0", "42"), ("2.50", "2.5"), ("007", "7"), ("0.5", "0.5"),
    (".5", "0.5"), ("\u22123", "-3"), ("-$5", "-5"), ("x=-3", "-3"),
    ("pages 10-20", "20"),                          # a range, not -20
    ("10 - 3 =", "3"),                              # a subtraction sign is not glued to the number
    ("1,5", "5"),                                   # only thousands commas join digits
    ("1,2345", "2345"),
    ("12,345,678.9", "12345678.9"),
    ("50%", "50"),
    # fractions: exact values, reduced, as a decimal where one is exact
    ("3/4", "0.75"), ("-3/4", "-0.75"), ("4/6", "2/3"), ("6/3", "2"), ("1/8", "0.125"), ("1/20", "0.05"),
    ("1/0", "0"),                                   # a zero denominator is no fraction: 1 and 0
    ("1e5", "5"),                                   # scientific notation is not read
])
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_parse_number_is_exact_for_long_numbers():
    big = "9" * 5000 + ".50"  # beyond float precision and Python's int-from-str limit: read by string operations
    assert parse_number(big) == "9" * 5000 + ".5"
    assert parse_number("0.1") != parse_number("0.10000000000000001")  # no float noise: different values


def test_canonical_strings_are_canonical_values():
    for text in ["1/3", "-22/7", "2.375", "-0.05", "1,000", "19/4"]:
        s = parse_number(text)
        value = Fraction(s)  # the canonical form is itself a number Fraction reads
        assert Fraction(text.replace(",", "")) == value
        assert parse_number(s) == s  # parsing is idempotent


@pytest.mark.parametrize("pred, gold, ok", [
    ("so the total is 1,000.", "1000", True),
    ("18.00 dollars", "#### 18", True),
    ("0.5", "1/2", True),
    ("The answer is 17", 18, False),
    ("no idea", "18", False),
    (18, "18", True),
])
def test_numbers_match(pred, gold, ok):
    assert numbers_match(pred, gold) is ok


def test_numbers_match_errors():
    with pytest.raises(ValueError, match="holds no number"):
        numbers_match("18", "eighteen")
    with pytest.raises(TypeError, match="str or an int"):
        numbers_match(18.0, "18")
    with pytest.raises(TypeError, match="str"):
        parse_number(None)


def test_score_numeric():
    got = score_numeric(["#### 72", "I think 71", "", "1/2"], ["72", "72", "3", "0.5"])
    np.testing.assert_array_equal(got, np.array([1.0, 0.0, 0.0, 1.0]))
    assert got.dtype == np.float64
    with pytest.raises(ValueError, match="2 responses for 1"):
        score_numeric(["1", "2"], ["1"])
    with pytest.raises(TypeError, match="lists"):
        score_numeric("1", "1")


@pytest.mark.parametrize("text, expected", [
    ("B", "B"), ("b", "B"), ("  (C) ", "C"), ("D.", "D"), ("B)", "B"), ("**A**", "A"),
    ("Answer: B", "B"), ("answer: b", None),         # after "answer" only a capital is a letter
    ("The answer is (C).", "C"), ("The answer is B because B is larger.", "B"),
    ("I think the answer is D.", "D"),               # "I" opens the sentence: not a claim
    ("The correct answer is option C", "C"), ("answer is: D", "D"),
    ("(B)\nBecause the sky is blue.", "B"), ("B. Paris", "B"), ("Let me see.\nC) 42", "C"),
    ("I pick option A.", "A"),
    ("Option A is wrong, so the answer is C.", "C"),  # "answer" outranks other positions
    ("A or B", None), ("The answer is A or B", None), ("The answer is B and C.", None),
    ("(A) cat (B) dog", None),                        # restating the options chooses nothing
    ("The answer is A cat.", None),                   # the article, not the letter
    ("A cat.", None),
    ("The answer is (A) cat.", "A"),                  # in brackets it is a letter again
    ("The answer is A.", "A"),
    ("E", None), ("The answer is E.", None),          # outside the 4 options
    ("no idea", None), ("", None),
])
def test_parse_choice_with_a_count(text, expected):
    assert parse_choice(text, 4) == expected


@pytest.mark.parametrize("text, expected", [
    ("A cat.", "B"),                                  # quotes exactly one option's text
    ("It must be the Bird", "C"),                     # case-insensitive
    ("a dog or a cat", None),                         # quotes two: ambiguous
    ("The answer is D", None),                        # a letter outside the 3 options, no text quoted
    ("The answer is A, even though a cat is cute", "A"),  # a letter claim wins over quoted text
    ("catalogue", None),                              # whole words only
])
def test_parse_choice_with_option_texts(text, expected):
    assert parse_choice(text, ["dog", "cat", "bird"]) == expected


def test_parse_choice_nested_option_texts():
    opts = ["Paris", "Paris, Texas", "Rome"]
    assert parse_choice("Paris, Texas", opts) == "B"  # "Paris" inside "Paris, Texas" does not count
    assert parse_choice("paris", opts) == "A"


def test_parse_choice_validates_options():
    with pytest.raises(ValueError, match="2 to 26"):
        parse_choice("A", 1)
    with pytest.raises(ValueError, match="2 to 26"):
        parse_choice("A", 27)
    with pytest.raises(TypeError, match="int or a list"):
        parse_choice("A", "ABCD")
    with pytest.raises(TypeError, match="bool"):
        parse_choice("A", True)
    with pytest.raises(ValueError, match="non-empty"):
        parse_choice("A", ["x", " "])
    assert parse_choice("Z", 26) == "Z"


def test_arithmetic_benchmark_parse_knob():
    from minillm.evaluation.benchmarks import TASKS, Arithmetic

    item = TASKS["arithmetic"].examples(1, seed=0)[0]
    exact, lenient = Arithmetic(), Arithmetic(parse="number")
    assert exact.parse == "line" and TASKS["arithmetic"].parse == "line"  # shipped results used the verbatim line
    for completion, line, number in [(item.answer + "\n", item.answer, item.answer),
                                      (" " + item.answer + " \nmore", item.answer, item.answer),
                                      (item.answer + ".", item.answer + ".", item.answer),
                                      ("0" + item.answer, "0" + item.answer, item.answer),
                                      ("1,000", "1,000", "1000"), ("", "", None)]:
        assert exact.extract(completion, item) == line
        assert lenient.extract(completion, item) == number
    cot = Arithmetic(cot=True, parse="number")
    it = cot.examples(1, seed=0)[0]
    assert cot.extract(it.meta["trace"] + it.answer + ".\n", it) == it.answer  # the working's numbers are skipped
    assert cot.extract("85", it) is None  # still needs the "]" that ends the working
    with pytest.raises(ValueError, match="parse="):
        Arithmetic(parse="float")
