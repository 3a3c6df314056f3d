"""The command line on one's own text (issue #22, items 1-3): `prepare` keeps a .txt verbatim and holds out a
contiguous tail as `DataSplits.from_tokens` does; `eval --text` scores the text as `prepare` processed it and runs
no benchmark unless asked; `train --help` shows the defaults the chosen --size really uses, and a run prints its
resolved configuration."""
import json
import re

import numpy as np
import pytest
import torch

from minillm.__main__ import main
from minillm.train.rundir import load_run
from minillm.data.loader import DataSplits
from minillm.data.prepare import prepare
from minillm.data.shards import read_shard
from minillm.data.tokenizer import CharTokenizer, load_tokenizer
from minillm.evaluation.harness import perplexity
from minillm.presets import SIZES, TRAIN_PRESETS, train_preset

EOS = "<|endoftext|>"
# Three paragraphs separated by blank lines: the old `prepare` cut them into documents joined by EOS.
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
        "All:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 12


def _shards(folder):
    train, val = (read_shard(folder / f"{s}.bin").tokens for s in ("train", "val"))
    return np.asarray(train), np.asarray(val)


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_prepare_txt_is_verbatim_with_a_contiguous_tail(tmp_path, tokenizer):
    (tmp_path / "play.txt").write_text(TEXT)
    extra = ["--vocab_size", "300"] if tokenizer == "bpe" else []
    assert main(["prepare", "--source", str(tmp_path / "play.txt"), "--tokenizer", tokenizer, "--val_fraction", "0.1",
                 "--out", str(tmp_path / "data"), *extra]) == 0
    tok = load_tokenizer(tmp_path / "data" / "tokenizer.json")
    train, val = _shards(tmp_path / "data")
    ids = np.asarray(tok.encode(TEXT))
    assert np.array_equal(np.concatenate([train, val]), ids)  # verbatim: no EOS, nothing dropped or reordered
    ref = DataSplits.from_tokens(ids, val_fraction=0.1)  # the API's split: the last 10% of tokens
    assert np.array_equal(train, np.asarray(ref.train)) and np.array_equal(val, np.asarray(ref.val))
    assert len(val) == round(len(ids) * 0.1)
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert meta["text_split"] == "file" and meta["holdout"] == "tail"


def test_prepare_split_paragraph_and_line(tmp_path, capsys):
    (tmp_path / "play.txt").write_text(TEXT)
    for split, n_docs in (("paragraph", 36), ("line", 72)):
        out = tmp_path / split
        assert main(["prepare", "--source", str(tmp_path / "play.txt"), "--split", split, "--val_fraction", "0.25",
                     "--out", str(out)]) == 0
        tok = load_tokenizer(out / "tokenizer.json")
        eos = tok.encode(EOS)[0]
        train, val = _shards(out)
        assert int((train == eos).sum()) + int((val == eos).sum()) == n_docs  # one EOS after each document
        meta = json.loads((out / "meta.json").read_text())
        assert meta["text_split"] == split and meta["holdout"] == "documents"
        assert (meta["train_docs"], meta["val_docs"]) == (n_docs * 3 // 4, n_docs // 4)
    help_text = _help_text(capsys, ["prepare"])
    assert "--split {file,paragraph,line}" in help_text and "contiguous tail" in help_text


def test_prepare_api_tail_holdout(tmp_path):
    docs = ["abcd", "", "efgh", "ijkl"]
    tok = CharTokenizer.from_text("".join(docs), special_tokens=[EOS])
    eos = tok.encode(EOS)[0]
    # stream: a b c d E e f g h E i j k l (14 tokens); val = the last round(14 * 0.4) = 6: "h E i j k l"
    r = prepare(docs, tok, tmp_path / "o", val_fraction=0.4, eos_id=eos, holdout="tail", meta={"text_split": "x"})
    train, val = _shards(tmp_path / "o")
    assert tok.decode(train.tolist()) == "abcd" + EOS + "efg" and tok.decode(val.tolist()) == "h" + EOS + "ijkl"
    assert (r.n_train_docs, r.n_val_docs) == (2, 2)  # "efgh" is cut: it counts on both sides
    meta = json.loads(r.meta_path.read_text())
    assert meta["text_split"] == "x" and meta["holdout"] == "tail" and meta["empty_docs_skipped"] == 1
    with pytest.raises(ValueError, match="holdout must be one of"):
        prepare(docs, tok, tmp_path / "p", holdout="random")
    with pytest.raises(ValueError, match=r"may not replace .*\['source'\]"):
        prepare(docs, tok, tmp_path / "q", val_fraction=0.4, holdout="tail", meta={"source": "mine"})
    assert not (tmp_path / "q").exists()


def test_split_is_refused_for_sources_that_are_not_text_files(tmp_path, capsys):
    assert main(["prepare", "--source", "arithmetic", "--n_docs", "50", "--split", "line",
                 "--out", str(tmp_path / "d")]) == 2
    assert "--split" in capsys.readouterr().err


@pytest.fixture(scope="module")
def text_runs(tmp_path_factory):
    """A tiny model trained on TEXT prepared verbatim (file) and by paragraph: (tmp folder, {split: run folder})."""
    root = tmp_path_factory.mktemp("cli_text")
    (root / "play.txt").write_text(TEXT)
    runs = {}
    for split in ("file", "paragraph"):
        data, run = root / f"data_{split}", root / f"run_{split}"
        assert main(["prepare", "--source", str(root / "play.txt"), "--split", split, "--val_fraction", "0.25",
                     "--out", str(data)]) == 0
        assert main(["train", "--data", str(data), "--preset", "tiny", "--size", "ci", "--out", str(run),
                     "--max_steps", "4", "--n_layer", "1", "--block_size", "32", "--progress", "false"]) == 0
        runs[split] = run
    return root, runs


@pytest.mark.parametrize("split", ["file", "paragraph"])
def test_eval_text_scores_the_text_as_prepare_processed_it(text_runs, split, capsys):
    root, runs = text_runs
    capsys.readouterr()
    assert main(["eval", "--run", str(runs[split]), "--text", str(root / "play.txt"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    train, val = _shards(root / f"data_{split}")
    n_prepared = len(train) + len(val) - (split == "paragraph")  # paragraph: every document ends with EOS
    m = re.search(r"loss (\S+) nats/token.* over ([\d,]+) tokens", out)
    assert m, out
    assert int(m.group(2).replace(",", "")) == n_prepared - 1  # every token prepare made, less the unscored first
    model, tok = load_run(runs[split])
    # by hand: the file itself, or its paragraphs joined by EOS (the char tokenizer encodes EOS as its special id)
    text = TEXT if split == "file" else EOS.join(p for p in TEXT.split("\n\n") if p)
    stream = np.asarray(tok.encode(text))
    assert len(stream) == n_prepared
    ref = perplexity(model, torch.as_tensor(stream))
    assert float(m.group(1)) == pytest.approx(ref["loss"], abs=1e-4)
    assert f"--split {split}" in out  # says which processing it applied


def test_eval_text_runs_no_tasks_unless_asked(text_runs, capsys):
    root, runs = text_runs
    capsys.readouterr()
    assert main(["eval", "--run", str(runs["file"]), "--text", str(root / "play.txt"), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "bits/byte" in captured.out and "accuracy" not in captured.out and not captured.err


def test_eval_skips_a_task_the_tokenizer_cannot_encode(text_runs, capsys):
    root, runs = text_runs
    capsys.readouterr()
    # this vocabulary has no digits: arithmetic cannot be written in it
    assert main(["eval", "--run", str(runs["file"]), "--text", str(root / "play.txt"), "--tasks", "arithmetic",
                 "--n", "3", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "bits/byte" in captured.out
    note = [line for line in captured.err.splitlines() if "arithmetic" in line]
    assert len(note) == 1 and "skipped" in note[0] and "--tasks" in note[0] and "rebuild" not in captured.err
    # nothing left to measure is an error, not a silent success
    assert main(["eval", "--run", str(runs["file"]), "--tasks", "arithmetic", "--n", "3", "--device", "cpu"]) == 2
    assert "--tasks" in capsys.readouterr().err


def _help_text(capsys, argv) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare with one space


@pytest.mark.parametrize("size", SIZES)
def test_train_help_shows_the_presets_defaults(size, capsys, monkeypatch):
    monkeypatch.delenv("MINILLM_SIZE", raising=False)
    text = _help_text(capsys, ["train", "--size", size])
    preset = train_preset(size)
    for name in ("max_steps", "warmup_steps", "eval_interval", "batch_size"):
        m = re.search(rf"--{name} INT .*?\[default: (.*?)\]", text)
        assert m, f"--{name} not in help"
        assert m.group(1).startswith(f"{getattr(preset, name)} at --size {size}"), m.group(1)
        for other in SIZES:  # the other sizes' values are listed too
            assert f"{other} {TRAIN_PRESETS[other][name]}" in m.group(1) or other == size
    assert re.search(r"--lr FLOAT .*?\[default: 0\.001\]", text)  # a field no preset sets keeps its own default


def test_train_help_without_size_uses_the_active_profile(capsys, monkeypatch):
    monkeypatch.setenv("MINILLM_SIZE", "ci")
    text = _help_text(capsys, ["train"])
    assert re.search(rf"--max_steps INT .*?\[default: {train_preset('ci').max_steps} at --size ci", text)


def test_train_prints_resolved_config_and_pads_by_its_size(tmp_path, capsys, monkeypatch):
    # The profile of the environment says gpu (as on a CUDA host), --size says ci: the ci model must not be padded.
    monkeypatch.setenv("MINILLM_SIZE", "gpu")
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "--source", "arithmetic", "--n_docs", "200", "--out", "data"]) == 0
    assert main(["train", "--data", "data", "--preset", "tiny", "--size", "ci", "--out", "run", "--max_steps", "3",
                 "--n_layer", "1", "--block_size", "32"]) == 0
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["pad_vocab_multiple"] is None
    block = " ".join(out.split())
    assert "--size ci" in block and "--preset tiny" in block
    for text in ("n_layer=1", "block_size=32", "n_embd=64", "max_steps=3", "batch_size=8", "warmup_steps=5",
                 "optimizer=adamw", "pad_vocab_multiple=None"):
        assert text in block, text
