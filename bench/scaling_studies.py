"""Run the two scaling studies of chapter 01 at laptop scale and append one record per study. Survey §2.1.

    python bench/scaling_studies.py            # ~25 min on one CPU thread (--only data|knowledge)

1. Data scaling: the laptop sweep's data (story corpus, char level) and a fixed 1-layer, 48-wide model trained
   for 5 ... 320 tokens per (non-embedding) parameter, each length a separate cosine run annealed to its end.
2. Knowledge capacity: four sizes (3k to 100k non-embedding parameters) on a 300-person world with whole-word
   BPE tokens, ~1000 exposures per fact, bits stored at 100, 300 and 1000 exposures (to see saturation).

Appends to bench/results/scaling_studies.jsonl: {"study", "rows", "summary", "settings" (every run trained,
book.results.recording), "provenance"}.
"""
from __future__ import annotations

import argparse
import time

import torch

from minillm.provenance import append_jsonl, provenance
from book.ch01_scaling_laws.studies_knowledge import knowledge_capacity
from book.ch01_scaling_laws.studies import data_scaling_curve, improvement_per_decade
from book import results

OUT = results.path("scaling_studies.jsonl", must_exist=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=("data", "knowledge"), default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.only in (None, "data"):
        t0 = time.perf_counter()
        with results.recording() as recorded:  # every run it trains, for the record
            rows = data_scaling_curve(1, 48, 1, (5, 10, 20, 40, 80, 160, 320), progress=True)
        decades = improvement_per_decade(rows)
        own = [r for r in rows if r["schedule"] == "own_cosine"]
        seconds = time.perf_counter() - t0
        summary = {"model": "L1 E48 H1", "n_params": own[0]["n_params"], "floor": own[0]["floor"],
                   "val_loss_by_tokens_per_param": {f"{r['tokens_per_param']:.0f}": round(r["val_loss"], 4)
                                                    for r in own},
                   "per_step": decades, "seconds": round(seconds, 1)}
        append_jsonl(args.out, {"study": "data_scaling", "summary": summary, "rows": rows, "settings": recorded,
                                "provenance": provenance()})
        print("data scaling: " + ", ".join(f"{k} tok/param -> {v}" for k, v in
                                          summary["val_loss_by_tokens_per_param"].items())
              + f" (floor {summary['floor']:.4f}; {seconds:.0f} s)", flush=True)

    if args.only in (None, "knowledge"):
        t0 = time.perf_counter()
        settings = dict(n_people=300, exposures=1000, measure_at=(0.1, 0.3, 1.0), tokenizer="bpe", block_size=32)
        with results.recording() as recorded:
            rows = knowledge_capacity([(1, 16, 1), (2, 16, 1), (2, 32, 1), (2, 64, 2)], progress=True, **settings)
        seconds = time.perf_counter() - t0
        final = [r for r in rows if r["steps"] == max(x["steps"] for x in rows)]
        summary = {"settings": settings, "world_bits_vs_prior": final[0]["total_bits_vs_prior"],
                   "published_bits_per_param": 2.0,
                   "bits_vs_prior": {f"L{r['n_layer']}E{r['n_embd']}": round(r["bits_vs_prior"]) for r in final},
                   "bits_per_param": {f"L{r['n_layer']}E{r['n_embd']}": round(r["bits_per_param"], 4) for r in final},
                   "seconds": round(seconds, 1)}
        append_jsonl(args.out, {"study": "knowledge_capacity", "summary": summary, "rows": rows,
                                "settings": [settings, *recorded], "provenance": provenance()})
        print("knowledge capacity: " + ", ".join(f"{k}: {v:.3f} bits/param" for k, v in
                                                 summary["bits_per_param"].items())
              + f" (published ~2; world holds {summary['world_bits_vs_prior']:.0f} bits; {seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
