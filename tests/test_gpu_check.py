"""bench/gpu_check.py, the one command for a first GPU (issue #20): its CPU rehearsal (--smoke) runs every stage and
writes every file; without CUDA it refuses; a stage past its limit is stopped, recorded as such, and the next runs."""
from __future__ import annotations

import argparse
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
STAGES = ["tests", "ddp", "flash_tests", "attention", "mfu", "kernels"]


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
    assert {"stages.jsonl", "summary.md", "gpu_tests.xml", "flash_tests.xml", "attention.jsonl", "mfu.jsonl",
            "kernels.jsonl", "ddp_history.jsonl"} <= names
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
    # FlashAttention's gpu tests: collected (the file imports) and skipped without CUDA
    assert figures["flash_tests"]["skipped"] >= 20 and figures["flash_tests"]["failed"] == 0
    assert "test_flash_attention_gpu.py" in stages[2]["commands"][0]
    att = figures["attention"]
    assert att["run_record"] and not att["failed"] and att["rows"] == 30 and att["skipped_items"] == 0
    assert att["summary"]["headline"]["T"] == 48 and att["summary"]["headline"]["goal"] == 0.9
    assert att["summary"]["memory_growth"]["minillm"]["saved_exponent"] == pytest.approx(1.0)
    assert [r["variant"] for r in figures["mfu"]["rows"]] == ["eager", "triton"] and figures["mfu"]["run_record"]
    assert figures["mfu"]["rows"][0]["graph_breaks"] is not None  # the eager variant went through dynamo's explain
    assert figures["kernels"]["sizes"] == 5 and not figures["kernels"]["failed"]
    summary = (out / "summary.md").read_text()
    for stage in STAGES:
        assert f"| {stage} | passed |" in summary
    assert "## MFU" in summary and "## Kernels" in summary and "smoke" in summary
    assert "## Attention" in summary and "Headline: T=48, D=16" in summary and "| sdpa_flash |" in summary
    # every bench line (rows as measured, then the run's record) carries its provenance
    for name in ("attention.jsonl", "mfu.jsonl", "kernels.jsonl"):
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


def test_the_plan_fits_eight_minutes_and_attention_has_its_own_limits(tmp_path, monkeypatch):
    gc = gpu_check(monkeypatch)
    plan = {s.name: s.share_s for s in gc.STAGES}
    assert list(plan) == STAGES and sum(plan.values()) == gc.BUDGET_S == 480
    assert plan["flash_tests"] == 55 and plan["attention"] == 70
    args = argparse.Namespace(out=tmp_path, smoke=False)
    (tests,) = gc.tests_commands(args, tmp_path, 90)
    (flash,) = gc.flash_tests_commands(args, tmp_path, 55)
    assert f"--ignore={gc.FLASH_TESTS}" in tests and tests[-2] == "tests"  # not run twice
    assert flash[-1] == gc.FLASH_TESTS and "-m" in flash and "gpu" in flash
    assert f"--junitxml={tmp_path / 'flash_tests.xml'}" in flash
    if "-n" in flash:  # pytest-xdist installed: the file's cases spread over processes
        assert flash[flash.index("--dist") + 1] == "load"
    (bench,) = gc.attention_commands(args, tmp_path, 70)
    assert bench[1:] == ["bench/attention_bench.py", "--out", str(tmp_path / "attention.jsonl"), "--budget-s", "45"]


def test_summary_quotes_the_attention_headline(monkeypatch):
    """A GPU-like attention figure: ours 0.95x SDPA's best backend at T=4096, D=128 fwd+bwd; the goal is met."""
    gc = gpu_check(monkeypatch)
    head = dict(B=4, H=16, T=4096, D=128, best_sdpa="sdpa_cudnn", speed_vs_best_sdpa=0.95, goal=0.9, meets_goal=True)
    case = {**{k: head[k] for k in ("B", "H", "T", "D", "best_sdpa", "speed_vs_best_sdpa")}, "stage": 1,
            "pass": "fwd+bwd", "ours_ms": 2.0, "ours_tflops": 240.5, "best_sdpa_ms": 1.9, "speed_vs_eager": 6.0,
            "not_ok": {}}
    figures = {"rows": 5, "failed": [], "skipped_items": 0, "run_record": True,
               "summary": {"headline": {**head, "pass": "fwd+bwd"}, "cases": [case], "memory_growth": {}}}
    header = {"smoke": False, "device": "NVIDIA H100 80GB HBM3", "budget_s": 480.0,
              "provenance": {"date": "2026-01-01", "command": "gpu_check.py", "git": {"commit": "abc"},
                             "versions": {"python": "3.12", "torch": "2.11", "cuda": "13.0", "triton": "3.6"}}}
    result = {"stage": "attention", "status": "passed", "seconds": 40.0, "limit_s": 70.0, "log": "attention.log",
              "figures": figures}
    text = gc.summary_markdown(header, [result])
    line = "| attention | passed | 40 | 70 | T=4096 D=128 fwd+bwd 0.95x best SDPA (sdpa_cudnn), goal >= 0.9x; 5 rows |"
    assert line in text
    assert "ours 0.95x the speed of SDPA's best backend (sdpa_cudnn); goal >= 0.9x: met" in text
    assert "| 128 | 4096 | 4 | 16 | fwd+bwd | 2 | 240 | sdpa_cudnn | 1.9 | 0.95 | 6 |  |" in text
