"""Loss vs the entropy floor of the synthetic story corpus, for three model sizes (Survey §2.1, §4.1).

Trains three GPTs on the same char-tokenized "story" corpus with the same token budget and reports, for
each: parameters, steps, wall time, final held-out loss (nats/token = nats/char here) and the exact floor.
The gap to the floor should shrink as the model grows. Prints one summary line and appends a JSON record
to bench/results/story_floor.jsonl.

    python bench/story_floor.py                 # ~4-6 min on 2 CPU cores
    python bench/story_floor.py --steps 100     # quick look
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from minillm import CharTokenizer, DataSplits, GPT, ModelConfig, TrainConfig, Trainer
from minillm.data.synthetic import corpus
from minillm.provenance import append_jsonl, provenance

SIZES = {  # name: (n_layer, n_head, n_embd)
    "S": (2, 2, 64),
    "M": (4, 4, 128),
    "L": (6, 6, 192),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--block_size", type=int, default=128)
    ap.add_argument("--n_docs", type=int, default=20000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "story_floor.jsonl"))
    args = ap.parse_args()

    c = corpus("story", n_docs=args.n_docs, seed=0)
    text = c.text()
    tok = CharTokenizer.from_text(text)
    floor = c.entropy_per_token(tok)  # = nats per char for a char tokenizer
    data = DataSplits.from_tokens(torch.tensor(tok.encode(text)), val_fraction=0.05, vocab_size=tok.vocab_size)
    runs = []
    for name, (n_layer, n_head, n_embd) in SIZES.items():
        torch.manual_seed(0)
        model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=args.block_size, n_layer=n_layer,
                                n_head=n_head, n_embd=n_embd))
        cfg = TrainConfig(batch_size=args.batch_size, max_steps=args.steps, lr=2e-3, warmup_steps=50,
                          eval_interval=0, eval_batches=20, log_interval=50, progress=False)
        t0 = time.perf_counter()
        hist = Trainer(model, cfg, data).fit()
        seconds = time.perf_counter() - t0
        val = hist[-1]["val_loss"]
        runs.append(dict(name=name, n_layer=n_layer, n_embd=n_embd, params=model.num_params(),
                         steps=args.steps, tokens=args.steps * args.batch_size * args.block_size,
                         seconds=round(seconds, 1), val_loss=round(val, 4), gap=round(val - floor, 4)))
        print(f"  {name}: {model.num_params():>9,} params  {seconds:6.1f} s  val {val:.3f}  floor {floor:.3f}  "
              f"gap {val - floor:.3f}", flush=True)
    record = provenance() | dict(corpus=dict(name="story", n_docs=args.n_docs, seed=0, chars=len(text), floor_nats_per_char=floor),
                  runs=runs)
    append_jsonl(args.out, record)
    gaps = " > ".join(f"{r['name']} {r['gap']:.3f}" for r in runs)
    print(f"story_floor: floor {floor:.3f} nats/char; gap to floor {gaps}")


if __name__ == "__main__":
    main()
