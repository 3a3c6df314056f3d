"""bench/attention_bench.py (issue #23): its --smoke run measures every implementation at tiny sizes (ours in Triton's
interpreter), records a forced SDPA backend that cannot run as unavailable and an eager run that would not fit as
skipped, counts FLOPs and saved memory as written down by hand here, and summarizes ours vs the best SDPA backend.
The GPU figures themselves come from running the script on a CUDA machine (bench/gpu_check.py does)."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton", reason="the attention bench runs our Triton kernels (a Linux-only dependency)")

ROOT = Path(__file__).resolve().parents[1]
IMPLS = ["minillm", "sdpa_flash", "sdpa_cudnn", "sdpa_efficient", "eager"]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1", "MINILLM_SIZE": "ci"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def bench_module(name: str, monkeypatch):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, mod)
    spec.loader.exec_module(mod)
    return mod


def test_attention_smoke_measures_every_implementation(tmp_path):
    out = tmp_path / "a.jsonl"
    proc = run("bench/attention_bench.py", "--smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    *row_lines, rec = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["record"] == "run" and all(r["record"] == "row" for r in row_lines)
    assert [r["rows"][0] for r in row_lines] == rec["rows"]  # each row on disk as measured, then the run
    assert {r["run_id"] for r in row_lines} == {rec["run_id"]}
    assert all(r["provenance"]["date"] and "attention_bench.py --smoke" in r["provenance"]["command"]
               for r in [*row_lines, rec])
    assert rec["bench"] == "attention" and rec["smoke"] is True and rec["device"] == "cpu-interpreter"
    assert rec["dtype"] == "bf16" and rec["triton"] and rec["goal"] == 0.9 and rec["peak_flops"] is None
    assert rec["complete"] is True and rec["skipped_items"] == []
    rows = rec["rows"]
    # 3 timed cases + 3 memory lengths, every implementation each, stage 1 first
    assert [(r["stage"], r["kind"], r["T"]) for r in rows[::5]] == [
        (1, "time", 48), (2, "memory", 16), (2, "memory", 32), (2, "memory", 64), (3, "time", 24), (4, "time", 40)]
    assert all([r["impl"] for r in rows[i:i + 5]] == IMPLS for i in range(0, len(rows), 5))
    for r in rows:
        if r["impl"] in ("sdpa_cudnn", "sdpa_efficient"):  # no CPU kernel: recorded, not a crash
            assert r["status"] == "unavailable" and "backend" in r["reason"], r
            continue
        assert r["status"] == "ok" and r["peak_mb"] is None, r  # no CUDA: no peak memory
        if r["kind"] == "time":
            flops = 4 * r["B"] * r["H"] * r["T"] ** 2 * r["D"] / 2  # causal forward, by hand
            assert r["fwd_tflops"] == pytest.approx(flops / (r["fwd_ms"] * 1e-3) / 1e12)
            assert r["fwdbwd_tflops"] == pytest.approx(3.5 * flops / (r["fwdbwd_ms"] * 1e-3) / 1e12)
            # bf16 rounding of O(1) values (one bf16 ulp at 2-4 is 0.0156), against SDPA on the same inputs
            assert r["max_err_out"] < 0.05 and r["max_err_grad"] < 0.1, r
    # saved for backward, beyond q, k, v: ours and SDPA's flash keep O (bf16) and the log-sum-exp (fp32); eager
    # keeps the probabilities in fp32 and bf16 and the (T, T) mask
    first = {r["impl"]: r for r in rows[:5]}  # B=1, H=2, T=48, D=16
    assert first["minillm"]["saved_mb"] * 2**20 == 2 * 48 * 16 * 2 + 2 * 48 * 4
    assert first["sdpa_flash"]["saved_mb"] == first["minillm"]["saved_mb"]
    assert first["eager"]["saved_mb"] * 2**20 == 2 * 48 * 48 * (4 + 2) + 48 * 48
    s = rec["summary"]
    head = s["headline"]
    assert head["T"] == 48 and head["pass"] == "fwd+bwd" and head["best_sdpa"] == "sdpa_flash"
    assert head["speed_vs_best_sdpa"] == pytest.approx(first["sdpa_flash"]["fwdbwd_ms"] / first["minillm"]["fwdbwd_ms"])
    assert [(c["T"], c["pass"]) for c in s["cases"]] == [(48, "fwd"), (48, "fwd+bwd"), (24, "fwd"), (24, "fwd+bwd"),
                                                         (40, "fwd"), (40, "fwd+bwd")]
    assert s["cases"][0]["not_ok"] == {"sdpa_cudnn": "unavailable", "sdpa_efficient": "unavailable"}
    growth = s["memory_growth"]  # T = 16, 32, 64: linear vs quadratic, exactly
    assert growth["minillm"]["saved_exponent"] == pytest.approx(1.0) and growth["minillm"]["T"] == [16, 32, 64]
    assert growth["eager"]["saved_exponent"] == pytest.approx(2.0)
    assert "Headline: T=48, D=16" in proc.stdout and "Smoke" in proc.stdout


def test_kernels_bench_hands_attention_over_and_the_budget_skips_in_order(tmp_path):
    out = tmp_path / "a.jsonl"
    proc = run("bench/kernel_speed.py", "--ops", "attention", "--smoke", "--budget-s", "0", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]  # nothing fitted: the run's record only
    assert rec["bench"] == "attention" and rec["complete"] is False and rec["rows"] == []
    assert [(s["stage"], s["kind"]) for s in rec["skipped_items"]] == [(1, "time"), (2, "memory"), (2, "memory"),
                                                                       (2, "memory"), (3, "time"), (4, "time")]
    assert all(s["reason"].startswith("budget") for s in rec["skipped_items"])
    assert rec["summary"]["headline"] is None and "not measured" in proc.stdout


def test_kernels_bench_runs_attention_alone(monkeypatch, capsys):
    kernels = bench_module("kernel_speed", monkeypatch)
    assert kernels.main(["--ops", "attention", "--ops", "rmsnorm", "--smoke"]) == 2
    assert kernels.main(["--ops", "attention", "--impls", "liger", "--smoke"]) == 2
    assert "runs alone" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs for real")
def test_without_cuda_needs_smoke(tmp_path):
    proc = run("bench/attention_bench.py", "--out", str(tmp_path / "a.jsonl"))
    assert proc.returncode == 2 and "--smoke" in proc.stderr and not (tmp_path / "a.jsonl").exists()


def test_flops_follow_flash_attention_2s_convention(monkeypatch):
    ops = bench_module("_kernel_ops", monkeypatch)
    s = dict(B=2, H=3, T=8, D=4)
    assert ops.attention_flops(s, causal=False) == 4 * 2 * 3 * 8 * 8 * 4 == 6144
    assert ops.attention_flops(s) == 3072  # causal: half the scores
    assert ops.attention_flops(s, backward=True) == 3.5 * 3072  # backward is 2.5x the forward
    assert ops.eager_attention_bytes(s, torch.bfloat16) == 2 * 3 * 64 * 20 + 64


def test_eager_attention_is_causal_softmax_attention(monkeypatch):
    ops = bench_module("_kernel_ops", monkeypatch)
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    got = ops.eager_attention(q, k, v)
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(got, want)
    gq = torch.autograd.grad(got.sum(), q)[0]
    torch.testing.assert_close(gq, torch.autograd.grad(want.sum(), q)[0])
    assert torch.equal(got[..., 0, :], v[..., 0, :])  # the first query sees only the first key


def _item(mod, impls, **kw):
    bench = mod.Bench(cuda=False, warmup=1, repeats=1)
    case = dict(B=1, H=2, T=12, D=8)
    return {r["impl"]: r for r in mod.run_item("time", case, impls, bench, mod.ForwardOnly(bench), "cpu",
                                                torch.float32, **kw)}


def test_eager_over_the_memory_limit_is_skipped_and_a_refusing_backend_is_unavailable(monkeypatch):
    ab = bench_module("attention_bench", monkeypatch)
    # eager at B=1, H=2, T=12 in fp32 needs (4*4 + 2*4) * 2 * 144 + 144 = 7056 bytes by the estimate
    rows = _item(ab, ["eager", "sdpa_cudnn", "sdpa_flash"], strict=True, memory_limit_gb=7000 / 2**30)
    assert rows["eager"]["status"] == "skipped" and "GiB" in rows["eager"]["reason"]
    assert rows["eager"]["estimate_mb"] * 2**20 == 7056 and "fwd_ms" not in rows["eager"]
    assert rows["sdpa_cudnn"]["status"] == "unavailable"
    assert rows["sdpa_flash"]["status"] == "ok" and rows["sdpa_flash"]["max_err_out"] < 1e-6  # fp32 vs SDPA
    assert _item(ab, ["eager"], strict=True, memory_limit_gb=7100 / 2**30)["eager"]["status"] == "ok"


def test_a_failing_implementation_is_recorded_and_the_others_still_run(monkeypatch):
    ab = bench_module("attention_bench", monkeypatch)
    real = ab.attention_fn

    def broken(impl):
        if impl == "eager":
            def fn(q, k, v):
                raise ValueError("planted bug")
            return fn
        return real(impl)

    monkeypatch.setattr(ab, "attention_fn", broken)
    rows = _item(ab, ["eager", "sdpa_flash"], strict=False, memory_limit_gb=None)
    assert rows["eager"]["status"] == "error" and "planted bug" in rows["eager"]["reason"]
    assert rows["sdpa_flash"]["status"] == "ok" and rows["sdpa_flash"]["fwdbwd_ms"] > 0
    with pytest.raises(ValueError, match="planted bug"):  # --smoke is strict: a failure fails the check
        _item(ab, ["eager"], strict=True, memory_limit_gb=None)


def _row(impl, T, ms=None, status="ok", stage=1, kind="time", peak=None):
    r = dict(kind=kind, stage=stage, B=4, H=16, T=T, D=128, impl=impl, status=status, peak_mb=peak, saved_mb=peak)
    if ms is not None:
        r.update(fwd_ms=ms / 3, fwd_tflops=1.0, fwdbwd_ms=ms, fwdbwd_tflops=2.0)
    return r


def test_summary_compares_ours_with_the_fastest_sdpa_backend(monkeypatch):
    ab = bench_module("attention_bench", monkeypatch)
    rows = [_row("minillm", 4096, 2.0), _row("sdpa_flash", 4096, 1.9), _row("sdpa_cudnn", 4096, 1.7),
            _row("sdpa_efficient", 4096, status="unavailable"), _row("eager", 4096, 10.0),
            *(_row(i, T, kind="memory", stage=2, peak=p * (T // 1024) ** e) for i, p, e in
              (("minillm", 10, 1), ("eager", 3, 2)) for T in (1024, 4096, 16384))]
    s = ab.summarize(rows)
    fb = s["cases"][1]
    assert fb["pass"] == "fwd+bwd" and fb["best_sdpa"] == "sdpa_cudnn" and fb["best_sdpa_ms"] == 1.7
    assert fb["speed_vs_best_sdpa"] == pytest.approx(0.85) and fb["speed_vs_eager"] == pytest.approx(5.0)
    assert fb["not_ok"] == {"sdpa_efficient": "unavailable"}
    assert s["headline"]["meets_goal"] is False and s["headline"]["speed_vs_best_sdpa"] == pytest.approx(0.85)
    assert math.isclose(s["memory_growth"]["minillm"]["peak_exponent"], 1.0)
    assert math.isclose(s["memory_growth"]["eager"]["saved_exponent"], 2.0)
    text = ab.summary_markdown(s, smoke=False)
    assert "ours 0.85x the speed of SDPA's best backend (sdpa_cudnn); goal >= 0.9x: NOT met" in text
    rows[2]["fwdbwd_ms"] = 1.9 * 2  # cuDNN slower now: flash is the best, 1.9 / 2.0 = 0.95
    assert ab.summarize(rows)["headline"]["meets_goal"] is True


def test_an_installed_package_named_kernels_does_not_shadow_the_bench(monkeypatch):
    """Hugging Face's `kernels` package (a dependency of some installs) once shadowed bench/kernel_speed.py when another
    import had loaded it first: the benches import their shared pieces from private module names instead."""
    import types
    monkeypatch.setitem(sys.modules, "kernels", types.ModuleType("kernels"))  # as if the PyPI package were loaded
    ab = bench_module("attention_bench", monkeypatch)
    gc = bench_module("gpu_check", monkeypatch)
    assert callable(ab.Bench) and callable(ab.max_err)
    assert gc.kernels_figures.__name__ == "kernels_figures"
