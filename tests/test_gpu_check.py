"""bench/gpu_check.py, the one command for a first GPU (issue #20): its CPU rehearsal (--smoke) runs every stage and
writes every file; without CUDA it refuses; a stage past its limit is stopped, recorded as such, and the next runs."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="the kernel stages need Triton (a Linux-only dependency)")

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["tests", "ddp", "mfu", "kernels"]


def gpu_check(monkeypatch):
    """bench/gpu_check.py as a module (registered in sys.modules for the test only: its dataclass needs it)."""
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", mod)
    spec.loader.exec_module(mod)
    return mod


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    # PYTHONPATH is deliberately not set: the script must set it for its stages itself
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET")}
    return subprocess.run([sys.executable, "bench/gpu_check.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_smoke_runs_every_stage_and_writes_every_file(tmp_path):
    out = tmp_path / "gpu"
    t0 = time.monotonic()
    proc = run("--smoke", "--out", str(out))
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    names = {p.name for p in out.iterdir()}
    assert {"stages.jsonl", "summary.md", "gpu_tests.xml", "mfu.jsonl", "kernels.jsonl", "ddp_history.jsonl"} <= names
    assert {f"{s}.log" for s in STAGES} <= names
    lines = [json.loads(line) for line in (out / "stages.jsonl").read_text().splitlines()]
    header, stages = lines[0], lines[1:]
    assert header["record"] == "header" and header["smoke"] is True
    prov = header["provenance"]
    assert "gpu_check.py --smoke" in prov["command"] and prov["date"] and prov["git"]["commit"]
    assert {"python", "torch", "triton", "cuda"} <= prov["versions"].keys()
    assert [s["stage"] for s in stages] == STAGES
    assert all(s["status"] == "passed" and s["provenance"]["date"] for s in stages), stages
    figures = {s["stage"]: s["figures"] for s in stages}
    assert figures["tests"]["skipped"] > 0 and figures["tests"]["failed"] == 0  # gpu tests skip on a CPU
    assert figures["ddp"]["backend"] == "gloo" and figures["ddp"]["steps"] == 4
    assert [r["variant"] for r in figures["mfu"]["rows"]] == ["eager", "triton"] and figures["mfu"]["run_record"]
    assert figures["mfu"]["rows"][0]["graph_breaks"] is not None  # the eager variant went through dynamo's explain
    assert figures["kernels"]["sizes"] == 5 and not figures["kernels"]["failed"]
    summary = (out / "summary.md").read_text()
    for stage in STAGES:
        assert f"| {stage} | passed |" in summary
    assert "## MFU" in summary and "## Kernels" in summary and "smoke" in summary
    # every bench line (rows as measured, then the run's record) carries its provenance
    for name in ("mfu.jsonl", "kernels.jsonl"):
        recs = [json.loads(line) for line in (out / name).read_text().splitlines()]
        assert recs[-1]["record"] == "run" and all(r["provenance"]["date"] and r["smoke"] for r in recs)
    assert seconds < 150, f"the smoke check took {seconds:.0f} s; it must stay cheap enough for `make test`"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the check runs for real")
def test_without_cuda_it_says_why_and_exits_2(tmp_path):
    proc = run("--out", str(tmp_path / "gpu"), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "CUDA" in proc.stderr and "--smoke" in proc.stderr
    assert not (tmp_path / "gpu").exists()


def test_a_non_empty_out_is_refused(tmp_path):
    (tmp_path / "old.log").write_text("an earlier check\n")
    proc = run("--smoke", "--out", str(tmp_path), timeout=60)
    assert proc.returncode == 2 and "not empty" in proc.stderr


def test_a_command_past_its_limit_gets_sigterm_then_sigkill(tmp_path, monkeypatch):
    gc = gpu_check(monkeypatch)
    # polite: catches SIGTERM, writes what it has, exits
    polite = ("import signal, sys, time\n"
              f"signal.signal(signal.SIGTERM, lambda *a: (open({str(tmp_path / 'flushed')!r}, 'w').write('x'), "
              "sys.exit(3)))\n"
              "print('started', flush=True)\ntime.sleep(60)\n")
    t0 = time.monotonic()
    rc = gc.run_command([sys.executable, "-c", polite], dict(os.environ), tmp_path / "polite.log", 2.0, 10.0)
    assert rc is None and (tmp_path / "flushed").exists() and time.monotonic() - t0 < 9
    assert "stopped after its limit" in (tmp_path / "polite.log").read_text()
    # deaf: ignores SIGTERM; SIGKILL ends it after the grace period
    deaf = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    t0 = time.monotonic()
    assert gc.run_command([sys.executable, "-c", deaf], dict(os.environ), tmp_path / "deaf.log", 1.0, 1.0) is None
    assert time.monotonic() - t0 < 20


def test_a_stage_that_times_out_is_recorded_and_the_next_still_runs(tmp_path, monkeypatch):
    gc = gpu_check(monkeypatch)
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    quick = [sys.executable, "-c", "print('ok')"]
    monkeypatch.setattr(gc, "STAGES", [
        gc.Stage("slow", 2, 2, lambda a, w, limit: [sleep], lambda a, o, w: {"seen": 1}),
        gc.Stage("quick", 2, 2, lambda a, w, limit: [quick], lambda a, o, w: {"seen": 2}),
    ])
    monkeypatch.setattr(gc, "SMOKE_GRACE_S", 1.0)
    out = tmp_path / "gpu"
    assert gc.main(["--smoke", "--out", str(out), "--budget-s", "4"]) == 1  # a stage timed out
    stages = [json.loads(line) for line in (out / "stages.jsonl").read_text().splitlines()][1:]
    assert [(s["stage"], s["status"]) for s in stages] == [("slow", "timeout"), ("quick", "passed")]
    assert stages[0]["seconds"] < 10 and stages[1]["figures"] == {"seen": 2}
    summary = (out / "summary.md").read_text()
    assert "| slow | timeout |" in summary and "| quick | passed |" in summary


def test_make_gpu_check_installs_nothing(tmp_path):
    """On a GPU machine without a venv, `make gpu-check` runs the script with python3 from the checkout: no setup."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("`make` is not on PATH")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")  # a copy without .venv, as on the GPU machine
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    cmd = subprocess.run(["make", "--no-print-directory", "-n", "gpu-check"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    assert cmd.startswith("PYTHONPATH=. python3 bench/gpu_check.py --out bench/results/gpu/"), cmd
    assert "pip" not in cmd and "venv" not in cmd and len(cmd.splitlines()) == 1
