"""Tests of minillm.scaling.knowledge: the bits-stored measure on fake scorers, the prefix-sharing model scorer, (chapter code)."""
import pytest

from book.ch01_scaling_laws.studies_knowledge import expected_facts_per_doc, knowledge_capacity


def test_expected_facts_per_doc():
    assert expected_facts_per_doc(0.3, 1) == 1.0
    assert expected_facts_per_doc(0.5, 3) == pytest.approx(1.75)


def test_knowledge_capacity_tiny():
    rows = knowledge_capacity([(1, 16, 1)], n_people=10, exposures=3, block_size=16, measure_at=(0.5, 1.0),
                              device="cpu")
    assert len(rows) == 2 and rows[0]["steps"] < rows[1]["steps"]
    for r in rows:
        assert 0 <= r["bits"] <= r["total_bits"]
        assert r["bits_per_param"] == pytest.approx(r["bits_vs_prior"] / r["n_params"])
        assert r["tokenizer"] == "bpe" and r["vocab_size"] < 1024  # whole words: the corpus has few
        assert set(r["per_attribute"]) == {"city", "birth_year", "job", "colour", "pet", "friend"}
        assert r["val_loss"] > r["floor"] - 0.05


@pytest.mark.parametrize("kwargs, match", [
    (dict(sizes=[]), "sizes is empty"),
    (dict(sizes=[(1, 16)]), "n_layer, n_embd, n_head"),
    (dict(sizes=[(1, 15, 2)]), "divisible"),
    (dict(sizes=[(1, 16, 1)], exposures=0), "exposures"),
    (dict(sizes=[(1, 16, 1)], measure_at=(0.5,)), "measure_at"),
    (dict(sizes=[(1, 16, 1)], tokenizer="words"), "tokenizer='words'"),
])
def test_knowledge_capacity_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        knowledge_capacity(**kwargs)


def test_trained_model_stores_facts_beyond_the_prior():
    # The measure's validation: with enough exposures a small model memorizes a 10-person world, and the strict
    # bits_vs_prior (which is exactly 0 for any person-independent answer) approaches the world's total.
    rows = knowledge_capacity([(2, 32, 1)], n_people=10, exposures=1000, block_size=32, measure_at=(1.0,),
                              device="cpu")
    r = rows[0]
    assert r["bits_vs_prior"] > 0.6 * r["total_bits_vs_prior"]
    assert r["accuracy"] > 0.8
    assert 0 < r["bits_per_param"] < 2.0


def test_char_tokenizer_scores_consistently():
    rows = knowledge_capacity([(1, 16, 1)], n_people=5, exposures=2, tokenizer="char", measure_at=(1.0,),
                              device="cpu")
    assert rows[0]["tokenizer"] == "char" and rows[0]["vocab_size"] < 80
    assert 0 <= rows[0]["bits"] <= rows[0]["total_bits"]
