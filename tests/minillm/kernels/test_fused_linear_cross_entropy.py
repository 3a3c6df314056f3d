"""Chunked lm_head + cross-entropy (Triton and PyTorch CE steps) against the unfused reference, and its memory."""
from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

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
def test_backward_does_not_read_the_device(impl, device, no_host_sync):
    # Backward used to skip its multiplies when torch.equal(grad_output, 1): a host sync every step. Now it
    # always multiplies; on a GPU, CUDA's sync check must stay silent.
    hidden, weight, targets = _case(device)
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = IMPLS[impl](h, w, targets, chunk_size=4)
    with no_host_sync(device):
        loss.backward()
    _assert_matches((loss.detach(), h.grad, w.grad), _run(linear_cross_entropy_reference, hidden, weight, targets),
                    torch.float32)


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


@pytest.mark.parametrize("impl", IMPLS)
def test_fp16_autocast_under_a_grad_scaler_keeps_small_probabilities(impl, device):
    # A confident model on 8 of 128 classes (each hidden state points at its target's weight row): the other 120
    # classes get small probabilities, and their weight gradient is made of nothing else. When the chunks held
    # softmax / n_valid in fp16, many of those flushed to zero before the GradScaler's scale (grad_output)
    # applied: rows of the weight gradient were off by up to 5.6%.
    n, v, c, scale = 256, 128, 16, 2.0 ** 15
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(v, c, generator=g)
    targets = torch.randint(0, 8, (n,), generator=g)
    hidden = 12 * weight[targets] / c + 0.3 * torch.randn(n, c, generator=g)
    hidden, weight, targets = hidden.to(device), weight.to(device), targets.to(device)
    with torch.autocast(device_type=device, dtype=torch.float16):
        _, got_h, got_w = _run(IMPLS[impl], hidden, weight, targets, grad_scale=scale, chunk_size=64)
        _, want_h, want_w = _run(linear_cross_entropy_reference, hidden, weight, targets, grad_scale=scale)
    assert got_w.dtype == torch.float32 and got_h.dtype == torch.float32  # the parameters' dtype
    row_error = (got_w - want_w).norm(dim=1) / want_w.norm(dim=1)  # (V,)
    assert row_error.max() < 2e-3, row_error.max()  # 3e-4 now: fp16 rounding of the matmul inputs
    torch.testing.assert_close(got_h, want_h, rtol=1e-2, atol=1e-3 * want_h.abs().max().item())


class _WeightSizedOutputs(TorchDispatchMode):
    """Counts the new tensors of the weight's size, (V, C) or (C, V), that aten ops return (views excluded)."""

    def __init__(self, v: int, c: int):
        super().__init__()
        self.shapes, self.count = {(v, c), (c, v)}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if all(r.alias_info is None for r in func._schema.returns):
            outs = out if isinstance(out, (tuple, list)) else (out,)
            self.count += sum(isinstance(t, torch.Tensor) and tuple(t.shape) in self.shapes for t in outs)
        return out


@pytest.mark.parametrize("impl", IMPLS)
def test_weight_sized_tensors_do_not_grow_with_the_chunks_under_autocast(impl):
    # Under autocast the weight is cast once per call, and each chunk adds its weight gradient into the fp32
    # accumulator in place: a training step makes the same three (V, C) tensors with 1 chunk or 8 (the bf16
    # weight, the fp32 accumulator, the scaled gradient). Each chunk used to cast the weight again and make a
    # (V, C) product before adding it: 4 tensors with 1 chunk, 18 with 8.
    n, v, c = 64, 97, 24
    if impl == "triton" and not runtime.interpreter_requested():
        pytest.skip("the Triton path runs on CPU tensors only in the interpreter")
    hidden, weight, targets = _case("cpu", n=n, c=c, v=v, ignored=(0,))
    counts = []
    for chunk_size in (n, n // 8):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        with _WeightSizedOutputs(v, c) as mode, torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            IMPLS[impl](h, w, targets, chunk_size=chunk_size).backward()
        counts.append(mode.count)
    assert counts == [3, 3]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gpu_autocast_with_a_vocabulary_wider_than_32768(dtype):
    # Compiled kernel, several 8192-column trips per row, and the fp32-output addmm of the weight gradient.
    n, c, v, scale = 96, 64, 2 * 32768 + 4321, 2.0 ** 15
    hidden, weight, targets = _case("cuda", n=n, c=c, v=v)
    with torch.autocast(device_type="cuda", dtype=dtype):
        got = _run(fused_linear_cross_entropy, hidden, weight, targets, grad_scale=scale, chunk_size=32)
        want = _run(linear_cross_entropy_reference, hidden, weight, targets, grad_scale=scale)
    assert got[1].dtype == got[2].dtype == torch.float32
    torch.testing.assert_close(got[0], want[0], atol=2e-2, rtol=5e-3)  # the logits themselves are 16-bit
    for a, b in zip(got[1:], want[1:]):
        torch.testing.assert_close(a, b, rtol=5e-2, atol=2e-2 * b.abs().max().item())
