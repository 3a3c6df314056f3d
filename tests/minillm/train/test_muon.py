"""Muon: Newton-Schulz orthogonalisation, the hidden-matrix / AdamW split, and training through the Trainer."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from minillm.config import ModelConfig, TrainConfig
from minillm.model.transformer import GPT
from minillm.train.muon import NS_COEFFICIENTS, Muon, muon_param_groups, orthogonalise
from minillm.train.optim import AdamW, build_optimizer, param_groups
from minillm.train.trainer import Trainer

V = 50
TINY = dict(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=32)
TOKENS = np.tile(np.arange(V), 100)


def tiny(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(**{**TINY, **kw}))


def cfg(**kw) -> TrainConfig:
    base = dict(batch_size=8, max_steps=30, warmup_steps=3, lr=3e-3, log_interval=1, eval_interval=0,
                eval_batches=2, progress=False, device="cpu", optimizer="muon")
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("shape", [(32, 32), (16, 48), (48, 16), (3, 64, 24)])
def test_orthogonalise_pushes_every_singular_value_towards_one(shape):
    torch.manual_seed(0)
    *batch, m, n = shape
    k = min(m, n)
    u = torch.linalg.qr(torch.randn(*batch, m, k)).Q
    v = torch.linalg.qr(torch.randn(*batch, n, k)).Q
    g = u @ torch.diag_embed(torch.logspace(0, 1.3, k).expand(*batch, k)) @ v.mT  # singular values 1 ... 20
    o = orthogonalise(g)
    assert o.shape == g.shape and o.dtype == g.dtype
    s = torch.linalg.svdvals(o)
    assert s.min() > 0.5 and s.max() < 1.25, s  # the quintic lands in ~[0.7, 1.2], not exactly 1 (by design)
    # Same singular directions as the exact polar factor A·Bᵀ (one scalar per matrix explains most of o).
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    polar = u @ vh
    cos = (o * polar).sum((-2, -1)) / (o.norm(dim=(-2, -1)) * polar.norm(dim=(-2, -1)))
    assert (cos > 0.95).all(), cos


def test_orthogonalise_batched_equals_one_matrix_at_a_time_and_is_scale_free():
    torch.manual_seed(1)
    g = torch.randn(4, 24, 40)
    batched = orthogonalise(g)
    single = torch.stack([orthogonalise(m) for m in g])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(orthogonalise(1e-3 * g), batched, rtol=1e-4, atol=1e-5)


def _reference_muon_step(p, g, buf, lr, wd, mu):
    """One step written the slow way, per matrix, with the Newton-Schulz loop spelled out."""
    buf = mu * buf + (1 - mu) * g
    x = mu * buf + (1 - mu) * g
    t = x.size(0) > x.size(1)
    x = x.T if t else x
    x = x / (x.norm() + 1e-7)
    a, b, c = NS_COEFFICIENTS
    for _ in range(5):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    x = x.T if t else x
    return p * (1 - lr * wd) - lr * 0.2 * math.sqrt(max(p.shape)) * x, buf


def test_muon_step_matches_the_update_rule_and_adamw_groups_match_adamw():
    model = tiny()
    groups = muon_param_groups(model, 0.1)
    torch.manual_seed(2)
    grads = {id(p): torch.randn_like(p) for p in model.parameters()}
    before = {id(p): p.detach().clone() for p in model.parameters()}
    opt = Muon(groups, lr=0.01, betas=(0.9, 0.95), weight_decay=0.1)
    twin = tiny()  # same init: the AdamW half must move exactly as minillm's AdamW would move it
    adam = AdamW([g for g in param_groups(twin, 0.1)], lr=0.01, betas=(0.9, 0.95), weight_decay=0.1)
    bufs = {k: torch.zeros_like(v) for k, v in before.items()}
    for _ in range(2):  # two steps: the momentum buffer matters in the second
        for p in model.parameters():
            p.grad = grads[id(p)].clone()
        for p, q in zip(model.parameters(), twin.parameters()):
            q.grad = grads[id(p)].clone()
        opt.step()
        adam.step()
        for g in groups:
            if g["muon"]:
                for p in g["params"]:
                    before[id(p)], bufs[id(p)] = _reference_muon_step(before[id(p)], grads[id(p)], bufs[id(p)],
                                                                      0.01, 0.1, 0.95)
    names = dict(model.named_parameters())
    twin_p = dict(twin.named_parameters())
    muon_ids = {id(p) for g in groups if g["muon"] for p in g["params"]}
    for name, p in names.items():
        if id(p) in muon_ids:
            torch.testing.assert_close(p.detach(), before[id(p)], rtol=1e-4, atol=1e-5, msg=name)
        else:
            torch.testing.assert_close(p.detach(), twin_p[name].detach(), rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("tie", [True, False])
def test_the_split_keeps_embeddings_head_and_vectors_on_adamw(tie):
    model = tiny(tie_embeddings=tie)
    groups = muon_param_groups(model, 0.1)
    muon = {n for g in groups if g["muon"] for n in g["param_names"]}
    adam = {n for g in groups if not g["muon"] for n in g["param_names"]}
    assert muon == {n for n, p in model.named_parameters() if p.dim() == 2 and n.startswith("blocks.")}
    params = dict(model.named_parameters())
    assert "tok_emb.weight" in adam and all(params[n].dim() == 1 for n in adam if n.startswith("blocks."))
    assert ("lm_head.weight" in adam) == (not tie)  # tied: the one tensor is the embedding, listed once
    assert {id(p) for p in model.parameters()} == {id(p) for g in groups for p in g["params"]}  # none dropped
    assert all(g["weight_decay"] == (0.1 if g["muon"] else g["weight_decay"]) for g in groups)


def test_muon_trains_through_the_trainer_and_resumes_exactly(tmp_path):
    trainer = Trainer(tiny(), cfg(), TOKENS)
    assert isinstance(trainer.optimizer, Muon)
    history = trainer.fit()
    assert history[-1]["loss"] < history[0]["loss"] - 1.0
    full = [r["loss"] for r in history]
    run = str(tmp_path / "run")
    Trainer(tiny(), cfg(out_dir=run, checkpoint_interval=15), TOKENS).fit(stop_at=15)
    resumed = Trainer(tiny(seed=9), cfg(out_dir=run, checkpoint_interval=15, resume=True), TOKENS)
    assert resumed.step == 15
    assert [r["loss"] for r in resumed.fit()] == full  # momentum buffers and Adam moments came back


def test_bad_settings_get_clear_errors():
    with pytest.raises(ValueError, match="muon.*fsdp"):
        cfg(parallel="fsdp")
    with pytest.raises(ValueError, match="2-D weight matrices"):
        Muon([{"params": [torch.nn.Parameter(torch.zeros(4))], "muon": True}])
    with pytest.raises(ValueError, match="momentum"):
        Muon([torch.nn.Parameter(torch.zeros(4, 4))], momentum=1.0)
    assert isinstance(build_optimizer(tiny(), cfg()), Muon)
    with pytest.raises(ValueError, match="adamw, torch_adamw, muon"):
        TrainConfig(optimizer="adagrad")
