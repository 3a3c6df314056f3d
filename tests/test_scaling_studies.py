"""Tests of minillm.scaling.studies: the bits-stored measure on fake scorers, tiny runs of both studies."""
import math

import pytest
import torch

from minillm.data.synthetic import FactWorld
from minillm.scaling.studies import (data_scaling_curve, expected_facts_per_doc, fact_candidates,
                                     improvement_per_decade, knowledge_bits, knowledge_capacity, model_scorer)
from minillm.sweep import default_sweep


@pytest.fixture(scope="module")
def world():
    return FactWorld(seed=3, n_people=20)


def _oracle(world):
    """A scorer certain of every true value: +0 for the truth, -1e9 for every other candidate."""
    truth = {}
    for attr in fact_candidates(world):
        for p in world.people:
            truth[(p.name, attr)] = world.value(p.name, attr) + "."
    from minillm.scaling.studies import PROMPTS

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
        from minillm.scaling.studies import PROMPTS
        attr = next(a for a, t in PROMPTS.items() if prompts[0].endswith(t))
        vals = [world.value(p.name, attr) + "." for p in world.people]
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


def test_model_scorer_matches_direct_loglik():
    from minillm import GPT, ModelConfig

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=10, block_size=16, n_layer=1, n_embd=16, n_head=1))
    encode = lambda s: [int(ch) for ch in s]  # noqa: E731  digits as tokens
    prompts, cands = ["123", "45"], ["67", "8", "901"]
    got = model_scorer(model, encode, max_sequences=4)(prompts, cands)
    with torch.no_grad():
        for i, p in enumerate(prompts):
            for k, c in enumerate(cands):
                ids = torch.tensor([encode(p + c)])
                logp = torch.log_softmax(model(ids)[0][0], -1)
                want = sum(logp[t - 1, ids[0, t]] for t in range(len(p), len(p) + len(c)))
                assert got[i, k].item() == pytest.approx(want.item(), abs=1e-5)


def test_expected_facts_per_doc():
    assert expected_facts_per_doc(0.3, 1) == 1.0
    assert expected_facts_per_doc(0.5, 3) == pytest.approx(1.75)


def test_knowledge_capacity_tiny():
    rows = knowledge_capacity([(1, 16, 1)], n_people=10, exposures=3, measure_at=(0.5, 1.0), device="cpu")
    assert len(rows) == 2 and rows[0]["steps"] < rows[1]["steps"]
    for r in rows:
        assert 0 <= r["bits"] <= r["total_bits"]
        assert r["bits_per_param"] == pytest.approx(r["bits"] / r["n_params"])
        assert set(r["per_attribute"]) == {"city", "birth_year", "job", "colour", "pet", "friend"}
        assert r["val_loss"] > r["floor"] - 0.05


@pytest.mark.parametrize("kwargs, match", [
    (dict(sizes=[]), "sizes is empty"),
    (dict(sizes=[(1, 16)]), "n_layer, n_embd, n_head"),
    (dict(sizes=[(1, 15, 2)]), "divisible"),
    (dict(sizes=[(1, 16, 1)], exposures=0), "exposures"),
    (dict(sizes=[(1, 16, 1)], measure_at=(0.5,)), "measure_at"),
])
def test_knowledge_capacity_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        knowledge_capacity(**kwargs)


def test_data_scaling_tiny():
    rows = data_scaling_curve(1, 16, 1, (2, 4), sweep=default_sweep("ci"))
    own = [r for r in rows if r["schedule"] == "own_cosine"]
    mid = [r for r in rows if r["schedule"] == "mid_run"]
    assert len(own) == 2 and mid
    toks = [r["tokens"] for r in own]
    assert toks == sorted(toks) and toks[0] < toks[1]
    assert [r["tokens"] for r in mid] == sorted(r["tokens"] for r in mid)
    assert max(r["tokens"] for r in mid) < toks[-1]
    for r in own:
        assert r["tokens_per_param"] == pytest.approx(r["tokens"] / r["n_params"])
        assert r["excess"] == pytest.approx(r["val_loss"] - r["floor"])
        assert {"tokens", "tokens_per_param", "val_loss", "floor"} <= set(r)
    dec = improvement_per_decade(rows)
    assert len(dec) == 1 and dec[0]["tokens_from"] == toks[0]


@pytest.mark.parametrize("args, match", [
    ((1, 16, 1, ()), "distinct positive"),
    ((1, 16, 1, (5, -1)), "distinct positive"),
    ((1, 16, 1, (5, 5)), "distinct positive"),
    ((0, 16, 1, (5,)), "n_layer"),
    ((1, 16, 1, (1e6,)), "corpus has"),
])
def test_data_scaling_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        data_scaling_curve(*args, sweep=default_sweep("ci"))


def test_improvement_per_decade_needs_two_rows():
    with pytest.raises(ValueError, match="at least two"):
        improvement_per_decade([{"schedule": "own_cosine", "tokens": 10, "val_loss": 1.0, "floor": 0.5}])
