"""Run the two scaling studies of chapter 01 at laptop scale and append one record per study. Survey §2.1.

    python bench/scaling_studies.py            # ~10 min on one CPU thread

1. Data scaling: the laptop sweep's data (story corpus, char level) and a fixed 1-layer, 48-wide model trained
   for 5 ... 320 tokens per (non-embedding) parameter, each length a separate cosine run annealed to its end.
2. Knowledge capacity: three sizes on a 400-person world, ~100 exposures per fact, bits stored at half and
   at the end of training (two points to see whether it saturates).

Appends to bench/results/scaling_studies.jsonl: {"study": ..., "rows": [...], "summary": ..., "provenance": ...}.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from minillm.provenance import append_jsonl, provenance
from minillm.scaling.studies import data_scaling_curve, improvement_per_decade, knowledge_capacity

OUT = Path(__file__).resolve().parent / "results" / "scaling_studies.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=("data", "knowledge"), default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.only in (None, "data"):
        t0 = time.perf_counter()
        rows = data_scaling_curve(1, 48, 1, (5, 10, 20, 40, 80, 160, 320), progress=True)
        decades = improvement_per_decade(rows)
        own = [r for r in rows if r["schedule"] == "own_cosine"]
        seconds = time.perf_counter() - t0
        summary = {"model": "L1 E48 H1", "n_params": own[0]["n_params"], "floor": own[0]["floor"],
                   "val_loss_by_tokens_per_param": {f"{r['tokens_per_param']:.0f}": round(r["val_loss"], 4)
                                                    for r in own},
                   "per_step": decades, "seconds": round(seconds, 1)}
        append_jsonl(args.out, {"study": "data_scaling", "summary": summary, "rows": rows,
                                "provenance": provenance()})
        print("data scaling: " + ", ".join(f"{k} tok/param -> {v}" for k, v in
                                          summary["val_loss_by_tokens_per_param"].items())
              + f" (floor {summary['floor']:.4f}; {seconds:.0f} s)", flush=True)

    if args.only in (None, "knowledge"):
        t0 = time.perf_counter()
        rows = knowledge_capacity([(1, 16, 1), (1, 32, 1), (1, 64, 2)], n_people=400, exposures=100,
                                  progress=True)
        seconds = time.perf_counter() - t0
        final = [r for r in rows if r["steps"] == max(x["steps"] for x in rows)]
        summary = {"world_bits": final[0]["total_bits"], "published_bits_per_param": 2.0,
                   "bits_per_param": {f"L{r['n_layer']}E{r['n_embd']}": round(r["bits_per_param"], 4) for r in final},
                   "seconds": round(seconds, 1)}
        append_jsonl(args.out, {"study": "knowledge_capacity", "summary": summary, "rows": rows,
                                "provenance": provenance()})
        print("knowledge capacity: " + ", ".join(f"{k}: {v:.3f} bits/param" for k, v in
                                                 summary["bits_per_param"].items())
              + f" (published ~2; world holds {summary['world_bits']:.0f} bits; {seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
