"""The README's homework sections run as written: the shell blocks of "Your own data" and "Fine-tuning" are executed
line by line (`python -m minillm ...` in process, `mkdir -p` as os.makedirs) in an empty folder, after the files a
student would bring (their text, their JSONL) are written there."""
import os
import re
import shlex
from pathlib import Path

import pytest

from minillm import corpus
from minillm.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _block(marker: str, lang: str) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert marker in readme, f"the README has no {marker!r}"
    m = re.search(rf"```{lang}\n(.*?)```", readme[readme.index(marker):], re.S)
    assert m, f"no ```{lang} block after {marker!r}"
    return m.group(1)


def _run_shell(block: str) -> None:
    for raw in block.splitlines():
        line = raw.split("#")[0].strip()
        if not line:
            continue
        argv = shlex.split(line)
        if argv[:2] == ["mkdir", "-p"]:
            for d in argv[2:]:
                os.makedirs(d, exist_ok=True)
        elif argv[:3] == ["python", "-m", "minillm"]:
            assert main(argv[3:]) == 0, f"README command failed: {line}"
        else:
            pytest.fail(f"the test does not know how to run this README line: {line}")


def test_your_own_data_commands_run_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("my_text.txt").write_text(corpus("story", n_docs=300, seed=1).text(), encoding="utf-8")
    Path("my_heldout.txt").write_text(corpus("story", n_docs=20, seed=2).text(), encoding="utf-8")
    _run_shell(_block("**Your own data.**", "bash"))
    out = capsys.readouterr().out
    assert "config (--size ci" in out  # training printed its resolved configuration
    assert re.search(r"my_heldout\.txt \(--split file.*bits/byte", out)
    generated = out.split("bits/byte")[-1]  # what `generate` printed: the prompt and a continuation
    assert "Once" in generated and "<|endoftext|>" not in generated


def _pairs(path: Path) -> None:
    """32 word reversals over letters the story corpus's character tokenizer knows; "nobi" is the README's prompt."""
    import json
    import random
    rng = random.Random(0)
    words = ["nobi"] + ["".join(rng.choice("abcdefghiklmnoprstu") for _ in range(4)) for _ in range(31)]
    path.write_text("".join(json.dumps({"prompt": f"reverse {w}", "response": w[::-1]}) + "\n" for w in words))


def test_fine_tuning_section_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("my_text.txt").write_text(corpus("story", n_docs=300, seed=1).text(), encoding="utf-8")
    _run_shell("mkdir -p data runs\npython -m minillm prepare --source my_text.txt --out data/mine\n"
               "python -m minillm train --data data/mine --size ci --out runs/mine")  # the base, as "Your own data"
    _pairs(Path("pairs.jsonl"))
    capsys.readouterr()
    _run_shell(_block("**Fine-tuning.**", "bash"))  # as written: 300 steps
    out = capsys.readouterr().out
    assert "training exact match" in out
    assert out.rstrip().endswith("ibon"), out  # the chat run answers the README's prompt, then stops
    code = _block("**Fine-tuning.**", "python")
    assert code.count("\n") <= 12, "the README promises a short example"
    fast = code.replace("max_steps=300", "max_steps=30").replace('"runs/mine-chat"', '"runs/mine-chat-py"')
    assert fast != code
    exec(compile(fast, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "mine-chat-py" / "config.json").is_file()
