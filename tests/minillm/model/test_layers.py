"""Functional forms vs torch references, and modules vs functional forms."""
import pytest
import torch
import torch.nn.functional as F

from minillm.config import ModelConfig
from minillm.model import layers as L


@pytest.fixture
def x():
    return torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(0))


def test_rmsnorm_matches_torch(x):
    w = torch.randn(16)
    torch.testing.assert_close(L.rmsnorm(x, w, 1e-5), F.rms_norm(x, (16,), w, 1e-5))
    torch.testing.assert_close(L.RMSNorm(16)(x), L.rmsnorm(x, torch.ones(16)))


def test_layer_norm_matches_torch(x):
    w, b = torch.randn(16), torch.randn(16)
    torch.testing.assert_close(L.layer_norm(x, w, b, 1e-5), F.layer_norm(x, (16,), w, b, 1e-5))
    ln = L.LayerNorm(16, bias=False)
    assert ln.bias is None
    torch.testing.assert_close(ln(x), L.layer_norm(x))


def test_activations_match_torch(x):
    torch.testing.assert_close(L.gelu(x), F.gelu(x))
    torch.testing.assert_close(L.silu(x), F.silu(x))
    torch.testing.assert_close(L.relu(x), F.relu(x))


def test_swiglu_and_geglu_conventions(x):
    g = torch.Generator().manual_seed(1)
    w1, w3, w2 = torch.randn(24, 16, generator=g), torch.randn(24, 16, generator=g), torch.randn(16, 24, generator=g)
    expected = F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)
    torch.testing.assert_close(L.swiglu(x, w1, w2, w3), expected)
    torch.testing.assert_close(L.geglu(x, w1, w2, w3), F.linear(F.gelu(F.linear(x, w1)) * F.linear(x, w3), w2))


@pytest.mark.parametrize("activation", ["relu", "gelu", "swiglu", "geglu"])
def test_mlp_module_equals_functional(activation, x):
    cfg = ModelConfig(n_embd=16, n_head=2, activation=activation, bias=False)
    mlp = L.MLP(cfg)
    if activation in ("swiglu", "geglu"):
        fn = L.swiglu if activation == "swiglu" else L.geglu
        ref = fn(x, mlp.w1.weight, mlp.w2.weight, mlp.w3.weight)
        assert cfg.ffn_hidden % 8 == 0 and cfg.ffn_hidden == 48  # 8/3 * 16 rounded up to a multiple of 8
    else:
        act = L.relu if activation == "relu" else L.gelu
        ref = act(x @ mlp.w1.weight.T) @ mlp.w2.weight.T
        assert mlp.w3 is None
    torch.testing.assert_close(mlp(x), ref)


def test_softmax_is_stable_and_matches_torch():
    x = torch.tensor([[1000.0, 1001.0, 999.0], [-5.0, 0.0, 5.0]])
    torch.testing.assert_close(L.softmax(x, -1), torch.softmax(x, -1))
    assert torch.isfinite(L.softmax(x * 100, -1)).all()


def test_cross_entropy_matches_torch_and_ignores():
    g = torch.Generator().manual_seed(2)
    logits, targets = torch.randn(2, 7, 11, generator=g) * 10, torch.randint(0, 11, (2, 7), generator=g)
    torch.testing.assert_close(L.cross_entropy(logits, targets), F.cross_entropy(logits.view(-1, 11), targets.view(-1)))
    targets[0, :3] = -100
    torch.testing.assert_close(L.cross_entropy(logits, targets),
                               F.cross_entropy(logits.view(-1, 11), targets.view(-1), ignore_index=-100))
