"""`python -m minillm generate`: sample text from a run folder (Survey §4.2.4, decoding strategies)."""
from __future__ import annotations

import argparse

import torch

from minillm.device import resolve_device
from minillm.generate import generate
from minillm.train.rundir import load_run


def cmd_generate(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    model, tok = load_run(args.run, device=device)
    if tok is None:
        raise FileNotFoundError(f"{args.run} has no tokenizer.json, so a text prompt cannot be encoded: train with "
                                f"the data's tokenizer (Trainer(..., tokenizer=tok)) or save one with write_run_config")
    idx = torch.tensor([tok.encode(args.prompt)], device=device)
    g = torch.Generator(device=device).manual_seed(args.seed)
    out = generate(model, idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k or None,
                   top_p=args.top_p, generator=g)
    print(tok.decode(out[0].tolist()))


def register(sub: argparse._SubParsersAction) -> None:
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
