"""FlashAttention's Triton kernels compiled for a CUDA GPU at realistic lengths (T ~ 1k), forward and backward.

Marked `gpu`: skipped where there is no CUDA device (tests/conftest.py). The tiny, odd-shaped cases also run on
the GPU through test_flash_attention.py's `device` fixture; these add the lengths, head dims and fixed launch
configs of real use. The criterion is flash-attn's own: against the exact answer (SDPA's math in fp64), our error
may be at most twice SDPA's own error in the same dtype, plus a small absolute margin.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton", reason="Triton is not installed (it is a Linux-only dependency)")

from minillm.kernels.flash_attention import flash_attention  # noqa: E402
from minillm.kernels.flash_reference import causal_mask_bottom_right  # noqa: E402
from minillm.model.sparse import expand_block_layout, fixed_block_layout, strided_block_layout  # noqa: E402

pytestmark = pytest.mark.gpu

# name: (B, H, Hkv, Tq, Tk, D)
CASES = {
    "mha_d64": (2, 8, 8, 1024, 1024, 64),
    "gqa_d128": (2, 8, 2, 1024, 1024, 128),
    "mqa_odd_t_d96": (1, 8, 1, 1000, 1000, 96),
    "kv_cache": (1, 4, 2, 128, 1037, 128),
    "one_query": (1, 4, 2, 1, 1024, 64),
}
MARGIN = {torch.float32: 1e-5, torch.bfloat16: 1e-3}


def _inputs(shape, dtype, seed=0):
    B, H, Hkv, Tq, Tk, D = shape
    g = torch.Generator(device="cuda").manual_seed(seed)
    make = lambda *s: torch.randn(*s, generator=g, device="cuda").to(dtype)  # noqa: E731
    return make(B, H, Tq, D), make(B, Hkv, Tk, D), make(B, Hkv, Tk, D), make(B, H, Tq, D)


def _grads(fn, q, k, v, do):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = fn(q, k, v)
    out.backward(do)
    return out.detach(), q.grad, k.grad, v.grad


def _sdpa(causal, dtype=None):
    """SDPA (in `dtype`, default the inputs') with flash attention's bottom-right causal alignment."""

    def fn(q, k, v):
        Tq, Tk = q.shape[2], k.shape[2]
        if dtype is not None:
            q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        if not causal:
            return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        if Tq == Tk:  # the two alignments agree: let SDPA pick its fastest (flash) backend
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask_bottom_right(Tq, Tk, q.device),
                                              enable_gqa=True)

    return fn


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", CASES)
def test_matches_sdpa_at_length_1k(case, dtype, causal):
    q, k, v, do = _inputs(CASES[case], dtype)
    exact = _grads(_sdpa(causal, torch.float64), q, k, v, do.double())
    sdpa = _grads(_sdpa(causal), q, k, v, do)
    ours = _grads(lambda *a: flash_attention(*a, causal=causal), q, k, v, do)
    for name, o, s, e in zip(("out", "dq", "dk", "dv"), ours, sdpa, exact):
        assert o.dtype == dtype and o.shape == e.shape, name
        err, sdpa_err = (o.double() - e).abs().max().item(), (s.double() - e).abs().max().item()
        assert err <= 2 * sdpa_err + MARGIN[dtype], f"{case} {name}: error {err:.2e}, SDPA's {sdpa_err:.2e}"
    if dtype == torch.float32:
        torch.testing.assert_close(ours[0].double(), exact[0], atol=1e-5, rtol=1e-5)


def test_memory_is_linear_in_length():
    # At T = 8192 one (T, T) bf16 attention matrix per head would take 1 GiB; forward + backward needs only the
    # inputs, outputs, gradients and two floats per query row.
    B, H, T, D = 1, 8, 8192, 64
    q, k, v, do = _inputs((B, H, H, T, T, D), torch.bfloat16)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    flash_attention(q, k, v).backward(do)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    one_matrix = B * H * T * T * 2
    assert peak < 8 * q.numel() * q.element_size() < one_matrix / 8, f"peak {peak / 2**20:.0f} MiB"


# ---- block-sparse (block_layout) at realistic lengths, with the default launch configs ------------------------

SPARSE_BLOCK = 128  # a multiple of every GPU tile (test_flash_blocksparse.py checks GPU_CONFIGS)
# name: (B, H, Hkv, Tq, Tk, D, layout)
SPARSE_CASES = {
    "strided_gqa_d128": (2, 8, 2, 1024, 1024, 128, "strided"),
    "fixed_odd_t_d64": (1, 4, 4, 1000, 1000, 64, "fixed"),
    "kv_cache_per_head_d96": (1, 4, 2, 100, 1037, 96, "per_head"),  # queries 937..1036: tile 0 starts mid-tile
}


def _block_layout(kind, n, H):
    if kind == "strided":
        return strided_block_layout(n, 3)
    if kind == "fixed":
        return fixed_block_layout(n, 3)
    return torch.stack([strided_block_layout(n, 3) if h % 2 else fixed_block_layout(n, 2) for h in range(H)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", SPARSE_CASES)
def test_block_sparse_matches_sdpa_at_length_1k(case, dtype):
    B, H, Hkv, Tq, Tk, D, kind = SPARSE_CASES[case]
    q, k, v, do = _inputs((B, H, Hkv, Tq, Tk, D), dtype)
    layout = _block_layout(kind, -(-Tk // SPARSE_BLOCK), H).cuda()
    mask = expand_block_layout(layout, SPARSE_BLOCK, Tq, Tk) & causal_mask_bottom_right(Tq, Tk, "cuda")
    assert mask.any(dim=-1).all()  # every query sees its own block: SDPA's backends all agree then

    def sdpa(dt=None):
        return lambda q, k, v: F.scaled_dot_product_attention(
            *(t.to(dt) if dt else t for t in (q, k, v)), attn_mask=mask, enable_gqa=True)

    exact = _grads(sdpa(torch.float64), q, k, v, do.double())
    ref = _grads(sdpa(), q, k, v, do)
    ours = _grads(lambda *a: flash_attention(*a, block_layout=layout, sparse_block=SPARSE_BLOCK), q, k, v, do)
    for name, o, s, e in zip(("out", "dq", "dk", "dv"), ours, ref, exact):
        assert o.dtype == dtype and o.shape == e.shape, name
        err, sdpa_err = (o.double() - e).abs().max().item(), (s.double() - e).abs().max().item()
        assert err <= 2 * sdpa_err + MARGIN[dtype], f"{case} {name}: error {err:.2e}, SDPA's {sdpa_err:.2e}"
