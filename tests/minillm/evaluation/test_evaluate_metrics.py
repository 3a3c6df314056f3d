"""minillm.evaluation.harness: perplexity on hand cases, likelihood scoring of choices, EM / F1, few-shot layout."""
import math

import numpy as np
import pytest
import torch

from minillm.config import ModelConfig
from minillm.data.tokenizer import CharTokenizer
from minillm.evaluation.harness import (choice_logprobs, exact_match, f1_score, few_shot_prompt, perplexity, score_choices)
from minillm.model.transformer import GPT


class Uniform(torch.nn.Module):
    """Logits all zero: every next token has probability 1/V."""

    def __init__(self, V):
        super().__init__()
        self.V, self.w = V, torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx):
        return torch.zeros(*idx.shape, self.V) + 0 * self.w, None  # (B, T, V)


class Bigram(torch.nn.Module):
    """Logits are a fixed table row of the current token: p(next | current), independent of older context."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.as_tensor(table, dtype=torch.float32))

    def forward(self, idx):
        return self.table[idx]  # (B, T, V), logits only (not a tuple)


def test_uniform_model_has_perplexity_v_and_bits_per_byte_by_hand():
    text = "héllo wörld, ünïcode bytes " * 4  # accented letters: 2 UTF-8 bytes each, so bytes != characters
    tok = CharTokenizer.from_text(text)
    V = tok.vocab_size
    r = perplexity(Uniform(V), text=text, tokenizer=tok, block_size=16, stride=5)
    n = len(text) - 1
    assert r["tokens"] == n and r["bytes"] == len(text.encode("utf-8")) > len(text)
    assert r["perplexity"] == pytest.approx(V, rel=1e-6)
    assert r["loss"] == pytest.approx(math.log(V), rel=1e-6)
    assert r["bits_per_token"] == pytest.approx(math.log2(V), rel=1e-6)
    assert r["bits_per_byte"] == pytest.approx(n * math.log2(V) / r["bytes"], rel=1e-6)


def test_bigram_perplexity_matches_hand_count_for_every_stride():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(5, 5, generator=g) * 2
    ids = torch.randint(0, 5, (41,), generator=g)
    logp = torch.log_softmax(table, -1)
    hand = -logp[ids[:-1], ids[1:]].double().mean().item()  # every transition counted once
    for block, stride in [(8, 8), (8, 3), (8, 1), (40, 40), (7, 5)]:
        r = perplexity(Bigram(table), ids, block_size=block, stride=stride)
        assert r["loss"] == pytest.approx(hand, rel=1e-5), (block, stride)  # double counting would change it
        assert r["tokens"] == 40 and r["bits_per_byte"] is None


def test_stride_one_equals_token_by_token_with_longest_context():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=7, block_size=8, n_layer=1, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 7, (30,))
    with torch.no_grad():
        nll = [-torch.log_softmax(model(ids[max(0, t - 8):t][None])[0][0, -1], -1)[ids[t]].item()
               for t in range(1, 30)]  # reference: each token with up to block_size tokens of context
    r = perplexity(model, ids[None], stride=1)
    assert r["loss"] == pytest.approx(float(np.mean(nll)), rel=1e-5)
    disjoint = perplexity(model, ids)  # default stride = block_size: the same tokens, less context for some
    assert disjoint["tokens"] == r["tokens"] == 29 and disjoint["loss"] != pytest.approx(r["loss"], rel=1e-9)


def test_perplexity_rejects_bad_input():
    m = Uniform(3)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        perplexity(m, torch.tensor([1]))
    with pytest.raises(ValueError, match="stride"):
        perplexity(m, torch.arange(3).repeat(5), block_size=4, stride=5)
    with pytest.raises(ValueError, match="tokenizer"):
        perplexity(m, text="abc")


def _crafted():
    """Characters a, b, x, y. After 'b': 'x' costs 2 nats-ish, 'y' is likely; after 'y', 'y' is likely again."""
    tok = CharTokenizer(list("abxy"))
    a, b, x, y = (tok.encode(c)[0] for c in "abxy")
    table = torch.zeros(4, 4)
    table[b, x], table[b, y] = 0.0, 1.0
    table[y, y] = 1.0
    return tok, Bigram(table), torch.log_softmax(table, -1), (a, b, x, y)


def test_choice_logprobs_equal_hand_computation():
    tok, model, lp, (a, b, x, y) = _crafted()
    got = choice_logprobs(model, tok, "ab", ["x", "yyy", "xy"])
    hand = [lp[b, x], lp[b, y] + 2 * lp[y, y], lp[b, x] + lp[x, y]]
    assert got.shape == (3,)
    np.testing.assert_allclose(got, [float(h) for h in hand], rtol=1e-5)


def test_normalization_changes_the_ranking():
    tok, model, lp, (a, b, x, y) = _crafted()
    choices = ["x", "yyyyyy"]  # one cheap-ish token vs six likely ones: a larger total cost, a smaller mean
    raw = score_choices(model, tok, "ab", choices, "none")
    per_char = score_choices(model, tok, "ab", choices, "chars")
    per_tok = score_choices(model, tok, "ab", choices, "tokens")
    assert raw.argmax() == 0 and per_char.argmax() == 1 and per_tok.argmax() == 1
    np.testing.assert_allclose(per_char, raw / np.array([1, 6]), rtol=1e-6)
    with pytest.raises(ValueError, match="normalize"):
        score_choices(model, tok, "ab", choices, "bytes")


def test_batched_choices_equal_one_at_a_time():
    torch.manual_seed(1)
    tok = CharTokenizer(list("abcdefgh "))
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    choices = [" a", " bcd", " efgh e", " h"]
    together = choice_logprobs(model, tok, "abc def", choices)
    alone = [choice_logprobs(model, tok, "abc def", [c])[0] for c in choices]
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)  # right padding never leaks into scores
    long_ctx = "abcdefgh " * 3  # longer than block_size: the context is cut from the left, still scores
    assert np.isfinite(choice_logprobs(model, tok, long_ctx, choices)).all()


def test_exact_match_and_f1_hand_cases():
    squad = exact_match(["The Cat!", "  an  apple. ", "cat"], ["cat", "Apple", "dog"], normalize=True)
    assert squad.dtype == np.float64 and squad.tolist() == [1.0, 1.0, 0.0]
    assert exact_match(["The cat", "85", "85 "], ["cat", "85", "85"]).tolist() == [0.0, 1.0, 0.0]  # raw by default
    with pytest.raises(ValueError, match="lists of strings"):
        exact_match("85", "85")  # one pair is a list of one: exact_match(["85"], ["85"])
    with pytest.raises(ValueError, match="2 predictions for 1"):
        exact_match(["a", "b"], ["a"])
    assert f1_score("the cat sat", "a cat sat down") == pytest.approx(0.8)  # P = 2/2, R = 2/3
    assert f1_score("cat cat", "cat") == pytest.approx(2 / 3)  # a bag: the second "cat" is not in the gold
    assert f1_score("dog", "cat") == 0.0
    assert f1_score("", "the") == 1.0 and f1_score("x", "") == 0.0  # both empty after normalising vs one empty


def test_few_shot_layout():
    p = few_shot_prompt([("Ada lives in", " Ashford"), ("Bo lives in", " Dunmere")], "Cy lives in",
                        instruction="Where do they live?")
    assert p == "Where do they live?\nAda lives in Ashford\nBo lives in Dunmere\nCy lives in"
    assert few_shot_prompt([], "1+1=") == "1+1="
    assert few_shot_prompt([("1+1=", "2")], "2+2=", sep=";") == "1+1=2;2+2="
    with pytest.raises(ValueError, match="pair"):
        few_shot_prompt([("only a question",)], "q")
