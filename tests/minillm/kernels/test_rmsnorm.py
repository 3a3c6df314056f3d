"""The fused RMSNorm kernel against its PyTorch reference, forward and backward."""
from __future__ import annotations

import pytest
import torch

from minillm.kernels import KernelUnavailableError
from minillm.kernels.rmsnorm import rms_norm, rms_norm_reference

SHAPES = [(1, 7), (5, 33), (3, 4, 96), (13, 130), (2, 1, 1)]
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.bfloat16: dict(atol=5e-2, rtol=2e-2)}


def _both(shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * 3 + 0.5).to(device=device, dtype=dtype)
    w = (torch.rand(shape[-1], generator=g) + 0.5).to(device=device, dtype=dtype)
    dy = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    out = {}
    for name, fn in (("kernel", rms_norm), ("reference", rms_norm_reference)):
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = fn(xi, wi, 1e-5)
        y.backward(dy)
        out[name] = (y.detach(), xi.grad, wi.grad)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_match_reference(shape, dtype, device):
    out = _both(shape, dtype, device)
    for got, want, what in zip(out["kernel"], out["reference"], ("y", "dx", "dweight")):
        assert got.dtype == want.dtype and got.shape == want.shape, what
        torch.testing.assert_close(got.float(), want.float(), **TOL[dtype], msg=f"{what} {shape} {dtype}")


def test_reference_matches_torch_rms_norm():
    x, w = torch.randn(4, 24), torch.rand(24) + 0.5
    torch.testing.assert_close(rms_norm_reference(x, w, 1e-6), torch.nn.functional.rms_norm(x, (24,), w, 1e-6))


def test_output_is_normalised(device):
    x = torch.randn(6, 50, device=device) * 10
    y = rms_norm(x, torch.ones(50, device=device))
    rms = y.float().pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-4, rtol=0)


def test_weight_gradient_sums_over_more_rows_than_programs(device):
    # 37 rows over at most a few programs: each program must loop over its slice and every row must count.
    x = torch.randn(37, 20, device=device, requires_grad=True)
    w = torch.ones(20, device=device, requires_grad=True)
    rms_norm(x, w).sum().backward()
    x_hat = rms_norm_reference(x.detach(), torch.ones(20, device=device))
    torch.testing.assert_close(w.grad, x_hat.sum(0), atol=1e-4, rtol=1e-5)


def test_empty_input(device):
    x = torch.randn(0, 16, device=device, requires_grad=True)
    y = rms_norm(x, torch.ones(16, device=device))
    assert y.shape == (0, 16)


def test_wrong_weight_shape_is_a_clear_error(device):
    with pytest.raises(ValueError, match="weight has shape"):
        rms_norm(torch.randn(2, 8, device=device), torch.ones(9, device=device))


def test_cpu_tensor_in_compiled_mode_is_a_clear_error(monkeypatch):
    from minillm.kernels import rmsnorm
    monkeypatch.setattr(rmsnorm, "JIT_MODE", "compiled")
    with pytest.raises(KernelUnavailableError, match="kernels='torch'"):
        rms_norm(torch.randn(2, 8), torch.ones(8))
