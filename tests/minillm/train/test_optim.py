"""AdamW vs torch, parameter groups, schedules, clipping, precision utilities (minillm/train/optim.py, precision.py)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from minillm.config import ModelConfig, TrainConfig
from minillm.model.transformer import GPT
from minillm.train.optim import AdamW, SGDW, build_optimizer, clip_grad_norm_, lr_at, lr_curve, param_groups
from minillm.train.precision import PrecisionPolicy, memory_estimate, param_bytes

TINY = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)


def tiny_gpt(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**{**TINY, **overrides}))


def run_steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, seed: int = 1) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    losses = []
    for i in range(n):
        x = torch.randint(0, TINY["vocab_size"], (4, 16), generator=g)
        for group in opt.param_groups:  # a changing lr, as under a schedule
            group["lr"] = 3e-3 * (i + 1) / n
        opt.zero_grad()
        _, loss = model(x, x.roll(-1, dims=1))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# ----------------------------------------------------------------------------- AdamW


def test_adamw_matches_torch_over_20_steps_with_weight_decay():
    ours, ref = tiny_gpt(), tiny_gpt()
    kw = dict(betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    opt = AdamW(param_groups(ours, 0.1), lr=1e-3, **kw)
    opt_ref = torch.optim.AdamW(param_groups(ref, 0.1), lr=1e-3, amsgrad=False, **kw)
    l1, l2 = run_steps(ours, opt, 20), run_steps(ref, opt_ref, 20)
    assert l1 == pytest.approx(l2, abs=1e-6)
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)
    # Same state layout as torch: the state_dicts match entry by entry.
    s1, s2 = opt.state_dict()["state"], opt_ref.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for k in s1:
        assert set(s1[k]) == {"step", "exp_avg", "exp_avg_sq"}
        assert s1[k]["step"].item() == 20.0
        torch.testing.assert_close(s1[k]["exp_avg_sq"], s2[k]["exp_avg_sq"], rtol=0, atol=1e-9)


def test_adamw_weight_decay_is_decoupled_from_the_gradient():
    # With a zero gradient, Adam's update m/(sqrt(v)+eps) is 0, so only the decay acts: θ(1 - lr*λ).
    p = nn.Parameter(torch.full((3,), 2.0))
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.zeros(3)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((3,), 2.0 * (1 - 0.1 * 0.5)))


def test_adamw_state_dict_round_trip_continues_identically():
    a = tiny_gpt()
    opt_a = AdamW(param_groups(a, 0.1), lr=1e-3, weight_decay=0.1)
    run_steps(a, opt_a, 5)
    b = copy.deepcopy(a)
    opt_b = AdamW(param_groups(b, 0.1), lr=1e-3, weight_decay=0.1)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert run_steps(a, opt_a, 5, seed=7) == run_steps(b, opt_b, 5, seed=7)


def test_adamw_rejects_bad_hyperparameters():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="lr=-1"):
        AdamW(p, lr=-1)
    with pytest.raises(ValueError, match="betas"):
        AdamW(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="eps"):
        AdamW(p, eps=0.0)


# ----------------------------------------------------------------------------- parameter groups


def test_param_groups_decay_only_matrices_not_embeddings_norms_biases():
    model = tiny_gpt()  # tied embeddings, learned positions, LayerNorm with bias
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])
    assert "tok_emb.weight" in no_decay["param_names"] and "pos_emb.weight" in no_decay["param_names"]
    assert not any(n.endswith("bias") or "norm" in n for n in decay["param_names"])
    assert all(p.dim() == 1 for n, p in zip(no_decay["param_names"], no_decay["params"]) if "emb" not in n)
    # The tied output head is the embedding tensor: it appears once overall, and is not decayed.
    everything = decay["params"] + no_decay["params"]
    assert len({id(p) for p in everything}) == len(everything)
    assert sum(p.numel() for p in everything) == model.num_params(non_embedding=False)
    assert not any(p is model.lm_head.weight for p in decay["params"])


def test_param_groups_untied_head_is_a_decayed_matrix():
    model = tiny_gpt(tie_embeddings=False)
    decay, _ = param_groups(model, 0.1)
    assert any(p is model.lm_head.weight for p in decay["params"])


def test_build_optimizer_picks_ours_or_torch():
    model = tiny_gpt()
    ours = build_optimizer(model, TrainConfig(optimizer="adamw", weight_decay=0.05), "cpu")
    assert type(ours) is AdamW and ours.param_groups[0]["weight_decay"] == 0.05
    theirs = build_optimizer(model, TrainConfig(optimizer="torch_adamw", beta2=0.99), "cpu")
    assert type(theirs) is torch.optim.AdamW and theirs.param_groups[0]["betas"] == (0.9, 0.99)
    assert not theirs.defaults["fused"]  # fused is a CUDA kernel; off on the CPU


def test_build_optimizer_offers_the_comparison_optimizers_each_with_the_decay_groups():
    model = tiny_gpt()
    kinds = {"sgd": SGDW, "adam": torch.optim.Adam, "adafactor": torch.optim.Adafactor}
    for name, kind in kinds.items():
        opt = build_optimizer(model, TrainConfig(optimizer=name, lr=0.02, weight_decay=0.3), "cpu")
        assert type(opt) is kind, name
        assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0], name  # no decay on embeddings etc.
        assert all(g["lr"] == 0.02 for g in opt.param_groups)
    sgd = build_optimizer(model, TrainConfig(optimizer="sgd"), "cpu")
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["nesterov"]
    with pytest.raises(ValueError, match="adafactor, lion"):  # the message lists the choices
        TrainConfig(optimizer="adagrad")
    bad = TrainConfig(device="cpu")
    object.__setattr__(bad, "optimizer", "adagrad")  # past TrainConfig's own check: build_optimizer's message
    with pytest.raises(ValueError, match="choose one of adamw, torch_adamw, muon, sgd, adam, adafactor, lion"):
        build_optimizer(model, bad)


@pytest.mark.parametrize("name,lr", [("sgd", 0.3), ("adam", 1e-2), ("adafactor", 0.1)])
def test_each_comparison_optimizer_trains_through_the_trainer(name, lr):
    import numpy as np

    from minillm.train.trainer import Trainer

    cfg = TrainConfig(optimizer=name, batch_size=8, max_steps=30, warmup_steps=3, lr=lr, log_interval=1,
                      eval_interval=0, eval_batches=2, progress=False, device="cpu")
    history = Trainer(tiny_gpt(), cfg, np.tile(np.arange(TINY["vocab_size"]), 100)).fit()
    assert history[-1]["loss"] < history[0]["loss"] - 1.0, [r["loss"] for r in history]


def test_sgdw_without_decay_equals_torch_sgd_with_nesterov_momentum():
    ours, ref = tiny_gpt(), tiny_gpt()
    opt = SGDW(param_groups(ours, 0.0), lr=0.1, momentum=0.9, nesterov=True)
    opt_ref = torch.optim.SGD(param_groups(ref, 0.0), lr=0.1, momentum=0.9, nesterov=True)
    l1, l2 = run_steps(ours, opt, 10), run_steps(ref, opt_ref, 10)
    assert l1 == pytest.approx(l2, abs=1e-6)
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_sgdw_decay_is_decoupled_and_the_rule_holds_by_hand():
    p = torch.nn.Parameter(torch.tensor([2.0, -4.0]))
    opt = SGDW([p], lr=0.5, momentum=0.9, nesterov=True, weight_decay=0.1)
    p.grad = torch.tensor([1.0, 1.0])
    opt.step()  # b = g = 1; u = g + 0.9·b = 1.9; θ = θ(1 − 0.05) − 0.5·1.9
    torch.testing.assert_close(p.detach(), torch.tensor([2.0 * 0.95 - 0.95, -4.0 * 0.95 - 0.95]))
    p.grad = torch.tensor([0.0, 0.0])
    opt.step()  # b = 0.9; u = 0 + 0.81: the momentum keeps moving θ; the decay shrinks θ, not u
    torch.testing.assert_close(p.detach(), torch.tensor([(1.9 - 0.95) * 0.95 - 0.405,
                                                         (-3.8 - 0.95) * 0.95 - 0.405]))
    with pytest.raises(ValueError, match="momentum"):
        SGDW([p], nesterov=True, momentum=0.0)


def test_adam_l2_decay_differs_from_adamw_decoupled_decay():
    """Adam + L2 divides the decay term by √v̂: with a large gradient it barely decays; AdamW decays at lr·λ."""
    pa, pw = (torch.nn.Parameter(torch.tensor([1.0, 1.0])) for _ in range(2))
    adam = torch.optim.Adam([pa], lr=0.01, weight_decay=0.5)
    adamw = AdamW([pw], lr=0.01, weight_decay=0.5)
    for p, opt in ((pa, adam), (pw, adamw)):
        p.grad = torch.tensor([0.0, 0.0])  # no loss gradient: only the decay acts
        opt.step()
    # AdamW: θ(1 − lr·λ) = 0.995 and the zero gradient adds nothing. Adam: g = λθ = 0.5, normalised to a full
    # step of lr: θ − 0.01 = 0.99 -- a decay of fixed size, whatever λ (as long as it dominates g).
    torch.testing.assert_close(pw.detach(), torch.tensor([0.995, 0.995]))
    torch.testing.assert_close(pa.detach(), torch.tensor([0.99, 0.99]))


def test_adafactor_keeps_factored_moments_for_matrices():
    model = tiny_gpt()
    opt = build_optimizer(model, TrainConfig(optimizer="adafactor", lr=1e-2), "cpu")
    run_steps(model, opt, 1)
    for p in model.parameters():
        st = opt.state[p]
        if p.dim() == 2:  # an (m, n) matrix keeps m + n second-moment numbers, not m·n
            assert st["row_var"].numel() + st["col_var"].numel() == sum(p.shape), p.shape
        else:
            assert st["variance"].shape == p.shape


# ----------------------------------------------------------------------------- schedules


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**dict(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=111), **kw})


def test_warmup_is_linear_and_reaches_lr():
    c = cfg()
    assert lr_at(0, c) == pytest.approx(0.1)  # (0 + 1) / 10
    assert lr_at(4, c) == pytest.approx(0.5)
    assert lr_at(9, c) == pytest.approx(1.0)  # end of warmup


def test_cosine_key_points():
    c = cfg(schedule="cosine")
    assert lr_at(10, c) == pytest.approx(1.0)  # decay starts at the peak
    assert lr_at(60, c) == pytest.approx(0.55)  # midpoint of steps 10..110: (1 + 0.1) / 2
    assert lr_at(35, c) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(110, c) == pytest.approx(0.1)  # last step = min_lr
    assert lr_at(500, c) == pytest.approx(0.1)  # past the end: stays at the floor
    curve = lr_curve(c)
    assert len(curve) == 111 and all(a >= b for a, b in zip(curve[9:], curve[10:]))  # monotone after warmup


def test_linear_and_constant():
    assert lr_at(60, cfg(schedule="linear")) == pytest.approx(0.55)
    assert lr_at(110, cfg(schedule="linear")) == pytest.approx(0.1)
    assert lr_at(110, cfg(schedule="constant")) == 1.0
    assert lr_at(0, cfg(schedule="constant", warmup_steps=0)) == 1.0  # no warmup: the peak from step 0


def test_wsd_stable_then_decay():
    c = cfg(schedule="wsd", max_steps=100, decay_frac=0.2)  # decay over the last 20 steps: 80..99
    assert lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(50, c) == 1.0 and lr_at(80, c) == 1.0  # stable phase, and the first decay step
    assert lr_at(99, c) == pytest.approx(0.1)
    p = (90 - 80) / 19
    assert lr_at(90, c) == pytest.approx(1.0 - 0.9 * p)
    assert lr_at(90, c, wsd_shape="sqrt") == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(p)))
    assert lr_at(90, c, wsd_shape="sqrt") < lr_at(90, c)  # 1-sqrt drops faster early in the decay


def test_lr_at_rejects_bad_step():
    with pytest.raises(ValueError, match="non-negative integer"):
        lr_at(-1, cfg())
    with pytest.raises(ValueError, match="wsd_shape"):
        lr_at(1, cfg(), wsd_shape="cubic")


# ----------------------------------------------------------------------------- clipping


def grads_pair(scale: float):
    torch.manual_seed(3)
    shapes = [(5, 7), (7,), (3, 2, 4), (1,)]
    a = [nn.Parameter(torch.randn(s)) for s in shapes]
    b = [nn.Parameter(p.detach().clone()) for p in a]
    for p, q in zip(a, b):
        p.grad = torch.randn(p.shape) * scale
        q.grad = p.grad.clone()
    return a, b


@pytest.mark.parametrize("scale,max_norm", [(10.0, 1.0), (0.01, 1.0), (1.0, 0.5)])
def test_clip_grad_norm_matches_torch(scale, max_norm):
    a, b = grads_pair(scale)
    ours = clip_grad_norm_(a, max_norm)
    ref = torch.nn.utils.clip_grad_norm_(b, max_norm)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=0)
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=0)
    total = math.sqrt(sum(float((p.grad**2).sum()) for p in a))
    assert total == pytest.approx(min(ref.item(), max_norm), rel=1e-5)


def test_clip_grad_norm_none_only_measures():
    a, _ = grads_pair(10.0)
    before = [p.grad.clone() for p in a]
    norm = clip_grad_norm_(a, None)
    assert norm.item() == pytest.approx(math.sqrt(sum(float((g**2).sum()) for g in before)), rel=1e-6)
    assert all(torch.equal(p.grad, g) for p, g in zip(a, before))
    assert clip_grad_norm_([nn.Parameter(torch.zeros(2))], 1.0).item() == 0.0  # no grads at all
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_(a, 0.0)


# ----------------------------------------------------------------------------- precision


def test_precision_policy_fp16_needs_cuda():
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        PrecisionPolicy("fp16", "cpu")


def test_precision_policy_cpu_is_plain_fp32():
    policy = PrecisionPolicy("auto", "cpu")
    assert policy.dtype is None and policy.scaler is None
    with policy.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    bf16 = PrecisionPolicy("bf16", "cpu")
    with bf16.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_param_bytes_and_memory_estimate():
    assert param_bytes(torch.float32) == 4 and param_bytes("bf16") == 2 and param_bytes(torch.float16) == 2
    with pytest.raises(ValueError, match="unknown dtype name"):
        param_bytes("fp12")
    n = 7_000_000_000
    train = memory_estimate(n, "bf16", "adamw")
    assert train["total"] == 16 * n  # the ZeRO paper's 16 bytes/param for mixed-precision Adam
    assert train["weights"] == 2 * n and train["master_weights"] == 4 * n and train["optimizer"] == 8 * n
    assert memory_estimate(n, "fp32")["total"] == 16 * n
    assert memory_estimate(n, "bf16", "none")["total"] == 2 * n  # inference: weights only
    assert memory_estimate(n, "fp32", "sgd")["total"] == 12 * n
    with pytest.raises(ValueError, match="optimizer="):
        memory_estimate(n, "bf16", "lion")
