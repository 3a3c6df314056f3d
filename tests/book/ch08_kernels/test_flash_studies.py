"""Chapter 08, section 7: the FlashAttention cost model (book.ch08_kernels.studies_flash) against counts worked out
by hand, and the online-softmax trace against torch.softmax."""
from __future__ import annotations

import pytest
import torch

from book.ch08_kernels import studies as rl
from book.ch08_kernels import studies_flash as sf


def test_flash_forward_bytes_and_flops_by_hand():
    t, d = 1024, 128
    c = sf.attention_cost("flash", t, head_dim=d, heads=1, batch=1, causal=False, phase="forward")
    # Q in, O out (bf16), one fp32 LSE per row; K and V read again by each of the 8 query tiles of 128
    assert c.bytes == (t * d * 2) * 2 + t * 4 + 8 * (2 * t * d * 2)
    assert c.flops == t * t * (4 * d + sf.FWD_ELEMENTWISE)
    cached = sf.attention_cost("flash", t, head_dim=d, heads=1, batch=1, causal=False, phase="forward", cached=True)
    assert cached.bytes == 4 * t * d * 2 + t * 4 and cached.flops == c.flops  # K, V read once; same arithmetic


def test_materialised_passes_by_hand():
    t, d, b, n = 64, 16, 2, 3  # n = batch x heads
    fwd = sf.attention_cost("materialised", t, head_dim=d, heads=3, batch=1, dtype_bytes=b, phase="forward")
    assert [p.name.split(" ")[0] for p in fwd.passes] == ["S", "P", "O"]
    # S: read Q, K, write S; softmax: read S, write P; PV: read P and V, write O
    assert fwd.bytes == n * ((2 * t * d + t * t) + 2 * t * t + (t * t + 2 * t * d)) * b
    assert fwd.flops == n * (4 * t * t * d + 5 * t * t)
    train = sf.attention_cost("materialised", t, head_dim=d, heads=3, batch=1, dtype_bytes=b)
    assert len(train.passes) == 3 + 5
    # backward, (T, T): P read (dV), dP written, P and dP read and dS written, dS read twice (dQ, dK): 7 T^2;
    # (T, D): dO read and dV written, dO and V read, K read and dQ written, Q read and dK written: 8 T D
    assert train.bytes - fwd.bytes == n * (7 * t * t + 8 * t * d) * b
    assert train.largest_buffer == fwd.largest_buffer == n * t * t * b


def test_causal_tiles_by_hand():
    # 256 queries in tiles of 128 over keys in tiles of 64: the first tile sees keys 0..127, the second all 256
    assert sf.query_tiles(256, 256, 128, 64, causal=True) == [(128, 128), (128, 256)]
    assert sf.query_tiles(256, 256, 128, 64, causal=False) == [(128, 256), (128, 256)]
    # ragged: 100 queries in tiles of 64 over keys in tiles of 32 (rounded up to whole tiles, at most 4 of them)
    assert sf.query_tiles(100, 100, 64, 32, causal=True) == [(64, 64), (36, 128)]
    # one query over 37 cached keys sees them all (queries sit at the end of the keys)
    assert sf.query_tiles(1, 37, 16, 16, causal=True) == [(1, 48)]
    # dK/dV: key tile 0 is seen by every query tile, key tile 1 (keys 64..127) from query 64 on
    assert sf.key_tiles(256, 256, 64, 64, causal=True) == [(64, 256), (64, 192), (64, 128), (64, 64)]
    assert sf.key_tiles(256, 256, 64, 64, causal=False) == [(64, 256)] * 4


def test_causal_flash_skips_about_half_the_tiles():
    full = sf.attention_cost("flash", 4096, causal=False)
    causal = sf.attention_cost("flash", 4096, causal=True)
    assert 0.5 < causal.flops / full.flops < 0.56  # half the tiles, plus the diagonal ones
    mat = sf.attention_cost("materialised", 4096, causal=True)
    assert mat.flops == sf.attention_cost("materialised", 4096, causal=False).flops  # computes everything


def test_intensity_materialised_is_stuck_flash_cached_grows():
    d, b = 128, 2
    mat = [sf.attention_cost("materialised", t, head_dim=d).intensity for t in (1024, 4096, 65536)]
    assert mat[-1] == pytest.approx((12 * d + 9) / (11 * b), rel=0.01)  # 12 T^2 d FLOPs on 11 T^2 b bytes
    assert max(mat) < rl.DEVICES["H100 SXM"].ridge / 4
    cached = [sf.attention_cost("flash", t, cached=True).intensity for t in (1024, 4096, 16384)]
    assert cached[1] / cached[0] == pytest.approx(4, rel=0.1) and cached[2] > 10 * rl.DEVICES["H100 SXM"].ridge
    uncached = [sf.attention_cost("flash", t).intensity for t in (1024, 16384)]
    assert uncached[0] > mat[0] and uncached[1] < 2 * uncached[0]  # set by the tiles, not by T


def test_flash_tiles_are_the_kernels():
    """The model counts re-reads with the tiles the Triton kernels use on a GPU in bf16 at head dim 128."""
    pytest.importorskip("triton")
    from minillm.kernels.flash_attention import GPU_CONFIGS

    assert sf.FLASH_TILES == {name: cfg[("half", 128)][:2] for name, cfg in GPU_CONFIGS.items()}


def test_attention_table_and_chapter_numbers_agree():
    rows = sf.attention_table("H100 SXM", (1024, 4096), **{k: v for k, v in sf.LLAMA_8B_ATTENTION.items()
                                                             if k != "seq_len"})
    assert [(r["T"], r["impl"]) for r in rows][:3] == [(1024, label) for label in sf.IMPL_LABELS.values()]
    nums = sf.chapter_numbers()
    for r in rows:
        key = next(k for k, label in sf.IMPL_LABELS.items() if label == r["impl"])
        assert nums[f"t{r['T']}"]["intensity"][key] == pytest.approx(r["FLOP/byte"])
        assert nums[f"t{r['T']}"]["ms"][key] == pytest.approx(r["predicted ms"])
    t1024 = nums["t1024"]
    assert t1024["scores_gb"] == pytest.approx(8 * 32 * 1024 * 1024 * 2 / 1e9)  # one layer's bf16 scores
    assert t1024["speedup"]["materialised"] == 1.0 and t1024["speedup"]["flash_cached"] > t1024["speedup"]["flash"] > 1
    assert nums["t4096"]["flops_ratio"] < 1 and nums["ridge"] == pytest.approx(989 / 3.35)


@pytest.mark.parametrize("kwargs, match", [
    (dict(impl="eager", seq_len=8), "impl='eager'"),
    (dict(impl="flash", seq_len=0), "seq_len=0"),
    (dict(impl="flash", seq_len=8, phase="backward"), "phase='backward'"),
    (dict(impl="flash", seq_len=8, dtype_bytes=3), "dtype_bytes=3"),
    (dict(impl="flash", seq_len=8, tiles={"fwd": (0, 64)}), "block_m"),
    (dict(impl="flash", seq_len=8, tiles={"bwd": (64, 64)}), "unknown kernel"),
    (dict(impl="materialised", seq_len=8, cached=True), "flash kernels only"),
])
def test_attention_cost_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sf.attention_cost(**kwargs)


def test_online_softmax_trace_rescales_and_matches_softmax():
    g = torch.Generator().manual_seed(0)
    s, v = torch.randn(40, generator=g) * 2, torch.randn(40, 8, generator=g)
    rows, out = sf.online_softmax_trace(s, v, block=16)
    assert [r["keys"] for r in rows] == ["0..15", "16..31", "32..39"]
    assert rows[0]["alpha"] == 0.0  # nothing to rescale on the first tile
    for prev, r in zip(rows, rows[1:]):
        assert r["m"] == max(prev["m"], r["tile max"])
        assert r["alpha"] == pytest.approx(torch.exp(torch.tensor(prev["m"] - r["m"])).item())
    assert rows[-1]["l"] == pytest.approx(torch.exp(s - s.max()).sum().item(), rel=1e-6)
    torch.testing.assert_close(out, torch.softmax(s, 0) @ v, atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match=r"scores must be \(Tk,\)"):
        sf.online_softmax_trace(s[None], v, 16)
