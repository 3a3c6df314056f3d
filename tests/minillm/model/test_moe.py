"""Mixture of experts: routing and loss equations by hand, the module vs a per-token loop, capacity dropping,
the GPT integration (losses, stats, parameter and FLOP counts, training) and config validation."""
import math

import pytest
import torch

from minillm.config import ModelConfig, TrainConfig
from minillm.model.layers import MLP
from minillm.model.moe import MoE, expert_capacity, load_balancing_loss, router_z_loss, top_k_routing
from minillm.model.transformer import GPT
from minillm.train.trainer import Trainer


def tiny(**kw):
    base = dict(vocab_size=29, block_size=16, n_layer=2, n_head=4, n_embd=32, n_expert=4, expert_top_k=2)
    return ModelConfig(**{**base, **kw})


def naive_moe(moe: MoE, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Reference: one token at a time, in token order, each expert taking tokens until it is full."""
    C = x.size(-1)
    xf = x.reshape(-1, C)
    N, E, k = xf.size(0), moe.n_expert, moe.top_k
    cap = N * k if moe.capacity_factor is None else math.ceil(moe.capacity_factor * N * k / E)
    used, dropped = [0] * E, 0
    out = torch.zeros_like(xf)
    for t in range(N):
        probs = torch.softmax(xf[t] @ moe.router.weight.T, dim=-1)
        p, idx = probs.topk(k)
        gates = p if k == 1 else p / p.sum()  # Switch (k=1) gates by the probability; GShard renormalises
        for w, e in zip(gates.tolist(), idx.tolist()):
            if used[e] < cap:
                out[t] += w * moe.experts[e](xf[t:t + 1])[0]
                used[e] += 1
            else:
                dropped += 1
    return out.reshape(x.shape), dropped


# ------------------------------------------------------------------------------------------ functional forms
def test_top_k_routing():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    weights, index, probs = top_k_routing(logits, 2)
    torch.testing.assert_close(probs, torch.softmax(logits, -1))
    torch.testing.assert_close(weights.sum(-1), torch.ones(6))
    assert torch.equal(index, logits.topk(2, dim=-1).indices)  # the two most probable, best first
    chosen = probs.gather(1, index)
    torch.testing.assert_close(weights, chosen / chosen.sum(-1, keepdim=True))
    w1, i1, _ = top_k_routing(logits, 1)
    assert torch.equal(i1[:, 0], logits.argmax(-1))
    torch.testing.assert_close(w1[:, 0], probs.max(-1).values)  # Switch: the gate is the probability itself
    with pytest.raises(ValueError, match="k=5"):
        top_k_routing(logits, 5)


def test_load_balancing_loss_by_hand():
    # k=1, E=2: tokens go to experts 0, 0, 1, 0 -> f = (3/4, 1/4); P = mean probs = (0.65, 0.35)
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    index = torch.tensor([[0], [0], [1], [0]])
    # 2 * (0.75 * 0.65 + 0.25 * 0.35) = 2 * 0.575
    torch.testing.assert_close(load_balancing_loss(probs, index), torch.tensor(1.15))
    # k=2, E=3: slots (0, 1) and (1, 2) -> f = (1, 2, 1) / 4; P = (0.3, 0.45, 0.25)
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    index = torch.tensor([[0, 1], [1, 2]])
    # 3 * (0.25 * 0.3 + 0.5 * 0.45 + 0.25 * 0.25) = 3 * 0.3625
    torch.testing.assert_close(load_balancing_loss(probs, index), torch.tensor(1.0875))


def test_load_balancing_loss_is_one_when_uniform_and_differentiable():
    uniform = torch.full((8, 4), 0.25, requires_grad=True)
    assert load_balancing_loss(uniform, torch.arange(8)[:, None] % 4).item() == 1.0
    assert load_balancing_loss(uniform[:4], torch.tensor([[0, 1], [2, 3], [0, 1], [2, 3]])).item() == 1.0
    skew = torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 8)
    assert load_balancing_loss(skew, torch.zeros(8, 1, dtype=torch.long)).item() == pytest.approx(4 * 0.7)
    load_balancing_loss(uniform, torch.zeros(8, 1, dtype=torch.long)).backward()
    # d/dP_e of E * sum f_e P_e, with P_e the mean over 8 tokens: E * f_e / 8; f = (1, 0, 0, 0)
    torch.testing.assert_close(uniform.grad, torch.tensor([[0.5, 0.0, 0.0, 0.0]] * 8))


def test_router_z_loss_direct():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(1)) * 3
    direct = sum(math.log(sum(math.exp(v) for v in row)) ** 2 for row in logits.tolist()) / 5
    assert router_z_loss(logits).item() == pytest.approx(direct, rel=1e-5)


def test_expert_capacity():
    assert expert_capacity(16, 4, 2, 1.25) == 10  # ceil(1.25 * 16 * 2 / 4)
    assert expert_capacity(16, 4, 1, 0.5) == 2
    assert expert_capacity(16, 4, 2, None) == 32


# ------------------------------------------------------------------------------------------ the module
@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
@pytest.mark.parametrize("capacity_factor", [None, 1.0])
def test_single_expert_is_the_plain_mlp(activation, capacity_factor):
    torch.manual_seed(0)
    cfg = tiny(n_expert=1, expert_top_k=1, capacity_factor=capacity_factor, activation=activation)
    moe, mlp = MoE(cfg), MLP(cfg)
    mlp.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(2, 7, 32)
    torch.testing.assert_close(moe(x), mlp(x))
    assert moe.stats()["dropped"] == 0.0


@pytest.mark.parametrize("top_k,capacity_factor", [(1, None), (2, None), (1, 0.5), (2, 0.6), (2, 1.25)])
def test_moe_equals_per_token_loop(top_k, capacity_factor):
    torch.manual_seed(0)
    moe = MoE(tiny(expert_top_k=top_k, capacity_factor=capacity_factor))
    torch.nn.init.normal_(moe.router.weight, std=0.5)  # routing that differs from token to token
    x = torch.randn(3, 8, 32)
    ref, n_dropped = naive_moe(moe, x)
    torch.testing.assert_close(moe(x), ref, atol=1e-6, rtol=1e-5)
    assert moe.stats()["dropped"] == pytest.approx(n_dropped / (24 * top_k))
    if capacity_factor is not None and capacity_factor < 1:
        assert n_dropped > 0  # the dropping branch was exercised


def _grads(module: torch.nn.Module) -> dict:
    return {n: None if p.grad is None else p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
def test_empty_experts_get_zero_gradients_and_the_rest_are_unchanged(activation):
    # Issue #20: an expert with no tokens was skipped, so its parameters got no gradient and DDP raised at the
    # next step. 3 tokens, 8 top-1 experts: at least 5 are empty. They must get exactly zero gradients; the
    # output and every other gradient must equal the per-token reference (which never touches empty experts).
    torch.manual_seed(0)
    moe = MoE(tiny(n_expert=8, expert_top_k=1, capacity_factor=None, activation=activation))
    torch.nn.init.normal_(moe.router.weight, std=0.5)
    x, g = torch.randn(1, 3, 32), torch.randn(1, 3, 32)  # g: a random upstream gradient
    ref, _ = naive_moe(moe, x)
    (ref * g).sum().backward()
    ref_grads = _grads(moe)
    moe.zero_grad(set_to_none=True)
    out = moe(x)
    (out * g).sum().backward()
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    empty = [e for e, load in enumerate(moe.stats()["load"]) if load == 0]
    assert len(empty) >= 5
    for name, grad in _grads(moe).items():
        assert grad is not None, f"{name} got no gradient"
        if name.startswith("router"):  # the reference takes its gates as floats: no router gradient to compare
            continue
        if ref_grads[name] is None:  # an empty expert's parameter
            assert int(name.split(".")[1]) in empty and torch.equal(grad, torch.zeros_like(grad)), name
        else:
            torch.testing.assert_close(grad, ref_grads[name], atol=1e-6, rtol=1e-5, msg=name)


def test_empty_experts_run_through_the_triton_swiglu(device):
    # The fused kernel must take an empty (0, hidden) slice forward and backward (no launch for 0 elements),
    # on CPU in the interpreter and on CUDA, and agree with the PyTorch swiglu.
    torch.manual_seed(0)
    cfg = dict(n_expert=8, expert_top_k=1, capacity_factor=None, activation="swiglu")
    ref_moe = MoE(tiny(**cfg)).to(device)
    moe = MoE(tiny(kernels="triton", **cfg)).to(device)
    moe.load_state_dict(ref_moe.state_dict())
    x = torch.randn(1, 3, 32, device=device)
    for m in (ref_moe, moe):
        m(x).square().sum().backward()
    assert (moe.stats()["load"] == 0).sum() >= 5
    for (name, p), ref_p in zip(moe.named_parameters(), ref_moe.parameters()):
        assert p.grad is not None, f"{name} got no gradient"
        torch.testing.assert_close(p.grad, ref_p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_skewed_routing_drops_in_token_order():
    torch.manual_seed(0)
    moe = MoE(tiny(expert_top_k=1, capacity_factor=0.5))  # capacity ceil(0.5 * 16 / 4) = 2
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0] = 1.0  # positive inputs: every token's largest logit is expert 0's
    x = torch.rand(2, 8, 32) + 0.1
    out = moe(x).reshape(16, 32)
    s = moe.stats()
    assert s["dropped"] == 14 / 16 and torch.equal(s["load"], torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(out[:2], moe.experts[0](x.reshape(16, 32)[:2]))  # the first two tokens win
    assert torch.equal(out[2:], torch.zeros(14, 32))  # the rest ride the residual connection only
    moe.capacity_factor = None
    moe(x)
    assert moe.stats()["dropped"] == 0.0


def test_stats_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match="run the model on a batch first"):
        MoE(tiny()).stats()


# ------------------------------------------------------------------------------------------ in the GPT
def test_gradients_reach_router_and_experts():
    torch.manual_seed(0)
    model = GPT(tiny(capacity_factor=None))
    x = torch.randint(0, 29, (2, 16))
    _, loss = model(x, x)
    loss.backward()
    for block in model.blocks:
        assert block.mlp.router.weight.grad.abs().sum() > 0
        for expert, load in zip(block.mlp.experts, model.moe_stats()[0]["load"]):
            if load > 0:
                assert expert.w1.weight.grad.abs().sum() > 0 and expert.w2.weight.grad.abs().sum() > 0


def test_top1_router_learns_from_the_lm_loss():
    # Switch routing: with k=1 the gate is the chosen probability, so the LM loss alone trains the router.
    torch.manual_seed(0)
    model = GPT(tiny(expert_top_k=1, moe_aux_weight=0.0, moe_z_weight=0.0))
    x = torch.randint(0, 29, (2, 16))
    model(x, x)[1].backward()
    assert model.blocks[0].mlp.router.weight.grad.abs().max() > 1e-6


def test_loss_includes_weighted_aux_and_z_losses():
    torch.manual_seed(0)
    cfg = tiny()
    model = GPT(cfg)
    plain = GPT(cfg.replace(moe_aux_weight=0.0, moe_z_weight=0.0))
    plain.load_state_dict(model.state_dict())
    x = torch.randint(0, 29, (2, 16))
    _, with_aux = model(x, x)
    stats = model.moe_stats()
    _, without = plain(x, x)
    assert len(stats) == 2 and plain.last_aux_loss == 0.0
    for s in stats:
        assert s["load"].shape == (4,) and s["load"].sum().item() == pytest.approx(1.0)
        assert 0.0 <= s["dropped"] < 1.0 and s["aux_loss"] > 0 and s["z_loss"] > 0
    expected = sum(0.01 * s["aux_loss"] + 0.001 * s["z_loss"] for s in stats)
    assert model.last_aux_loss == pytest.approx(expected, rel=1e-5)
    assert with_aux.item() > without.item()
    assert with_aux.item() - without.item() == pytest.approx(expected, rel=1e-4)
    dense = GPT(tiny(n_expert=0))
    dense(x, x)
    assert dense.moe_stats() == [] and dense.last_aux_loss == 0.0


def test_kv_cache_matches_full_forward_without_capacity():
    torch.manual_seed(0)
    model = GPT(tiny(capacity_factor=None, position="rope")).eval()
    x = torch.randint(0, 29, (2, 12))
    full, _ = model(x)
    cache = model.make_cache(2)
    first, _ = model(x[:, :5], cache=cache)
    steps = [model(x[:, t:t + 1], cache=cache)[0] for t in range(5, 12)]
    torch.testing.assert_close(torch.cat([first] + steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_num_params_active_params_and_flops():
    C, L = 32, 2
    mlp = (C * 4 * C + 4 * C) + (4 * C * C + C)  # gelu MLP with biases
    dense = GPT(tiny(n_expert=0))
    assert dense.num_active_params() == dense.num_params()
    for E, k in [(4, 1), (4, 2), (4, 4)]:
        moe = GPT(tiny(n_expert=E, expert_top_k=k))
        assert moe.num_params() == dense.num_params() + L * ((E - 1) * mlp + E * C)  # every expert + router
        assert moe.num_active_params() == dense.num_params() + L * ((k - 1) * mlp + E * C)
        assert moe.num_active_params(non_embedding=False) - moe.num_active_params() == 29 * C + 16 * C
        assert (moe.num_active_params() < moe.num_params()) == (k < E)
        # active matmul weights only: top_k experts and the router
        assert moe.flops_per_token() == dense.flops_per_token() + 6 * L * ((k - 1) * mlp + E * C)


def test_residual_projections_of_every_expert_are_scaled():
    torch.manual_seed(0)
    model = GPT(tiny(n_layer=8, n_embd=64, n_expert=2, expert_top_k=1))
    for expert in model.blocks[0].mlp.experts:
        assert abs(expert.w2.weight.std().item() - 0.02 / 4) < 0.0005  # 1 / sqrt(2 * 8)
        assert abs(expert.w1.weight.std().item() - 0.02) < 0.002
    deep = GPT(tiny(norm="deepnorm", norm_position="post"))  # deepnorm rescales each expert's matrices
    x = torch.randint(0, 29, (2, 16))
    assert torch.isfinite(deep(x, x)[1])


@pytest.mark.parametrize("top_k", [1, 2])
def test_moe_gpt_trains(top_k):
    torch.manual_seed(0)
    tokens = torch.arange(16).repeat(40)  # one short sequence over and over: easy to learn
    model = GPT(tiny(vocab_size=16, expert_top_k=top_k))
    cfg = TrainConfig(batch_size=4, max_steps=25, lr=3e-3, warmup_steps=0, schedule="constant",
                      eval_interval=0, eval_batches=1, log_interval=1, device="cpu", progress=False)
    history = Trainer(model, cfg, tokens).fit()
    losses = [row["loss"] for row in history]
    assert losses[-1] < losses[0] - 1.0, losses
    assert len(model.moe_stats()) == 2


# ------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("kw,match", [
    (dict(n_expert=-1), "n_expert=-1"),
    (dict(n_expert=2.0), "n_expert=2.0"),
    (dict(n_expert=2, expert_top_k=3), r"expert_top_k=3 .*\[1, n_expert=2\]"),
    (dict(expert_top_k=0), "expert_top_k=0"),
    (dict(n_expert=4, capacity_factor=0), "capacity_factor"),
    (dict(n_expert=4, capacity_factor=-1.0), "capacity_factor"),
    (dict(moe_aux_weight=-0.1), "moe_aux_weight"),
    (dict(moe_z_weight=-1), "moe_z_weight"),
])
def test_moe_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kw)


def test_moe_config_defaults_round_trip():
    cfg = ModelConfig()
    assert cfg.n_expert == 0 and cfg.expert_top_k == 2 and cfg.capacity_factor == 1.25
    moe = cfg.replace(n_expert=8, capacity_factor=None)
    assert ModelConfig.from_dict(moe.to_dict()) == moe
    assert isinstance(GPT(tiny(n_expert=0)).blocks[0].mlp, MLP)
    with pytest.raises(ValueError, match="MoE needs"):
        MoE(tiny(n_expert=0))
