"""Command line: ``python -m minillm {prepare,train,generate,eval,sweep} --help``.

The same pipeline the chapters run, for homework and for real runs (Survey §4: data -> model -> training):

    python -m minillm prepare --source story --n_docs 20000 --tokenizer char --out data/story
    python -m minillm prepare --source my_text.txt --out data/mine      # verbatim; the last 5% held out
    python -m minillm train --data data/story --preset small --out runs/story --max_steps 2000 --lr 1e-3
    python -m minillm generate --run runs/story --prompt "Mia " --max_new_tokens 200 --temperature 0.8
    python -m minillm sweep --size laptop --out bench/results/sweeps/laptop_isoflop.jsonl   # Survey §2.1

`train` accepts every ModelConfig and TrainConfig field as an option (listed by --help with its comment and the
default the chosen --size/--preset really uses), and prints the resolved configuration when it starts.
Under ``torchrun`` the same command trains data-parallel on several processes (Survey §4.3.2):

    torchrun --nproc_per_node=2 -m minillm train --data data/story --out runs/story --parallel ddp
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist

from minillm.config import ModelConfig, TrainConfig
from minillm.data import sources, synthetic
from minillm.data.loader import DataSplits
from minillm.data.prepare import prepare, token_stream
from minillm.data.tokenizer import BPETokenizer, CharTokenizer, load_tokenizer
from minillm.device import resolve_device, seed_everything
from minillm.evaluation.benchmarks import evaluate_suite, get_task
from minillm.evaluation.harness import perplexity
from minillm.generate import generate
from minillm.model.transformer import GPT
from minillm.presets import (MODEL_PRESETS, MODEL_SIZE_DEFAULTS, SIZES, TRAIN_PRESETS, model_preset, size_profile,
                             train_preset)
from minillm.train.checkpoint import latest_checkpoint, load_checkpoint
from minillm.train.parallel.group import init_distributed
from minillm.train.trainer import Trainer

# ---------------------------------------------------------------------------------------------------------
# Options generated from the config dataclasses, so --help always matches the code.


def field_comments(cls) -> dict[str, str]:
    """The trailing `# comment` of each field in a dataclass's source: the documentation of that field."""
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.*)$", line)
        if m:
            comments[m.group(1)] = m.group(2)
    return comments


def _parse_value(text: str, default: Any) -> Any:
    """Parse an override by the type of the field's default: ints, floats, bools, None and strings."""
    low = text.lower()
    if low in ("none", "null"):
        return None
    if isinstance(default, bool) or low in ("true", "false"):
        if low not in ("true", "false", "1", "0", "yes", "no"):
            raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
        return low in ("true", "1", "yes")
    for kind in (int, float):
        if isinstance(default, kind) or default is None:
            try:
                return kind(text)
            except ValueError:
                if isinstance(default, kind):
                    raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
    return text


# A preset table (rows by preset or size name), the option that picks the row, and the row picked (None: unknown).
PresetTable = tuple[dict[str, dict], str, "str | None"]


def preset_default(name: str, default: Any, tables: Sequence[PresetTable]) -> str:
    """The default a field really gets: '600 at --size laptop; ci 30, gpu 5000' when a preset table sets it
    (the first table that does), else the dataclass default. So --help never shows a value that is not used."""
    for table, flag, chosen in tables:
        if any(name in row for row in table.values()):
            values = {key: row.get(name, default) for key, row in table.items()}
            others = ", ".join(f"{k} {v}" for k, v in values.items() if k != chosen)
            return f"{values[chosen]} at {flag} {chosen}; {others}" if chosen in values else f"by {flag}: {others}"
    return str(default)


def add_config_options(parser: argparse.ArgumentParser, cls, skip: Sequence[str] = (),
                       tables: Sequence[PresetTable] = ()) -> None:
    group = parser.add_argument_group(f"{cls.__name__} fields (defaults as the chosen --size/--preset set them; "
                                      f"see minillm/config.py and minillm/presets.py)")
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default
        group.add_argument(f"--{f.name}", dest=f"{cls.__name__}.{f.name}", default=argparse.SUPPRESS,
                           type=lambda s, d=default: _parse_value(s, d), metavar=type(default).__name__.upper()
                           if default is not None else "VALUE",
                           help=f"{comments.get(f.name, '')} [default: {preset_default(f.name, default, tables)}]")


def config_overrides(args: argparse.Namespace, cls) -> dict[str, Any]:
    prefix = f"{cls.__name__}."
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)}


# ---------------------------------------------------------------------------------------------------------
# prepare


EOS = "<|endoftext|>"
TEXT_SPLITS = ("file", "paragraph", "line")


def _documents(source: str, n_docs: int, seed: int, field: str,
               split: str | None) -> tuple[list[str], str, str | None]:
    """(documents, description, text split or None) from a synthetic corpus name, a local .txt/.jsonl file or
    folder, or hf:NAME. `split` cuts .txt files (file = verbatim, the default); other sources refuse it."""

    path = Path(source)
    local = source not in synthetic.CORPORA and not source.startswith("hf:")
    is_text = local and path.exists() and (path.is_dir() or path.suffix != ".jsonl")
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


# ---------------------------------------------------------------------------------------------------------
# train


def resolve_configs(args: argparse.Namespace, vocab_size: int) -> tuple[ModelConfig, TrainConfig, str]:
    """(model config, train config, size): the --preset and --size tables under the command line's overrides.
    Both tables use the same size, so a CUDA host (profile gpu) training --size laptop pads no vocabulary."""
    size = args.size or size_profile()
    model_over = config_overrides(args, ModelConfig)
    model_over.setdefault("vocab_size", vocab_size)
    model_cfg = model_preset(args.preset, size=size, **model_over)
    train_cfg = train_preset(size, **config_overrides(args, TrainConfig), out_dir=args.out)
    return model_cfg, train_cfg, size


def config_block(model_cfg: ModelConfig, train_cfg: TrainConfig, size: str, preset: str) -> str:
    """Every field of both configs, wrapped: what this run really uses, printed before it starts."""
    lines = [f"config (--size {size}, --preset {preset}):"]
    for name, cfg in (("model", model_cfg), ("train", train_cfg)):
        body = " ".join(f"{k}={v}" for k, v in cfg.to_dict().items())
        lines += textwrap.wrap(body, width=110, initial_indent=f"  {name}: ", subsequent_indent=" " * 9)
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> None:
    data = DataSplits.from_dir(args.data)
    model_cfg, train_cfg, size = resolve_configs(args, data.vocab_size)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and train_cfg.parallel == "none":
        raise ValueError(f"started by torchrun with WORLD_SIZE={world} but --parallel is none: every process "
                         f"would train alone and write the same files; pass --parallel ddp (or fsdp)")
    grouped = train_cfg.parallel != "none"  # ddp/fsdp need a process group, even of one (torchrun --nproc_per_node=1)
    if grouped:
        # RANK, WORLD_SIZE, MASTER_ADDR/PORT from torchrun's environment; the backend follows the training device
        init_distributed(device=train_cfg.device)
    try:
        _train(args, model_cfg, train_cfg, data, size, main=int(os.environ.get("RANK", "0")) == 0)
    finally:
        if grouped:
            dist.destroy_process_group()


def _train(args: argparse.Namespace, model_cfg: ModelConfig, train_cfg: TrainConfig, data: Any, size: str,
           main: bool) -> None:
    seed_everything(train_cfg.seed)  # the initial weights depend on the seed alone, not on what ran before
    model = GPT(model_cfg)
    out = Path(args.out)
    if main:  # rank 0 writes the run folder; the Trainer keeps the other ranks' history and checkpoints off disk
        out.mkdir(parents=True, exist_ok=True)
        tok_src = Path(args.data) / "tokenizer.json"
        if tok_src.exists():  # the run folder carries its tokenizer, so `generate --run` needs nothing else
            (out / "tokenizer.json").write_bytes(tok_src.read_bytes())
        (out / "config.json").write_text(json.dumps({"model": model_cfg.to_dict(), "train": train_cfg.to_dict(),
                                                      "data": str(args.data)}, indent=2))
        print(config_block(model_cfg, train_cfg, size, args.preset))
        print(f"model: {model.num_params():,} non-embedding parameters; checkpoints and history.jsonl go to {out}/")
    history = Trainer(model, train_cfg, data).fit()
    last = history[-1]
    val = f", val loss {last['val_loss']:.4f}" if last.get("val_loss") is not None else ""
    if main:
        print(f"done: step {last['step']}, train loss {last['loss']:.4f}{val}; checkpoint in {out}/")


# ---------------------------------------------------------------------------------------------------------
# generate


def _load_run(run_dir: str, device_name: str):
    """(model on its device, tokenizer, device) of the latest checkpoint in a run folder written by `train`."""

    run = Path(run_dir)
    cfg_path = run / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path} not found: --run must be a folder written by `python -m minillm train`")
    model = GPT(ModelConfig.from_dict(json.loads(cfg_path.read_text())["model"]))
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run}: train first (python -m minillm train ... --out {run})")
    load_checkpoint(ckpt, model)
    device = resolve_device(device_name)
    return model.to(device).eval(), load_tokenizer(run / "tokenizer.json"), device


def cmd_generate(args: argparse.Namespace) -> None:
    model, tok, device = _load_run(args.run, args.device)
    idx = torch.tensor([tok.encode(args.prompt)], device=device)
    g = torch.Generator(device=device).manual_seed(args.seed)
    out = generate(model, idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k or None,
                   top_p=args.top_p, generator=g)
    print(tok.decode(out[0].tolist()))


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
        split, origin = "file", ("prepare's default; the run's data records no text split" if meta else
                                 f"prepare's default; the run's data meta {meta_path} was not found")
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
    model, tok, _ = _load_run(args.run, args.device)
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


# ---------------------------------------------------------------------------------------------------------
# sweep


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 1e12,3e12, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def cmd_sweep(args: argparse.Namespace) -> None:
    # Here, not at the top: minillm.scaling brings scipy (~0.3 s), which no other command needs.
    from minillm.scaling.sweep import default_sweep, plan, run_sweep

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads={args.threads} must be at least 1")
        torch.set_num_threads(args.threads)
    base = default_sweep(args.size)
    changes = {k: v for k, v in (("mode", args.mode), ("budgets", args.budgets), ("token_budgets", args.tokens),
                                 ("n_docs", args.n_docs), ("device", args.device)) if v is not None}
    if changes.get("mode") == "grid" and "token_budgets" not in changes:
        raise ValueError("--mode grid needs --tokens (comma-separated token budgets, e.g. 1e5,1e6)")
    cfg = dataclasses.replace(base, **changes)  # dataclasses.replace runs __post_init__: the new values are validated
    if args.dry_run:
        for spec in plan(cfg):
            budget = f"{spec.budget:.2g}" if spec.budget is not None else "-"
            print(f"{spec.run_id:40s} C={budget:8s} N={spec.n_params:>10,} D={spec.tokens:>11,} steps={spec.steps}")
        return
    rows = run_sweep(cfg, args.out, progress=True, max_runs=args.max_runs)
    print(f"sweep: {len(rows)} of {len(plan(cfg))} planned runs are in {args.out}")


# ---------------------------------------------------------------------------------------------------------


def _chosen_presets(argv: Sequence[str]) -> tuple[str | None, str]:
    """(--size, --preset) as `train` will resolve them, read before the full parse so that `train --size ci --help`
    shows the ci defaults; size None when it cannot be known yet (an invalid value fails in the full parse)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--size", default=None)
    pre.add_argument("--preset", default="small")
    known, _ = pre.parse_known_args(list(argv))
    try:
        size = known.size or size_profile()
    except ValueError:  # a bad $MINILLM_SIZE: the help lists every size; training reports the error
        size = None
    return (size if size in SIZES else None), known.preset


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; `argv` only picks which --size/--preset row `train --help` shows as the defaults."""
    size, preset = _chosen_presets(argv)
    p = argparse.ArgumentParser(prog="python -m minillm", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

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

    pt = sub.add_parser("train", help="train a GPT on prepared shards",
                        description="Train a model. Any ModelConfig/TrainConfig field can be overridden, "
                                    "e.g. --n_layer 4 --lr 1e-3 --schedule wsd.")
    pt.add_argument("--data", required=True, help="folder written by `prepare`")
    pt.add_argument("--preset", default="small", help="model preset (tiny, small, medium, gpt2-124m, llama-tiny)")
    pt.add_argument("--size", default=None, choices=SIZES,
                    help="training preset scale (minillm.presets.TRAIN_PRESETS) [default: $MINILLM_SIZE, else gpu "
                         f"with CUDA, else laptop; here: {size or 'unknown: $MINILLM_SIZE is invalid'}]")
    pt.add_argument("--out", required=True, help="run folder: checkpoints, history.jsonl, config.json, tokenizer")
    add_config_options(pt, ModelConfig, skip=("vocab_size",),
                       tables=[(MODEL_SIZE_DEFAULTS, "--size", size), (MODEL_PRESETS, "--preset", preset)])
    add_config_options(pt, TrainConfig, skip=("out_dir",), tables=[(TRAIN_PRESETS, "--size", size)])
    pt.set_defaults(func=cmd_train)

    pg = sub.add_parser("generate", help="sample text from a trained run")
    pg.add_argument("--run", required=True, help="run folder written by `train`")
    pg.add_argument("--prompt", default="\n", help="text to continue [default: a newline]")
    pg.add_argument("--max_new_tokens", type=int, default=200, help="tokens to generate [default: 200]")
    pg.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; <1 sharper, >1 flatter [default: 0.8]")
    pg.add_argument("--top_k", type=int, default=0, help="keep the k most likely tokens (0 = all) [default: 0]")
    pg.add_argument("--top_p", type=float, default=None, help="nucleus sampling threshold [default: off]")
    pg.add_argument("--seed", type=int, default=0, help="sampling seed [default: 0]")
    pg.add_argument("--device", default="auto", help="auto, cpu, cuda, mps [default: auto]")
    pg.set_defaults(func=cmd_generate)

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

    ps = sub.add_parser("sweep", help="run a scaling-law sweep (IsoFLOP or grid), one JSONL row per run",
                        description="Train many model sizes on the synthetic corpus and append one row per run "
                                    "(N, D, FLOPs, losses, loss curve, provenance) to --out. Rerunning the same "
                                    "command resumes: runs already in the file are skipped. Survey §2.1.")
    ps.add_argument("--size", default=None, choices=("ci", "laptop", "gpu"),
                    help="sweep profile from minillm.scaling.sweep.default_sweep [default: $MINILLM_SIZE or auto]")
    ps.add_argument("--out", required=True, help="JSONL file the rows are appended to (created if absent)")
    ps.add_argument("--mode", default=None, choices=("isoflop", "grid"),
                    help="isoflop: fixed FLOP budgets, steps = C / (FLOPs per step); grid: sizes x token budgets "
                         "[default: the profile's, isoflop]")
    ps.add_argument("--budgets", default=None, type=_float_list,
                    help="isoflop compute budgets in FLOPs, comma-separated, e.g. 2e11,7e11 [default: the profile's]")
    ps.add_argument("--tokens", default=None, type=_float_list,
                    help="grid mode: token budgets D per run, comma-separated, e.g. 1e5,1e6")
    ps.add_argument("--n_docs", type=int, default=None,
                    help="documents of the synthetic corpus [default: the profile's]")
    ps.add_argument("--max_runs", type=int, default=None,
                    help="train at most this many not-yet-done runs, then stop (rerun to continue) [default: all]")
    ps.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads; 1 is fastest on a machine shared with other jobs [default: torch's choice]")
    ps.add_argument("--device", default=None, help="auto, cpu, cuda, mps [default: auto]")
    ps.add_argument("--dry_run", action="store_true", help="print the planned runs and train nothing")
    ps.set_defaults(func=cmd_sweep)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # one clear line, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
