"""Lion (minillm/train/lion.py): the update rule per tensor, state round trip, build_optimizer, a Trainer run."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from minillm.config import ModelConfig, TrainConfig
from minillm.model.transformer import GPT
from minillm.train.lion import LION_BETA2, Lion
from minillm.train.optim import build_optimizer, param_groups
from minillm.train.trainer import Trainer

V = 50
TINY = dict(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=32)


def tiny(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(**TINY))


def _reference(p, g, m, lr, wd, b1, b2):
    """One Lion step for one tensor, written out with plain ops (Chen et al. 2023, Algorithm 2)."""
    u = torch.sign(b1 * m + (1 - b1) * g)
    p = p * (1 - lr * wd) - lr * u
    m = b2 * m + (1 - b2) * g
    return p, m


def test_lion_matches_the_rule_written_per_tensor_over_three_steps():
    model = tiny()
    lr, wd, betas = 1e-3, 0.5, (0.9, 0.99)
    opt = Lion(param_groups(model, wd), lr=lr, betas=betas)
    params = list(model.parameters())
    decayed = {id(p) for p in param_groups(model, wd)[0]["params"]}
    ref = {id(p): (p.detach().clone(), torch.zeros_like(p)) for p in params}
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
            q, m = ref[id(p)]
            ref[id(p)] = _reference(q, p.grad, m, lr, wd if id(p) in decayed else 0.0, *betas)
        opt.step()
    for p in params:
        q, m = ref[id(p)]
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=1e-7)
        torch.testing.assert_close(opt.state[p]["exp_avg"], m, rtol=1e-6, atol=1e-8)


def test_first_step_moves_every_entry_by_exactly_lr_against_the_gradient_sign():
    p = torch.nn.Parameter(torch.zeros(3, 4))
    g = torch.tensor([[1.0, -2.0, 3e-6, -4e-3]] * 3)
    p.grad = g.clone()
    Lion([p], lr=0.01).step()
    # m starts at 0, so u = sign((1 − β1)·g) = sign(g): the step ignores the gradient's size (Adam would too,
    # but only approximately; Lion exactly).
    torch.testing.assert_close(p.detach(), -0.01 * torch.sign(g), rtol=0, atol=0)


def test_momentum_decides_the_sign_when_the_gradient_flips():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = Lion([p], lr=1.0, betas=(0.9, 0.99))
    for _ in range(20):  # build m ≈ 0.18 > 0 from steady +1 gradients
        p.grad = torch.ones(1)
        opt.step()
    before = p.item()
    p.grad = torch.tensor([-1.0])  # u = sign(0.9·0.18 − 0.1) = +1: the momentum still wins, p keeps falling
    opt.step()
    assert p.item() == pytest.approx(before - 1.0)


def test_state_dict_round_trip_continues_identically():
    a = tiny()
    opt_a = Lion(param_groups(a, 0.1), lr=3e-3)
    gen = torch.Generator().manual_seed(0)

    def step(model, opt):
        x = torch.randint(0, V, (4, 16), generator=gen)
        opt.zero_grad()
        _, loss = model(x, x.roll(-1, dims=1))
        loss.backward()
        opt.step()

    for _ in range(3):
        step(a, opt_a)
    b = copy.deepcopy(a)
    opt_b = Lion(param_groups(b, 0.1), lr=3e-3)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    assert set(opt_b.state_dict()["state"][0]) == {"exp_avg"}
    seed = gen.get_state()
    step(a, opt_a)
    gen.set_state(seed)
    step(b, opt_b)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_build_optimizer_maps_cfg_to_lion_and_keeps_the_decay_groups():
    model = tiny()
    opt = build_optimizer(model, TrainConfig(optimizer="lion", lr=2e-4, beta1=0.8, beta2=0.95, weight_decay=0.3,
                                             device="cpu"))
    assert isinstance(opt, Lion)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]
    assert all(g["betas"] == (0.8, LION_BETA2) for g in opt.param_groups)  # cfg.beta2 is Adam's, not Lion's


@pytest.mark.parametrize("kw", [dict(lr=-1.0), dict(betas=(0.9, 1.0)), dict(betas=(0.9,)), dict(weight_decay=-0.1)])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError, match="Lion"):
        Lion([torch.nn.Parameter(torch.zeros(2))], **kw)


def test_trainer_run_with_lion_lowers_the_loss():
    model = tiny()
    tokens = np.tile(np.arange(V), 100)
    cfg = TrainConfig(optimizer="lion", batch_size=8, max_steps=40, warmup_steps=3, lr=3e-3, log_interval=1,
                      eval_interval=0, eval_batches=2, progress=False, device="cpu")
    trainer = Trainer(model, cfg, tokens)
    assert isinstance(trainer.optimizer, Lion)
    trainer.fit()
    losses = [r["loss"] for r in trainer.history]
    assert np.mean(losses[-5:]) < losses[0] - 1.0, losses
