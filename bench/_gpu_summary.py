"""bench/gpu_check.py's summary: one line per stage for its table, and summary.md with the benches' figures.

Survey §4.3 (efficient training). Not a script (the leading underscore): gpu_check.py imports it from its folder.
Each stage's figures come from its `<stage>_figures` function in gpu_check.py; here they only become text:

    stage_line(result)                  -> what one stage found, for the table (and the live output)
    summary_markdown(header, results)   -> summary.md: the stage table, MFU, kernels, attention, problems
"""
from __future__ import annotations

import json
from typing import Any


def _f(v: Any, spec: str = ".3g") -> str:
    return "" if v is None else format(v, spec)


def _tests_line(f: dict[str, Any]) -> str:
    text = ", ".join(f"{f.get(k, 0)} {k}" for k in ("passed", "failed", "errors", "skipped") if k in f)
    return text + (" (counted from the log: the stage was stopped)" if f.get("partial") else "")


def _ddp_line(f: dict[str, Any]) -> str:
    if "steps" not in f:
        return f"no training history (backend {f['backend']}); see ddp.log"
    return (f"{f['steps']} steps on 1 process, {f['backend']}, final loss {f['final_loss']:.3f}, "
            f"{_f(f.get('tok_per_s'), ',.0f')} tokens/s")


def _mfu_line(f: dict[str, Any]) -> str:
    ok = [x["variant"] for x in f["rows"] if not x.get("error")]
    bad = [x["variant"] for x in f["rows"] if x.get("error")]
    return (f"measured: {', '.join(ok) or 'none'}" + (f"; failed: {', '.join(bad)}" if bad else "") +
            (f"; skipped: {', '.join(f['skipped'])}" if f.get("skipped") else "") +
            ("" if f["run_record"] else "; no run record (stopped hard)"))


def _kernels_line(f: dict[str, Any]) -> str:
    return (f"{f['sizes']} sizes, {f['rows']} rows" + (f", {len(f['failed'])} failed" if f["failed"] else "") +
            (f", {f['skipped_sizes']} sizes skipped (budget)" if f.get("skipped_sizes") else "") +
            ("" if f["run_record"] else "; no run record (stopped hard)"))


def _attention_line(f: dict[str, Any]) -> str:
    h = (f.get("summary") or {}).get("headline")
    ratio = None if h is None else h["speed_vs_best_sdpa"]
    head = ("headline not measured" if ratio is None else
            f"T={h['T']} D={h['D']} fwd+bwd {ratio:.2f}x best SDPA ({h['best_sdpa']}), goal >= {h['goal']}x")
    return (f"{head}; {f['rows']} rows" + (f", {len(f['failed'])} failed" if f["failed"] else "") +
            (f", {f['skipped_items']} items skipped (budget)" if f.get("skipped_items") else "") +
            ("" if f["run_record"] else "; no run record (stopped hard)"))


LINES = {"tests": _tests_line, "ddp": _ddp_line, "flash_tests": _tests_line, "attention": _attention_line,
         "mfu": _mfu_line, "kernels": _kernels_line}


def stage_line(r: dict[str, Any]) -> str:
    """One line of what a stage found, for the table."""
    f = r["figures"]
    if "error" in f and len(f) == 1:
        return f["error"]
    return LINES[r["stage"]](f) if r["stage"] in LINES else json.dumps(f)[:200]


def summary_markdown(header: dict[str, Any], results: list[dict[str, Any]]) -> str:
    prov = header["provenance"]
    v, git = prov["versions"], prov.get("git") or {}
    lines = [f"# GPU check{' (smoke: CPU, tiny; no figure here is a measurement)' if header['smoke'] else ''}", "",
             f"{prov['date']} on {header['device']}; commit {git.get('commit', '?')}"
             f"{' (uncommitted changes)' if git.get('dirty') else ''}; python {v['python']}, torch {v['torch']} "
             f"(CUDA {v['cuda']}), triton {v['triton']}; `{prov['command']}`; budget {header['budget_s']:.0f} s", "",
             "| stage | status | seconds | limit s | result |", "|---|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['status']} | {r['seconds']:.0f} | {r['limit_s']:.0f} | {stage_line(r)} |"
              for r in results]
    by = {r["stage"]: r["figures"] for r in results}
    attention = by.get("attention", {}).get("summary")
    if attention:
        from attention_bench import summary_markdown as attention_markdown

        lines += ["", "## Attention (bench/attention_bench.py): ours vs SDPA's backends and eager, causal, bf16", "",
                  "speed_vs_best_sdpa = the fastest SDPA backend's ms / ours (> 1: ours faster); issue #23's goal is "
                  ">= 0.9 forward+backward at T=4096, D=128 on an H100.", "",
                  attention_markdown(attention, header["smoke"])]
    mfu_rows = by.get("mfu", {}).get("rows") or []
    if mfu_rows:
        lines += ["", "## MFU (bench/mfu.py)", "", "| variant | tokens/s | step ms | MFU % | peak GB | final loss | "
                  "graph breaks | first break |", "|---|---|---|---|---|---|---|---|"]
        for x in mfu_rows:
            mfu = x.get("error") or _f(None if x["mfu"] is None else 100 * x["mfu"], ".1f")
            lines.append(f"| {x['variant']} | {_f(x['tok_per_s'], ',.0f')} | {_f(x['step_ms'], '.1f')} | {mfu} | "
                         f"{_f(x['peak_mem_gb'], '.1f')} | {_f(x['final_loss'], '.3f')} | {_f(x['graph_breaks'], 'd')} "
                         f"| {(x['break_reasons'] or [''])[0]} |")
    summary = by.get("kernels", {}).get("summary") or {}
    if summary:
        lines += ["", "## Kernels (bench/kernel_speed.py): minillm vs the others, geometric mean over the sizes measured",
                  "", "speed-up > 1 and memory ratio < 1 favour minillm.", "",
                  "| op | speed-up vs eager | vs compile | vs liger | memory vs eager | vs compile |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {op} | {_f(s['speedup_vs_eager'])} | {_f(s['speedup_vs_compile'])} | "
                  f"{_f(s['speedup_vs_liger'])} | {_f(s['mem_ratio_vs_eager'])} | {_f(s['mem_ratio_vs_compile'])} |"
                  for op, s in summary.items()]
    problems = [f"- {stage}: {t}" for stage in ("tests", "flash_tests") for t in by.get(stage, {}).get("failing", [])]
    problems += [f"- {stage}: {t}" for stage in ("attention", "kernels") for t in by.get(stage, {}).get("failed", [])]
    problems += [f"- {r['stage']}: {r['status']}, see {r['log']}" for r in results
                 if r["status"] != "passed" and r["stage"] in ("ddp", "attention", "mfu", "kernels")]
    if problems:
        lines += ["", "## Problems", "", *problems]
    return "\n".join(lines) + "\n"
