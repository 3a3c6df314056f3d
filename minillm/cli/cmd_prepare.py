"""`python -m minillm prepare`: a corpus -> train/val token shards, tokenizer.json and meta.json (Survey §4.1).

Sources: a synthetic corpus (seeded, known entropy), a local .txt file or folder (kept verbatim by default, the last
tokens held out as one contiguous tail, as DataSplits.from_tokens does), a .jsonl file, or hf:DATASET.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from minillm.data import sources, synthetic
from minillm.data.prepare import prepare
from minillm.data.special_tokens import EOS_TOKEN
from minillm.data.tokenizer import BPETokenizer, CharTokenizer

EOS = EOS_TOKEN
TEXT_SPLITS = ("file", "paragraph", "line")


def _documents(source: str, n_docs: int, seed: int, field: str,
               split: str | None) -> tuple[list[str], str, str | None]:
    """(documents, description, text split or None) from a synthetic corpus name, a local .txt/.jsonl file or
    folder, or hf:NAME. `split` cuts .txt files (file = verbatim, the default); other sources refuse it."""

    path = Path(source)
    local = source not in synthetic.CORPORA and not source.startswith("hf:")
    is_jsonl = path.name.endswith((".jsonl", ".jsonl.xz", ".jsonl.gz"))
    is_text = local and path.exists() and (path.is_dir() or not is_jsonl)
    if split is not None and not is_text and not (local and not path.exists()):
        raise ValueError(f"--split {split} cuts .txt files into documents, but --source {source!r} is not a .txt "
                         f"file or folder (jsonl rows, datasets and synthetic corpora are documents already): "
                         f"drop --split")
    if is_text:
        split = split or "file"
        files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
        if not files:
            raise FileNotFoundError(f"folder {source!r} holds no .txt files")
        return list(sources.read_text_files(files, split=split)), str(path), split
    if source in synthetic.CORPORA:
        c = synthetic.corpus(source, n_docs=n_docs, seed=seed)
        return list(c.docs), f"synthetic:{source} n_docs={n_docs} seed={seed} nats_per_char={c.nats_per_char:.4f}", None
    if source.startswith("hf:"):
        docs = sources.load_hf_dataset(source[3:], field=field, streaming=True)
        return [d for _, d in zip(range(n_docs), docs)], source, None
    if not path.exists():
        raise FileNotFoundError(f"--source {source!r} is neither a synthetic corpus ({', '.join(synthetic.CORPORA)}), "
                                "nor an existing file or folder, nor hf:DATASET_NAME")
    return list(sources.read_jsonl(path, field=field)), str(path), None


def cmd_prepare(args: argparse.Namespace) -> None:
    docs, description, split = _documents(args.source, args.n_docs, args.seed, args.field, args.split)
    if not docs:
        raise ValueError(f"--source {args.source!r} gave no documents")
    if args.tokenizer == "char":
        tok = CharTokenizer.from_text("".join(docs), special_tokens=(EOS,))
    else:
        tok = BPETokenizer.train(docs, vocab_size=args.vocab_size, special_tokens=(EOS,))
    # A text kept whole is one stream with a contiguous held-out tail; cut documents are held out whole.
    holdout = "tail" if split == "file" else "documents"
    out = prepare(docs, tok, args.out, val_fraction=args.val_fraction, eos_id=tok.encode(EOS)[0],
                  overwrite=args.overwrite, source=description, holdout=holdout,
                  meta={"text_split": split} if split else None)
    print(f"wrote {out.n_train_tokens:,} train + {out.n_val_tokens:,} val tokens (vocab {out.vocab_size}) to {out.out_dir}")



def register(sub: argparse._SubParsersAction) -> None:
    pp = sub.add_parser("prepare", help="tokenize a corpus into train/val token shards")
    pp.add_argument("--source", default="story", help="synthetic corpus name (story, story_zh, facts, arithmetic, "
                    "bilingual), a .txt/.jsonl file or folder of .txt files, or hf:DATASET (needs `datasets`)")
    pp.add_argument("--n_docs", type=int, default=20000, help="documents to generate / read [default: 20000]")
    pp.add_argument("--seed", type=int, default=0, help="seed of the synthetic generator [default: 0]")
    pp.add_argument("--field", default="text", help="JSON / dataset field holding the text [default: text]")
    pp.add_argument("--tokenizer", choices=("char", "bpe"), default="char", help="tokenizer to train [default: char]")
    pp.add_argument("--vocab_size", type=int, default=1024, help="BPE vocabulary size [default: 1024]")
    pp.add_argument("--split", choices=TEXT_SPLITS, default=None,
                    help="how .txt files become documents: file = each file verbatim (files joined by "
                         f"{EOS}) and the last --val_fraction of tokens held out as one contiguous tail, the split "
                         "DataSplits.from_tokens makes; paragraph = one document per blank-line-separated block, "
                         "line = one per non-blank line: each document ends with "
                         f"{EOS} and whole documents are held out, spread evenly through the text. "
                         "Only for .txt sources [default: file]")
    pp.add_argument("--val_fraction", type=float, default=0.05,
                    help="share held out: of tokens (a tail) for a .txt with --split file, else of documents "
                         "[default: 0.05]")
    pp.add_argument("--out", required=True, help="output folder (train.bin, val.bin, tokenizer.json, meta.json)")
    pp.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    pp.set_defaults(func=cmd_prepare)
