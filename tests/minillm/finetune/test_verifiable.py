"""Verifiable rewards: exact match of parsed answers, format checks, weighted sums, arithmetic golds."""
import pytest
import torch

from minillm.evaluation.answers import parse_choice
from minillm.finetune.rollout import Rollout, score_rollout
from minillm.finetune.verifiable import arithmetic_gold, combine_rewards, exact_match_reward, format_reward


@pytest.mark.parametrize("prompt, expected", [
    ("37+48=", "85"), ("37+48=[", "85"), ("7*8=", "56"), ("5-9=", "-4"), ("-3+4=", "1"), ("3--4=", "7"),
    ("12 * 12 = ", "144"), ("12+3=15\n4+5=", "9"), ("Q: what is 6*7 =\n", "42"),
    ("123456789*987654321=", str(123456789 * 987654321)),  # exact with ints, no float rounding
    ("15-4+5=", None),                                    # a longer expression is not a+b
    ("1+2+3=", None), ("8/2=", None), ("37+48", None), ("37+48=85", None), ("hello", None), ("", None),
])
def test_arithmetic_gold(prompt, expected):
    assert arithmetic_gold(prompt) == expected


def test_arithmetic_gold_rejects_non_str():
    with pytest.raises(TypeError, match="str"):
        arithmetic_gold(12)


def test_exact_match_reward_numbers():
    fn = exact_match_reward(arithmetic_gold, correct=1.0, wrong=-0.5, unparsed=-1.0)
    prompts = ["37+48=", "37+48=", "7*8=", "7*8=", "5-9="]
    responses = ["85", "The sum is 84.", "no idea", "#### 56.0", "-4"]
    got = fn(responses, prompts)
    torch.testing.assert_close(got, torch.tensor([1.0, -0.5, -1.0, 1.0, 1.0]), rtol=0, atol=0)
    assert got.dtype == torch.float32 and got.shape == (5,)


def test_exact_match_reward_with_a_mapping_and_parsed_golds():
    fn = exact_match_reward({"q1": "#### 1,000", "q2": 18})
    got = fn(["1000", "it is 1,000.", "18", "17"], ["q1", "q1", "q2", "q2"])
    torch.testing.assert_close(got, torch.tensor([1.0, 1.0, 1.0, 0.0]), rtol=0, atol=0)


def test_exact_match_reward_multiple_choice():
    fn = exact_match_reward({"q": "B"}, parse=lambda t: parse_choice(t, 4), unparsed=-1.0)
    got = fn(["The answer is (B).", "A", "A or B", "hmm"], ["q"] * 4)
    torch.testing.assert_close(got, torch.tensor([1.0, 0.0, -1.0, -1.0]), rtol=0, atol=0)


def test_exact_match_reward_errors_name_the_prompt():
    with pytest.raises(ValueError, match="no gold answer for prompt 'q9'"):
        exact_match_reward({"q1": "1"})(["1"], ["q9"])
    with pytest.raises(ValueError, match="gave no answer for prompt 'hello'"):
        exact_match_reward(arithmetic_gold)(["1"], ["hello"])
    with pytest.raises(ValueError, match="gold answer 'many' of prompt 'q' does not parse"):
        exact_match_reward({"q": "many"})(["1"], ["q"])
    with pytest.raises(ValueError, match="2 responses for 1 prompts"):
        exact_match_reward({"q": "1"})(["1", "2"], ["q"])
    with pytest.raises(TypeError, match="Mapping"):
        exact_match_reward(["1"])
    with pytest.raises(ValueError, match="finite"):
        exact_match_reward({"q": "1"}, correct=float("nan"))


def test_format_reward_full_and_search():
    only_number = format_reward(r"-?\d+")
    got = only_number(["85", "-4", "85 apples", "", "8\n5"], [""] * 5)
    torch.testing.assert_close(got, torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0]), rtol=0, atol=0)
    think = format_reward(r"<think>.*</think>", full=False, reward=0.5)  # "." crosses newlines (DOTALL)
    got = think(["<think>a\nb</think> 3", "3", "</think><think>"], [""] * 3)
    torch.testing.assert_close(got, torch.tensor([0.5, 0.0, 0.0]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="not a valid regular expression"):
        format_reward("(")
    with pytest.raises(TypeError, match="full"):
        format_reward("a", full=1)


def test_combine_rewards_weighted_sum():
    acc = exact_match_reward(arithmetic_gold)
    fmt = format_reward(r"-?\d+")
    fn = combine_rewards((acc, 1.0), (fmt, 0.25))
    got = fn(["85", "85 it is", "84", "x"], ["37+48="] * 4)
    torch.testing.assert_close(got, torch.tensor([1.25, 1.0, 0.25, 0.0]), rtol=0, atol=0)
    bad = combine_rewards((lambda r, p: torch.zeros(3), 1.0))
    with pytest.raises(ValueError, match="one value per response"):
        bad(["a"], ["b"])
    with pytest.raises(TypeError, match="pair"):
        combine_rewards(acc)
    with pytest.raises(ValueError, match="at least one"):
        combine_rewards()


def test_rewards_plug_into_score_rollout():
    class Chars:  # a character tokenizer over the digits, '+', '=' and newline
        alphabet = "0123456789+=\n"

        def decode(self, ids):
            return "".join(self.alphabet[i] for i in ids)

    tok = Chars()
    enc = [[tok.alphabet.index(c) for c in s] for s in ("37+48=85\n", "37+48=84\n")]
    ids = torch.tensor(enc)  # (2, 9): prompt of 6 tokens, response of 3
    mask = torch.ones(2, 3, dtype=torch.bool)
    ro = Rollout(ids=ids, prompt_len=6, mask=mask, old_logp=torch.zeros(2, 3), ref_logp=torch.zeros(2, 3))
    fn = combine_rewards((exact_match_reward(arithmetic_gold), 1.0), (format_reward(r"\d+"), 0.1))
    got = score_rollout(ro, tok, fn, stop_tokens=[tok.alphabet.index("\n")])
    torch.testing.assert_close(got, torch.tensor([1.1, 0.1]))
