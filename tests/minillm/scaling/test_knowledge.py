"""Tests of minillm.scaling.knowledge: the bits-stored measure on fake scorers, the prefix-sharing model scorer,
and tiny training runs (including one that must store facts beyond the value prior)."""
import math

import pytest
import torch

from minillm.data.synthetic import FactWorld
from minillm.scaling.knowledge import PROMPTS, fact_candidates, knowledge_bits, model_scorer


@pytest.fixture(scope="module")
def world():
    return FactWorld(seed=3, n_people=20)


def _oracle(world):
    """A scorer certain of every true value: +0 for the truth, -1e9 for every other candidate."""
    truth = {}
    for attr in fact_candidates(world):
        for p in world.people:
            truth[(p.name, attr)] = " " + world.value(p.name, attr)

    def score(prompts, candidates):
        out = torch.full((len(prompts), len(candidates)), -1e9)
        for i, prompt in enumerate(prompts):
            for attr, tmpl in PROMPTS.items():
                if prompt.endswith(tmpl):
                    name = prompt[1:-len(tmpl)]
                    out[i, candidates.index(truth[(name, attr)])] = 0.0
        return out
    return score


def test_bits_zero_for_uniform_scorer(world):
    kb = knowledge_bits(world, lambda p, c: torch.zeros(len(p), len(c)))
    assert kb["bits"] == pytest.approx(0.0, abs=1e-9)
    assert kb["bits_vs_prior"] == 0.0  # a person-independent guess never beats the world's frequencies in total


def test_bits_vs_prior_zero_for_marginal_scorer(world):
    # A scorer that knows only how often each value occurs (no person-specific knowledge).
    def marginal(prompts, candidates):
        attr = next(a for a, t in PROMPTS.items() if prompts[0].endswith(t))
        vals = [" " + world.value(p.name, attr) for p in world.people]
        counts = torch.tensor([vals.count(c) + 1e-12 for c in candidates], dtype=torch.float64)
        return counts.log().expand(len(prompts), -1)
    kb = knowledge_bits(world, marginal)
    assert kb["bits_vs_prior"] == pytest.approx(0.0, abs=1e-6)
    assert kb["bits"] > 0  # against uniform, the marginal alone already "stores" bits: why bits_vs_prior exists
    assert kb["n_facts"] == 6 * 20


def test_bits_total_for_oracle(world):
    kb = knowledge_bits(world, _oracle(world))
    sizes = {a: len(v) for a, v in fact_candidates(world).items()}
    expected = 20 * sum(math.log2(k) for k in sizes.values())
    assert sizes["friend"] == 20 and sizes["birth_year"] == 66
    assert kb["bits"] == pytest.approx(expected) == pytest.approx(kb["total_bits"])
    assert kb["bits_vs_prior"] == pytest.approx(kb["total_bits_vs_prior"])
    assert kb["accuracy"] == 1.0
    assert kb["total_bits_vs_prior"] < kb["total_bits"]  # values are not uniform over candidates


def test_bits_clipped_per_fact(world):
    # Confidently wrong about everything: CE > log2 K, clipped to 0 instead of going negative.
    def wrong(p, c):
        out = torch.full((len(p), len(c)), -1e9)
        out[:, 0] = 0.0
        return out
    kb = knowledge_bits(world, wrong)
    assert kb["bits"] >= 0.0 and kb["bits"] < kb["total_bits"]


def test_bad_score_shape(world):
    with pytest.raises(ValueError, match="expected"):
        knowledge_bits(world, lambda p, c: torch.zeros(len(p), len(c) + 1))


@pytest.mark.parametrize("max_sequences", [1, 4, 4096])
def test_model_scorer_matches_direct_loglik(max_sequences):
    from minillm import GPT, ModelConfig

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=10, block_size=16, n_layer=1, n_embd=16, n_head=1))
    encode = lambda s: [int(ch) for ch in s]  # noqa: E731  digits as tokens
    # Shared prefixes ("67"/"68", "905"/"901"), a one-token candidate and one that is another's prefix ("6").
    prompts, cands = ["123", "45", "7"], ["67", "8", "901", "68", "6", "905"]
    got = model_scorer(model, encode, max_sequences=max_sequences)(prompts, cands)
    assert got.shape == (3, 6)
    with torch.no_grad():
        for i, p in enumerate(prompts):
            for k, c in enumerate(cands):
                ids = torch.tensor([encode(p + c)])
                logp = torch.log_softmax(model(ids)[0][0], -1)
                want = sum(logp[t - 1, ids[0, t]] for t in range(len(p), len(p) + len(c)))
                assert got[i, k].item() == pytest.approx(want.item(), abs=1e-5)


def test_model_scorer_errors():
    from minillm import GPT, ModelConfig

    model = GPT(ModelConfig(vocab_size=10, block_size=4, n_layer=1, n_embd=16, n_head=1))
    score = model_scorer(model, lambda s: [int(ch) for ch in s])
    with pytest.raises(ValueError, match="block_size=4"):
        score(["1234"], ["5"])
    with pytest.raises(ValueError, match="no tokens"):
        score(["1"], [""])
