"""Run chapter 04's architecture studies at laptop scale and append one record per study. Survey §4.2.

    python bench/arch_studies.py                       # every study, ~20 min on one CPU thread
    python bench/arch_studies.py --only stability --only moe
    python bench/arch_studies.py --only objectives     # causal LM vs prefix LM vs T5 span corruption, ~2 min

Each study trains small GPTs on the story corpus (char level) with `ArchRun.for_size("laptop")`, changing
one architectural choice at a time (minillm/model/studies*.py). Appends to bench/results/arch_studies.jsonl:
{"study", "rows", "summary", "provenance"}; the chapter shows the latest record of each study beside the
reader's own runs.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict

import torch

from book.ch04_architectures.studies import activation_study, position_extrapolation, stability_map, stability_summary
from book.ch04_architectures.studies_arch import architecture_comparison, moe_study, prefix_continuation
from book.ch04_architectures.studies_attention import attention_study, kv_heads_study
from book.ch04_architectures.studies_objectives import arm_label, objectives_study
from book.runs import ArchRun
from book import results
from book.results import run_studies

OUT = results.path("arch_studies.jsonl", must_exist=False)


def studies(run: ArchRun) -> dict:
    """name -> (function of no arguments returning rows, summary function of the rows)."""
    return {
        "stability": (lambda: stability_map(depths=(2, 4, 8), lrs=(1e-3, 3e-3, 1e-2, 3e-2, 1e-1), run=run),
                      lambda rows: {"highest_stable_lr": stability_summary(rows)}),
        "activation": (lambda: activation_study(run=run),
                       lambda rows: {r["activation"]: round(r["val_loss"], 4) for r in rows}),
        "positions": (lambda: position_extrapolation(train_len=32, eval_lens=(32, 64, 128), run=run),
                      lambda rows: {f"{r['position']}@{r['eval_len']}": round(r["loss"], 4) for r in rows}),
        "attention": (lambda: attention_study(windows=(None, 32, 16, 8), run=run),
                      lambda rows: {str(r.get("window")): round(r["val_loss"], 4) for r in rows}),
        "kv_heads": (lambda: kv_heads_study(run=run),
                     lambda rows: {f"kv{r['n_kv_head']}@{r['seq_len']}": [r["kv_cache_bytes"], round(r["decode_tok_per_s"])]
                                   for r in rows}),
        "prefix": (lambda: prefix_continuation(run=run),
                   lambda rows: {r["arm"]: round(r["suffix_val_loss"], 4) for r in rows}),
        "architectures": (lambda: architecture_comparison(run=run),
                          lambda rows: {r["arch"]: round(r["suffix_val_loss"], 4) for r in rows}),
        "moe": (lambda: moe_study(n_experts=(1, 2, 4, 8), run=run),
                lambda rows: {f"E{r['n_expert']}{'' if r.get('balance', True) else ' no-balance'}":
                              [round(r["val_loss"], 4), round(r.get("max_share") or 0, 3)] for r in rows}),
        "objectives": (lambda: objectives_study(run=run),
                       lambda rows: {arm_label(r): {p: round(r[p], 4) for p in ("next_token", "span_fill", "suffix")}
                                     for r in rows}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", action="append", help="run only these studies (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = ArchRun.for_size("laptop")
    table = studies(run)
    runs = {name: fn for name, (fn, _) in table.items()}
    summaries = {name: summarize for name, (_, summarize) in table.items()}
    for rec in run_studies(runs, args.out, args.only, summaries=summaries, run=asdict(run)):
        print(f"{rec['study']}: {len(rec['rows'])} rows in {rec['seconds']:.0f} s; {rec['summary']}", flush=True)


if __name__ == "__main__":
    main()
