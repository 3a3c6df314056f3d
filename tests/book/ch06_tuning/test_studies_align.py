"""Smoke runs of the alignment studies (book.ch06_tuning.studies_align) at ci size: rows with finite numbers."""
import math

import pytest
import torch

from minillm.data.tasks.instructions import templates
from book.ch06_tuning import studies_align as sa

torch.set_num_threads(1)
KEYS = ("hidden", "correctness", "style", "harm", "exact_match", "learned", "kl", "hidden_sampled", "learned_sampled")


@pytest.fixture(scope="module")
def setup():
    return sa.prepare_alignment(seed=0, size="ci")


def test_learned_reward_fn_scores_empty_and_normal_responses(setup):
    fn = sa.learned_reward_fn(setup.rm, setup.template)
    p = setup.template.prompt_text([{"role": "user", "content": "First letter of abc:"}])
    r = fn(["", "a", "a ok"], [p, p, p])
    assert r.shape == (3,) and bool(torch.isfinite(r).all())


@pytest.mark.slow
def test_sft_then_align_rows_are_finite(setup):
    rows = sa.sft_then_align(setup=setup, size="ci", methods=("dpo", "grpo"))
    assert [r["method"] for r in rows] == ["sft", "dpo", "grpo"]
    for r in rows:
        for k in KEYS:
            assert math.isfinite(r[k]), (r["method"], k)
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # the SFT model against itself
    assert 0.0 <= rows[0]["rm_agreement"] <= 1.0


@pytest.mark.slow
def test_kl_sweep_rows(setup):
    rows = sa.kl_sweep(betas=(0.0, 0.2), setup=setup, size="ci", steps=3)
    assert [r["beta"] for r in rows] == [None, 0.0, 0.2]
    assert all(math.isfinite(r["hidden"]) and math.isfinite(r["learned"]) for r in rows)


def test_pretrain_and_train_phrasing_eval_use_unseen_words():
    s = sa.prepare_alignment(seed=1, size="ci", families=("first",), pretrain_steps=2, sft_steps=2, rm_steps=2,
                             eval_split="train")
    assert s.info["pretrain_steps"] == 2 and s.info["eval_split"] == "train" and s.info["families"] == ("first",)
    assert {c.meta["template"] for c in s.eval_convs} <= set(templates("first", "train"))  # seen phrasings ...
    assert not {c.meta["key"] for c in s.train_convs} & {c.meta["key"] for c in s.eval_convs}  # ... unseen words


def test_bad_method():
    with pytest.raises(ValueError, match="method"):
        sa.sft_then_align(setup=object(), methods=("rlhf",))
