"""PPO and GRPO (minillm.finetune: rollout, ppo, grpo): hand-computed GAE, clipped objective, group advantages and KL terms, the
rollout layout, config validation, and short trainings on the toy reward "count the letter 'a'"."""
import math

import pytest
import torch

from minillm.config import ModelConfig
from minillm.data.tokenizer import CharTokenizer
from minillm.finetune.logprobs import token_logprobs
from minillm.finetune import (GRPOConfig, PPOConfig, RolloutConfig, ValueModel, char_count_reward, frozen_copy,
                                 gae, group_advantages, grpo_loss, grpo_step, k3_kl, kl_penalized_rewards,
                                 ppo_policy_loss, ppo_step, ppo_value_loss, response_mask, response_values,
                                 sample_rollout, score_rollout, whiten)
from minillm.model.transformer import GPT

torch.set_num_threads(1)
T = torch.tensor


# ---- GAE ------------------------------------------------------------------------------------------------------

def test_gae_three_steps_by_hand():
    gamma, lam = 0.9, 0.8
    r, v = [0.0, 0.0, 1.0], [0.5, 0.6, 0.7]
    # delta_t = r_t + gamma V_{t+1} - V_t, with V_3 = 0 (the episode ended)
    d2 = 1.0 + 0.0 - 0.7                       # 0.3
    d1 = 0.0 + 0.9 * 0.7 - 0.6                 # 0.03
    d0 = 0.0 + 0.9 * 0.6 - 0.5                 # 0.04
    a2 = d2                                    # 0.3
    a1 = d1 + 0.72 * a2                        # 0.246
    a0 = d0 + 0.72 * a1                        # 0.21712
    adv, ret = gae(T([r]), T([v]), T([[True, True, True]]), gamma, lam)
    assert adv[0].tolist() == pytest.approx([a0, a1, a2], abs=1e-6)
    assert adv[0].tolist() == pytest.approx([0.21712, 0.246, 0.3], abs=1e-6)
    assert ret[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.6, a2 + 0.7], abs=1e-6)


def test_gae_mask_ends_the_episode_and_lambda_one_is_monte_carlo():
    # the last slot is padding: its reward and value must not leak in, and step 1 is terminal
    adv, ret = gae(T([[0.0, 1.0, 5.0]]), T([[0.5, 0.6, 9.0]]), T([[True, True, False]]), 0.9, 0.8)
    d1 = 1.0 - 0.6                             # 0.4: no bootstrap past the end
    d0 = 0.9 * 0.6 - 0.5                       # 0.04
    assert adv[0].tolist() == pytest.approx([d0 + 0.72 * d1, d1, 0.0], abs=1e-6)
    assert ret[0, 2] == 0
    # gamma = lam = 1: A_t = (sum of rewards from t on) - V_t
    adv, ret = gae(T([[1.0, 2.0, 3.0]]), T([[0.5, -1.0, 2.0]]), T([[True] * 3]), 1.0, 1.0)
    assert adv[0].tolist() == pytest.approx([6 - 0.5, 5 + 1.0, 3 - 2.0], abs=1e-6)
    assert ret[0].tolist() == pytest.approx([6.0, 5.0, 3.0], abs=1e-6)


def test_whiten_uses_masked_entries_only():
    x, m = T([[1.0, 3.0, 100.0]]), T([[True, True, False]])
    assert whiten(x, m)[0].tolist() == pytest.approx([-1.0, 1.0, 0.0], abs=1e-6)  # mean 2, population std 1


# ---- PPO clipped objective ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio, adv, objective, clipped", [
    (1.1, 2.0, 1.1 * 2.0, False),   # inside [0.8, 1.2]: plain ratio * A
    (1.5, 2.0, 1.2 * 2.0, True),    # A > 0, ratio above 1 + eps: capped at 1.2 * A, no gradient
    (0.5, 2.0, 0.5 * 2.0, False),   # A > 0, ratio below 1 - eps: min picks the unclipped (worse) value
    (0.5, -1.0, 0.8 * -1.0, True),  # A < 0, ratio below 1 - eps: floored at 0.8 * A, no gradient
    (1.5, -1.0, 1.5 * -1.0, False),  # A < 0, ratio above 1 + eps: the loss is never hidden
])
def test_ppo_clipped_objective_by_hand(ratio, adv, objective, clipped):
    old = T([[-1.0]])
    logp = (old + math.log(ratio)).requires_grad_(True)
    loss = ppo_policy_loss(logp, old, T([[adv]]), T([[True]]), clip=0.2)
    assert float(loss.detach()) == pytest.approx(-objective, abs=1e-6)
    loss.backward()
    # d(-ratio * A)/d logp = -ratio * A where the unclipped branch is active, 0 where clipping holds it
    assert float(logp.grad) == pytest.approx(0.0 if clipped else -ratio * adv, abs=1e-6)


def test_ppo_policy_loss_averages_masked_tokens():
    old = torch.zeros(1, 4)
    logp = torch.log(T([[1.1, 1.5, 0.5, 7.0]]))
    adv = T([[2.0, 2.0, -1.0, 100.0]])
    loss = ppo_policy_loss(logp, old, adv, T([[True, True, True, False]]), clip=0.2)
    assert float(loss) == pytest.approx(-(2.2 + 2.4 - 0.8) / 3, abs=1e-6)


def test_value_loss_clipping_by_hand():
    # old V = 0, new V = 1, return 2, clip 0.2: clipped V = 0.2; max((1-2)^2, (0.2-2)^2) = 3.24, times 0.5
    loss = ppo_value_loss(T([[1.0]]), T([[0.0]]), T([[2.0]]), T([[True]]), clip=0.2)
    assert float(loss) == pytest.approx(0.5 * 3.24)
    assert float(ppo_value_loss(T([[1.0]]), T([[0.0]]), T([[2.0]]), T([[True]]), clip=None)) == pytest.approx(0.5)


# ---- KL penalty and k3 ----------------------------------------------------------------------------------------

def test_kl_penalty_sign_and_score_at_last_token():
    logp, ref = T([[-1.0, -2.0, -0.5]]), T([[-1.5, -1.0, -0.5]])
    rewards = kl_penalized_rewards(T([2.0]), logp, ref, T([[True, True, False]]), beta=0.1)
    # token 0: policy likes it more than the reference (logp > ref) -> charged -0.1 * 0.5
    # token 1: the policy likes it less -> paid +0.1 * 1.0, and it is the last token: + score 2
    assert rewards[0].tolist() == pytest.approx([-0.05, 0.1 + 2.0, 0.0], abs=1e-6)
    assert kl_penalized_rewards(T([2.0]), logp, ref, T([[True, True, False]]), beta=0.0)[0].tolist() == \
        pytest.approx([0.0, 2.0, 0.0])


def test_k3_is_nonnegative_and_matches_its_formula():
    logp = T([-1.0, -2.0, -0.5, -0.7])
    ref = T([-1.5, -1.0, -0.5, -0.7 + 1e-3])
    k3 = k3_kl(logp, ref)
    assert (k3 >= 0).all() and k3[2] == 0
    assert float(k3[0]) == pytest.approx(math.exp(-0.5) + 0.5 - 1)   # log(ref/pi) = -0.5
    assert float(k3[1]) == pytest.approx(math.exp(1.0) - 1.0 - 1)    # log(ref/pi) = +1
    assert float(k3[3]) == pytest.approx(0.5e-6, rel=1e-2)           # ~ x^2 / 2 for a small log-ratio x


def test_grpo_kl_term_pulls_the_policy_toward_the_reference():
    logp = T([[-1.0, -3.0]], requires_grad=True)
    ref = T([[-2.0, -2.0]])
    # advantage 0 and ratio 1: only the KL term acts
    grpo_loss(logp, logp.detach(), ref, T([0.0]), T([[True, True]]), clip=0.2, beta=1.0).backward()
    assert logp.grad[0, 0] > 0 and logp.grad[0, 1] < 0  # descent lowers the too-high token, raises the too-low


# ---- GRPO advantages and loss ---------------------------------------------------------------------------------

def test_group_advantages_by_hand():
    # group [1, 0, 0, 1]: mean 0.5; Bessel std = sqrt(4 * 0.25 / 3) = sqrt(1/3); A = +-0.5 / sqrt(1/3) = +-0.866
    a = group_advantages(T([1.0, 0.0, 0.0, 1.0]), 4, eps=0.0)
    assert a.tolist() == pytest.approx([0.8660254, -0.8660254, -0.8660254, 0.8660254], abs=1e-6)
    a = group_advantages(T([1.0, 0.0, 0.0, 1.0]), 4)  # the default eps = 1e-4 in the denominator
    assert float(a[0]) == pytest.approx(0.5 / (math.sqrt(1 / 3) + 1e-4), abs=1e-7)
    # two groups are standardised separately; an all-equal group gets 0 (no signal), not nan
    a = group_advantages(T([0.0, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0]), 4, eps=0.0)
    s = math.sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3)
    assert a.tolist() == pytest.approx([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s, 0, 0, 0, 0], abs=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        group_advantages(T([1.0, 2.0, 3.0]), 2)


def test_grpo_loss_aggregation_by_hand():
    # ratio 1 and no KL: per-token objective = A. Response 0: 1 token, A = +1; response 1: 3 tokens, A = -1
    lp = torch.zeros(2, 3)
    mask = T([[True, False, False], [True, True, True]])
    adv = T([1.0, -1.0])
    assert float(grpo_loss(lp, lp, lp, adv, mask, 0.2, 0.04, "sequence")) == pytest.approx(-(1 - 1) / 2)
    assert float(grpo_loss(lp, lp, lp, adv, mask, 0.2, 0.04, "token")) == pytest.approx(-(1 - 3) / 4)


# ---- configs ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, kwargs, match", [
    (PPOConfig, {"clip": 0.0}, "clip"), (PPOConfig, {"lam": 1.5}, "lam"), (PPOConfig, {"beta": -0.1}, "beta"),
    (PPOConfig, {"epochs": 0}, "epochs"), (PPOConfig, {"value_clip": 0}, "value_clip"),
    (GRPOConfig, {"group_size": 1}, "at least 2"), (GRPOConfig, {"loss_agg": "mean"}, "loss_agg"),
    (RolloutConfig, {"temperature": 0.0}, "temperature"), (RolloutConfig, {"stop_tokens": 5}, "stop_tokens"),
    (RolloutConfig, {"max_new_tokens": 0}, "max_new_tokens"),
])
def test_configs_reject_bad_values(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_config_replace_revalidates():
    cfg = GRPOConfig(stop_tokens=[3])
    assert cfg.stop_tokens == (3,) and cfg.replace(beta=0.0).beta == 0.0
    with pytest.raises(ValueError, match="group_size"):
        cfg.replace(group_size=0)


# ---- rollouts -----------------------------------------------------------------------------------------------

TOK = CharTokenizer.from_text("abcdefgh\n")
NL = TOK.token_to_id("\n")


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=TOK.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=32))


def test_response_mask_stops_after_the_first_stop_token():
    ids = T([[5, 1, 5, 1], [1, 1, 1, 1], [4, 5, 6, 7]])
    assert response_mask(ids, [1]).tolist() == [[True, True, False, False], [True, False, False, False],
                                                [True, True, True, True]]
    assert response_mask(ids, []).all()


def test_sample_rollout_layout_and_logprobs():
    policy = tiny_gpt()
    ref = frozen_copy(policy)
    prompts = torch.full((6, 2), TOK.token_to_id("b"))
    cfg = RolloutConfig(max_new_tokens=6, stop_tokens=(NL,))
    ro = sample_rollout(policy, ref, prompts, cfg, generator=torch.Generator().manual_seed(0))
    N, R = ro.mask.shape
    assert N == 6 and R <= 6 and ro.ids.shape == (6, 2 + R) and torch.equal(ro.ids[:, :2], prompts)
    assert torch.equal(ro.mask, response_mask(ro.response_ids, [NL]))
    with torch.no_grad():
        expect = token_logprobs(policy, ro.ids)[:, 1:]  # column 1 + t predicts response token t
    assert torch.allclose(ro.old_logp, expect.masked_fill(~ro.mask, 0), atol=1e-6)
    assert torch.equal(ro.ref_logp, ro.old_logp)  # the reference is an exact copy, so far
    responses, texts = ro.texts(TOK, [NL])
    assert texts == ["bb"] * 6 and all("\n" not in r for r in responses)
    assert score_rollout(ro, TOK, char_count_reward("a"), [NL]).tolist() == [float(r.count("a")) for r in responses]
    with pytest.raises(ValueError, match="one reward per response"):
        score_rollout(ro, TOK, lambda r, p: torch.zeros(len(r) + 1))
    with pytest.raises(ValueError, match="block_size"):
        sample_rollout(policy, ref, prompts, RolloutConfig(max_new_tokens=15))


def test_value_model_starts_at_zero_and_aligns_with_response_tokens():
    policy = tiny_gpt()
    critic = ValueModel(frozen_copy(policy))
    ids = torch.randint(0, TOK.vocab_size, (3, 7), generator=torch.Generator().manual_seed(0))
    assert critic(ids).shape == (3, 7) and float(critic(ids).detach().abs().max()) == 0.0
    assert all(p.requires_grad for p in critic.parameters())
    with torch.no_grad():
        critic.head.bias.fill_(0.0)
        critic.head.weight.normal_()
    v = response_values(critic, ids, prompt_len=3)
    assert v.shape == (3, 4) and torch.allclose(v, critic(ids)[:, 2:6])
    assert policy.lm_head.weight is policy.tok_emb.weight  # the policy itself is untouched


# ---- short trainings ------------------------------------------------------------------------------------------

def _mean_reward(policy, prompts, cfg, seed):
    ro = sample_rollout(policy, policy, prompts, cfg, generator=torch.Generator().manual_seed(seed))
    return float(score_rollout(ro, TOK, char_count_reward("a"), cfg.stop_tokens).mean())


def test_grpo_raises_the_reward_of_counting_a():
    policy = tiny_gpt(1)
    ref = frozen_copy(policy)
    prompts = torch.full((8, 1), TOK.token_to_id("b"))
    cfg = GRPOConfig(max_new_tokens=8, stop_tokens=(NL,), group_size=4, beta=0.01, epochs=2)
    before = _mean_reward(policy, prompts.repeat(8, 1), cfg, seed=123)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    history = [grpo_step(policy, ref, opt, prompts, TOK, char_count_reward("a"), cfg, gen) for _ in range(25)]
    after = _mean_reward(policy, prompts.repeat(8, 1), cfg, seed=123)
    assert all(math.isfinite(h["loss"]) and h["kl"] >= 0 for h in history)
    assert before < 1.5 and after > before + 3.0, (before, after)  # it reaches ~8 (the cap) from ~0.65
    assert history[-1]["kl_seq"] > 0  # it moved away from the reference to get there


def test_ppo_raises_the_reward_of_counting_a():
    policy = tiny_gpt(2)
    ref = frozen_copy(policy)
    critic = ValueModel(policy)
    prompts = torch.full((16, 1), TOK.token_to_id("b"))
    cfg = PPOConfig(max_new_tokens=8, stop_tokens=(NL,), beta=0.01, epochs=2)
    before = _mean_reward(policy, prompts.repeat(4, 1), cfg, seed=123)
    p_opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    c_opt = torch.optim.AdamW(critic.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    history = [ppo_step(policy, critic, ref, p_opt, c_opt, prompts, TOK, char_count_reward("a"), cfg, gen)
               for _ in range(25)]
    after = _mean_reward(policy, prompts.repeat(4, 1), cfg, seed=123)
    assert all(math.isfinite(h["policy_loss"]) and math.isfinite(h["value_loss"]) for h in history)
    assert before < 1.5 and after > before + 3.0, (before, after)  # it reaches ~8 (the cap) from ~0.65


def test_ppo_step_with_entropy_bonus_and_minibatches_updates_both_networks():
    from minillm.finetune.ppo import _logprobs_entropy
    from minillm.finetune.rollout import response_logprobs

    policy = tiny_gpt(3)
    ref, critic = frozen_copy(policy), ValueModel(policy)
    ids = torch.randint(0, TOK.vocab_size, (2, 6), generator=torch.Generator().manual_seed(0))
    logp, ent = _logprobs_entropy(policy, ids, 2)
    assert torch.allclose(logp, response_logprobs(policy, ids, 2), atol=1e-6)
    assert (ent > 0).all() and (ent <= math.log(TOK.vocab_size) + 1e-5).all()  # between 0 and log V
    w_policy, w_critic = policy.lm_head.weight.detach().clone(), critic.head.weight.detach().clone()
    cfg = PPOConfig(max_new_tokens=4, stop_tokens=(NL,), entropy_coef=0.01, minibatch_size=3, epochs=1)
    stats = ppo_step(policy, critic, ref, torch.optim.SGD(policy.parameters(), lr=0.1),
                     torch.optim.SGD(critic.parameters(), lr=0.1), torch.full((5, 1), NL), TOK,
                     char_count_reward("a"), cfg, torch.Generator().manual_seed(0))
    assert stats["entropy"] > 0 and all(math.isfinite(v) for v in stats.values())
    assert not torch.equal(policy.lm_head.weight, w_policy) and not torch.equal(critic.head.weight, w_critic)
