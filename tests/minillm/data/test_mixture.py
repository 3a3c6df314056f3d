"""Pretraining mixtures of minillm.data.tasks.pretraining: rates honoured, evaluation problems kept out, one fixed
vocabulary for everything."""
import re

import pytest

from minillm.data.tasks.pretraining import ALPHABET, emergence_tokenizer, eval_examples, pretraining_mixture
from minillm.data.tasks.suites import TASKS, make_examples

RATES = {"addition": 0.1, "kv_map": 0.15, "instructions": 0.1, "pattern_conflict": 0.05}


@pytest.fixture(scope="module")
def mix():
    return pretraining_mixture(RATES, 60_000, 0, addition={"digits": (1, 2, 3), "cot": 0.5})


def test_rates_are_honoured(mix):
    frac = mix.char_fractions()
    assert abs(mix.n_chars - 60_000) < 1_000 and sum(frac.values()) == pytest.approx(1.0)
    for name, r in RATES.items():
        assert frac[name] == pytest.approx(r, abs=0.005), name
    assert frac["story"] == pytest.approx(1 - sum(RATES.values()), abs=0.01)
    assert mix.text == "".join(mix.docs) and all(d.endswith("\n") for d in mix.docs)
    assert any(d.count("[") for d, s in zip(mix.docs, mix.sources) if s == "addition")  # CoT examples present
    first = [s for s in mix.sources[:200]]
    assert len(set(first)) > 2  # shuffled, not one block per source


def test_every_task_and_story_fit_the_fixed_tokenizer(mix):
    tok = emergence_tokenizer()
    assert tok.vocab_size == len(ALPHABET) == 96
    assert tok.decode(tok.encode(mix.text)) == mix.text
    for name in TASKS:
        text = "".join(e.text for e in make_examples(name, 200, 0))
        assert tok.decode(tok.encode(text)) == text


def test_mixture_is_seeded(mix):
    again = pretraining_mixture(RATES, 60_000, 0, addition={"digits": (1, 2, 3), "cot": 0.5})
    other = pretraining_mixture(RATES, 60_000, 1, addition={"digits": (1, 2, 3), "cot": 0.5})
    assert again.text == mix.text and other.text != mix.text
    assert pretraining_mixture({}, 5_000, 0).char_fractions() == {"story": 1.0}


def _additions(text):
    return set(re.findall(r"(?<![0-9])(\d+\+\d+)=", text))


def test_heldout_problems_never_in_training_text():
    evals = eval_examples("addition", 300, 0, digits=2)
    keys = {e.key for e in evals}
    kn = {"addition": {"digits": 2, "cot": 0.5}}
    leaky = pretraining_mixture({"addition": 0.5}, 60_000, 0, **kn)
    assert _additions(leaky.text) & keys  # at 2 digits the same problem IS drawn again: the test can fail
    clean = pretraining_mixture({"addition": 0.5}, 60_000, 0, exclude=evals, **kn)
    seen = _additions(clean.text)
    assert len(seen) > 1000 and not seen & keys
    assert eval_examples("addition", 300, 0, digits=2) == evals
    assert [e.text for e in evals] != [e.text for e in make_examples("addition", 300, 0, digits=2)]


@pytest.mark.parametrize("rates,kw,match", [
    ({"addition": 0.7, "kv_map": 0.4}, {}, "sum to"), ({"addition": -0.1}, {}, r"\[0, 1\]"),
    ({"story": 0.5}, {}, "story"), ({"nope": 0.1}, {}, "unknown task"),
    ({"addition": 0.1}, {"kv_map": {"shots": 2}}, "no rate"),
    ({"addition": 0.1}, {"addition": {"digits": 9}}, "digits"), ({"addition": 0.1}, {"addition": 3}, "dict of knobs"),
])
def test_bad_rates_raise(rates, kw, match):
    with pytest.raises(ValueError, match=match):
        pretraining_mixture(rates, 1_000, 0, **kw)
    with pytest.raises(ValueError, match="n_chars"):
        pretraining_mixture({}, 0, 0)
