"""bench/kernels.py and bench/mfu.py run end to end (--smoke: tiny sizes, Triton's CPU interpreter) and refuse a
real run without a GPU. The GPU numbers themselves come from running the scripts on a CUDA machine."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
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
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_kernels_smoke(tmp_path):
    out = tmp_path / "x.jsonl"
    rec = record(run("kernels.py", "--smoke", "--out", str(out)), out)
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


def test_mfu_smoke(tmp_path):
    out = tmp_path / "x.jsonl"
    rec = record(run("mfu.py", "--smoke", "--out", str(out)), out)
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


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the scripts run for real")
@pytest.mark.parametrize("script", ["kernels.py", "mfu.py"])
def test_without_cuda_needs_smoke(script, tmp_path):
    proc = run(script, "--out", str(tmp_path / "x.jsonl"))
    assert proc.returncode == 2 and "--smoke" in proc.stderr
    assert not (tmp_path / "x.jsonl").exists()
