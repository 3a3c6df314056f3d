"""minillm.finetune.dpo: DPO / IPO / SimPO on hand values, gradient signs, beta's effect, and a short DPO run."""
import copy
import math

import pytest
import torch

from minillm import GPT, ModelConfig, TrainConfig
from minillm.finetune.chat import ChatTemplate, chat_tokenizer
from minillm.finetune.dpo import dpo_loss, ipo_loss, pair_logprobs, simpo_loss, train_dpo
from minillm.finetune.logprobs import sequence_logprob

t = torch.tensor


def test_equal_logprobs_give_log2_and_zero_rewards():
    x = t([-3.0, -7.5])
    loss, rc, rr = dpo_loss(x, x - 1, x + 2, x + 1, beta=0.3)  # both log-ratios are -2: margin 0
    assert loss.item() == pytest.approx(math.log(2)) and rc.tolist() == pytest.approx([-0.6, -0.6])
    assert (rc - rr).abs().max() == 0


def test_dpo_hand_value():
    loss, rc, rr = dpo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5)
    # logit = 0.5 * ((-1 - -2) - (-3 - -2)) = 1  ->  loss = log(1 + e^-1)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1)), rel=1e-6)
    assert rc.item() == pytest.approx(0.5) and rr.item() == pytest.approx(-0.5)
    smooth, _, _ = dpo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5, label_smoothing=0.1)
    assert smooth.item() == pytest.approx(0.9 * math.log1p(math.exp(-1)) + 0.1 * math.log1p(math.exp(1)), rel=1e-6)


def test_gradient_sign_raising_chosen_lowers_loss():
    pc, pr = t([-2.0], requires_grad=True), t([-2.5], requires_grad=True)
    loss, _, _ = dpo_loss(pc, pr, t([-2.2]), t([-2.2]), beta=0.1)
    loss.backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descent raises log pi(chosen) and lowers log pi(rejected)
    assert pc.grad.item() == pytest.approx(-pr.grad.item())
    with torch.no_grad():
        up, _, _ = dpo_loss(pc + 0.1, pr, t([-2.2]), t([-2.2]), beta=0.1)
    assert up.item() < loss.item()


def test_beta_scales_the_margin():
    args = (t([-1.0]), t([-2.0]), t([-1.5]), t([-1.5]))  # a positive margin of 1 nat
    losses = [dpo_loss(*args, beta=b)[0].item() for b in (0.1, 1.0, 5.0)]
    assert losses[0] > losses[1] > losses[2]  # larger beta: a given margin counts for more
    neg = (args[1], args[0], args[2], args[3])  # the policy prefers the rejected response
    assert dpo_loss(*neg, beta=0.1)[0] < dpo_loss(*neg, beta=1.0)[0]  # ... and a wrong preference costs more
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(*args, beta=0)


def test_ipo_hand_value_and_minimum():
    # margin h = (-1 - -2) - (-3 - -3) = 1; target 1/(2*0.25) = 2; loss = (1 - 2)^2 = 1
    loss, rc, rr = ipo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-3.0]), beta=0.25)
    assert loss.item() == pytest.approx(1.0) and rc.item() == pytest.approx(0.25) and rr.item() == 0
    at_target, _, _ = ipo_loss(t([0.0]), t([-2.0]), t([0.0]), t([0.0]), beta=0.25)
    assert at_target.item() == pytest.approx(0.0)  # unlike DPO, IPO stops pushing at the target margin


def test_simpo_hand_value():
    loss, rc, rr = simpo_loss(t([-1.0]), t([-2.0]), beta=2.0, gamma=0.5)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1.5)), rel=1e-6)  # -log sigmoid(2*1 - 0.5)
    assert (rc.item(), rr.item()) == (-2.0, -4.0)
    with pytest.raises(ValueError, match="gamma"):
        simpo_loss(t([-1.0]), t([-2.0]), gamma=-1)
    with pytest.raises(ValueError, match="one shape"):
        simpo_loss(t([-1.0]), t([-2.0, -1.0]))


def _toy_pairs(n):
    # a known, prompt-dependent preference: "Say a" prefers "aaa" over "bbb", "Say b" the opposite
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        w, other = ("a", "b") if int(torch.randint(0, 2, (1,), generator=g)) else ("b", "a")
        k = int(torch.randint(2, 5, (1,), generator=g))
        out.append({"prompt": f"Say {w}", "chosen": w * k, "rejected": other * k})
    return out


def test_pair_logprobs_match_separate_scoring():
    template = ChatTemplate(chat_tokenizer())
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=template.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)).eval()
    pairs = [{"prompt": "Echo abc:", "chosen": "a", "rejected": "ccc"}, ("Hi", "hello", "no")]
    ids, mask, lengths = template.preference_batch(pairs)
    pc, pr = pair_logprobs(model, ids, mask)
    for i, (p, c, r) in enumerate([("Echo abc:", "a", "ccc"), ("Hi", "hello", "no")]):
        for resp, got in ((c, pc[i]), (r, pr[i])):
            one, m = template.render_response(p, resp)
            want = sequence_logprob(model, torch.tensor(one)[None], torch.tensor(m)[None])
            assert got.item() == pytest.approx(want.item(), abs=1e-5)
    assert lengths.tolist()[:2] == [len(template.render_response(p, c)[0]) for p, c in (("Echo abc:", "a"),
                                                                                       ("Hi", "hello"))]


@pytest.mark.parametrize("loss,beta,lr", [("dpo", 0.5, 5e-3), ("simpo", 2.0, 5e-3), ("ipo", 0.5, 1e-3)])
def test_short_run_learns_the_preference(loss, beta, lr):
    template = ChatTemplate(chat_tokenizer())
    torch.manual_seed(0)
    policy = GPT(ModelConfig(vocab_size=template.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32))
    ref = copy.deepcopy(policy)
    pairs = _toy_pairs(80)
    ids, mask, _ = template.preference_batch(pairs)
    before = [x.detach() for x in pair_logprobs(policy.eval(), ids, mask)]
    cfg = TrainConfig(batch_size=8, max_steps=40, lr=lr, warmup_steps=3, device="cpu", log_interval=10,
                      progress=False)
    hist = train_dpo(policy, ref, pairs, template, cfg, beta=beta, loss=loss)
    after = [x.detach() for x in pair_logprobs(policy.eval(), ids, mask)]
    margin = (after[0] - after[1]) - (before[0] - before[1])  # (N,) log-ratio margin; the policy started as ref
    assert (margin > 0).float().mean() > 0.9 and hist[-1]["loss"] < hist[0]["loss"]
    if loss == "ipo":  # IPO regresses the margin to 1/(2 beta) = 1 nat and stops there
        assert margin.mean().item() == pytest.approx(1 / (2 * beta), abs=0.25)
    else:              # DPO and SimPO keep widening it
        assert margin.mean() > 2.0, margin.mean().item()
    assert hist[-1]["reward_acc"] > 0.9
    for p in ref.parameters():
        assert p.grad is None  # the reference is never trained
    with pytest.raises(ValueError, match="needs the reference"):
        train_dpo(policy, None, pairs, template, cfg, loss="ipo")
