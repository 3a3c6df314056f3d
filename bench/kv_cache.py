"""What does the KV cache buy at decoding time? (Survey §4.2.2 KV cache, §4.2.4 decoding.)

Without a cache, every new token re-encodes the whole prefix, so a step costs O(t) positions of work and a
sequence O(T^2); with one, each step encodes one position and attends over the stored keys and values. This
script times greedy decoding (`minillm.generate.kv_cache_speed`) of the `small` preset (4 layers, 128 wide,
vocab 256) with block_size 512 on CPU, one thread: a prompt of --prompt-len random tokens continued until the
sequence has seq_len tokens, with and without the cache, taking the best of --repeats runs of each. Tokens/s
are per second of this process's CPU time (`kv_cache_speed(..., cpu_time=True)`): on a shared machine other
processes stretch wall time (measured here: 2-4x run to run) but not the work, and with one thread CPU time
equals wall time on an idle machine. Pass --wall to time wall-clock instead.

    OMP_NUM_THREADS=1 python bench/kv_cache.py [--seq-lens 32,64,128,256,512] [--prompt-len 8] [--repeats 3] [--wall]

Prints one line per sequence length and appends a record {"study": "kv_cache", config, "rows": [{seq_len,
prompt_len, new_tokens, cached_tps, uncached_tps, speedup}], provenance} to bench/results/kv_cache.jsonl;
`book.ch07_utilization_eval.plots.plot_kv_speed(rows)` draws it.
"""
from __future__ import annotations

import argparse

import torch

from minillm.generate import kv_cache_speed
from minillm.model.transformer import GPT
from minillm.presets import model_preset
from book import results
from book.results import run_studies

RESULTS = results.path("kv_cache.jsonl", must_exist=False)
PRESET, BLOCK_SIZE, VOCAB = "small", 512, 256


def measure(seq_lens: list[int], prompt_len: int, repeats: int, cpu_time: bool = True) -> list[dict]:
    """One row per sequence length: best-of-`repeats` tokens/s with and without the cache, and their ratio."""
    torch.manual_seed(0)
    model = GPT(model_preset(PRESET, block_size=BLOCK_SIZE, vocab_size=VOCAB)).eval()
    rows = []
    for seq_len in seq_lens:
        new = seq_len - prompt_len
        cached = max(kv_cache_speed(model, prompt_len, new, True, cpu_time=cpu_time) for _ in range(repeats))
        uncached = max(kv_cache_speed(model, prompt_len, new, False, cpu_time=cpu_time) for _ in range(repeats))
        rows.append({"seq_len": seq_len, "prompt_len": prompt_len, "new_tokens": new,
                     "cached_tps": round(cached, 1), "uncached_tps": round(uncached, 1),
                     "speedup": round(cached / uncached, 2)})
        print(f"seq_len {seq_len:4d}: cached {cached:8.1f} tok/s  uncached {uncached:8.1f} tok/s  "
              f"speedup {cached / uncached:5.2f}x", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-lens", default="32,64,128,256,512", help="comma-separated total lengths (<= 512)")
    ap.add_argument("--prompt-len", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--wall", action="store_true", help="time wall-clock instead of process CPU time")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    seq_lens = [int(s) for s in args.seq_lens.split(",")]
    if any(not args.prompt_len < s <= BLOCK_SIZE for s in seq_lens):
        ap.error(f"every seq_len must lie in ({args.prompt_len}, {BLOCK_SIZE}]: got {seq_lens}")
    torch.set_num_threads(1)  # one thread: the cache's saving is in work, not in parallelism
    config = {"preset": PRESET, "block_size": BLOCK_SIZE, "vocab_size": VOCAB, "device": "cpu", "threads": 1,
              "decoding": "greedy", "repeats": args.repeats, "clock": "wall" if args.wall else "process_cpu"}
    study = {"kv_cache": lambda: measure(seq_lens, args.prompt_len, args.repeats, cpu_time=not args.wall)}
    for rec in run_studies(study, args.out,
                           summaries={"kv_cache": lambda rows: {"max_speedup": max(r["speedup"] for r in rows)}},
                           config=config):
        print(f"{rec['study']}: {rec['seconds']} s, summary {rec['summary']} -> {args.out}")


if __name__ == "__main__":
    main()
