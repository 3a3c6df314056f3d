"""bench/kernel_speed.py and bench/mfu.py run end to end (--smoke: tiny sizes, Triton's CPU interpreter) and refuse a
real run without a GPU; they write each row as it is measured, stop cleanly at a budget or a SIGTERM, and their
files stay readable by book.results. The GPU numbers themselves come from running the scripts on a CUDA machine."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="the kernel benches need Triton (a Linux-only dependency)")

ROOT = Path(__file__).resolve().parents[1]
OPS = {"rmsnorm", "swiglu", "rope", "cross_entropy", "fused_linear_cross_entropy"}


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1", "MINILLM_SIZE": "ci"}
    return subprocess.run([sys.executable, f"bench/{script}", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)


def record(proc: subprocess.CompletedProcess, path: Path) -> dict:
    """The run's record, after checking the row lines before it: one per row, as measured, same run, provenance."""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    *rows, run = lines
    assert run["record"] == "run" and all(r["record"] == "row" for r in rows)
    assert [r["rows"][0] for r in rows] == run["rows"]
    assert {r["run_id"] for r in lines} == {run["run_id"]}
    assert all(r["provenance"]["date"] and r["provenance"]["command"] for r in lines)
    return run


def module(name: str, monkeypatch):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, mod)
    spec.loader.exec_module(mod)
    return mod


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_kernels_smoke(tmp_path):
    out = tmp_path / "x.jsonl"
    rec = record(run("kernel_speed.py", "--smoke", "--out", str(out)), out)
    assert rec["bench"] == "kernels" and rec["smoke"] is True and rec["device"] == "cpu-interpreter"
    assert rec["dtype"] == "bf16" and rec["triton"] and "command" in rec["provenance"]
    assert {(r["op"], r["impl"]) for r in rec["rows"]} == {(op, i) for op in OPS for i in ("eager", "minillm")}
    for r in rec["rows"]:
        assert "error" not in r, r
        assert finite(r["ms"]) and r["ms"] > 0 and finite(r["speedup_vs_eager"]), r
        assert r["peak_mb"] is None  # no memory column without CUDA
        # ours agrees with the reference to bf16 rounding (values are O(1); one bf16 ulp at 4 is 0.03)
        assert finite(r["max_err"]) and r["max_err"] < 0.1, r
    assert set(rec["summary"]) == OPS
    assert all(finite(s["speedup_vs_eager"]) and s["speedup_vs_compile"] is None for s in rec["summary"].values())
    assert rec["liger"] is None and "liger" in rec["skipped"] and "compile" in rec["skipped"]
    assert rec["complete"] is True and rec["skipped_sizes"] == [] and all(r["stage"] == 1 for r in rec["rows"])
    assert all(r["host_ms"] > 0 and r["queued"] is None for r in rec["rows"])  # no GPU queue on a CPU


def test_kernels_budget_stops_before_any_size_that_does_not_fit(tmp_path):
    out = tmp_path / "x.jsonl"
    proc = run("kernel_speed.py", "--smoke", "--budget-s", "0", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]  # no rows: nothing fitted
    assert rec["record"] == "run" and rec["complete"] is False and rec["rows"] == []
    assert [s["op"] for s in rec["skipped_sizes"]] == ["rmsnorm", "swiglu", "rope", "cross_entropy",
                                                        "fused_linear_cross_entropy"]  # recorded, in order
    assert all(s["reason"].startswith("budget") for s in rec["skipped_sizes"])
    assert "skipped 5 of 5 sizes" in proc.stdout


def test_kernels_sigterm_keeps_the_rows_and_writes_the_run_record(tmp_path):
    out = tmp_path / "x.jsonl"
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1", "MINILLM_SIZE": "ci"}
    proc = subprocess.Popen([sys.executable, "bench/kernel_speed.py", "--smoke", "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.exists() and out.read_text().count("\n") >= 2):  # the first size's two rows are on disk
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    run_rec = lines[-1]
    assert run_rec["record"] == "run" and run_rec["complete"] is False
    assert len(run_rec["rows"]) == len(lines) - 1 >= 2  # every row written before the signal is in the record
    assert run_rec["skipped_sizes"] and all("SIGTERM" in s["reason"] for s in run_rec["skipped_sizes"])


def test_budget_takes_the_slowest_item_of_a_kind_as_the_estimate():
    spec = importlib.util.spec_from_file_location("_live", ROOT / "bench" / "_live.py")
    live = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(live)
    now = [0.0]
    b = live.Budget(100, clock=lambda: now[0])
    assert b.fits("compiled", 90) and not b.fits("compiled", 101)  # nothing measured: the first guess
    b.record("compiled", 40)
    b.record("compiled", 60)
    now[0] = 45
    assert b.fits("eager") and not b.fits("compiled", 90)  # 45 + 60 > 100: the slowest one so far
    now[0] = 40
    assert b.fits("compiled") and "budget: 60 s of --budget-s 100 left" in b.why_not("compiled")
    assert live.Budget(None).fits("compiled", 1e9)
    with pytest.raises(ValueError, match="budget"):
        live.Budget(-1)


def test_row_lines_and_run_record_are_readable_by_book_results(tmp_path, monkeypatch):
    """Every line has "rows": book.results reads a bench file as is, and the newest record is the run's."""
    from book import results

    live = module("_live", monkeypatch)
    log = live.RowLog(tmp_path / "kernels.jsonl", "kernels", {"device": "test", "smoke": False})
    log.row({"op": "rmsnorm", "ms": 1.0})
    log.row({"op": "swiglu", "ms": 2.0})
    log.run({"rows": [{"op": "rmsnorm", "ms": 1.0}, {"op": "swiglu", "ms": 2.0}], "complete": True})
    recs = results.records(tmp_path / "kernels.jsonl", require=("rows", "device"))
    assert [r["record"] for r in recs] == ["row", "row", "run"]
    assert results.last(tmp_path / "kernels.jsonl", where=lambda r: not r.get("smoke"))["record"] == "run"


@pytest.mark.gpu
def test_queued_timing_measures_the_gpu_not_the_launches(monkeypatch):
    """A tiny op on the GPU: Python's launch overhead (host_ms) dwarfs its GPU time. Timed one call at a time,
    the events would measure the launches; queued behind the GPU wait, they measure the GPU's few microseconds."""
    kernels = module("kernels", monkeypatch)
    bench = kernels.Bench(cuda=True, warmup=3, repeats=20)
    x = torch.randn(256, device="cuda", requires_grad=True)

    def many_small_ops(x):  # ~30 tiny kernels forward and backward: launch-bound by far
        for _ in range(15):
            x = x * 1.001
        return x

    ms, host_ms, queued = bench.time_ms(many_small_ops, (x,), [x], [torch.ones(256, device="cuda")])
    assert queued is True, "the GPU wait did not cover the enqueueing of the timed calls"
    assert ms < 0.7 * host_ms, (ms, host_ms)  # timed one call at a time, ms would be about host_ms


def test_mfu_smoke(tmp_path):
    out = tmp_path / "x.jsonl"
    rec = record(run("mfu.py", "--smoke", "--explain", "all", "--out", str(out)), out)
    assert rec["bench"] == "mfu" and rec["smoke"] is True and rec["config"]["seq_len"] == 32
    rows = {r["variant"]: r for r in rec["rows"]}
    assert set(rows) == {"eager", "llama-eager", "llama-triton"}
    for r in rows.values():
        assert "error" not in r, r
        assert finite(r["tok_per_s"]) and r["tok_per_s"] > 0 and finite(r["step_ms"]), r
        assert r["mfu"] is None and r["peak_mem_gb"] is None  # a CPU has no peak FLOP/s in the table
        assert abs(r["final_loss"] - math.log(128)) < 0.5, r  # random tokens: near the uniform loss
    assert rows["llama-triton"]["kernels"] == "triton" and rows["llama-eager"]["kernels"] == "torch"
    # same init, same batches: the kernels change rounding, not the training
    assert abs(rows["llama-triton"]["final_loss"] - rows["llama-eager"]["final_loss"]) < 0.02
    # --explain all: dynamo's graph-break report for the PyTorch variants; the interpreted kernels are not traced
    for name in ("eager", "llama-eager"):
        d = rows[name]["dynamo"]
        assert d["graphs"] >= 1 and d["graph_breaks"] >= 0 and isinstance(d["break_reasons"], list), d
        assert all(b["where"] is None or not b["where"].startswith("/") for b in d["break_reasons"]), d
    assert "skipped" in rows["llama-triton"]["dynamo"]
    assert rec["complete"] is True and rec["skipped_variants"] == []


def test_mfu_budget_skips_what_does_not_fit(tmp_path):
    out = tmp_path / "x.jsonl"
    proc = run("mfu.py", "--smoke", "--variants", "eager", "--budget-s", "0", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["complete"] is False and rec["rows"] == []
    assert rec["skipped_variants"][0]["variant"] == "eager" and "budget" in rec["skipped_variants"][0]["reason"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the scripts run for real")
@pytest.mark.parametrize("script", ["kernel_speed.py", "mfu.py"])
def test_without_cuda_needs_smoke(script, tmp_path):
    proc = run(script, "--out", str(tmp_path / "x.jsonl"))
    assert proc.returncode == 2 and "--smoke" in proc.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_no_bench_script_shadows_an_installed_module():
    """`python bench/X.py` puts bench/ first on sys.path, so a script named like an installed module replaces it for
    every import in that process: bench/kernels.py once hid Hugging Face's `kernels` package from `transformers`
    (an ImportError in the capstone's export study). Every script's name must be free among the installed modules."""
    from importlib.machinery import PathFinder
    bench = (ROOT / "bench").resolve()
    elsewhere = [p for p in sys.path if Path(p or ".").resolve() != bench]
    names = sorted(p.stem for p in bench.glob("*.py"))
    assert "kernel_speed" in names and "capstone_studies" in names
    clashes = [n for n in names if n in sys.builtin_module_names or PathFinder.find_spec(n, elsewhere) is not None]
    assert clashes == [], f"bench scripts named like installed modules: {clashes}"
