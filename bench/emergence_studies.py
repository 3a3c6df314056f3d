"""Run chapter 02's emergence studies and append one record per study. Survey §2.1, Schaeffer et al. 2023.

    python bench/emergence_studies.py                 # the laptop profile: ~60 min on one CPU thread
    python bench/emergence_studies.py --size ci --only size_sweep

On two cores, share the training between two processes through a model cache (how the shipped record was made):

    python bench/emergence_studies.py --cache /tmp/ezoo --only size_sweep --only icl_shots --only inverse_scaling --only cot
    python bench/emergence_studies.py --cache /tmp/ezoo --first no_cot:2 --first no_cot:4 \
        --first no_instructions:2 --first no_instructions:4 --only instructions

One `ModelZoo` trains each model size once (and the ablation arms at a few sizes) and every study evaluates
those same models (book/ch02_emergence/studies.py). Appends to bench/results/emergence_studies.jsonl:
{"study", "size", "run", "rows", "summary", "seconds", "provenance"}; the chapter shows the latest record of
each study beside the reader's own small run. A study's "seconds" includes the training it triggered first.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict

import torch

from book.ch02_emergence.studies import (EmergenceRun, ModelZoo, appearance_table, cot_study, icl_by_shots, instruction_study, inverse_scaling_study, size_sweep)
from book import results
from book.results import run_studies

OUT = results.path("emergence_studies.jsonl", must_exist=False)


def studies(zoo: ModelZoo) -> dict:
    """name -> (function of no arguments returning rows, summary function of the rows)."""
    def em(rows, *keys):
        return {"/".join(str(r[k]) for k in keys): round(r["exact_match"], 3) for r in rows}

    return {
        "size_sweep": (lambda: size_sweep(zoo), lambda rows: {"appears_at": appearance_table(rows)}),
        "icl_shots": (lambda: icl_by_shots(zoo), lambda rows: em(rows, "size", "task", "shots")),
        "cot": (lambda: cot_study(zoo), lambda rows: em(rows, "size", "arm", "digits", "prompt")),
        "instructions": (lambda: instruction_study(zoo), lambda rows: em(rows, "size", "arm", "templates")),
        "inverse_scaling": (lambda: inverse_scaling_study(zoo),
                            lambda rows: {r["size"]: [round(r["correct"], 3), round(r["imitation"], 3)] for r in rows}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--size", default="laptop", choices=("ci", "laptop", "gpu"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", action="append", help="run only these studies (repeatable)")
    ap.add_argument("--cache", help="directory where trained models are saved and shared with other processes")
    ap.add_argument("--first", action="append", default=[], metavar="ARM:INDEX",
                    help="train (or load) these models before any study, e.g. no_cot:2 (repeatable; needs --cache "
                         "to help another process)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = EmergenceRun.for_size(args.size)
    zoo = ModelZoo(run, cache_dir=args.cache)
    for item in args.first:
        arm, _, index = item.partition(":")
        zoo.get(int(index), arm)
    table = studies(zoo)
    runs = {name: fn for name, (fn, _) in table.items()}
    summaries = {name: summarize for name, (_, summarize) in table.items()}
    for rec in run_studies(runs, args.out, args.only, summaries=summaries, size=args.size, run=asdict(run)):
        print(f"{rec['study']}: {len(rec['rows'])} rows in {rec['seconds']:.0f} s; {rec['summary']}", flush=True)


if __name__ == "__main__":
    main()
