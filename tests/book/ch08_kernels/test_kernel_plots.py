"""Chapter 08's figures, widget, check helper and reader of shipped GPU results (book.ch08_kernels.plots)."""
from __future__ import annotations

import json

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # headless: tests must never open a window

from book.ch08_kernels import plots  # noqa: E402


def test_roofline_plot_places_every_op_twice():
    fig = plots.plot_roofline("A100 80GB", rows=1024, hidden=512, vocab=32000)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    points = [c for c in ax.collections if len(c.get_offsets())]
    assert len(points) == 2 * len(plots.rl.OPS)  # eager and fused per op
    heights = [float(c.get_offsets()[0][1]) for c in points]
    assert max(heights) == pytest.approx(312e12)  # the matmul sits on the flat roof
    assert min(heights) < 312e12 / 50  # the elementwise ops far below it


def test_widget_draws_and_updates():
    w = plots.RooflineWidget(hidden=1024, rows=2048)
    first = w.result["table"]
    assert [r["op"] for r in first] == list(plots.rl.OPS) and w.figure is not None
    rows = w.update(rows=4096, device="RTX 4090", dtype_bytes=4)
    assert w.result["device"] == "RTX 4090" and w.result["table"] is rows
    by_op = {r["op"]: r for r in rows}
    assert by_op["rmsnorm"]["eager ms"] > 4 * {r["op"]: r for r in first}["rmsnorm"]["eager ms"]
    assert "rmsnorm: memory-bound" in w.summary.value
    fig = w.figure
    w.controls["hidden"].value = 4096  # a slider moved by hand goes through the observer (_on_change)
    assert w.figure is not fig and w.result["hidden"] == 4096
    with pytest.raises(ValueError, match="rows=1000 is not offered"):
        w.update(rows=1000)
    with pytest.raises(ValueError, match="unknown control"):
        w.update(batch=3)


def test_widget_rejects_unknown_device():
    with pytest.raises(ValueError, match="unknown device"):
        plots.RooflineWidget(device="TPU v5")


def test_max_errors_sees_a_wrong_implementation():
    def ref(x, w):
        return x * w

    def wrong(x, w):
        return x * w + 0.5 * (x > 1).float()  # forward off by 0.5 where x > 1; gradients equal

    x, w = torch.tensor([0.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0])
    assert plots.max_errors(ref, ref, [x, w]) == {"forward": 0.0, "backward": 0.0, "forward rel": 0.0,
                                                  "backward rel": 0.0}
    err = plots.max_errors(wrong, ref, [x, w])
    assert err["forward"] == pytest.approx(0.5) and err["backward"] == 0.0
    assert err["forward rel"] == pytest.approx(0.5 / 9)  # the reference's largest output is 3 * 3
    err = plots.max_errors(lambda x, w: x * w.detach(), ref, [x, w])  # loses w's gradient entirely
    assert err["backward"] == float("inf")


def test_max_errors_of_the_rmsnorm_kernel(device):
    from minillm.kernels.rmsnorm import rms_norm, rms_norm_reference

    x, w = torch.randn(3, 37, device=device), torch.rand(37, device=device) + 0.5
    err = plots.max_errors(rms_norm, rms_norm_reference, [x, w, 1e-5])
    assert err["forward"] < 1e-5 and err["backward"] < 1e-4


def test_check_kernels_covers_every_op_and_dtype(device):
    rows = plots.check_kernels(device=device)
    assert {r["op"] for r in rows} == set(plots.CHECK_SHAPES)
    assert len(rows) == 2 * sum(len(s) for s in plots.CHECK_SHAPES.values())
    for r in rows:
        tol = 1e-5 if r["dtype"] == "float32" else 2e-2
        assert r["forward rel"] < tol and r["backward rel"] < tol, r
    only = plots.check_kernels(["rope"], dtypes=[torch.float32], device=device)
    assert [r["shape"] for r in only] == plots.CHECK_SHAPES["rope"]
    with pytest.raises(ValueError, match="unknown op 'gelu'"):
        plots.check_kernels(["gelu"], device=device)


def test_time_forward_backward_is_positive():
    x, w = torch.randn(4, 8), torch.ones(8)
    assert plots.time_forward_backward(lambda x, w: (x * w).sum(), [x, w], repeats=3) > 0


def test_linear_ce_memory_measured_and_plotted():
    rows = plots.measure_linear_ce_memory([64, 512], n_tokens=32, hidden=16)
    for r in rows:
        assert r["eager numel"] == 32 * r["vocab"]  # the (N, V) logits exist
        assert r["chunked numel"] <= max(r["chunk"] * r["vocab"], 32 * 16)  # one chunk of them at most
        assert r["max grad diff"] < 1e-5
    assert rows[1]["chunked numel"] <= rows[1]["eager numel"] / 8  # at most 8 chunks: 1/8 of the logits
    fig = plots.plot_linear_ce_memory(rows)
    assert len(fig.axes[0].lines) == 4
    with pytest.raises(ValueError, match="measure_linear_ce_memory"):
        plots.plot_linear_ce_memory([])


def test_no_shipped_results_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINILLM_RESULTS", str(tmp_path))
    assert plots.shipped_kernel_results() is None
    out = capsys.readouterr().out
    assert "No GPU kernel or MFU results" in out and "python bench/kernel_speed.py" in out
    # a smoke record (CPU interpreter) is not a GPU measurement
    (tmp_path / "kernels.jsonl").write_text(json.dumps({"bench": "kernels", "smoke": True, "rows": []}) + "\n")
    assert plots.shipped_kernel_results() is None


def test_shipped_results_read_and_plotted(tmp_path, monkeypatch):
    rows = [{"op": op, "shape": "8192x4096", "dtype": "bf16", "impl": impl, "ms": ms, "peak_mb": 100.0,
             "speedup_vs_eager": s, "mem_ratio_vs_eager": m}
            for op, impl, ms, s, m in [("rmsnorm", "eager", 1.0, 1.0, 1.0), ("rmsnorm", "minillm", 0.4, 2.5, 0.5),
                                       ("swiglu", "eager", 1.0, 1.0, 1.0), ("swiglu", "minillm", 0.6, 1.7, 0.7)]]
    old = {"bench": "kernels", "device": "NVIDIA H100 80GB HBM3", "dtype": "bf16", "rows": rows[:2]}
    new = {**old, "rows": rows}
    (tmp_path / "kernels.jsonl").write_text(json.dumps(old) + "\n\n" + json.dumps(new) + "\n")
    monkeypatch.setenv("MINILLM_RESULTS", str(tmp_path))
    got = plots.shipped_kernel_results()
    assert got["kernels"] == new and got["mfu"] is None  # the latest record; no MFU file
    fig = plots.plot_shipped_kernels(got["kernels"])
    heights = sorted(round(p.get_height(), 3) for p in fig.axes[0].patches)
    assert heights == [1.0, 1.0, 1.7, 2.5]
    mfu = {"bench": "mfu", "device": "H100", "rows": [{"variant": "eager", "tok_per_s": 1e5, "mfu": 0.31}]}
    (tmp_path / "mfu.jsonl").write_text(json.dumps(mfu) + "\n")
    assert plots.shipped_kernel_results()["mfu"] == mfu


def test_bad_records_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLM_RESULTS", str(tmp_path))
    (tmp_path / "kernels.jsonl").write_text('{"bench": "kernels", "rows": []}\n{oops\n')
    with pytest.raises(ValueError, match="kernels.jsonl:2 is not valid JSON"):
        plots.shipped_kernel_results()
    (tmp_path / "kernels.jsonl").write_text('{"bench": "kernels"}\n')
    with pytest.raises(ValueError, match="has no 'rows' field"):
        plots.shipped_kernel_results()
    with pytest.raises(ValueError, match="speedup_vs_eager"):
        plots.plot_shipped_kernels({"rows": []})
