"""Chunked lm_head + cross-entropy (Triton and PyTorch CE steps) against the unfused reference, and its memory."""
from __future__ import annotations

import pytest
import torch

from minillm.kernels import runtime
from minillm.kernels.fused_linear_cross_entropy import (chunked_linear_cross_entropy, default_chunk_size,
                                                        fused_linear_cross_entropy, linear_cross_entropy_reference,
                                                        peak_intermediate_numel)

IMPLS = {"triton": fused_linear_cross_entropy, "torch": chunked_linear_cross_entropy}
N, C, V = 11, 24, 97  # tokens, hidden width, vocabulary: none a power of two
TOL = {torch.float32: dict(atol=1e-6, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=5e-2)}


def _case(device, dtype=torch.float32, n=N, c=C, v=V, ignored=(2, 7), seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, c, generator=g).to(device, dtype)
    weight = (torch.randn(v, c, generator=g) * c ** -0.5 * 3).to(device, dtype)
    targets = torch.randint(0, v, (n,), generator=g)
    targets[list(ignored)] = -100
    return hidden, weight, targets.to(device)


def _run(fn, hidden, weight, targets, grad_scale=1.0, **kw):
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = fn(h, w, targets, **kw)
    (loss * grad_scale).backward()
    return loss.detach(), h.grad, w.grad


def _assert_matches(got, want, dtype):
    for a, b, what in zip(got, want, ("loss", "grad hidden", "grad weight")):
        assert a.dtype == b.dtype and a.shape == b.shape, what
        torch.testing.assert_close(a.float(), b.float(), **TOL[dtype], msg=what)


@pytest.mark.parametrize("chunk_size", [1, 3, N, N + 5, None])
@pytest.mark.parametrize("impl", IMPLS)
def test_matches_reference_for_any_chunk_size(impl, chunk_size, device):
    hidden, weight, targets = _case(device)
    got = _run(IMPLS[impl], hidden, weight, targets, chunk_size=chunk_size)
    _assert_matches(got, _run(linear_cross_entropy_reference, hidden, weight, targets), torch.float32)


@pytest.mark.parametrize("impl", IMPLS)
def test_bf16_and_label_smoothing(impl, device):
    hidden, weight, targets = _case(device, torch.bfloat16)
    kw = dict(label_smoothing=0.1)
    got = _run(IMPLS[impl], hidden, weight, targets, chunk_size=4, **kw)
    _assert_matches(got, _run(linear_cross_entropy_reference, hidden, weight, targets, **kw), torch.bfloat16)


@pytest.mark.parametrize("impl", IMPLS)
def test_grad_output_scales_and_a_retained_graph_can_backward_twice(impl, device):
    hidden, weight, targets = _case(device)
    got = _run(IMPLS[impl], hidden, weight, targets, grad_scale=2.5, chunk_size=4)
    want = _run(linear_cross_entropy_reference, hidden, weight, targets, grad_scale=2.5)
    _assert_matches(got, want, torch.float32)

    h = hidden.clone().requires_grad_()
    loss = IMPLS[impl](h, weight, targets, chunk_size=4)
    loss.backward(retain_graph=True)
    first = h.grad.clone()
    (loss * 3).backward()  # saved gradients are scaled out of place: 1x + 3x
    torch.testing.assert_close(h.grad, 4 * first, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_only_the_needed_gradient(impl, device):
    hidden, weight, targets = _case(device)
    want = _run(linear_cross_entropy_reference, hidden, weight, targets)
    w = weight.clone().requires_grad_()  # frozen input, trained head (or the reverse: a frozen head)
    IMPLS[impl](hidden, w, targets, chunk_size=5).backward()
    torch.testing.assert_close(w.grad, want[2], **TOL[torch.float32])
    h = hidden.clone().requires_grad_()
    IMPLS[impl](h, weight, targets, chunk_size=5).backward()
    torch.testing.assert_close(h.grad, want[1], **TOL[torch.float32])


@pytest.mark.parametrize("impl", IMPLS)
def test_every_token_ignored_and_empty_input(impl, device):
    hidden, weight, targets = _case(device, n=4, ignored=range(4))
    loss, gh, gw = _run(IMPLS[impl], hidden, weight, targets, chunk_size=3)
    assert loss.item() == 0.0 and gh.eq(0).all() and gw.eq(0).all()
    hidden, weight, targets = _case(device, n=0, ignored=())
    loss, gh, gw = _run(IMPLS[impl], hidden, weight, targets)
    assert loss.item() == 0.0 and gh.shape == (0, C) and gw.eq(0).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_under_autocast_gradients_keep_the_parameter_dtype(impl, device):
    hidden, weight, targets = _case(device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        got = _run(IMPLS[impl], hidden, weight, targets, chunk_size=4)
        want = _run(linear_cross_entropy_reference, hidden, weight, targets)
    _assert_matches(got, want, torch.bfloat16)  # fp32 tensors, bf16 matmuls: bf16 tolerance


def test_default_chunk_size():
    assert default_chunk_size(8192, 50304, 768) == 1024  # GPT-2: 66x more classes than width, capped at 8 chunks
    assert default_chunk_size(8192, 4096, 1024) == 2048  # 4 chunks: logits chunk ~ hidden states
    assert default_chunk_size(5, 10, 100) == 5  # small vocabulary: one chunk
    assert default_chunk_size(1000, 300, 24) == 128  # ceil(300 / 24) = 13 -> capped at 8; 1000 / 8 = 125 -> 128
    assert default_chunk_size(0, 10, 4) == 1


@pytest.mark.parametrize("kw,error,match", [
    (dict(chunk_size=0), ValueError, "chunk_size=0 must be a positive int"),
    (dict(chunk_size=2.0), ValueError, "chunk_size=2.0 must be a positive int"),
    (dict(chunk_size=True), ValueError, "chunk_size=True"),
    (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
])
def test_bad_options_are_clear_errors(kw, error, match):
    hidden, weight, targets = _case("cpu")
    with pytest.raises(error, match=match):
        chunked_linear_cross_entropy(hidden, weight, targets, **kw)


def test_bad_tensors_are_clear_errors():
    hidden, weight, targets = _case("cpu")
    with pytest.raises(ValueError, match=r"hidden \(N, C\) and weight \(V, C\)"):
        chunked_linear_cross_entropy(hidden, weight[:, :-1], targets)
    with pytest.raises(ValueError, match=r"hidden \(N, C\)"):
        chunked_linear_cross_entropy(hidden[None], weight, targets[None])
    with pytest.raises(TypeError, match="same floating-point dtype"):
        chunked_linear_cross_entropy(hidden, weight.double(), targets)
    with pytest.raises(TypeError, match="int64 targets"):
        chunked_linear_cross_entropy(hidden, weight, targets.int())
    with pytest.raises(ValueError, match=r"\[0, 97\).*found 97 at position 0"):
        chunked_linear_cross_entropy(hidden, weight, torch.full((N,), V))


# N = 64 tokens, V = 1000 classes, C = 32: the reference makes (N, V) = 64000-element tensors (logits, their
# softmax, the gradient); in chunks of 8 nothing larger than (8, V) exists, except the weight-shaped (V, C).
@pytest.mark.parametrize("impl", IMPLS)
def test_chunked_path_never_materialises_the_logits(impl):
    n, v, c, chunk = 64, 1000, 32, 8
    hidden, weight, targets = _case("cpu", n=n, c=c, v=v, ignored=(0,))

    def train_step(fn, **kw):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        fn(h, w, targets, **kw).backward()

    assert peak_intermediate_numel(train_step, linear_cross_entropy_reference) == n * v
    assert peak_intermediate_numel(train_step, linear_cross_entropy_reference, exclude_shapes=[(v, c)]) == n * v
    if impl == "triton" and not runtime.interpreter_requested():
        pytest.skip("the Triton path runs on CPU tensors only in the interpreter")
    peak = peak_intermediate_numel(train_step, IMPLS[impl], exclude_shapes=[(v, c)], chunk_size=chunk)
    assert peak == chunk * v < n * v / 4
    assert peak_intermediate_numel(train_step, IMPLS[impl], chunk_size=chunk) == v * c  # the weight's gradient
    with torch.no_grad():  # evaluation: no gradient buffers at all
        assert peak_intermediate_numel(IMPLS[impl], hidden, weight, targets, chunk_size=chunk) == chunk * v
