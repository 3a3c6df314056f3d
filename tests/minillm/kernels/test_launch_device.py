"""Every Triton launch runs inside `runtime.on_device(tensor)` (torch.cuda.device of its tensors on a GPU), so a
rank whose current device is not the one holding its tensors still launches on the right GPU (#20)."""
from __future__ import annotations

import contextlib

import pytest
import torch

from minillm.kernels import runtime


@pytest.fixture
def entered(monkeypatch):
    seen: list[torch.device] = []

    def record(t):
        seen.append(t.device)
        return contextlib.nullcontext()

    monkeypatch.setattr(runtime, "on_device", record)
    return seen


def test_on_device_is_a_no_op_for_cpu_tensors():
    assert isinstance(runtime.on_device(torch.zeros(1)), contextlib.nullcontext)


def test_every_kernel_launches_inside_on_device(device, entered):
    from minillm.kernels.cross_entropy import cross_entropy
    from minillm.kernels.rmsnorm import rms_norm
    from minillm.kernels.rope import rope
    from minillm.kernels.swiglu import swiglu

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 8, generator=g).to(device).requires_grad_()
    w = torch.ones(8, device=device, requires_grad=True)
    rms_norm(x, w, 1e-6).sum().backward()
    assert len(entered) == 2, "RMSNorm forward and backward"
    a, b = (torch.randn(3, 8, generator=g).to(device).requires_grad_() for _ in range(2))
    swiglu(a, b).sum().backward()
    assert len(entered) == 4, "SwiGLU forward and backward"
    q, k = torch.randn(1, 2, 4, 8, generator=g).to(device), torch.randn(1, 2, 4, 8, generator=g).to(device)
    ang = torch.arange(4.0)[:, None] * torch.arange(1.0, 5.0)[None, :] / 10
    rope(q, k, ang.cos().to(device), ang.sin().to(device))
    assert len(entered) == 5, "RoPE"
    logits = torch.randn(4, 16, generator=g).to(device).requires_grad_()
    cross_entropy(logits, torch.tensor([1, 2, 3, 4], device=device)).backward()
    assert len(entered) == 6, "cross-entropy (its gradient is made in the forward launch)"
    assert all(d.type == torch.device(device).type for d in entered)
