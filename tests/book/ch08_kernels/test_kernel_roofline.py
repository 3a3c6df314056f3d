"""The roofline model of book.ch08_kernels.studies against numbers worked out by hand."""
from __future__ import annotations

import pytest

from book.ch08_kernels import studies as rl
from book.ch08_kernels.studies import DEVICES, op_cost, roofline_time


def test_rmsnorm_fused_forward_bytes_by_hand():
    m = n = 4096
    cost = op_cost("rmsnorm", "fused", rows=m, hidden=n, dtype_bytes=2, phase="forward")
    # read x, write y (bf16); read the weight (bf16); write one fp32 1/rms per row
    assert cost.bytes == 2 * m * n * 2 + n * 2 + m * 4
    assert len(cost.passes) == 1


def test_rmsnorm_eager_passes_by_hand():
    m, n, b = 64, 96, 4
    fwd = op_cost("rmsnorm", "eager", m, n, b, phase="forward")
    assert [p.name for p in fwd.passes] == ["pow", "mean", "add eps", "rsqrt", "mul x*r", "mul *w"]
    # pow, mean, mul, mul read the whole activation; pow, mul, mul write it; the rest are per-row vectors or w
    assert fwd.bytes == (4 * m * n + 3 * m * n) * b + (m + m + m + m + m + m + n) * b
    train = op_cost("rmsnorm", "eager", m, n, b, phase="train")
    assert len(train.passes) == 6 + 11
    full = sum(p.bytes for p in train.passes) - fwd.bytes
    assert full == pytest.approx((13 + 8) * m * n * b, rel=0.05)  # the backward: 13 full reads, 8 full writes


def test_swiglu_bytes_by_hand():
    m, n, b = 10, 30, 2
    assert op_cost("swiglu", "eager", m, n, b, phase="forward").bytes == 5 * m * n * b  # silu r/w, mul r2/w
    assert op_cost("swiglu", "fused", m, n, b, phase="forward").bytes == 3 * m * n * b  # a, b -> c
    assert op_cost("swiglu", "fused", m, n, b).bytes == (3 + 5) * m * n * b  # + backward: dc, a, b -> da, db
    assert rl.fusion_speedup("swiglu", "H100 SXM", rows=4096, hidden=11008) == pytest.approx(14 / 8)


def test_roofline_time_is_the_slower_of_memory_and_compute():
    h100 = DEVICES["H100 SXM"]
    assert roofline_time(3.35e12, 0, "H100 SXM") == pytest.approx(1.0)
    assert roofline_time(0, 989e12, h100) == pytest.approx(1.0)
    assert roofline_time(3.35e9, 989e15, h100) == pytest.approx(1000.0)  # compute wins
    assert h100.ridge == pytest.approx(989e12 / 3.35e12)
    assert rl.attainable_flops(1.0, h100) == pytest.approx(3.35e12)
    assert rl.attainable_flops(1e4, h100) == pytest.approx(989e12)


@pytest.mark.parametrize("device", list(DEVICES))
def test_elementwise_ops_are_memory_bound_matmul_compute_bound(device):
    d = DEVICES[device]
    for op in ("rmsnorm", "swiglu", "rope", "cross_entropy"):
        for impl in ("eager", "fused"):
            assert op_cost(op, impl, 8192, 4096).intensity < d.ridge / 20, (op, impl)
    mm = op_cost("matmul", "fused", 8192, 8192)
    assert mm.intensity > d.ridge
    assert mm.time(d) == pytest.approx(mm.flops / d.peak_flops)  # on the flat part of the roof
    tiny = op_cost("matmul", "fused", 1, 8192, phase="forward")  # a vector-matrix product (decoding)
    assert tiny.intensity < d.ridge


def test_fusion_predicts_a_speedup_for_memory_bound_ops_and_none_for_matmul():
    for op in ("rmsnorm", "swiglu", "rope", "cross_entropy"):
        assert rl.fusion_speedup(op, "H100 SXM", rows=8192, hidden=4096) > 1.1, op
    assert rl.fusion_speedup("rmsnorm", "H100 SXM", rows=8192, hidden=4096) >= 2
    assert rl.fusion_speedup("matmul", "H100 SXM", rows=8192, hidden=4096) == pytest.approx(1.0)
    # bandwidth-bound speed-ups do not depend on the device: both times scale with 1/bandwidth
    assert rl.fusion_speedup("rope", "A100 80GB", rows=512, hidden=512) == pytest.approx(
        rl.fusion_speedup("rope", "RTX 4090", rows=512, hidden=512))


def test_linear_cross_entropy_trades_time_for_memory():
    m, n, v = 8192, 768, 50304
    eager, fused = (op_cost("linear_cross_entropy", impl, m, n, 2, v) for impl in ("eager", "fused"))
    assert eager.largest_buffer == m * v * 2  # the (N, V) logits
    chunk = rl.default_chunk(m, n, v)
    assert chunk == 1024  # ceil(50304 / 768) = 66 chunks, capped at 8: 8192 / 8
    assert fused.largest_buffer == chunk * v * 2
    assert fused.largest_buffer <= eager.largest_buffer / 8
    assert fused.flops == pytest.approx(eager.flops, rel=0.01)  # the same three matmuls


def test_default_chunk_bounds():
    assert rl.default_chunk(5, 4096, 32) == 5  # vocabulary smaller than width: one chunk of all rows
    assert rl.default_chunk(1, 64, 100000) == 1


def test_table_has_a_row_per_op():
    rows = rl.roofline_table("H200", rows=2048, hidden=1024, vocab=32000)
    assert [r["op"] for r in rows] == list(rl.OPS)
    by_op = {r["op"]: r for r in rows}
    assert by_op["matmul"]["bound"] == "compute" and by_op["rmsnorm"]["bound"] == "memory"
    assert by_op["rmsnorm"]["speedup"] == pytest.approx(by_op["rmsnorm"]["eager ms"] / by_op["rmsnorm"]["fused ms"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(op="layernorm"), "unknown op"),
    (dict(impl="liger"), "impl="),
    (dict(rows=0), "rows=0"),
    (dict(hidden=12.5), "hidden=12.5"),
    (dict(rows=True), "rows=True"),
    (dict(dtype_bytes=3), "dtype_bytes=3"),
    (dict(phase="backward"), "phase="),
    (dict(vocab=-1), "vocab=-1"),
])
def test_bad_inputs_are_clear_errors(kwargs, match):
    args = dict(op="rmsnorm", impl="fused", rows=4, hidden=8) | kwargs
    with pytest.raises(ValueError, match=match):
        op_cost(**args)


def test_unknown_device_and_bad_numbers():
    with pytest.raises(ValueError, match="unknown device 'TPU'.*H100 SXM"):
        roofline_time(1, 1, "TPU")
    with pytest.raises(ValueError, match="bytes=-1"):
        roofline_time(-1, 1, "H200")
    with pytest.raises(ValueError, match="flops=nan"):
        roofline_time(1, float("nan"), "H200")
    with pytest.raises(ValueError, match="unknown device"):
        rl.roofline_table("V100", 4, 8)


def test_cross_entropy_bytes_by_hand():
    m, v, b = 8, 1000, 2
    nv = m * v * b
    eager = op_cost("cross_entropy", "eager", m, 64, b, vocab=v)
    fused = op_cost("cross_entropy", "fused", m, 64, b, vocab=v)
    # eager: log_softmax r/w; backward: nll grad written, log_softmax backward r2/w1. Plus targets, per-row values
    assert eager.bytes == 6 * nv + (m * b + m * 8 + 4) + m * 8
    # fused: two reads of each row (online max/sum, then the gradient), the gradient written; backward reads and
    # writes it once more to scale it by grad_output / n_valid (never skipped: checking for 1 is a host sync)
    assert fused.bytes == 5 * nv + m * 8 + m * 4
    assert op_cost("cross_entropy", "fused", m, 64, b, vocab=v, phase="forward").bytes == nv + m * 8 + m * 4
    assert eager.largest_buffer == fused.largest_buffer == nv


def test_default_chunk_is_the_one_the_kernel_uses():
    from minillm.kernels.fused_linear_cross_entropy import default_chunk_size

    for m, n, v in [(8192, 768, 50304), (8192, 4096, 128256), (5, 4096, 32), (100, 7, 1000), (1, 64, 100000)]:
        assert rl.default_chunk(m, n, v) == default_chunk_size(m, v, n), (m, n, v)


def test_chapter_numbers_are_the_models_predictions():
    """What chapter 08's prose keys quote (`@book.ch08_kernels.studies:chapter_numbers/...`) is what its cells print."""
    nums = rl.chapter_numbers()
    table = {r["op"]: r for r in rl.roofline_table("H100 SXM", **rl.LLAMA_8B_STEP)}
    assert nums["speedup"] == pytest.approx({op: r["speedup"] for op, r in table.items()})
    assert nums["ridge"] == pytest.approx(989 / 3.35)
    assert nums["rmsnorm_eager_kernels"] == {"forward": 6, "backward": 11}
    assert round(nums["passes"]["rmsnorm"]["eager"]) == 28 and round(nums["passes"]["rmsnorm"]["fused"]) == 5
    lce = nums["linear_ce"]
    assert (lce["liger_chunks"], lce["liger_chunks_gpt2"]) == (32, 64)  # ceil(V / C) chunks, rounded to powers of two
    capped = table["linear_cross_entropy"]["fused ms"] / table["linear_cross_entropy"]["eager ms"]
    assert lce["liger_slowdown"] > 1.5 and capped < 1.1  # uncapped ~2x slower than eager; capped about as fast
    assert lce["fused_largest_gb"] * 8 == pytest.approx(lce["eager_largest_gb"])  # the cap of 8 chunks binds here
