"""`python -m minillm finetune` (minillm/cli/cmd_finetune.py), through a parser built as minillm.cli's does."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from minillm.cli import cmd_finetune
from minillm.data.tokenizer import CharTokenizer
from minillm.device import seed_everything
from minillm.finetune.chat import CHAT_TOKENS
from minillm.finetune.recipe import FINETUNE_DEFAULTS
from minillm.model.transformer import GPT
from minillm.presets import model_preset, train_preset
from minillm.train.rundir import load_run
from minillm.train.trainer import Trainer

TEXT = "q: red? a: rot. q: blue? a: blau. q: green? a: gruen. " * 20


def _main(argv: list[str]) -> int:
    """minillm.cli.main with the finetune command registered: one line on the errors main catches."""
    p = argparse.ArgumentParser(prog="python -m minillm")
    sub = p.add_subparsers(dest="command", required=True)
    cmd_finetune.register(sub)
    args = p.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli_ft")
    tok = CharTokenizer.from_text(TEXT)
    seed_everything(0)
    model = GPT(model_preset("tiny", vocab_size=tok.vocab_size, n_layer=1, block_size=32))
    cfg = train_preset("ci", max_steps=20, out_dir=str(root / "base"), device="cpu")
    Trainer(model, cfg, np.array(tok.encode(TEXT)), tokenizer=tok).fit()
    rows = [{"prompt": "red?", "response": "rot"}, {"instruction": "blue?", "output": "blau"},
            {"messages": [{"role": "user", "content": "green?"}, {"role": "assistant", "content": "gruen"}]}]
    (root / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return root


def test_help_names_the_options_and_the_jsonl_shapes(capsys):
    with pytest.raises(SystemExit) as e:
        _main(["finetune", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for option in ("--base", "--data", "--out", "--lora_rank", "--merge", "--steps", "--lr", "--batch_size",
                   "--packed", "--holdout"):
        assert option in out
    assert '{"prompt", "response"}' in out and '{"messages"' in out
    assert f"[default: {FINETUNE_DEFAULTS['steps']}]" in out


def test_options_reach_the_recipe(monkeypatch):
    seen = {}
    monkeypatch.setattr(cmd_finetune, "finetune_run", lambda base, data, out, **kw: seen.update(kw, base=base))
    assert _main(["finetune", "--base", "B", "--data", "d.jsonl", "--out", "O"]) == 0
    assert seen["one_per_row"] is True and seen["merge"] is False and seen["base"] == "B"
    assert (seen["steps"], seen["lr"], seen["batch_size"], seen["lora_rank"]) == (
        FINETUNE_DEFAULTS["steps"], FINETUNE_DEFAULTS["lr"], FINETUNE_DEFAULTS["batch_size"], 8)
    assert _main(["finetune", "--base", "B", "--data", "d", "--out", "O", "--packed", "--merge", "--lora_rank", "4",
                  "--steps", "7", "--lr", "0.5", "--batch_size", "3"]) == 0
    assert seen["one_per_row"] is False and seen["merge"] is True
    assert (seen["steps"], seen["lr"], seen["batch_size"], seen["lora_rank"]) == (7, 0.5, 3, 4)


def test_finetune_merge_writes_a_run_load_run_opens(base, tmp_path, capsys):
    out = tmp_path / "chat"
    argv = ["finetune", "--base", str(base / "base"), "--data", str(base / "pairs.jsonl"), "--out", str(out),
            "--merge", "--steps", "4", "--device", "cpu"]
    assert _main(argv) == 0
    printed = capsys.readouterr().out
    assert "note: added" in printed and "3 conversations -> 3 rows" in printed and "done: loss" in printed
    model, tok = load_run(out)
    assert tok.special_tokens[-4:] == CHAT_TOKENS and model.config.vocab_size == tok.vocab_size
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["finetune"]["lora"]["rank"] == 8
    assert _main(argv) == 2  # the same --out again: refused in one line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "already holds a finished run" in err


def test_errors_are_one_line(base, tmp_path, capsys):
    assert _main(["finetune", "--base", str(base / "base"), "--data", str(tmp_path / "none.jsonl"), "--out",
                  str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no JSONL file at" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\n', encoding="utf-8")
    assert _main(["finetune", "--base", str(base / "base"), "--data", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.jsonl:1: no accepted shape" in err and '{"prompt": ...' in err
