"""The fused RoPE kernel against the model's `apply_rope_cached`, forward and backward, and its rotation properties."""
from __future__ import annotations

import importlib

import pytest
import torch

from minillm.kernels import KernelUnavailableError
from minillm.kernels.rope import rope, rope_, rope_reference
from minillm.model.position import rope_angles

# (B, H, Hkv, T, D): a single token; MQA with D/2 = 3 (not a power of two); GQA; H = Hkv; odd head counts.
SHAPES = [(1, 1, 1, 1, 2), (2, 3, 1, 5, 6), (1, 4, 2, 7, 16), (2, 2, 2, 3, 10), (1, 6, 3, 4, 8)]
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


def _qk(B, H, Hkv, T, D, dtype, device, seed=0, model_layout=True):
    """q (B, H, T, D), k (B, Hkv, T, D); with model_layout, the non-contiguous views the attention layer makes."""
    g = torch.Generator().manual_seed(seed)
    if model_layout:  # wq(x).view(B, T, H, D).transpose(1, 2)
        q = torch.randn(B, T, H, D, generator=g).transpose(1, 2)
        k = torch.randn(B, T, Hkv, D, generator=g).transpose(1, 2)
    else:
        q, k = torch.randn(B, H, T, D, generator=g), torch.randn(B, Hkv, T, D, generator=g)
    return q.to(device=device, dtype=dtype), k.to(device=device, dtype=dtype)


def _tables(T, D, device, offset=0):
    cos, sin = rope_angles(torch.arange(offset, offset + T), D)
    return cos.to(device), sin.to(device)


@pytest.mark.parametrize("model_layout", [True, False], ids=["view-transpose", "contiguous"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_match_reference(shape, dtype, model_layout, device):
    B, H, Hkv, T, D = shape
    q, k = _qk(*shape, dtype, device, model_layout=model_layout)
    assert q.is_contiguous() == (not model_layout) or T == 1 or H == 1
    cos, sin = _tables(T, D, device, offset=3)  # offset: positions past 0, so sin is not ~0 everywhere
    g = torch.Generator().manual_seed(1)
    dq_out = torch.randn(B, H, T, D, generator=g).to(device=device, dtype=dtype)
    dk_out = torch.randn(B, Hkv, T, D, generator=g).to(device=device, dtype=dtype)
    out = {}
    for name, fn in (("kernel", rope), ("reference", rope_reference)):
        qi, ki = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
        q_rot, k_rot = fn(qi, ki, cos, sin)
        torch.autograd.backward((q_rot, k_rot), (dq_out, dk_out))
        out[name] = (q_rot.detach(), k_rot.detach(), qi.grad, ki.grad)
    for got, want, what in zip(out["kernel"], out["reference"], ("q_rot", "k_rot", "dq", "dk")):
        assert got.dtype == want.dtype and got.shape == want.shape, what
        torch.testing.assert_close(got.float(), want.float(), **TOL[dtype], msg=f"{what} {shape} {dtype}")


def test_gradient_when_only_q_reaches_the_loss(device):
    q, k = _qk(1, 2, 1, 3, 4, torch.float32, device)
    q.requires_grad_(), k.requires_grad_()
    cos, sin = _tables(3, 4, device, offset=1)
    q_rot, _ = rope(q, k, cos, sin)
    q_rot.pow(2).sum().backward()  # |rotated q|^2 = |q|^2, so dq = 2q; k's output unused: dk = 0
    torch.testing.assert_close(q.grad, 2 * q.detach(), atol=1e-5, rtol=1e-5)
    assert torch.equal(k.grad, torch.zeros_like(k))


def test_rotation_preserves_each_pair_norm(device):
    q, k = _qk(2, 3, 1, 6, 10, torch.float32, device)
    cos, sin = _tables(6, 10, device, offset=100)
    for x, x_rot in zip((q, k), rope(q, k, cos, sin)):
        pair_norm = x.unflatten(-1, (-1, 2)).norm(dim=-1)  # (B, H, T, D/2)
        torch.testing.assert_close(x_rot.unflatten(-1, (-1, 2)).norm(dim=-1), pair_norm, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(x_rot, x)  # and it did rotate


def test_position_zero_is_identity(device):
    q, k = _qk(1, 3, 3, 1, 12, torch.float32, device)
    cos, sin = _tables(1, 12, device)  # position 0: cos = 1, sin = 0
    q_rot, k_rot = rope(q, k, cos, sin)
    assert torch.equal(q_rot, q) and torch.equal(k_rot, k)


def test_scores_depend_only_on_relative_position(device):
    # The same q and k vector placed at every position t: after RoPE, <q_m, k_n> must be a function of m - n.
    T, D = 9, 8
    g = torch.Generator().manual_seed(0)
    q = torch.randn(D, generator=g).expand(1, 1, T, D).to(device)
    k = torch.randn(D, generator=g).expand(1, 1, T, D).to(device)
    cos, sin = _tables(T, D, device)
    q_rot, k_rot = rope(q, k, cos, sin)
    scores = (q_rot[0, 0] @ k_rot[0, 0].T).cpu()  # (T, T): [m, n] = <q_m, k_n>
    for offset in range(-T + 1, T):
        diag = scores.diagonal(offset)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), atol=1e-4, rtol=1e-5)
    assert scores.diagonal(0)[0] != pytest.approx(scores.diagonal(1)[0])  # the offset does matter


def test_in_place_matches_out_of_place(device):
    q, k = _qk(2, 4, 2, 5, 6, torch.float32, device)  # non-contiguous views, rotated through their strides
    cos, sin = _tables(5, 6, device, offset=2)
    want_q, want_k = rope_reference(q, k, cos, sin)
    version = q._version
    q_in, k_in = rope_(q, k, cos, sin)
    assert q_in is q and k_in is k and q._version > version
    torch.testing.assert_close(q, want_q, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k, want_k, atol=1e-5, rtol=1e-5)


def test_in_place_on_a_tensor_requiring_grad_is_a_clear_error(device):
    q, k = _qk(1, 2, 1, 3, 4, torch.float32, device)
    cos, sin = _tables(3, 4, device)
    with pytest.raises(RuntimeError, match="requires grad"):
        rope_(q.requires_grad_(), k, cos, sin)


def test_empty_batch(device):
    q, k = _qk(0, 2, 1, 3, 4, torch.float32, device)
    cos, sin = _tables(3, 4, device)
    q_rot, k_rot = rope(q, k, cos, sin)
    assert q_rot.shape == (0, 2, 3, 4) and k_rot.shape == (0, 1, 3, 4)


@pytest.mark.parametrize("q_shape, k_shape, table, match", [
    ((1, 2, 3, 4), (1, 1, 5, 4), (3, 2), "same B, T and D"),
    ((1, 2, 3, 5), (1, 1, 3, 5), (3, 2), "must be even"),
    ((1, 3, 3, 4), (1, 2, 3, 4), (3, 2), "Hkv to divide H"),
    ((1, 2, 3, 4), (1, 1, 3, 4), (8, 2), r"expected \(T, D/2\) = \(3, 2\)"),
    ((2, 3, 4), (2, 3, 4), (3, 2), "4-D q"),
])
def test_bad_shapes_are_clear_errors(q_shape, k_shape, table, match, device):
    q, k = torch.randn(q_shape, device=device), torch.randn(k_shape, device=device)
    cos = torch.ones(table, device=device)
    with pytest.raises(ValueError, match=match):
        rope(q, k, cos, torch.zeros_like(cos))


def test_cpu_tensor_in_compiled_mode_is_a_clear_error(monkeypatch):
    # importlib, not `from minillm.kernels import rope`: the package also has a function of that name.
    module = importlib.import_module("minillm.kernels.rope")
    monkeypatch.setattr(module, "JIT_MODE", "compiled")
    q, k = torch.randn(1, 2, 3, 4), torch.randn(1, 1, 3, 4)
    with pytest.raises(KernelUnavailableError, match="kernels='torch'"):
        rope(q, k, *rope_angles(torch.arange(3), 4))


def test_reference_equals_the_models_rope():
    """The kernel file keeps its own copy of the rotation (kernels never import the model): it must stay equal."""
    from minillm.model.position import apply_rope_cached, rope_angles

    q, k = torch.randn(2, 3, 5, 8), torch.randn(2, 1, 5, 8)
    cos, sin = rope_angles(torch.arange(5), 8)
    got_q, got_k = rope_reference(q, k, cos, sin)
    assert torch.equal(got_q, apply_rope_cached(q, cos, sin)) and torch.equal(got_k, apply_rope_cached(k, cos, sin))
