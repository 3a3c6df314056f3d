"""`python -m minillm generate`: sample text from a run folder (Survey §4.2.4, decoding strategies).

Prints the prompt and its continuation, which ends at the tokenizer's end token ("<|endoftext|>", "<|end|>"), at a
--stop string or after --max_new_tokens; with --chat the prompt is a user message and only the answer is printed.
The work is `minillm.textgen.generate_text`.
"""
from __future__ import annotations

import argparse

from minillm.device import resolve_device
from minillm.textgen import generate_text
from minillm.train.rundir import load_run


def _unescape(text: str) -> str:
    """Python backslash escapes in a --stop string (a shell passes --stop '\\n' as backslash + n)."""
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape")  # non-Latin-1 text survives
    except UnicodeDecodeError as e:
        raise ValueError(f"--stop {text!r} has a malformed backslash escape ({e.reason}); write a literal "
                         f"backslash as \\\\") from None


def cmd_generate(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    model, tok = load_run(args.run, device=device)
    if tok is None:
        raise FileNotFoundError(f"{args.run} has no tokenizer.json, so a text prompt cannot be encoded: train with "
                                f"the data's tokenizer (Trainer(..., tokenizer=tok)) or save one with write_run_config")
    text = generate_text(model, tok, args.prompt, args.max_new_tokens, temperature=args.temperature,
                         top_k=args.top_k or None, top_p=args.top_p, stop=[_unescape(s) for s in args.stop or []],
                         stop_at_special=not args.no_stop_at_special, skip_special_tokens=not args.show_special,
                         seed=args.seed, chat=args.chat)
    print(text if args.chat else args.prompt + text)


def register(sub: argparse._SubParsersAction) -> None:
    pg = sub.add_parser("generate", help="sample text from a trained run",
                        description="Continue --prompt with a trained run's model. Generation stops at the "
                                    "tokenizer's end token (<|endoftext|>, <|end|>), at a --stop string, or after "
                                    "--max_new_tokens; special tokens are not printed.")
    pg.add_argument("--run", required=True, help="run folder written by `train`")
    pg.add_argument("--prompt", default="\n", help="text to continue [default: a newline]")
    pg.add_argument("--max_new_tokens", type=int, default=200, help="tokens to generate [default: 200]")
    pg.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; <1 sharper, >1 flatter [default: 0.8]")
    pg.add_argument("--top_k", type=int, default=0, help="keep the k most likely tokens (0 = all) [default: 0]")
    pg.add_argument("--top_p", type=float, default=None, help="nucleus sampling threshold [default: off]")
    pg.add_argument("--stop", action="append", default=None, metavar="STR",
                    help="stop once the generated text contains STR, printing the text before it; repeat for "
                         "several strings. Backslash escapes are read as in Python, so --stop '\\n\\n' stops at a "
                         "blank line [default: none]")
    pg.add_argument("--no_stop_at_special", action="store_true",
                    help="keep generating past end tokens (<|endoftext|>, <|end|>) instead of stopping there")
    pg.add_argument("--show_special", action="store_true",
                    help="print special tokens such as <|endoftext|> (hidden by default)")
    pg.add_argument("--chat", action="store_true",
                    help="treat --prompt as a user message in the chat template and print only the assistant's "
                         "answer (the run's tokenizer needs the chat tokens <|user|>, <|assistant|>, <|end|>, ...)")
    pg.add_argument("--seed", type=int, default=0, help="sampling seed [default: 0]")
    pg.add_argument("--device", default="auto", help="auto, cpu, cuda, mps [default: auto]")
    pg.set_defaults(func=cmd_generate)
