"""The online-softmax cross-entropy kernel against F.cross_entropy, loss and gradient."""
from __future__ import annotations

import sys

import pytest
import torch

from minillm.kernels import KernelUnavailableError
from minillm.kernels.cross_entropy import (MAX_BLOCK_INTERPRETER, count_valid, cross_entropy, cross_entropy_forward,
                                           cross_entropy_reference, launch_config)

TOL = {torch.float32: dict(atol=1e-6, rtol=1e-5), torch.bfloat16: dict(atol=1e-2, rtol=2e-2)}
# (rows, vocab, positions to ignore): V not a power of two, one class, one row, a row per block edge
CASES = [(7, 300, [2, 5]), (1, 97, []), (5, 1, [0]), (16, 129, [0, 15])]


def _both(logits, targets, dtype, ignore_index=-100, label_smoothing=0.0, grad_output=None):
    out = {}
    for name, fn in (("kernel", cross_entropy), ("reference", cross_entropy_reference)):
        x = logits.clone().to(dtype).requires_grad_()
        loss = fn(x, targets, ignore_index, label_smoothing)
        loss.backward(grad_output)
        out[name] = (loss.detach(), x.grad)
    return out


def _case(n, v, ignored, device, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, v, generator=g) * scale).to(device)
    targets = torch.randint(0, v, (n,), generator=g)
    targets[ignored] = -100
    return logits, targets.to(device)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,v,ignored", CASES)
def test_loss_and_gradient_match_torch(n, v, ignored, dtype, label_smoothing, device):
    logits, targets = _case(n, v, ignored, device)
    out = _both(logits, targets, dtype, label_smoothing=label_smoothing)
    (loss, grad), (want_loss, want_grad) = out["kernel"], out["reference"]
    assert loss.dtype == torch.float32 and grad.dtype == dtype and grad.shape == (n, v)
    torch.testing.assert_close(loss, want_loss, atol=1e-6, rtol=1e-5)  # fp32 inside, whatever the input dtype
    torch.testing.assert_close(grad.float(), want_grad.float(), **TOL[dtype])
    assert grad[ignored].eq(0).all()


def test_loop_over_many_blocks_and_strided_rows(device):
    # block=16 with V=97: seven trips, the last one 1 column wide; logits are a slice of a wider tensor
    wide = torch.randn(6, 120, device=device) * 4
    logits, targets = wide[:, :97], torch.tensor([0, 96, 15, 16, -100, 50], device=device)
    n_valid = count_valid(targets, -100)
    grad = torch.empty(6, 97, device=device)
    loss_sum, lse = cross_entropy_forward(logits, targets, -100, 0.1, grad, block=16)
    x = logits.clone().requires_grad_()
    want = cross_entropy_reference(x, targets, -100, 0.1)
    want.backward()
    torch.testing.assert_close(loss_sum / n_valid, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad / n_valid, x.grad, atol=1e-7, rtol=1e-5)  # the buffer holds d(sum)/dx
    torch.testing.assert_close(lse, torch.logsumexp(logits, dim=-1), atol=1e-6, rtol=1e-6)  # every row


def test_in_place_gradient_overwrites_the_logits(device):
    logits, targets = _case(4, 300, [1], device)
    separate = torch.empty_like(logits)
    loss_a, lse_a = cross_entropy_forward(logits, targets, -100, 0.0, separate)
    buf = logits.clone()
    loss_b, lse_b = cross_entropy_forward(buf, targets, -100, 0.0, buf)
    torch.testing.assert_close(buf, separate, atol=0, rtol=0)
    assert loss_a.item() == loss_b.item() and torch.equal(lse_a, lse_b)
    loss_c, _ = cross_entropy_forward(logits, targets, -100, 0.0, None)  # loss only: no gradient pass
    assert loss_c.item() == loss_a.item()


def test_every_row_ignored_gives_zero_not_nan(device):
    logits = torch.randn(3, 50, device=device, requires_grad=True)
    targets = torch.full((3,), -100, device=device)
    loss = cross_entropy(logits, targets)
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.eq(0).all()
    assert cross_entropy_reference(logits, targets).isnan()  # what torch does, and what we avoid


def test_empty_input(device):
    logits = torch.randn(0, 40, device=device, requires_grad=True)
    loss = cross_entropy(logits, torch.zeros(0, dtype=torch.long, device=device))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.shape == (0, 40)


def test_huge_logits_do_not_overflow(device):
    # exp(1e4) overflows fp32: only the running-max rescaling keeps the sums finite. The maximum sits in the
    # last block, so d must be rescaled after the first blocks.
    logits = torch.full((3, 300), -1e4, device=device)
    logits[0, 299], logits[1, 5], logits[2, 200:] = 1e4, 1e4, 9999.0
    targets = torch.tensor([299, 7, 250], device=device)
    (loss, grad), (want, want_grad) = _both(logits, targets, torch.float32).values()
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(loss, want, atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(grad, want_grad, atol=1e-6, rtol=1e-5)


def test_grad_output_scales_and_a_retained_graph_can_backward_twice(device):
    logits, targets = _case(5, 97, [3], device)
    x = logits.clone().requires_grad_()
    (cross_entropy(x, targets) * 2.5).backward()
    y = logits.clone().requires_grad_()
    cross_entropy_reference(y, targets).backward()
    torch.testing.assert_close(x.grad, 2.5 * y.grad, atol=1e-6, rtol=1e-5)

    z = logits.clone().requires_grad_()
    loss = cross_entropy(z, targets)
    loss.backward(retain_graph=True)
    first = z.grad.clone()
    (loss * 3).backward()  # the saved gradient was not scaled in place: 1x + 3x
    torch.testing.assert_close(z.grad, 4 * first, atol=1e-6, rtol=1e-5)


def test_backward_does_not_read_the_device(device, no_host_sync):
    # Backward used to skip its multiply when torch.equal(grad_output, 1): a host sync every step (and a graph
    # break under torch.compile). Now it always multiplies; on a GPU, CUDA's sync check must stay silent.
    logits, targets = _case(5, 97, [3], device)
    x = logits.clone().requires_grad_()
    loss = cross_entropy(x, targets)
    with no_host_sync(device):
        loss.backward()
    y = logits.clone().requires_grad_()
    cross_entropy_reference(y, targets).backward()
    torch.testing.assert_close(x.grad, y.grad, atol=1e-7, rtol=1e-5)


def test_no_grad_skips_the_gradient(device):
    logits, targets = _case(4, 300, [], device)
    x = logits.clone().requires_grad_()
    with torch.no_grad():
        loss = cross_entropy(x, targets)
    torch.testing.assert_close(loss, cross_entropy_reference(logits, targets), atol=1e-6, rtol=1e-5)
    assert not loss.requires_grad


def test_ignore_index_may_be_a_class(device):
    logits, _ = _case(4, 30, [], device)
    targets = torch.tensor([0, 3, 0, 29], device=device)
    (loss, grad), (want, want_grad) = _both(logits, targets, torch.float32, ignore_index=0).values()
    torch.testing.assert_close(loss, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad, want_grad, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("logits,targets,error,match", [
    ((2, 3, 10), [0, 1], ValueError, "shape \\(N, V\\)"),
    ((4, 10), [0, 1, 2], ValueError, "targets of shape \\(4,\\)"),
    ((4, 0), [0, 1, 2, 3], ValueError, "at least one class"),
])
def test_bad_input_is_a_clear_error(logits, targets, error, match, device):
    with pytest.raises(error, match=match):
        cross_entropy(torch.randn(logits, device=device), torch.tensor(targets, device=device))


@pytest.mark.parametrize("targets,match", [
    ([0, 1, 10, 2], r"\[0, 10\).*found 10 at position 2"),
    ([0, -1, 3, 2], r"found -1 at position 1"),
])
def test_out_of_range_target_is_a_clear_error_on_cpu(targets, match, device):
    if device == "cuda":  # check_inputs skips it there on purpose: reading the targets back would sync every step
        pytest.skip("the target range is checked on CPU tensors only (check_inputs)")
    with pytest.raises(ValueError, match=match):
        cross_entropy(torch.randn(4, 10, device=device), torch.tensor(targets, device=device))


def test_bad_dtype_or_smoothing_is_a_clear_error(device):
    x, t = torch.randn(3, 8, device=device), torch.tensor([1, 2, 3], device=device)
    with pytest.raises(TypeError, match="int64 targets"):
        cross_entropy(x, t.int())
    with pytest.raises(TypeError, match="floating-point logits"):
        cross_entropy(x.long(), t)
    with pytest.raises(ValueError, match=r"label_smoothing=1.0 must be a number in \[0, 1\)"):
        cross_entropy(x, t, label_smoothing=1.0)


def test_cpu_tensor_in_compiled_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sys.modules[cross_entropy.__module__], "JIT_MODE", "compiled")
    with pytest.raises(KernelUnavailableError, match="kernels='torch'"):
        cross_entropy(torch.randn(2, 8), torch.tensor([1, 2]))


# fp16 under a GradScaler: the loss is multiplied by the scale, so backward gets grad_output = scale. Torch's own
# fp16 path (autocast runs F.cross_entropy in fp32) rounds scale / n_valid * (softmax - onehot) to fp16 once.
@pytest.mark.parametrize("scale", [2.0 ** 15, 2.0 ** 16])  # 2^16: GradScaler's first scale, beyond fp16's range
def test_fp16_gradient_under_a_grad_scaler_keeps_small_probabilities(scale, device):
    # 250 scored rows of 64 classes with spread logits: many softmax_j / n_valid fall below fp16's smallest
    # number (6e-8). The kernel once stored the gradient of the mean in fp16, flushing 1735 of these 16000
    # values to zero before the scale could lift them (and grad_output = 2^16 became inf in fp16).
    n, v = 256, 64
    logits, targets = _case(n, v, list(range(6)), device)
    x = logits.half().requires_grad_()
    (cross_entropy(x, targets) * scale).backward()
    y = logits.half().float().requires_grad_()
    (cross_entropy_reference(y, targets) * scale).backward()
    want = y.grad.half()
    factor = scale / (n - 6)
    # The kernel stores softmax_j - [j == t] in fp16 (spacing 2^-24 below 6e-5) and rounds again after the
    # multiply by factor: two fp16 roundings, and one fp16 spacing of the stored value, times factor.
    torch.testing.assert_close(x.grad, want, rtol=2 ** -9, atol=factor * 2 ** -24)
    assert not ((x.grad == 0) & (want.abs() > factor * 2 ** -24)).any()  # nothing torch keeps is flushed


def test_gpu_block_is_capped_so_wide_vocabularies_take_several_trips(monkeypatch):
    # 32768 columns over 32 warps spilled registers on sm_90a; 8192 over 16 warps does not. Pure arithmetic:
    # the launch configuration a CUDA tensor would get in compiled mode, checked without a GPU.
    module = sys.modules[cross_entropy.__module__]
    monkeypatch.setattr(module, "JIT_MODE", "compiled")
    cuda = torch.device("cuda")
    assert launch_config(50304, cuda) == (8192, 16)  # GPT-2: 7 trips per pass
    assert launch_config(128256, cuda) == (8192, 16)  # Llama 3: 16 trips
    assert launch_config(8192, cuda) == (8192, 16)
    assert launch_config(3000, cuda) == (4096, 8)  # a narrow vocabulary: the whole row in one trip
    assert launch_config(97, cuda) == (128, 4)
    assert launch_config(50304, torch.device("cpu"))[0] == MAX_BLOCK_INTERPRETER
    monkeypatch.setattr(module, "JIT_MODE", "interpreter")
    assert launch_config(50304, cuda)[0] == MAX_BLOCK_INTERPRETER


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_vocabulary_wider_than_the_default_block_loops(dtype, device):
    # Under the interpreter V = 4 blocks + 5 columns: the targets sit in the first block, on a block edge and in
    # the partial last block, so the running max, the target pick and the gradient cross every trip boundary.
    v = 4 * MAX_BLOCK_INTERPRETER + 5
    logits, _ = _case(4, v, [], device)
    targets = torch.tensor([0, MAX_BLOCK_INTERPRETER, v - 1, 2 * MAX_BLOCK_INTERPRETER - 1], device=device)
    (loss, grad), (want, want_grad) = _both(logits, targets, dtype, label_smoothing=0.1).values()
    torch.testing.assert_close(loss, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad.float(), want_grad.float(), **TOL[dtype])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gpu_vocabulary_wider_than_32768_takes_several_trips(dtype):
    # V = 2 * 32768 + 4321: 9 trips of the 8192-column block per pass (3 of the old 32768 one), compiled for the
    # GPU. fp16 runs under a GradScaler-like grad_output, as in the fp16 test above.
    n, v, scale = 64, 2 * 32768 + 4321, 2.0 ** 15
    logits, targets = _case(n, v, [3], "cuda")
    targets[:3] = torch.tensor([0, 8192, v - 1], device="cuda")
    grad_output = torch.tensor(scale, device="cuda") if dtype == torch.float16 else None
    (loss, grad), (want, want_grad) = _both(logits, targets, dtype, grad_output=grad_output).values()
    torch.testing.assert_close(loss, want, atol=1e-5, rtol=1e-5)
    tol = dict(rtol=2 ** -9, atol=scale / (n - 1) * 2 ** -24) if dtype == torch.float16 else TOL[dtype]
    torch.testing.assert_close(grad.float(), want_grad.float(), **tol)
    assert grad[3].eq(0).all()
