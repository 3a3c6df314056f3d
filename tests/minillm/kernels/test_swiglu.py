"""The fused SwiGLU kernel (silu(a) * b) against its PyTorch reference, forward and backward."""
from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from minillm.kernels import KernelUnavailableError
from minillm.kernels.swiglu import BLOCK, swiglu, swiglu_reference

# 1 element; 1000 (< one block, masked tail); 3-D; more than two blocks ending mid-block; a zero-size dim.
SHAPES = [(1,), (1000,), (3, 5, 67), (2 * BLOCK + 37,), (4, 0, 8)]
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


def _both(shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = (torch.randn(shape, generator=g) * 3).to(device=device, dtype=dtype)  # * 3: reach silu's flat tails
    b = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    dc = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    out = {}
    for name, fn in (("kernel", swiglu), ("reference", swiglu_reference)):
        ai, bi = a.clone().requires_grad_(), b.clone().requires_grad_()
        c = fn(ai, bi)
        c.backward(dc)
        out[name] = (c.detach(), ai.grad, bi.grad)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_match_reference(shape, dtype, device):
    out = _both(shape, dtype, device)
    for got, want, what in zip(out["kernel"], out["reference"], ("c", "da", "db")):
        assert got.dtype == want.dtype and got.shape == want.shape, what
        torch.testing.assert_close(got.float(), want.float(), **TOL[dtype], msg=f"{what} {shape} {dtype}")


def test_reference_matches_the_model_formula():
    a, b = torch.randn(4, 24), torch.randn(4, 24)
    torch.testing.assert_close(swiglu_reference(a, b), a * torch.sigmoid(a) * b)


def test_known_values(device):
    # silu(0) = 0, silu(x) -> x for large x, -> 0 for very negative x; d silu/da at 0 is 1/2.
    a = torch.tensor([0.0, 20.0, -20.0, 1.0], device=device, requires_grad=True)
    b = torch.tensor([5.0, 2.0, 3.0, 1.0], device=device, requires_grad=True)
    c = swiglu(a, b)
    c.sum().backward()
    s1 = torch.sigmoid(torch.tensor(1.0)).item()
    torch.testing.assert_close(c.detach().cpu(), torch.tensor([0.0, 40.0, 0.0, s1]), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(a.grad.cpu(), torch.tensor([2.5, 2.0, 0.0, s1 + s1 * (1 - s1)]), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(b.grad.cpu(), torch.tensor([0.0, 20.0, 0.0, s1]), atol=1e-6, rtol=1e-6)


def test_non_contiguous_inputs_and_gradient(device):
    # The gate and up halves of one fused projection: strided views; an expanded (stride-0) gradient.
    h = torch.randn(6, 2 * 50, device=device, requires_grad=True)
    a, b = h[:, :50], h[:, 50:]
    assert not a.is_contiguous()
    swiglu(a, b).sum().backward()
    want_h = h.detach().clone().requires_grad_()
    F.silu(want_h[:, :50]).mul(want_h[:, 50:]).sum().backward()
    torch.testing.assert_close(h.grad, want_h.grad, atol=1e-5, rtol=1e-5)


def test_gradient_only_for_one_input(device):
    a = torch.randn(7, 9, device=device, requires_grad=True)
    b = torch.randn(7, 9, device=device)  # a constant: no grad wanted, none returned
    swiglu(a, b).sum().backward()
    assert b.grad is None
    s = torch.sigmoid(a.detach())
    torch.testing.assert_close(a.grad, b * (s + a.detach() * s * (1 - s)), atol=1e-5, rtol=1e-5)


def test_shape_mismatch_is_a_clear_error(device):
    with pytest.raises(ValueError, match=r"same shape, got \(2, 8\) and \(2, 9\)"):
        swiglu(torch.randn(2, 8, device=device), torch.randn(2, 9, device=device))


def test_dtype_mismatch_is_a_clear_error(device):
    with pytest.raises(ValueError, match="same dtype"):
        swiglu(torch.randn(8, device=device), torch.randn(8, device=device, dtype=torch.bfloat16))


def test_cpu_tensor_in_compiled_mode_is_a_clear_error(monkeypatch):
    # importlib, not `from minillm.kernels import swiglu`: the package also has a function of that name.
    module = importlib.import_module("minillm.kernels.swiglu")
    monkeypatch.setattr(module, "JIT_MODE", "compiled")
    with pytest.raises(KernelUnavailableError, match="kernels='torch'"):
        swiglu(torch.randn(2, 8), torch.randn(2, 8))
