"""The command line: prepare -> train -> generate end to end, help text, and clear errors."""
import dataclasses
import json

import pytest

from minillm.__main__ import build_parser, field_comments, main
from minillm.config import ModelConfig, TrainConfig


def test_every_config_field_is_documented_in_help():
    for cls in (ModelConfig, TrainConfig):
        comments = field_comments(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not comments.get(f.name)]
        assert not missing, f"{cls.__name__} fields without a comment: {missing}"
    sub = build_parser()._subparsers._group_actions[0].choices["train"]
    text = sub.format_help()
    for name in ("--n_layer", "--lr", "--schedule", "--rope_theta", "--on_nan"):
        assert name in text
    assert "warmup-stable-decay" in text  # the field comment is the help


def test_prepare_train_generate_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "--source", "arithmetic", "--n_docs", "400", "--out", "data"]) == 0
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert meta["vocab_size"] > 10
    assert main(["train", "--data", "data", "--preset", "tiny", "--size", "ci", "--out", "run", "--max_steps", "6",
                 "--n_layer", "1", "--progress", "false", "--eval_interval", "3", "--block_size", "32"]) == 0
    out = capsys.readouterr().out
    assert "checkpoints and history.jsonl go to run/" in out
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["n_layer"] == 1 and saved["train"]["max_steps"] == 6
    rows = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 6
    assert main(["generate", "--run", "run", "--prompt", "12+", "--max_new_tokens", "5", "--temperature", "0"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("12+") and len(text.rstrip("\n")) >= 4
    (tmp_path / "held.txt").write_text("12+30=42" * 40)  # this corpus's vocabulary has no newline
    assert main(["eval", "--run", "run", "--text", "held.txt", "--tasks", ""]) == 0
    assert "bits/byte" in capsys.readouterr().out
    # the benchmarks write one item per line: a vocabulary without a newline cannot write them, so the task is
    # skipped with a note naming --tasks, and with nothing else to measure that is an error
    assert main(["eval", "--run", "run", "--tasks", "arithmetic", "--n", "3"]) == 2
    err = capsys.readouterr().err
    assert "skipped task arithmetic" in err and "--tasks" in err and "not in this CharTokenizer's vocabulary" in err
    (tmp_path / "bad.txt").write_bytes(b"12+\xff\xfe")
    assert main(["eval", "--run", "run", "--text", "bad.txt", "--tasks", ""]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["prepare", "--source", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "d")]) == 2
    assert "neither a synthetic corpus" in capsys.readouterr().err
    assert main(["generate", "--run", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err


def test_bad_override_is_rejected(tmp_path):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "d", "--out", "o", "--n_layer", "four"])


def _abcd_run(tmp_path, monkeypatch):
    """A run that has learned "abcd<|endoftext|>abcd<|endoftext|>...": each line of the file is one document."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "abcd.txt").write_text("abcd\n" * 300)
    assert main(["prepare", "--source", "abcd.txt", "--split", "line", "--out", "data"]) == 0
    assert main(["train", "--data", "data", "--preset", "tiny", "--size", "ci", "--out", "run", "--max_steps", "40",
                 "--n_layer", "1", "--progress", "false", "--eval_interval", "40", "--block_size", "16",
                 "--lr", "1e-2"]) == 0


def test_generate_stops_at_end_of_text_and_stop_strings(tmp_path, capsys, monkeypatch):
    _abcd_run(tmp_path, monkeypatch)
    capsys.readouterr()

    def gen(*flags):
        assert main(["generate", "--run", "run", "--prompt", "ab", "--temperature", "0", *flags]) == 0
        return capsys.readouterr().out

    assert gen() == "abcd\n"  # prompt + continuation, ended by the model's <|endoftext|>
    assert gen("--no_stop_at_special", "--max_new_tokens", "7") == "abcdabcd\n"  # the token itself is hidden
    assert gen("--no_stop_at_special", "--show_special", "--max_new_tokens", "7") == "abcd<|endoftext|>abcd\n"
    assert gen("--no_stop_at_special", "--stop", "zz", "--stop", "da") == "abc\n"  # cut before the first stop
    assert gen("--no_stop_at_special", "--stop", r"\x62") == "abcda\n"  # escapes: \x62 is "b"
    assert main(["generate", "--run", "run", "--prompt", "abz"]) == 2
    err = capsys.readouterr().err
    assert "'z'" in err and "remove them from the prompt" in err and "rebuild" not in err
    assert main(["generate", "--run", "run", "--prompt", "ab", "--chat"]) == 2
    assert "lacks the chat special token" in capsys.readouterr().err
    assert main(["generate", "--run", "run", "--prompt", "ab", "--stop", "\\x"]) == 2
    assert "malformed backslash escape" in capsys.readouterr().err


def test_generate_chat_prints_only_the_answer(tmp_path, capsys):
    import torch

    from minillm.finetune.chat import chat_tokenizer
    from minillm.model.transformer import GPT
    from minillm.textgen import generate_text
    from minillm.train.rundir import save_run

    tok = chat_tokenizer()
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32))
    save_run(tmp_path / "chat", model, tok)
    prompt = "Reverse the word abc:"
    assert main(["generate", "--run", str(tmp_path / "chat"), "--prompt", prompt, "--chat", "--temperature", "0",
                 "--max_new_tokens", "12", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    answer = generate_text(model.eval(), tok, prompt, 12, temperature=0, chat=True)
    assert out == answer + "\n" and prompt not in out and "<|" not in out


def test_generate_help_names_the_new_options():
    text = build_parser()._subparsers._group_actions[0].choices["generate"].format_help()
    for flag in ("--stop", "--no_stop_at_special", "--show_special", "--chat"):
        assert flag in text
    assert "repeat" in text and "<|endoftext|>" in text
