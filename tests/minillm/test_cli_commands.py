"""The command line's promises: --help lists every command, train resumes a killed run by default, help(minillm)
shows the public API."""
import json
import pydoc

import pytest

import minillm
from minillm.cli import build_parser, main


def _commands() -> list[str]:
    return list(build_parser()._subparsers._group_actions[0].choices)


def test_help_lists_every_command(capsys):
    commands = _commands()
    assert {"prepare", "train", "generate", "eval", "sweep"} <= set(commands)
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    text = capsys.readouterr().out
    for name in commands:  # each command, with its one-line help, and an example in the usage block
        assert f"\n    {name} " in text, name
        assert f"python -m minillm {name} " in text, f"the usage block shows no example of {name}"
    # the package docstring's module map names the same commands
    assert all(name in minillm.__doc__ for name in commands)


def test_help_of_the_package_shows_the_public_api():
    text = pydoc.render_doc(minillm, renderer=pydoc.plaintext)
    missing = [name for name in minillm.__all__ if name not in text]
    assert not missing
    head = minillm.__doc__.split("Start here")[1]  # the short list a reader sees before the 200k-character listing
    for name in ("GPT", "ModelConfig", "TrainConfig", "Trainer", "load_run", "prepare", "generate"):
        assert name in head, name


def _prepared(tmp_path):
    (tmp_path / "data").mkdir()
    assert main(["prepare", "--source", "arithmetic", "--n_docs", "300", "--out", str(tmp_path / "data" / "a")]) == 0


def test_train_resumes_a_run_folder_by_default(tmp_path, capsys):
    _prepared(tmp_path)
    run = tmp_path / "run"
    common = ["train", "--data", str(tmp_path / "data" / "a"), "--preset", "tiny", "--size", "ci", "--out", str(run),
              "--n_layer", "1", "--block_size", "16", "--eval_interval", "3"]
    assert main(common + ["--max_steps", "6"]) == 0  # a run that stopped at step 6; no checkpoint flag given
    assert (run / "ckpt").is_dir() and any((run / "ckpt").iterdir())
    capsys.readouterr()
    with pytest.warns(UserWarning, match="max_steps"):  # the changed flag is named in a warning
        assert main(common + ["--max_steps", "9"]) == 0  # the same command again, longer: it resumes
    assert "resuming from step 6" in capsys.readouterr().out
    resumed = [json.loads(r) for r in (run / "history.jsonl").read_text().splitlines()]
    assert resumed[-1]["step"] == 9
    # --resume false on a folder with checkpoints refuses rather than overwrite the run
    assert main(common + ["--max_steps", "9", "--resume", "false"]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
