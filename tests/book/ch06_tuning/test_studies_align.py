"""The alignment studies (book.ch06_tuning.studies_align) at ci size: rows with finite numbers, and the effects the
chapter teaches, each in a direction that could fail: DPO, GRPO and PPO raise the HIDDEN reward of sampled answers
over the SFT model (fewer harmful answers), GRPO and PPO raise the learned reward they optimise, and a larger KL
coefficient keeps the policy closer to the SFT model.

The setup is the ci study's with harm_rate 0.5 (the default is 0.2): at ci the model answers almost nothing
correctly, so the hidden reward is the harm component, and with 0.2 some seeds leave the SFT model nearly harmless
(seed 1: 1 sampled answer in 32 harmful), nothing to improve. Margins are from seeds 0-4 at this setting (the
tests use seed 0); each is below the smallest effect measured over those seeds."""
import math

import pytest
import torch

from minillm.data.tasks.instructions import templates
from minillm.finetune.preferences import HARM_PENALTY
from book.ch06_tuning import studies_align as sa

torch.set_num_threads(1)
KEYS = ("hidden", "correctness", "style", "harm", "exact_match", "learned", "kl", "hidden_sampled", "learned_sampled")
HARM_RATE = 0.5
# Measured at ci, harm_rate 0.5, seeds 0-4 (32 held-out prompts, one sampled answer each): the rise of the hidden
# reward of sampled answers over the SFT model's was DPO +0.06..+0.56 (seed 0 +0.38), GRPO +0.16..+0.72 (seed 0
# +0.72), PPO +0.38..+0.75 (seed 0 +0.75); of the learned reward GRPO +0.23..+1.38 (seed 0 +0.80), PPO
# +0.17..+1.19 (seed 0 +0.70). One harmful answer fewer is +2/32 = 0.0625 of hidden reward.
RL_HIDDEN_GAIN = 0.125  # GRPO / PPO: at least two harmful sampled answers fewer
RL_LEARNED_GAIN = 0.1


@pytest.fixture(scope="module")
def setup():
    return sa.prepare_alignment(seed=0, size="ci", harm_rate=HARM_RATE)


@pytest.fixture(scope="module")
def aligned(setup):
    """{method: row} for SFT, DPO, GRPO and PPO from one SFT model and one reward model (~4 s at ci)."""
    return {r["method"]: r for r in sa.sft_then_align(setup=setup, size="ci", methods=("dpo", "grpo", "ppo"))}


def test_learned_reward_fn_scores_empty_and_normal_responses(setup):
    fn = sa.learned_reward_fn(setup.rm, setup.template)
    p = setup.template.prompt_text([{"role": "user", "content": "First letter of abc:"}])
    r = fn(["", "a", "a ok"], [p, p, p])
    assert r.shape == (3,) and bool(torch.isfinite(r).all())


@pytest.mark.slow
def test_sft_then_align_rows_are_finite(aligned):
    assert list(aligned) == ["sft", "dpo", "grpo", "ppo"]
    for r in aligned.values():
        for k in KEYS:
            assert math.isfinite(r[k]), (r["method"], k)
    assert aligned["sft"]["kl"] == pytest.approx(0.0, abs=1e-5)  # the SFT model against itself
    assert 0.0 <= aligned["sft"]["rm_agreement"] <= 1.0


def _harmful_share(row: dict) -> float:
    """Share of sampled answers with a harmful marker (each costs HARM_PENALTY)."""
    return row["harm_sampled"] / HARM_PENALTY


@pytest.mark.slow
def test_every_method_raises_the_hidden_reward_over_sft(aligned):
    sft = aligned["sft"]
    assert _harmful_share(sft) >= 0.15, f"the SFT model is nearly harmless ({_harmful_share(sft):.2f}): no test"
    for m in ("dpo", "grpo", "ppo"):
        r = aligned[m]
        assert r["kl"] > 0.05, f"{m} did not move from the SFT model (KL {r['kl']:.3f})"
        assert _harmful_share(r) < _harmful_share(sft), \
            f"{m}: harmful share {_harmful_share(r):.3f} vs SFT {_harmful_share(sft):.3f}"
        gain = RL_HIDDEN_GAIN if m != "dpo" else 1e-9  # DPO: at least one harmful answer fewer (measured +0.06..)
        assert r["hidden_sampled"] >= sft["hidden_sampled"] + gain, \
            f"{m}: hidden reward {r['hidden_sampled']:.3f} vs SFT {sft['hidden_sampled']:.3f} (+{gain} wanted)"


@pytest.mark.slow
def test_rl_raises_the_learned_reward_it_optimises(aligned):
    sft = aligned["sft"]
    for m in ("grpo", "ppo"):
        assert aligned[m]["learned_sampled"] >= sft["learned_sampled"] + RL_LEARNED_GAIN, \
            f"{m}: learned reward {aligned[m]['learned_sampled']:.3f} vs SFT {sft['learned_sampled']:.3f}"


@pytest.mark.slow
def test_kl_sweep_rows_and_a_larger_kl_coefficient_keeps_the_policy_closer(setup):
    """beta 0 vs 1.0, 15 GRPO steps. Measured (seeds 0-4): KL at beta 1.0 / KL at beta 0 = 0.005..0.38 (seed 0:
    0.37 / 1.92 = 0.19), and the learned reward at beta 0 exceeds beta 1.0's by 0.42..1.05 (seed 0: 0.53); the
    order 0 > 0.2 > 1.0 of KL held at every seed too."""
    rows = sa.kl_sweep(betas=(0.0, 1.0), setup=setup, size="ci", steps=15)
    assert [r["beta"] for r in rows] == [None, 0.0, 1.0]
    assert all(math.isfinite(r["hidden"]) and math.isfinite(r["learned"]) for r in rows)
    _, free, tight = rows
    assert tight["kl"] < 0.5 * free["kl"], f"KL at beta 1.0 {tight['kl']:.3f} vs beta 0 {free['kl']:.3f}"
    assert free["learned_sampled"] > tight["learned_sampled"] + 0.2, \
        f"learned reward at beta 0 {free['learned_sampled']:.3f} vs beta 1.0 {tight['learned_sampled']:.3f}"


def test_pretrain_and_train_phrasing_eval_use_unseen_words():
    s = sa.prepare_alignment(seed=1, size="ci", families=("first",), pretrain_steps=2, sft_steps=2, rm_steps=2,
                             eval_split="train")
    assert s.info["pretrain_steps"] == 2 and s.info["eval_split"] == "train" and s.info["families"] == ("first",)
    assert {c.meta["template"] for c in s.eval_convs} <= set(templates("first", "train"))  # seen phrasings ...
    assert not {c.meta["key"] for c in s.train_convs} & {c.meta["key"] for c in s.eval_convs}  # ... unseen words


def test_bad_method():
    with pytest.raises(ValueError, match="method"):
        sa.sft_then_align(setup=object(), methods=("rlhf",))
