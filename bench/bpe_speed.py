"""How fast is the plain-Python teaching BPE next to Hugging Face `tokenizers`? (Survey §4.1.2, tokenization.)

Trains `minillm.data.bpe_train.train_bpe` (pure Python, incremental pair counts + lazy heap) and
`BPETokenizer.train` (Rust) on the same ~1 MB of text to the same vocabulary size in one process, then times
encoding that text with each (as one string; HF also as a batch of paragraphs, the way it is meant to be used). Text: the first MiB of tinyshakespeare from the shared data folder beside the
repo when present, else 1 MiB of deterministic, seeded word salad generated here (no third-party text).
Goal for the teaching trainer: <= 10 s on 2 CPU cores.

    python bench/bpe_speed.py [--mib 1.0] [--vocab-size 1000]

Prints one summary line and appends a JSON record (command, date, host, versions, text source, numbers) to
bench/results/bpe_speed.jsonl.
"""
from __future__ import annotations

import argparse
import random
import time
from importlib.metadata import version
from pathlib import Path

from minillm.data.bpe import ByteBPE
from minillm.data.bpe_train import train_bpe
from minillm.data.tokenizer import BPETokenizer
from minillm.provenance import append_jsonl, provenance

RESULTS = Path(__file__).resolve().parent / "results" / "bpe_speed.jsonl"
SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
SPECIALS = ("<|endoftext|>",)


def generated_text(n_bytes: int, seed: int = 0) -> str:
    """Seeded word salad: Zipf-distributed invented words, punctuation and line breaks (ASCII, so 1 char = 1 byte)."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ra", "su", "to", "vi", "an", "el", "or", "th", "st", "qu", "be", "di"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(5000)]
    weights = [1.0 / (r + 1) for r in range(len(words))]
    parts, size = [], 0
    while size < n_bytes:
        for w in rng.choices(words, weights=weights, k=1000):
            piece = w + rng.choice([" ", " ", " ", " ", " ", ", ", ".\n", "\n\n"])
            parts.append(piece)
            size += len(piece)
    return "".join(parts)[:n_bytes]


def load_text(n_bytes: int) -> tuple[str, str]:
    if SHAKESPEARE.is_file():
        data = SHAKESPEARE.read_bytes()[:n_bytes]
        return data.decode("utf-8", errors="ignore"), f"tinyshakespeare.txt (first {len(data)} bytes)"  # ignore: a cut char
    return generated_text(n_bytes), "generated word salad (seed 0)"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=float, default=1.0, help="MiB of text to train and encode on")
    ap.add_argument("--vocab-size", type=int, default=1000)
    args = ap.parse_args()
    if args.mib <= 0:
        raise SystemExit("--mib must be positive")

    text, source = load_text(int(args.mib * (1 << 20)))
    n_bytes = len(text.encode("utf-8"))
    mb = n_bytes / 1e6

    (vocab, merges), ours_train_s = timed(lambda: train_bpe(text, args.vocab_size, SPECIALS))
    ours = ByteBPE(vocab, merges, SPECIALS)
    ours_ids, ours_encode_s = timed(lambda: ours.encode(text))  # cold pre-token cache: a fair first pass
    if ours.decode(ours_ids) != text:
        raise RuntimeError("teaching BPE failed to round-trip the benchmark text")

    hf, hf_train_s = timed(lambda: BPETokenizer.train([text], args.vocab_size, SPECIALS, min_frequency=2))
    hf_ids, hf_encode_s = timed(lambda: hf.encode(text))
    # HF is built for many documents at once (parallel, per-document work): time that usage too.
    paragraphs = text.split("\n\n")
    _, hf_batch_s = timed(lambda: hf.encode_batch(paragraphs))

    record = provenance()
    record["versions"].update(tokenizers=version("tokenizers"), regex=version("regex"))
    record |= {
        "text_source": source,
        "text_bytes": n_bytes,
        "vocab_size": args.vocab_size,
        "ours": {"train_s": round(ours_train_s, 3), "encode_s": round(ours_encode_s, 3),
                 "encode_mb_per_s": round(mb / ours_encode_s, 2), "bytes_per_token": round(n_bytes / len(ours_ids), 3),
                 "vocab_size": ours.vocab_size},
        "hf_tokenizers": {"train_s": round(hf_train_s, 3), "encode_s": round(hf_encode_s, 3),
                          "encode_mb_per_s": round(mb / hf_encode_s, 2),
                          "encode_batch_paragraphs_mb_per_s": round(mb / hf_batch_s, 2),
                          "bytes_per_token": round(n_bytes / len(hf_ids), 3), "vocab_size": hf.vocab_size},
        "train_ratio_ours_over_hf": round(ours_train_s / hf_train_s, 2),
        "encode_ratio_ours_over_hf": round(ours_encode_s / hf_encode_s, 2),
    }
    append_jsonl(RESULTS, record)

    print(f"BPE {mb:.2f} MB -> vocab {args.vocab_size}: train ours {ours_train_s:.2f} s vs HF {hf_train_s:.2f} s "
          f"({record['train_ratio_ours_over_hf']}x); encode ours {mb / ours_encode_s:.2f} MB/s vs HF "
          f"{mb / hf_encode_s:.2f} MB/s (one string), {mb / hf_batch_s:.2f} MB/s (batch of paragraphs); {n_bytes / len(ours_ids):.2f} vs {n_bytes / len(hf_ids):.2f} bytes/token "
          f"[{source}] -> {RESULTS.name}")


if __name__ == "__main__":
    main()
