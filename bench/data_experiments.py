"""Run chapter 03's training experiments at laptop scale and append one record per experiment. Survey §4.1.

    python bench/data_experiments.py                 # ~6 min on one CPU thread
    python bench/data_experiments.py --only mixture

- duplication: the same model and token budget with 0-90% of the data spent on 20 documents repeated.
- mixture: a 15-mixture grid over English stories, Chinese stories and arithmetic, the loss on each domain,
  and the data mixing law fitted per domain (what the chapter's slider widget reads).
- raw_vs_clean: the same model trained on everything extracted from a synthetic crawl vs on what the
  cleaning pipeline kept (minillm.data.curation), scored on clean held-out English and Chinese.
- datatrove: the same synthetic crawl through datatrove (FineWeb's filters and MinHash dedup in a
  LocalPipelineExecutor, 4 tasks on 2 workers) beside the teaching pipeline, both kept sets scored on the
  crawl's ground truth and timed (book/ch03_data/studies_datatrove.py). No model is trained.

Appends to bench/results/data_experiments.jsonl: {"experiment", "summary", "rows", "provenance"}.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict

import torch

from book.ch03_data.studies_experiments import duplication_study
from book.runs import Run
from minillm.data.mixture import fit_mixing_law, simplex_grid
from book.ch03_data.studies_mixture import mixture_sweep
from minillm.provenance import append_jsonl, provenance
from book import results

OUT = results.path("data_experiments.jsonl", must_exist=False)
RUN = Run(n_layer=2, n_embd=64, n_head=2, block_size=64, batch_size=16, steps=600)


def duplication() -> dict:
    t0 = time.perf_counter()
    rows = duplication_study((0.0, 0.25, 0.5, 0.75, 0.9), n_repeated=20, run=RUN)
    summary = {"run": asdict(RUN), "excess_by_dup_share": {f"{r['dup_share']:.2f}": round(r["excess"], 4) for r in rows},
               "seconds": round(time.perf_counter() - t0, 1)}
    print("duplication: excess loss by share of repeated data " + str(summary["excess_by_dup_share"]), flush=True)
    return {"experiment": "duplication", "summary": summary, "rows": rows}


def mixture() -> dict:
    t0 = time.perf_counter()
    rows = mixture_sweep(simplex_grid(3, 7), RUN, progress=True)
    laws = {d: fit_mixing_law(rows, d, key="excess") for d in rows[0]["weights"]}
    summary = {"run": asdict(RUN), "laws": {d: asdict(law) for d, law in laws.items()},
               "seconds": round(time.perf_counter() - t0, 1)}
    print("mixture: law rmse " + ", ".join(f"{d}: {law.rmse:.4f}" for d, law in laws.items()), flush=True)
    return {"experiment": "mixture", "summary": summary, "rows": rows}


def raw_vs_clean() -> dict:
    from book.ch03_data.studies_crawl import crawl_experiment

    t0 = time.perf_counter()
    result = crawl_experiment(n_pages=3000, seed=0, run=RUN)
    summary = {"run": asdict(RUN), **{k: v for k, v in result.items() if k != "stages"},
               "seconds": round(time.perf_counter() - t0, 1)}
    print(f"raw vs clean: {summary['clean_minus_raw']}", flush=True)
    return {"experiment": "raw_vs_clean", "summary": summary, "rows": result["stages"]}


def datatrove() -> dict:
    from book.ch03_data.studies_datatrove import datatrove_study

    t0 = time.perf_counter()
    out = datatrove_study(n_pages=3000, seed=0, tasks=4, workers=2)
    summary = {**out["summary"], "by_language": out["by_language"], "seconds": round(time.perf_counter() - t0, 1)}
    for p in ("teaching", "datatrove"):
        r = summary[p]
        print(f"datatrove study, {p}: kept {r['kept']}, precision {r['precision']:.3f}, recall {r['recall']:.3f}, "
              f"{r['seconds']:.1f} s", flush=True)
    return {"experiment": "datatrove", "summary": summary, "rows": out["rows"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=("duplication", "mixture", "raw_vs_clean", "datatrove"), action="append")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name, fn in (("duplication", duplication), ("mixture", mixture), ("raw_vs_clean", raw_vs_clean),
                     ("datatrove", datatrove)):
        if not args.only or name in args.only:
            with results.recording() as settings:  # every run it trains, for the record
                record = fn()
            append_jsonl(args.out, {**record, "settings": settings, "provenance": provenance()})


if __name__ == "__main__":
    main()
