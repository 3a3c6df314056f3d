"""Scoring of minillm.evaluation.scoring: a hand-made bigram "model" gives hand-computable scores; a tiny GPT
trained on the key->value task beats chance in context, and its teacher-forced exact match equals what greedy
generation actually writes."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from minillm import GPT, DataSplits, ModelConfig, TrainConfig, Trainer
from minillm.data.tasks.pretraining import emergence_tokenizer, pretraining_mixture
from minillm.data.tasks.suites import Example, make_examples
from minillm.evaluation.loss import heldout_loss
from minillm.evaluation.scoring import (
    greedy_complete,
    icl_accuracy_by_shots,
    inverse_scaling_rates,
    score_examples,
    score_generated,
)

TOK = emergence_tokenizer()
V = TOK.vocab_size


class Bigram(torch.nn.Module):
    """Next-token distribution depends only on the current token: rows[c] = {next: prob}, the rest of the
    mass spread evenly over the other tokens."""

    def __init__(self, rows: dict[str, dict[str, float]], block_size: int = 32):
        super().__init__()
        self.config = SimpleNamespace(block_size=block_size, vocab_size=V)
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        table = torch.full((V, V), 1.0 / V)
        for c, nxt in rows.items():
            rest = (1 - sum(nxt.values())) / (V - len(nxt))
            table[TOK.token_to_id(c)] = rest
            for n, p in nxt.items():
                table[TOK.token_to_id(c), TOK.token_to_id(n)] = p
        self.register_buffer("logp", table.log())

    def prob(self, c: str) -> torch.Tensor:
        return self.logp[TOK.token_to_id(c)].exp()

    def forward(self, idx, targets=None, **kwargs):  # generate() passes cache=None
        return self.logp[idx] + 0 * self.dummy, None  # (B, T, V)


FAKE = Bigram({"=": {"8": 0.5, "5": 0.3}, "8": {"5": 0.6}, "5": {"\n": 0.9}, "[": {"]": 0.8}, "]": {"2": 0.7},
               "2": {"\n": 0.95}})


def _brier(row: torch.Tensor, gold: str) -> float:
    y = torch.zeros(V)
    y[TOK.token_to_id(gold)] = 1
    return float(((row - y) ** 2).sum())


def test_teacher_forced_scores_equal_hand_values():
    ex = [Example("3=", "85", "t"), Example("41=", "55", "t"), Example("=", "8", "t")]
    sc = score_examples(FAKE, TOK, ex, return_tokens=True)
    # "3=85\n": '8'|'=' (0.5, argmax), '5'|'8' (0.6, argmax), '\n'|'5' (0.9, argmax): every token right.
    # "41=55\n": '5'|'=' (0.3, not argmax), '5'|'5' (not argmax: '\n' is), '\n'|'5' (0.9): 1 of 3 right.
    # "=8\n": '8'|'=' (0.5), '\n'|'8' (the rest's share: not argmax).
    rest8 = 0.4 / (V - 1)
    assert sc["exact_match"].tolist() == [1.0, 0.0, 0.0]
    assert sc["token_accuracy"] == pytest.approx([1.0, 1 / 3, 0.5])
    assert sc["logprob_sum"] == pytest.approx([math.log(0.5 * 0.6 * 0.9), math.log(0.3 * (0.1 / (V - 1)) * 0.9),
                                               math.log(0.5 * rest8)], rel=1e-5)
    assert sc["logprob_mean"] == pytest.approx(sc["logprob_sum"] / np.array([3, 3, 2]))
    assert sc["n_tokens"].tolist() == [3, 3, 2]
    b0 = (_brier(FAKE.prob("="), "8") + _brier(FAKE.prob("8"), "5") + _brier(FAKE.prob("5"), "\n")) / 3
    b1 = (_brier(FAKE.prob("="), "5") + _brier(FAKE.prob("5"), "5") + _brier(FAKE.prob("5"), "\n")) / 3
    assert sc["brier"][:2] == pytest.approx([b0, b1], rel=1e-5)
    assert sc["token_correct"][1].tolist() == [False, False, True] and sc["token_mask"][2].tolist() == [1, 1, 0]
    assert np.isnan(sc["token_logprob"][2, 2])
    one_by_one = score_examples(FAKE, TOK, ex, batch_size=1)  # padding and batching change nothing
    for k in ("exact_match", "token_accuracy", "logprob_sum", "brier"):
        assert one_by_one[k] == pytest.approx(sc[k], rel=1e-6)


def test_cot_examples_are_scored_given_the_gold_working():
    ex = Example("1+1=[", "2", "addition", trace="1+1+0=02]")
    sc = score_examples(FAKE, TOK, [ex])
    assert sc["logprob_sum"][0] == pytest.approx(math.log(0.7 * 0.95), rel=1e-5)  # '2'|']', '\n'|'2'


def test_greedy_complete_and_score_generated():
    prompts = ["3=", "12=", "4=", "x["]
    assert greedy_complete(FAKE, TOK, prompts, 6) == ["85", "85", "85", "]2"]
    ex = [Example("3=", "85", "t"), Example("9=", "84", "t"),
          Example("1+1=[", "2", "addition", trace="1+1+0=02]"), Example("2+1=[", "3", "addition", trace="x]")]
    out = score_generated(FAKE, TOK, ex)
    assert out["exact_match"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert out["prediction"].tolist() == ["85", "85", "2", "2"] and out["completion"][2] == "]2"
    no_marker = Bigram({"[": {"2": 0.9}, "2": {"\n": 0.9}})
    assert score_generated(no_marker, TOK, ex[2:3])["exact_match"].tolist() == [0.0]  # CoT needs the marker
    with pytest.raises(ValueError, match="one token"):
        greedy_complete(FAKE, TOK, prompts, 3, stop="ab")


def test_scoring_errors():
    with pytest.raises(ValueError, match="block_size"):
        score_examples(Bigram({}, block_size=4), TOK, [Example("12345=", "8", "t")])
    with pytest.raises(ValueError, match="no examples"):
        score_examples(FAKE, TOK, [])
    with pytest.raises(ValueError, match="imitation"):
        inverse_scaling_rates(FAKE, TOK, [Example("3=", "85", "t")])


def test_inverse_scaling_rates_on_fake_model():
    ex = [Example("3=", "85", "pattern_conflict", {"imitation": "5"}),
          Example("7=", "5", "pattern_conflict", {"imitation": "85"})]
    r = inverse_scaling_rates(FAKE, TOK, ex)
    assert r["correct"] == 0.5 and r["imitation"] == 0.5 and r["n"] == 2


def test_untrained_loss_is_uniform():
    from minillm import GPT, ModelConfig

    torch.manual_seed(0)
    gpt = GPT(ModelConfig(vocab_size=V, block_size=32, n_layer=1, n_embd=32, n_head=2))
    assert heldout_loss(gpt, pretraining_mixture({}, 5_000, 0).text, tokenizer=TOK) == pytest.approx(math.log(V), abs=0.05)


# ---- a real, tiny model ---------------------------------------------------------------------------------------

# Single-letter keys, 4 keys per episode and 4-8 shots drawn with replacement: most shots repeat a key, so the
# text is dense with "read the value off the context" signal. Measured here (2 layers, 64 wide, 1200 steps,
# ~35 s on one CPU thread): 0-shot 0.09 (chance 0.10), 4-shot 0.29, 1-shot "shown" 0.9. Accuracy FALLS with more
# distinct shown keys: at this size the model has learned to copy a value from the prompt (the label space,
# Min et al. 2022), not yet to match the key, which needs longer training or a larger model.
ICL = {"query": "any", "n_keys": 4, "key_len": 1}


@pytest.fixture(scope="module")
def tiny():
    mix = pretraining_mixture({"kv_map": 1.0}, 300_000, 0, kv_map={**ICL, "shots": (4, 5, 6, 7, 8)})
    data = DataSplits.from_tokens(TOK.encode_to_array(mix.text), val_fraction=0.05, vocab_size=TOK.vocab_size)
    torch.manual_seed(1337)
    model = GPT(ModelConfig(vocab_size=TOK.vocab_size, block_size=48, n_layer=2, n_head=2, n_embd=64))
    cfg = TrainConfig(max_steps=1200, batch_size=32, lr=3e-3, warmup_steps=60, eval_interval=0, seed=1337,
                      device="cpu", progress=False)
    Trainer(model, cfg, data).fit()
    return model.eval(), TOK, heldout_loss(model, data.val)


@pytest.mark.slow
def test_tiny_model_learns_in_context(tiny):
    model, tok, val = tiny
    assert val < 1.6  # random keys and values keep the loss high; untrained it is log(96) = 4.56
    rows = {r["shots"]: r for r in icl_accuracy_by_shots(model, tok, "kv_map", shots=[0, 4], n=400, seed=5, **ICL)}
    chance = rows[4]["chance"]
    assert chance == pytest.approx(0.1) and rows[4]["bayes"] > 0.6
    assert rows[0]["exact_match"] < 1.5 * chance  # nothing to read: a guess
    assert rows[4]["exact_match"] > 2 * chance   # a new map every episode: only the prompt can tell
    assert rows[4]["logprob_mean"] > rows[0]["logprob_mean"] + 0.05  # measured: +0.14


@pytest.mark.slow
def test_teacher_forced_em_equals_greedy_generation(tiny):
    model, tok, _ = tiny
    ex = make_examples("kv_map", 150, 9, query="shown", n_keys=8, key_len=1, shots=(1, 2, 3))
    ex += make_examples("addition", 20, 0, digits=1)  # never trained on: mostly wrong, and longer answers
    tf = score_examples(model, tok, ex)["exact_match"]
    gen = score_generated(model, tok, ex)["exact_match"]
    assert 0.2 < tf.mean() < 0.95  # a mix of right and wrong answers, so the comparison means something
    assert tf.tolist() == gen.tolist()
