"""One command for a first (and short) GPU lease: every gpu-marked test, the attention, MFU and kernel benches, DDP.

Survey §4.3 (efficient training). Issue #20: no line of minillm had run on CUDA. This runs everything that needs a
GPU in at most --budget-s (480 s), each part as a subprocess under its own time limit, and keeps every figure on
disk the moment it is measured:

    PYTHONPATH=. python bench/gpu_check.py --out bench/results/gpu/<date>   # on one CUDA GPU; or `make gpu-check`
    python bench/gpu_check.py --smoke --out /tmp/gpu_check                 # no GPU: every stage tiny on the CPU

Stages, in this order (cheapest and likeliest to break first; the benches stop themselves inside their limit), with
their planned limits in seconds (scaled to --budget-s; STAGES below):

    tests        (90) python -m pytest -m gpu tests: every gpu-marked test but FlashAttention's (pytest-timeout's
                 --timeout when installed)
    ddp          (40) python -m minillm prepare (200 documents), then torchrun --nproc_per_node=1 -m minillm train
                 --parallel ddp --device cuda: the Trainer under DDP with NCCL (smoke: --device cpu, gloo)
    flash_tests  (55) the gpu tests of FlashAttention's Triton kernels (tests/minillm/kernels/
                 test_flash_attention_gpu.py): its own limit, since each dtype, head dim and mask compiles kernels
    attention    (70) bench/attention_bench.py: ours vs SDPA's flash, cuDNN and efficient backends and eager;
                 T=4096, D=128 first (issue #23's goal: fwd+bwd >= 0.9x the best SDPA backend), memory vs T next
    mfu          (160) bench/mfu.py: GPT-2 124M eager, compile, compile + our kernels, then the Llama-style block;
                 tokens/s, MFU, peak memory, graph breaks (torch._dynamo.explain; TORCH_LOGS=graph_breaks,
                 recompiles in mfu.log)
    kernels      (65) bench/kernel_speed.py: ours vs eager, torch.compile and Liger (when importable), most informative
                 sizes first

A stage that passes its limit gets SIGTERM (the benches then write their run record), GRACE_S later SIGKILL for
its whole process tree; it is recorded as "timeout" and the next stage runs. Time a stage leaves unused passes to
the next. DIR receives, as they happen: stages.jsonl (a header with the provenance: command, date, versions, git
commit, device; then one line per finished stage with its figures), <stage>.log (the stage's output), gpu_tests.xml
and flash_tests.xml (JUnit), attention.jsonl, mfu.jsonl and kernels.jsonl (a line per measured row, see
bench/_live.py), ddp_history.jsonl, and at the end summary.md (also printed; bench/_gpu_summary.py writes it).

Nothing is installed and nothing is downloaded: it runs with the machine's own torch (CUDA build >= 2.5), triton
(>= 3.1) and Python (3.10-3.12), importing minillm from this checkout (PYTHONPATH is set for every subprocess).
Exit status: 0 every stage passed; 1 a stage failed or timed out; 2 nothing ran (no CUDA without --smoke, an
unsupported version, a non-empty --out).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # the benches' modules, also when imported from elsewhere
from _gpu_summary import stage_line, summary_markdown  # noqa: E402

FLASH_TESTS = "tests/minillm/kernels/test_flash_attention_gpu.py"
BUDGET_S = 480.0  # 8 minutes: a lease of 15 minutes also pays for starting the machine and copying the checkout
GRACE_S, SMOKE_GRACE_S = 15.0, 3.0  # after SIGTERM, before SIGKILL
BENCH_MARGIN_S = 25.0  # a bench's --budget-s is its stage's limit minus this: imports, CUDA start, the last record
MIN_VERSIONS = {"python": (3, 10), "torch": (2, 5), "triton": (3, 1)}


@dataclass
class Stage:
    name: str
    share_s: float  # planned limit on a GPU; smoke_s on the CPU
    smoke_s: float
    commands: Callable[[argparse.Namespace, Path, float], list[list[str]]]  # (args, work dir, limit) -> commands
    figures: Callable[[argparse.Namespace, Path, Path], dict[str, Any]]  # (args, out dir, work dir) -> figures
    env: dict[str, str] = field(default_factory=dict)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text.split("+")[0])[:2])


# --------------------------------------------------------------------------------------------- the stages

def pytest_command(args: argparse.Namespace, junit: str, dist: str) -> list[str]:
    """pytest for the gpu-marked tests, JUnit XML to `junit` in --out; on a GPU with a per-test timeout and, with
    pytest-xdist, 4 processes distributed by `dist` (Triton compiles on 4 processes at once; one GPU holds them)."""
    import importlib.util

    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:cacheprovider", "--continue-on-collection-errors",
           f"--junitxml={args.out / junit}"]
    if not args.smoke and importlib.util.find_spec("pytest_timeout") is not None:
        cmd.append("--timeout=120")  # one hung kernel must not take the whole stage
    if not args.smoke and importlib.util.find_spec("xdist") is not None:
        cmd += ["-n", "4", "--dist", dist]
    return cmd


def tests_commands(args: argparse.Namespace, work: Path, limit: float) -> list[list[str]]:
    # smoke: one file whose gpu tests all skip without CUDA (collecting every test file alone takes ~15 s)
    return [pytest_command(args, "gpu_tests.xml", "loadfile") +
            (["tests/minillm/kernels/test_rmsnorm.py"] if args.smoke else ["tests", f"--ignore={FLASH_TESTS}"])]


def flash_tests_commands(args: argparse.Namespace, work: Path, limit: float) -> list[list[str]]:
    # --dist load: one file's cases spread over the processes (loadfile would give them all to one)
    return [pytest_command(args, "flash_tests.xml", "load") + [FLASH_TESTS]]


def junit_figures(xml: Path, log: Path) -> dict[str, Any]:
    """Counts and failing tests from pytest's JUnit XML, or from its -v log when it was killed before writing it."""
    if xml.is_file():
        suites = ET.parse(xml).getroot()
        suites = [suites] if suites.tag == "testsuite" else list(suites)
        n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
        failed = [f"{c.get('classname')}::{c.get('name')}: {((bad.get('message') or '').strip() + chr(10)).splitlines()[0][:200]}"
                  for s in suites for c in s.iter("testcase") for bad in c if bad.tag in ("failure", "error")]
        return {"passed": n["tests"] - n["failures"] - n["errors"] - n["skipped"], "failed": n["failures"],
                "errors": n["errors"], "skipped": n["skipped"], "failing": failed[:30]}
    text = log.read_text(errors="replace") if log.is_file() else ""
    counts = {k.lower(): len(re.findall(rf"\b{k}\b", text)) for k in ("PASSED", "FAILED", "ERROR", "SKIPPED")}
    return {**counts, "failing": re.findall(r"(\S+::\S+) FAILED", text)[:30], "partial": True}


def tests_figures(args: argparse.Namespace, out: Path, work: Path) -> dict[str, Any]:
    return junit_figures(out / "gpu_tests.xml", out / "tests.log")


def flash_tests_figures(args: argparse.Namespace, out: Path, work: Path) -> dict[str, Any]:
    return junit_figures(out / "flash_tests.xml", out / "flash_tests.log")


def ddp_commands(args: argparse.Namespace, work: Path, limit: float) -> list[list[str]]:
    from minillm.train.parallel.group import free_port

    data, run = work / "data", work / "run"
    size = (["--max_steps", "4", "--n_layer", "1", "--n_embd", "16", "--block_size", "16", "--batch_size", "2",
             "--log_interval", "2", "--device", "cpu"] if args.smoke else
            ["--max_steps", "20", "--n_layer", "2", "--n_embd", "64", "--block_size", "64", "--batch_size", "8",
             "--log_interval", "5", "--device", "cuda"])
    return [[sys.executable, "-m", "minillm", "prepare", "--source", "arithmetic", "--n_docs", "200", "--out", str(data)],
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--master_addr=127.0.0.1",
             f"--master_port={free_port()}", "-m", "minillm", "train", "--data", str(data), "--preset", "tiny",
             "--size", "ci", "--out", str(run), "--parallel", "ddp", *size]]


def ddp_figures(args: argparse.Namespace, out: Path, work: Path) -> dict[str, Any]:
    history = work / "run" / "history.jsonl"
    log = (out / "ddp.log").read_text(errors="replace") if (out / "ddp.log").is_file() else ""
    nccl = re.search(r"NCCL version \S+", log)
    figures: dict[str, Any] = {"backend": "gloo" if args.smoke else ("nccl" if nccl else "nccl (no version line)"),
                               "nccl": nccl.group(0) if nccl else None, "processes": 1}
    if history.is_file():
        shutil.copy(history, out / "ddp_history.jsonl")
        rows = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
        if rows:
            last = rows[-1]
            figures.update(steps=last["step"], final_loss=last["loss"], tok_per_s=last.get("tok_per_s"),
                           mfu=last.get("mfu"))
    return figures


def bench_budget(args: argparse.Namespace, limit: float) -> str:
    return f"{max(1.0, limit - (10.0 if args.smoke else BENCH_MARGIN_S)):.0f}"


def mfu_commands(args: argparse.Namespace, work: Path, limit: float) -> list[list[str]]:
    # smoke: "triton" is compile-triton's model uncompiled (CPU Inductor would time a C++ compiler), 2 steps
    variants = (("eager", "triton") if args.smoke else
                ("eager", "compile", "compile-triton", "llama-compile-triton", "llama-compile"))
    return [[sys.executable, "bench/mfu.py", "--out", str(args.out / "mfu.jsonl"), "--budget-s", bench_budget(args, limit),
             *(a for v in variants for a in ("--variants", v)),
             *(["--smoke", "--explain", "all", "--steps", "2"] if args.smoke else [])]]


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def _run_rows(path: Path) -> tuple[list[dict], dict | None]:
    """(rows, the run record or None): from the run record when it was written, else from the row lines."""
    lines = _lines(path)
    run = next((r for r in reversed(lines) if r.get("record") == "run"), None)
    return (run["rows"], run) if run else ([row for r in lines for row in r.get("rows", [])], None)


def mfu_figures(args: argparse.Namespace, out: Path, work: Path) -> dict[str, Any]:
    rows, run = _run_rows(out / "mfu.jsonl")
    keep = ("variant", "tok_per_s", "step_ms", "mfu", "peak_mem_gb", "final_loss", "warmup_s", "error")
    shown = []
    for r in rows:
        d = r.get("dynamo") or {}
        shown.append({**{k: r.get(k) for k in keep}, "graph_breaks": d.get("graph_breaks"),
                      "break_reasons": [f"{b['reason']} ({b['where']})" for b in d.get("break_reasons", [])][:5]})
    return {"rows": shown, "skipped": [s["variant"] for s in run["skipped_variants"]] if run else None,
            "run_record": run is not None}


def attention_commands(args: argparse.Namespace, work: Path, limit: float) -> list[list[str]]:
    return [[sys.executable, "bench/attention_bench.py", "--out", str(args.out / "attention.jsonl"),
             "--budget-s", bench_budget(args, limit), *(["--smoke"] if args.smoke else [])]]


def attention_figures(args: argparse.Namespace, out: Path, work: Path) -> dict[str, Any]:
    from attention_bench import summarize  # the bench's own summary (headline, ratios, memory growth) of the rows

    rows, run = _run_rows(out / "attention.jsonl")
    failed = [f"T={r['T']} D={r['D']} {r['impl']}: {r['status']}: {r['reason']}"[:300] for r in rows
              if r["status"] in ("error", "oom")]
    return {"rows": len(rows), "summary": summarize(rows) if rows else None, "failed": failed,
            "skipped_items": len(run["skipped_items"]) if run else None, "run_record": run is not None}


def kernels_commands(args: argparse.Namespace, work: Path, limit: float) -> list[list[str]]:
    return [[sys.executable, "bench/kernel_speed.py", "--out", str(args.out / "kernels.jsonl"),
             "--budget-s", bench_budget(args, limit), *(["--smoke"] if args.smoke else [])]]


def kernels_figures(args: argparse.Namespace, out: Path, work: Path) -> dict[str, Any]:
    from _kernel_bench import summarize  # kernel_speed.py's own geometric means, over the rows on disk

    rows, run = _run_rows(out / "kernels.jsonl")
    failed = [f"{r['op']} {r['shape']} {r['impl']}: {r['error']}"[:300] for r in rows if r.get("error")]
    sizes = {(r["op"], repr(r["shape"])) for r in rows if r["impl"] == "minillm" and r.get("ms")}
    return {"rows": len(rows), "sizes": len(sizes), "summary": summarize(rows) if rows else {}, "failed": failed,
            "skipped_sizes": len(run["skipped_sizes"]) if run else None, "run_record": run is not None}


# Planned limits (GPU, smoke) in seconds, scaled to --budget-s. mfu gets the most: two cold Inductor compilations
# of GPT-2 124M (forward and backward) before compile-triton is measured. attention's 70 s leave its bench 45 s
# (BENCH_MARGIN_S): stage 1 (T=4096, D=128) and the memory sweep, kernels compiled by flash_tests just before.
STAGES = [
    Stage("tests", 90, 60, tests_commands, tests_figures, {"MINILLM_SIZE": "ci"}),
    Stage("ddp", 40, 60, ddp_commands, ddp_figures, {"NCCL_DEBUG": "VERSION"}),
    Stage("flash_tests", 55, 30, flash_tests_commands, flash_tests_figures, {"MINILLM_SIZE": "ci"}),
    Stage("attention", 70, 60, attention_commands, attention_figures),
    Stage("mfu", 160, 60, mfu_commands, mfu_figures, {"TORCH_LOGS": "graph_breaks,recompiles"}),
    Stage("kernels", 65, 60, kernels_commands, kernels_figures),
]


# --------------------------------------------------------------------------------------------- running a stage

def run_command(cmd: list[str], env: dict[str, str], log: Path, limit_s: float, grace_s: float) -> int | None:
    """Run `cmd` from the checkout's root, its output appended to `log`; None if it passed `limit_s` (then SIGTERM,
    and SIGKILL for whatever is left of its process tree `grace_s` later)."""
    from minillm.train.launch import signal_tree  # the one process-tree signaller (torchrun's workers included)

    with open(log, "ab") as f:
        f.write(f"$ {' '.join(cmd)}\n".encode())
        f.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=max(limit_s, 0.1))
        except subprocess.TimeoutExpired:
            signal_tree(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            signal_tree(proc.pid, signal.SIGKILL)
            proc.wait()
            f.write(f"\n[gpu_check: stopped after its limit of {limit_s:.0f} s]\n".encode())
            return None


def run_stage(stage: Stage, args: argparse.Namespace, limit_s: float, env: dict[str, str],
              work: Path) -> dict[str, Any]:
    log = args.out / f"{stage.name}.log"
    t0 = time.monotonic()
    commands = stage.commands(args, work, limit_s)
    status, rc = "passed", 0
    for cmd in commands:
        rc = run_command(cmd, {**env, **stage.env}, log, limit_s - (time.monotonic() - t0),
                         SMOKE_GRACE_S if args.smoke else GRACE_S)
        if rc is None:
            status = "timeout"
            break
        if rc != 0:
            status = "failed"
            break
    try:
        figures = stage.figures(args, args.out, work)
    except Exception as e:  # noqa: BLE001 (the figures of a broken stage must not lose the other stages)
        figures = {"error": f"reading the figures failed: {type(e).__name__}: {e}"[:300]}
    return {"stage": stage.name, "status": status, "rc": rc, "seconds": round(time.monotonic() - t0, 1),
            "limit_s": round(limit_s, 1), "commands": [" ".join(c) for c in commands], "log": log.name,
            "figures": figures}


# --------------------------------------------------------------------------------------------- main

def refuse(args: argparse.Namespace) -> str | None:
    """Why nothing can run here (None when everything can)."""
    import importlib.metadata

    import torch

    if not args.smoke and not torch.cuda.is_available():
        return ("bench/gpu_check.py checks minillm on a CUDA GPU, and this machine has none (torch "
                f"{torch.__version__}, torch.cuda.is_available() is False). Run it on a CUDA machine, or pass --smoke "
                "to rehearse every stage at tiny sizes on the CPU.")
    try:
        triton = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton = "0"
    found = {"python": sys.version.split()[0], "torch": torch.__version__, "triton": triton}
    old = [f"{k} {found[k]} (needs >= {'.'.join(map(str, v))})" for k, v in MIN_VERSIONS.items()
           if _version(found[k]) < v]
    if old:
        return f"unsupported versions here: {', '.join(old)}; minillm needs CUDA torch >= 2.5, triton >= 3.1, Python >= 3.10"
    if args.out.exists() and any(args.out.iterdir()):
        return f"--out {args.out} is not empty: give a new folder (each check keeps its own logs and records)"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="new (or empty) folder for the logs, records and summary")
    ap.add_argument("--smoke", action="store_true", help="no GPU: every stage tiny on the CPU (Triton interpreter, "
                    "gloo); its figures mean nothing, it checks that the check runs")
    ap.add_argument("--budget-s", type=float, default=None, help=f"total seconds [default: {BUDGET_S:.0f}; "
                    "smoke: the sum of the stages' smoke limits]")
    ap.add_argument("--stages", action="append", choices=[s.name for s in STAGES], help="only these (repeatable)")
    args = ap.parse_args(argv)
    args.out = args.out.resolve()
    why = refuse(args)
    if why:
        print(why, file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    from minillm.provenance import append_jsonl, provenance

    import torch

    stages = [s for s in STAGES if args.stages is None or s.name in args.stages]
    shares = [s.smoke_s if args.smoke else s.share_s for s in stages]
    budget = args.budget_s if args.budget_s is not None else (sum(shares) if args.smoke else BUDGET_S)
    shares = [x * budget / sum(shares) for x in shares]  # the plan, scaled to the budget
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "PYTHONUNBUFFERED": "1"}
    if args.smoke:
        env.update(TRITON_INTERPRET="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    else:
        env.pop("TRITON_INTERPRET", None)  # kernels compiled for the GPU, never interpreted, in every stage
    device = "cpu (smoke)" if args.smoke else torch.cuda.get_device_name()
    header = {"record": "header", "check": "gpu_check", "smoke": args.smoke, "device": device, "budget_s": budget,
              "plan": {s.name: round(x, 1) for s, x in zip(stages, shares)}, "provenance": provenance()}
    append_jsonl(args.out / "stages.jsonl", header)
    print(f"gpu_check on {device}: {', '.join(f'{s.name} {x:.0f} s' for s, x in zip(stages, shares))}; "
          f"writing to {args.out}", flush=True)

    start, results, carry = time.monotonic(), [], 0.0
    for stage, share in zip(stages, shares):
        left = budget - (time.monotonic() - start)
        limit = min(share + carry, left)
        if limit < 1:
            result = {"stage": stage.name, "status": "skipped", "rc": None, "seconds": 0.0, "limit_s": round(limit, 1),
                      "commands": [], "log": f"{stage.name}.log", "figures": {"error": "no time left in the budget"}}
        else:
            print(f"[{time.monotonic() - start:5.0f} s] {stage.name}: up to {limit:.0f} s ...", flush=True)
            with tempfile.TemporaryDirectory(prefix=f"gpu_check_{stage.name}_") as work:
                result = run_stage(stage, args, limit, env, Path(work))
        carry = max(0.0, limit - result["seconds"])
        append_jsonl(args.out / "stages.jsonl", {"record": "stage", **result, "provenance": provenance()})
        print(f"[{time.monotonic() - start:5.0f} s] {stage.name}: {result['status']} in {result['seconds']:.0f} s: "
              f"{stage_line(result)}", flush=True)
        results.append(result)
    text = summary_markdown(header, results)
    (args.out / "summary.md").write_text(text)
    print("\n" + text + f"\n(everything is in {args.out})")
    return 0 if all(r["status"] == "passed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
