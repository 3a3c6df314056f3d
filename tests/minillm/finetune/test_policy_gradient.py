"""Policy-gradient building blocks (minillm.finetune.policy_gradient): token entropy against
torch.distributions.Categorical, group-normalised rewards, the three per-token losses and their gradients, masked
averages (the all-masked case), and the micro-batch step with gradient accumulation, all against hand-computed
values."""
import math

import pytest
import torch

from minillm.finetune import grpo, ppo, rollout
from minillm.finetune.policy_gradient import (clipped_surrogate, group_normalized_rewards, grpo_microbatch_step,
                                              masked_mean, masked_normalize, policy_gradient_loss, token_entropy)

torch.set_num_threads(1)
T = torch.tensor


def test_one_implementation_of_each_piece():
    assert rollout.masked_mean is masked_mean and ppo.clipped_surrogate is clipped_surrogate
    assert grpo.masked_mean is masked_mean and ppo.masked_mean is masked_mean


# ---- token entropy -------------------------------------------------------------------------------------------

def test_entropy_matches_categorical_on_random_logits_and_keeps_leading_dims():
    logits = 3 * torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(0))  # (B, T, V)
    h = token_entropy(logits)
    assert h.shape == (2, 5) and h.dtype == torch.float32
    torch.testing.assert_close(h, torch.distributions.Categorical(logits=logits).entropy(), atol=1e-5, rtol=0)


def test_entropy_by_hand_uniform_and_two_point():
    assert token_entropy(torch.zeros(7)).item() == pytest.approx(math.log(7), abs=1e-6)  # uniform: log V
    p = 0.25  # logits log p, log(1 - p): H = -p log p - (1 - p) log(1 - p)
    h = token_entropy(T([[math.log(p), math.log(1 - p)]]))
    assert h.item() == pytest.approx(-p * math.log(p) - (1 - p) * math.log(1 - p), abs=1e-6)


def test_entropy_is_stable_for_huge_logits():
    z = T([[5.0, 1.0, 0.0, 2.0], [3.0, 1.0, 0.0, 3.0]]) * 1e4  # (2, V): unique argmax; a tie of two
    h = token_entropy(z)
    assert torch.isfinite(h).all()
    assert h.tolist() == pytest.approx([0.0, math.log(2)], abs=1e-6)  # the one-hot and the two-way-tie limits
    assert token_entropy(z.half()).dtype == torch.float32  # half logits are widened first


def test_entropy_of_masked_tokens_and_its_gradient():
    z = T([[0.0, 0.0, -math.inf], [1.0, -math.inf, 2.0]], requires_grad=True)
    h = token_entropy(z)
    ref = torch.distributions.Categorical(logits=T([[0.0, 0.0], [1.0, 2.0]])).entropy()
    torch.testing.assert_close(h.detach(), ref, atol=1e-6, rtol=0)
    assert h[0].item() == pytest.approx(math.log(2), abs=1e-6)
    h.sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad[0, 2] == 0 and z.grad[1, 1] == 0
    # dH/dz_v = -p_v (log p_v + H): at a uniform pair both are 0
    assert z.grad[0, :2].tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


def test_entropy_gradient_matches_categorical():
    z1 = torch.randn(3, 6, generator=torch.Generator().manual_seed(1), requires_grad=True)
    z2 = z1.detach().clone().requires_grad_(True)
    token_entropy(z1).sum().backward()
    torch.distributions.Categorical(logits=z2).entropy().sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad, atol=1e-6, rtol=0)


def test_entropy_rejects_integer_logits():
    with pytest.raises(TypeError, match="floating-point"):
        token_entropy(torch.zeros(3, dtype=torch.long))


# ---- group-normalised rewards --------------------------------------------------------------------------------

def test_group_normalized_rewards_with_and_without_std_by_hand():
    r = T([1.0, 0.0, 0.0, 1.0])
    # mean 0.5; Bessel std = sqrt(4 * 0.25 / 3) = sqrt(1/3); A = +-0.5 / sqrt(1/3) = +-0.866
    adv, _ = group_normalized_rewards(r, 4, eps=0.0)
    assert adv.tolist() == pytest.approx([0.8660254, -0.8660254, -0.8660254, 0.8660254], abs=1e-6)
    adv, _ = group_normalized_rewards(r, 4)  # eps = 1e-6 in the denominator
    assert adv[0].item() == pytest.approx(0.5 / (math.sqrt(1 / 3) + 1e-6), abs=1e-7)
    adv, _ = group_normalized_rewards(r, 4, normalize_by_std=False)  # Dr. GRPO: only the mean is removed
    assert adv.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5], abs=1e-7)


def test_group_normalized_rewards_groups_stats_and_torch_reference():
    r = T([0.0, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0])  # two groups of 4; the second all equal
    s = math.sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3)
    for by_std, first in ((True, [-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]), (False, [-1.5, -0.5, 0.5, 1.5])):
        adv, stats = group_normalized_rewards(r, 4, normalize_by_std=by_std, eps=0.0)
        assert adv.tolist() == pytest.approx(first + [0, 0, 0, 0], abs=1e-6)  # an equal group: 0, not nan
        assert stats == pytest.approx({"reward_mean": 26 / 8, "reward_std": s / 2, "zero_std_frac": 0.5})
    g = torch.randn(3, 5, generator=torch.Generator().manual_seed(2))  # (B, G)
    ref = (g - g.mean(1, keepdim=True)) / (torch.std(g, 1, keepdim=True) + 1e-6)
    torch.testing.assert_close(group_normalized_rewards(g.flatten(), 5)[0], ref.flatten())


def test_an_equal_group_is_exactly_zero_even_when_its_float_std_is_not():
    r = torch.full((6,), 0.3)  # float32: mean(r) != 0.3 and r.std() ~ 3e-8, so std == 0 would miss this group
    assert r.std() > 0
    for by_std in (True, False):
        adv, stats = group_normalized_rewards(r, 6, normalize_by_std=by_std, eps=0.0)
        assert adv.tolist() == [0.0] * 6 and stats["zero_std_frac"] == 1.0  # not +-1 from rounding noise


def test_group_advantages_is_the_grpo_default():
    r = torch.rand(12, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(grpo.group_advantages(r, 4), group_normalized_rewards(r, 4, eps=1e-4)[0])


@pytest.mark.parametrize("rewards, G, match", [
    (T([1.0, 2.0, 3.0]), 2, "divisible"), (T([[1.0, 2.0]]), 2, "1-D"), (T([1.0, 2.0]), 1, ">= 2"),
    (T([1.0, math.nan]), 2, "non-finite"),
])
def test_group_normalized_rewards_errors(rewards, G, match):
    with pytest.raises(ValueError, match=match):
        group_normalized_rewards(rewards, G)


# ---- per-token policy-gradient losses ------------------------------------------------------------------------

def test_reinforce_losses_by_hand_and_their_gradients():
    logp = T([[-1.0, -2.0]], requires_grad=True)
    for shape in ((1,), (1, 1)):
        loss, meta = policy_gradient_loss(logp, "reinforce_baseline", advantages=torch.full(shape, 2.0))
        assert loss.tolist() == [[2.0, 4.0]] and meta == {}  # -A * logp
    loss, _ = policy_gradient_loss(logp, "reinforce", rewards=T([3.0]))
    assert loss.tolist() == [[3.0, 6.0]]  # -R * logp
    loss.sum().backward()
    assert logp.grad.tolist() == [[-3.0, -3.0]]  # d(-R logp)/d logp = -R on every token
    per_token, _ = policy_gradient_loss(logp.detach(), "reinforce_baseline", advantages=T([[1.0, -1.0]]))
    assert per_token.tolist() == [[1.0, -2.0]]  # (B, T) advantages: one per token


def test_rewards_and_old_logp_are_constants():
    logp = T([[-1.0, -2.0]], requires_grad=True)
    adv = T([2.0], requires_grad=True)
    policy_gradient_loss(logp, "reinforce_baseline", advantages=adv)[0].sum().backward()
    assert adv.grad is None  # no gradient into a baseline or reward model
    # old_logp = logp itself: ratio 1, and the gradient is the plain policy gradient -A, not 0
    logp.grad = None
    loss, meta = policy_gradient_loss(logp, "clip", advantages=T([2.0]), old_logp=logp)
    loss.sum().backward()
    assert meta["ratio"].tolist() == [[1.0, 1.0]] and logp.grad.tolist() == [[-2.0, -2.0]]


@pytest.mark.parametrize("ratio, adv, objective, clipped", [
    (1.1, 2.0, 1.1 * 2.0, False),    # inside [0.8, 1.2]
    (1.5, 2.0, 1.2 * 2.0, True),     # A > 0 above 1 + eps: capped, gradient 0
    (1.5, -1.0, 1.5 * -1.0, False),  # A < 0 above 1 + eps: not clipped, the gradient flows
    (0.5, -1.0, 0.8 * -1.0, True),   # A < 0 below 1 - eps: floored, gradient 0
    (0.5, 2.0, 0.5 * 2.0, False),    # A > 0 below 1 - eps: not clipped
])
def test_clip_loss_values_gradients_and_clipped_flag(ratio, adv, objective, clipped):
    old = T([[-1.0]])
    logp = (old + math.log(ratio)).requires_grad_(True)
    loss, meta = policy_gradient_loss(logp, "clip", advantages=T([adv]), old_logp=old, clip=0.2)
    assert loss.item() == pytest.approx(-objective, abs=1e-6)
    assert meta["clipped"].tolist() == [[clipped]] and meta["ratio"].item() == pytest.approx(ratio, abs=1e-6)
    loss.sum().backward()
    assert logp.grad.item() == pytest.approx(0.0 if clipped else -ratio * adv, abs=1e-6)  # d(-ratio A)/d logp


@pytest.mark.parametrize("kind, kwargs, match", [
    ("reinforce", {}, "missing: \\['rewards'\\]"),
    ("reinforce", {"rewards": T([1.0]), "advantages": T([1.0])}, "unused: \\['advantages'\\]"),
    ("reinforce_baseline", {"rewards": T([1.0])}, "missing: \\['advantages'\\]"),
    ("clip", {"advantages": T([1.0])}, "missing: \\['old_logp'\\]"),
    ("clip", {"advantages": T([1.0]), "old_logp": torch.zeros(1, 3)}, "old_logp"),
    ("clip", {"advantages": T([1.0]), "old_logp": torch.zeros(1, 2), "clip": 1.5}, "clip=1.5"),
    ("reinforce", {"rewards": T([1.0, 2.0])}, "rewards \\(2,\\)"),
    ("ppo", {}, "kind='ppo'"),
])
def test_policy_gradient_loss_errors(kind, kwargs, match):
    with pytest.raises(ValueError, match=match):
        policy_gradient_loss(torch.zeros(1, 2), kind, **kwargs)


def test_policy_gradient_loss_rejects_a_1d_logp():
    with pytest.raises(ValueError, match="\\(B, T\\)"):
        policy_gradient_loss(torch.zeros(3), "reinforce", rewards=T([1.0]))


# ---- masked averages -----------------------------------------------------------------------------------------

def test_masked_mean_by_hand_and_the_all_masked_row():
    x = T([[1.0, 3.0, math.nan], [5.0, 7.0, 9.0]], requires_grad=True)
    m = T([[True, True, False], [False, False, False]])  # the second row: no response token
    assert masked_mean(x, m).item() == pytest.approx(2.0)  # nan at a masked position does not leak in
    row = masked_mean(x, m, dim=1)
    assert row.tolist() == pytest.approx([2.0, 0.0])  # all-masked row: 0
    row.sum().backward()
    assert x.grad.tolist() == [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]  # ... and no gradient
    assert masked_mean(torch.ones(2, 2), torch.zeros(2, 2)).item() == 0.0
    assert masked_mean(T([[2.0, 4.0]]), T([[1.0, 0.0]]), dim=1).tolist() == [2.0]  # a 0/1 float mask


def test_masked_normalize_by_hand():
    x, m = T([[1.0, 3.0, 100.0], [5.0, 7.0, 9.0]]), T([[True, True, False], [False, False, False]])
    assert masked_normalize(x, m, 4, dim=1).tolist() == [1.0, 0.0]  # (1 + 3) / 4; all-masked: 0
    assert masked_normalize(x, m, 2).item() == 2.0
    assert masked_normalize(x, m, 4, dim=0).tolist() == [0.25, 0.75, 0.0]


def test_masked_helpers_errors():
    with pytest.raises(ValueError, match="shape of x"):
        masked_mean(torch.ones(2, 3), torch.ones(2, 1, dtype=torch.bool))  # would broadcast and miscount
    for bad in (0, -1.0, math.inf, True):
        with pytest.raises(ValueError, match="constant"):
            masked_normalize(torch.ones(2), torch.ones(2), bad)


# ---- the micro-batch step ------------------------------------------------------------------------------------

LOGP = [[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]]
MASK = T([[True, True, False], [True, False, False]])


def test_microbatch_step_mean_by_hand():
    logp = T(LOGP, requires_grad=True)
    loss, meta = grpo_microbatch_step(logp, MASK, 2, "reinforce_baseline", advantages=T([2.0, -1.0]))
    # per token -A logp: row 0 [2, 4] -> mean 3; row 1 [-1] -> -1; batch mean 1; / 2 micro-steps
    assert loss.item() == pytest.approx(0.5) and not loss.requires_grad and meta == {}
    # d/d logp_bt = -A_b / (n_b * B * steps) on response tokens
    torch.testing.assert_close(logp.grad, T([[-0.25, -0.25, 0.0], [0.25, 0.0, 0.0]]))


def test_microbatch_step_constant_by_hand():
    logp = T(LOGP, requires_grad=True)
    loss, _ = grpo_microbatch_step(logp, MASK, 2, "reinforce_baseline", advantages=T([2.0, -1.0]),
                                   normalize="constant", constant=4)
    assert loss.item() == pytest.approx((6 / 4 - 1 / 4) / 2 / 2)  # sums / 4, mean over 2 responses, / 2 steps
    torch.testing.assert_close(logp.grad, T([[-0.125, -0.125, 0.0], [0.0625, 0.0, 0.0]]))  # -A / (4 * 2 * 2)


def test_microbatch_step_clip_matches_autograd_on_the_formula():
    g = torch.Generator().manual_seed(4)
    old = -torch.rand(4, 5, generator=g) - 0.5
    logp0 = old + 0.4 * torch.randn(4, 5, generator=g)  # ratios on both sides of the clip range
    adv, mask = torch.randn(4, generator=g), torch.rand(4, 5, generator=g) > 0.3
    mask[:, 0] = True
    logp = logp0.clone().requires_grad_(True)
    loss, meta = grpo_microbatch_step(logp, mask, 3, "clip", advantages=adv, old_logp=old, clip=0.2)
    ref_logp = logp0.clone().requires_grad_(True)
    ratio = torch.exp(ref_logp - old)
    a = adv[:, None]
    obj = torch.minimum(ratio * a, ratio.clamp(0.8, 1.2) * a)  # the formula, written out
    m = mask.float()
    ref = (-(obj * m).sum(1) / m.sum(1)).mean() / 3
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), abs=1e-6)
    torch.testing.assert_close(logp.grad, ref_logp.grad)
    clipped = ((ratio > 1.2) & (a > 0)) | ((ratio < 0.8) & (a < 0))
    assert meta["clip_frac"].item() == pytest.approx(float((clipped & mask).sum() / mask.sum()))
    assert 0 < meta["clip_frac"].item() < 1


@pytest.mark.parametrize("normalize, constant", [("mean", None), ("constant", 5)])
def test_two_accumulated_microsteps_equal_one_step(normalize, constant):
    g = torch.Generator().manual_seed(5)
    B, Tn, V = 4, 5, 7
    y = torch.randint(0, V, (B, Tn), generator=g)  # the sampled tokens
    adv, mask = torch.randn(B, generator=g), torch.rand(B, Tn, generator=g) > 0.4
    mask[:, 0] = True
    w = torch.randn(Tn, V, generator=g)  # a tiny "policy": one logit vector per position

    def grad_of(chunks, steps):
        param = w.clone().requires_grad_(True)
        for idx in chunks:
            logp = torch.log_softmax(param, -1).expand(len(idx), Tn, V).gather(-1, y[idx, :, None])[..., 0]
            grpo_microbatch_step(logp, mask[idx], steps, "reinforce_baseline", advantages=adv[idx],
                                 normalize=normalize, constant=constant)
        return param.grad

    whole = grad_of([torch.arange(B)], 1)
    torch.testing.assert_close(grad_of([torch.arange(2), torch.arange(2, 4)], 2), whole)
    assert whole.abs().sum() > 0


@pytest.mark.parametrize("kwargs, error, match", [
    ({"grad_accum_steps": 0}, ValueError, "grad_accum_steps"),
    ({"normalize": "token"}, ValueError, "normalize='token'"),
    ({"normalize": "constant"}, ValueError, "needs a constant"),
    ({"constant": 4}, ValueError, "'mean' takes none"),
    ({"logp": torch.zeros(2, 3)}, RuntimeError, "does not require grad"),
    ({"response_mask": torch.ones(2, 2, dtype=torch.bool)}, ValueError, "shape of x"),
])
def test_microbatch_step_errors(kwargs, error, match):
    args = {"logp": torch.zeros(2, 3, requires_grad=True), "response_mask": MASK, "grad_accum_steps": 1}
    args.update(kwargs)
    extra = {k: v for k, v in args.items() if k in ("normalize", "constant")}
    with pytest.raises(error, match=match):
        grpo_microbatch_step(args["logp"], args["response_mask"], args["grad_accum_steps"], "reinforce",
                             rewards=T([1.0, 2.0]), **extra)
