"""`python -m minillm eval`: held-out loss, perplexity and bits per byte on a text file, and the benchmark suites
(Survey §7). A text is cut into documents as `prepare` cut the run's data, so its loss compares with the run's."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from minillm.cli.cmd_prepare import EOS, TEXT_SPLITS
from minillm.data import sources
from minillm.data.prepare import token_stream
from minillm.evaluation.benchmarks import evaluate_suite, get_task
from minillm.evaluation.harness import perplexity
from minillm.train.rundir import load_run

DEFAULT_TASKS = ("facts_mc", "arithmetic", "story_cloze")


def _text_processing(args: argparse.Namespace, tok: Any) -> tuple[str, int | None, str]:
    """(split, EOS id, where the split came from) for `eval --text`: --split if given, else what `prepare` recorded
    for the run's data (config.json names the folder), else file (verbatim, prepare's default)."""
    meta: dict = {}
    data = json.loads((Path(args.run) / "config.json").read_text()).get("data")
    meta_path = Path(data) / "meta.json" if isinstance(data, str) else None
    if meta_path is not None and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
    if args.split:
        split, origin = args.split, "as given"
    elif meta.get("text_split"):
        split, origin = meta["text_split"], f"as prepared ({meta_path})"
    else:
        why = ("the run's data records no text split" if meta else
               "the run's config.json names no prepared data folder" if meta_path is None else
               f"the run's data meta {meta_path} was not found")
        split, origin = "file", f"prepare's default; {why}"
    eos_id = meta.get("eos_id")
    if eos_id is None and split != "file":  # documents are joined by EOS: the tokenizer must have it
        if EOS not in getattr(tok, "special_tokens", ()):
            raise ValueError(f"--split {split} joins documents with {EOS}, which this run's tokenizer lacks: "
                             f"use --split file")
        eos_id = tok.encode(EOS)[0]
    return split, eos_id, origin


def _unwritable(tok: Any, task: str, n: int, shots: int) -> str | None:
    """Why `tok` cannot write `task`'s items (its first encoding error), or None when it can."""
    t = get_task(task)  # an unknown task name is an error, not a skip
    items = t.examples(n, 0)  # the items evaluate_suite draws (seed 0)
    texts = [it.prompt for it in items] + [c for it in items for c in (it.choices or (it.answer,))]
    if shots or t.kind == "generate":
        texts.append("\n")  # demonstrations are joined, and generations stopped, by a newline
    for text in texts:
        try:
            tok.encode(text)
        except ValueError as e:
            return str(e).split(";")[0]
    return None


def cmd_eval(args: argparse.Namespace) -> None:
    """Perplexity / bits per byte on a text file, and the benchmark suites (Survey §7)."""

    tasks = [t for t in args.tasks.split(",") if t] if args.tasks is not None else \
        ([] if args.text else list(DEFAULT_TASKS))  # one's own text: its loss only, unless tasks are asked for
    if not args.text and not tasks:
        raise ValueError("nothing to evaluate: give --text FILE and/or --tasks")
    model, tok = load_run(args.run, device=args.device)
    if tok is None:
        raise FileNotFoundError(f"{args.run} has no tokenizer.json: text and tasks cannot be encoded; save the "
                                f"run's tokenizer with minillm.write_run_config(..., tokenizer=tok)")
    if args.text:
        path = Path(args.text)
        if not path.is_file():
            raise FileNotFoundError(f"--text {path} is not a file: give a UTF-8 text file to measure perplexity on")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"--text {path} is not UTF-8 ({e.reason} at byte {e.start}): convert it first") from None
        split, eos_id, origin = _text_processing(args, tok)
        # The same documents and separators `prepare` made, so the loss compares with the run's val loss.
        ids = token_stream(sources.read_text_files([path], split=split), tok, eos_id)  # (N,)
        r = perplexity(model, torch.as_tensor(ids))
        bpb = r["loss"] * r["tokens"] / math.log(2) / len(text.encode("utf-8"))
        print(f"{path.name} (--split {split}, {origin}): loss {r['loss']:.4f} nats/token, perplexity "
              f"{r['perplexity']:.3f}, {bpb:.4f} bits/byte over {r['tokens']:,} tokens")
    runnable = []
    for task in tasks:
        why = _unwritable(tok, task, args.n, args.shots)
        if why:
            print(f"note: skipped task {task}: this run's tokenizer cannot write it ({why}); leave it out of --tasks",
                  file=sys.stderr)
        else:
            runnable.append(task)
    if tasks and not runnable and not args.text:
        raise ValueError(f"every task in --tasks ({','.join(tasks)}) was skipped: nothing was evaluated")
    for row in evaluate_suite(model, tok, tasks=runnable, n=args.n, shots=args.shots) if runnable else []:
        norm = f", acc_norm {row['acc_norm']:.3f}" if "acc_norm" in row else ""
        chance = f" (chance {row['chance']:.2f})" if row.get("chance") else ""
        print(f"{row['task']}: {row['shots']}-shot accuracy {row['accuracy']:.3f}{norm} on {row['n']} items{chance}")




def register(sub: argparse._SubParsersAction) -> None:
    pe = sub.add_parser("eval", help="perplexity on a text file and the benchmark suites (facts, arithmetic, cloze)")
    pe.add_argument("--run", required=True, help="run folder written by `train`")
    pe.add_argument("--text", default=None, help="UTF-8 text file: report perplexity and bits per byte on it")
    pe.add_argument("--split", choices=TEXT_SPLITS, default=None,
                    help="how --text becomes tokens, as in `prepare --split` [default: what prepare recorded for "
                         "the run's data, else file (verbatim)]")
    pe.add_argument("--tasks", default=None,
                    help="comma-separated minillm.evaluation.benchmarks tasks ('' for none); a task this run's "
                         "tokenizer cannot write is skipped with a note [default: none with --text, else "
                         f"{','.join(DEFAULT_TASKS)}]")
    pe.add_argument("--n", type=int, default=100, help="items per task [default: 100]")
    pe.add_argument("--shots", type=int, default=0, help="few-shot demonstrations per prompt [default: 0]")
    pe.add_argument("--device", default="auto", help="auto, cpu, cuda, mps [default: auto]")
    pe.set_defaults(func=cmd_eval)
