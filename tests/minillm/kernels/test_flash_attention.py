"""FlashAttention-2: the tiled PyTorch reference and the Triton kernels against torch's SDPA, forward and backward.

SDPA is the ground truth: with an explicit bottom-right mask for causal attention (its is_causal aligns queries to
the start of the keys, see test_sdpa_is_causal_aligns_to_the_start), and enable_gqa for grouped K/V heads. Shapes
are odd on purpose: one query, lengths that are no multiple of the 16 x 16 tiles, Tq != Tk (a KV cache), head dims
that are no power of two. Each subtle step of the algorithm is broken once (the reference's `_bug`) to show that
the comparison notices. The Triton tests run in the interpreter on CPU (and, via `device`, compiled on a GPU).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from minillm.kernels import KernelUnavailableError
from minillm.kernels import flash_attention as fa
from minillm.kernels.flash_reference import (causal_mask_bottom_right, flash_attention_reference,
                                             flash_backward_reference, flash_forward_reference)

FP32 = dict(atol=1e-5, rtol=1e-5)
BF16 = dict(atol=3e-2, rtol=2e-2)
# name: (B, H, Hkv, Tq, Tk, D)
REFERENCE_CASES = {
    "square": (2, 4, 4, 37, 37, 16),
    "exact_tiles": (1, 2, 2, 32, 32, 16),
    "one_query": (1, 2, 2, 1, 37, 16),
    "kv_cache": (1, 2, 2, 5, 40, 8),
    "head_dim_24": (1, 2, 2, 33, 33, 24),
    "head_dim_8": (1, 2, 2, 20, 20, 8),
    "gqa": (1, 4, 2, 33, 33, 16),
    "mqa": (1, 4, 1, 33, 40, 16),
}
TRITON_CASES = {  # tiny: every program instance costs milliseconds in the interpreter
    "square": (1, 2, 2, 37, 37, 16),
    "exact_tiles": (1, 2, 2, 32, 32, 16),
    "one_query": (1, 2, 2, 1, 37, 16),
    "kv_cache": (1, 2, 2, 5, 40, 8),
    "head_dim_12": (1, 2, 2, 33, 33, 12),
    "mqa": (1, 2, 1, 33, 40, 16),
}


def _inputs(shape, dtype=torch.float32, device="cpu", seed=0):
    B, H, Hkv, Tq, Tk, D = shape
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, h, t, D, generator=g) for h, t in ((H, Tq), (Hkv, Tk), (Hkv, Tk)))
    do = torch.randn(B, H, Tq, D, generator=g)
    return [t.to(device=device, dtype=dtype) for t in (q, k, v, do)]


def _run(fn, q, k, v, do, **kwargs):
    """(out, dq, dk, dv) of fn(q, k, v, **kwargs) with upstream gradient do."""
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = fn(q, k, v, **kwargs)
    out.backward(do)
    return out.detach(), q.grad, k.grad, v.grad


def _sdpa(q, k, v, causal=True):
    """torch's SDPA in fp32, with the bottom-right causal mask flash attention uses."""
    mask = causal_mask_bottom_right(q.shape[2], k.shape[2], q.device) if causal else None
    return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, enable_gqa=True)


def _assert_matches(got, want, tol, what=""):
    for g, w, name in zip(got, want, ("out", "dq", "dk", "dv")):
        assert g.shape == w.shape, f"{what} {name}"
        torch.testing.assert_close(g.float(), w.float(), **tol, msg=lambda m: f"{what} {name}: {m}")


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("case", REFERENCE_CASES)
def test_reference_matches_sdpa(case, causal):
    q, k, v, do = _inputs(REFERENCE_CASES[case])
    got = _run(flash_attention_reference, q, k, v, do, causal=causal, block_m=16, block_n=16)
    _assert_matches(got, _run(_sdpa, q, k, v, do, causal=causal), FP32, case)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("case", TRITON_CASES)
def test_triton_matches_sdpa(case, causal, device):
    q, k, v, do = _inputs(TRITON_CASES[case], device=device)
    got = _run(fa.flash_attention, q, k, v, do, causal=causal, block_m=16, block_n=16)
    _assert_matches(got, _run(_sdpa, q, k, v, do, causal=causal), FP32, case)


def test_triton_bf16_matches_sdpa_at_bf16_tolerance(device):
    # In the interpreter tiles are cast to fp32; on a GPU bf16 products are summed in fp32. Outputs are bf16.
    q, k, v, do = _inputs((1, 2, 1, 33, 40, 16), torch.bfloat16, device)
    got = _run(fa.flash_attention, q, k, v, do, block_m=16, block_n=16)
    assert all(t.dtype == torch.bfloat16 for t in got)
    _assert_matches(got, _run(_sdpa, q, k, v, do), BF16, "bf16")


def test_half_precision_tiles_as_on_a_gpu(monkeypatch, device):
    # On a GPU half-precision tiles go into tl.dot as they are (P and dS rounded to the inputs' dtype, products
    # summed in fp32), where the interpreter casts them to fp32. With fp16, whose numpy arithmetic is right (bf16's
    # is not), the interpreter can run the GPU's path too.
    if device == "cpu":
        monkeypatch.setattr(fa, "_upcast", lambda: False)
    q, k, v, do = _inputs((1, 2, 1, 33, 40, 16), torch.float16, device)
    got = _run(fa.flash_attention, q, k, v, do, block_m=16, block_n=16)
    assert all(t.dtype == torch.float16 for t in got)
    _assert_matches(got, _run(_sdpa, q, k, v, do), dict(atol=3e-3, rtol=3e-3), "fp16")


@pytest.mark.parametrize("block_m, block_n",
                         sorted({c[:2] for cfg in fa.GPU_CONFIGS.values() for c in cfg.values()}))
def test_triton_every_gpu_tile_shape_is_exact(block_m, block_n, device):
    # The GPU configs' tiles (square and not), run where this test runs: 130 queries over 150 keys crosses
    # tile edges and the diagonal for each of them, with two query heads per K/V head.
    q, k, v, do = _inputs((1, 2, 1, 130, 150, 16), device=device)
    got = _run(fa.flash_attention, q, k, v, do, block_m=block_m, block_n=block_n)
    _assert_matches(got, _run(_sdpa, q, k, v, do), FP32, f"{block_m}x{block_n}")


def test_triton_default_tiles_and_strided_inputs(device):
    # The model's q, k, v are transposed views of (B, T, heads, D), and out.sum()'s gradient is an expanded
    # tensor (all strides 0): the kernels take both, with the default tiles of this device.
    B, T, H, D = 1, 45, 2, 16
    x = torch.randn(B, T, 3 * H, D, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_()
    q, k, v = (t.transpose(1, 2) for t in x.split(H, dim=2))  # (B, H, T, D) views, unit stride in D
    assert q.stride(-1) == 1 and not q.is_contiguous()
    out = fa.flash_attention(q, k, v)
    out.sum().backward()
    got = x.grad.clone()
    x.grad = None
    want = _sdpa(q, k, v)
    want.sum().backward()
    torch.testing.assert_close(out, want, **FP32)
    torch.testing.assert_close(got, x.grad, **FP32)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_lse_is_the_log_sum_exp_of_each_query_row(causal, device):
    q, k, v, _ = _inputs((1, 4, 2, 21, 37, 16), device=device)
    s = q @ k.repeat_interleave(2, dim=1).transpose(-1, -2) / 4.0  # (B, H, Tq, Tk), scale 1/sqrt(16)
    if causal:
        s = s.masked_fill(~causal_mask_bottom_right(21, 37, device), float("-inf"))
    want = torch.logsumexp(s, dim=-1)  # (B, H, Tq)
    for fn in (flash_forward_reference, fa.flash_attention_forward):
        _, lse = fn(q, k, v, causal, None, 16, 16)
        assert lse.shape == (1, 4, 21) and lse.dtype == torch.float32, fn.__name__
        torch.testing.assert_close(lse, want, **FP32)


def test_sdpa_is_causal_aligns_to_the_start_not_the_end():
    # Why the tests pass SDPA an explicit mask: with Tq < Tk, is_causal lets query i see keys j <= i (tril),
    # whereas after a KV cache of Tk - Tq tokens query i is token i + Tk - Tq and sees keys j <= i + Tk - Tq.
    q, k, v, _ = _inputs((1, 2, 2, 5, 40, 8))
    ours = flash_attention_reference(q, k, v, causal=True, block_m=16, block_n=16)
    top_left = torch.ones(5, 40, dtype=torch.bool).tril()
    sdpa_causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(sdpa_causal, F.scaled_dot_product_attention(q, k, v, attn_mask=top_left))
    assert not torch.allclose(ours, sdpa_causal, atol=1e-2)
    torch.testing.assert_close(ours, _sdpa(q, k, v), **FP32)
    # with Tq == Tk the two alignments are the same mask
    assert torch.equal(causal_mask_bottom_right(7, 7), torch.ones(7, 7, dtype=torch.bool).tril())


@pytest.mark.parametrize("bug, intact", [
    ("no_rescale", set()),  # l sums terms relative to different maxima: the output is off, and so all gradients
    ("causal_skip", set()),  # the diagonal tile is lost (for the first queries: key 0, their only key)
    ("no_delta", {"out", "dv"}),  # dS = P * dP: neither the forward nor dV = P^T dO uses D
])
def test_the_comparison_catches_each_bug_in_the_reference(bug, intact):
    q, k, v, do = _inputs((1, 4, 2, 40, 40, 16))
    want = _run(_sdpa, q, k, v, do)
    got = _run(flash_attention_reference, q, k, v, do, block_m=16, block_n=16, _bug=bug)
    with pytest.raises(AssertionError):
        _assert_matches(got, want, FP32, bug)
    for g, w, name in zip(got, want, ("out", "dq", "dk", "dv")):
        assert torch.allclose(g, w, **FP32) == (name in intact), f"{bug}: {name}"


class _LargestTensor(TorchFunctionMode):
    """Records the largest number of elements of any tensor a torch function returns while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_reference_never_holds_more_than_one_tile_of_scores():
    B, H, T, D, tile = 1, 2, 64, 8, 16
    q, k, v, do = _inputs((B, H, H, T, T, D))
    one_tile = B * H * tile * tile  # (B, H, BLOCK_M, BLOCK_N) scores
    bound = max(q.numel(), one_tile)  # inputs (B, H, T, D) and one tile; the full S would be B * H * T * T
    assert bound * 4 <= B * H * T * T
    with _LargestTensor() as seen:
        o, lse = flash_forward_reference(q, k, v, True, None, tile, tile)
        flash_backward_reference(do, q, k, v, o, lse, True, None, tile, tile)
    assert seen.largest <= bound
    with _LargestTensor() as naive:  # the counter does see a materialised attention matrix
        torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
    assert naive.largest == B * H * T * T


def test_only_q_k_v_out_and_lse_are_saved_for_backward(device):
    q, k, v, _ = _inputs((1, 2, 1, 40, 40, 16), device=device)
    q.requires_grad_()
    for out in (flash_attention_reference(q, k, v, block_m=16, block_n=16),
                fa.flash_attention(q, k, v, block_m=16, block_n=16)):
        shapes = sorted(tuple(t.shape) for t in out.grad_fn.saved_tensors)
        assert shapes == sorted([(1, 2, 40, 16), (1, 1, 40, 16), (1, 1, 40, 16), (1, 2, 40, 16), (1, 2, 40)])


def test_no_queries_gives_empty_output_and_zero_key_gradients(device):
    q, k, v, _ = _inputs((1, 2, 2, 0, 20, 16), device=device)
    got = _run(fa.flash_attention, q, k, v, torch.empty(1, 2, 0, 16, device=device), causal=False)
    assert got[0].shape == (1, 2, 0, 16) and got[2].eq(0).all() and got[3].eq(0).all()


@pytest.mark.parametrize("fn", [flash_attention_reference, fa.flash_attention], ids=["reference", "triton"])
@pytest.mark.parametrize("shape, kwargs, error, match", [
    ((1, 2, 2, 8, 8, 129), {}, ValueError, "head_dim=129"),
    ((1, 3, 2, 8, 8, 16), {}, ValueError, "multiple of n_kv_head"),
    ((1, 2, 2, 9, 8, 16), {}, ValueError, "at least as many keys"),
    ((1, 2, 2, 8, 0, 16), {"causal": False}, ValueError, "at least one key"),
    ((1, 2, 2, 8, 8, 16), {"scale": -1.0}, ValueError, "positive"),
])
def test_clear_errors(fn, shape, kwargs, error, match):
    q, k, v, _ = _inputs(shape)
    with pytest.raises(error, match=match):
        fn(q, k, v, **kwargs)


def test_clear_errors_for_layouts_dtypes_and_devices():
    q, k, v, _ = _inputs((1, 2, 2, 8, 8, 16))
    with pytest.raises(ValueError, match=r"\(B, heads, T, head_dim\)"):
        fa.flash_attention(q[0], k[0], v[0])
    with pytest.raises(TypeError, match="share one dtype"):
        fa.flash_attention(q, k.double(), v)
    with pytest.raises(TypeError, match="take torch.float32"):
        fa.flash_attention(q.double(), k.double(), v.double())
    torch.testing.assert_close(flash_attention_reference(q.double(), k.double(), v.double()),
                               _sdpa(q, k, v).double(), **FP32)  # the reference takes any float dtype
    with pytest.raises(ValueError, match="one device"):
        fa.flash_attention(q, k.to("meta"), v)
    with pytest.raises(ValueError, match="same shape"):
        flash_attention_reference(q, k, v[:, :, :4])
    with pytest.raises(ValueError, match="power of two >= 16"):
        fa.flash_attention(q, k, v, block_m=24)
    with pytest.raises(ValueError, match="block_n=0"):
        flash_attention_reference(q, k, v, block_n=0)


def test_cpu_tensor_in_compiled_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(fa, "JIT_MODE", "compiled")
    q, k, v, _ = _inputs((1, 2, 2, 8, 8, 16))
    with pytest.raises(KernelUnavailableError, match="TRITON_INTERPRET=1"):
        fa.flash_attention(q, k, v)


def test_gpu_configs_are_fixed_per_dtype_and_head_dim(monkeypatch):
    # No autotuning (it fails under the interpreter): one config per kernel, dtype and head-dim size.
    monkeypatch.setattr(fa, "JIT_MODE", "compiled")
    cuda = torch.device("cuda")
    assert fa.launch_config("fwd", torch.bfloat16, 128, cuda) == fa.GPU_CONFIGS["fwd"][("half", 128)]
    assert fa.launch_config("dkdv", torch.float16, 40, cuda) == fa.GPU_CONFIGS["dkdv"][("half", 64)]
    assert fa.launch_config("dq", torch.float32, 96, cuda) == fa.GPU_CONFIGS["dq"][("fp32", 128)]
    assert fa.launch_config("fwd", torch.float32, 64, cuda, block_m=16)[:2] == (16, 32)
    monkeypatch.setattr(fa, "JIT_MODE", "interpreter")
    assert fa.launch_config("fwd", torch.bfloat16, 128, cuda) == fa.INTERPRETER_CONFIG
    assert fa.head_block(8) == 16 and fa.head_block(24) == 32 and fa.head_block(128) == 128
