"""book.gradescope: the autograder zip holds what a kernel needs, and its run_autograder grades one upload."""
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from book import gradescope

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "labs" / "00_foundations.ipynb"


@pytest.fixture(scope="module")
def autograder(tmp_path_factory):
    root = tmp_path_factory.mktemp("autograder")
    names = gradescope.build(LAB, root / "autograder.zip", cell_timeout=30, timeout=120)
    with zipfile.ZipFile(root / "autograder.zip") as z:
        z.extractall(root / "source")
        modes = {i.filename: i.external_attr >> 16 for i in z.infolist()}
    return {"root": root, "names": names, "modes": modes}


def test_zip_holds_the_packages_and_the_lab_only(autograder):
    names = set(autograder["names"])
    assert {"setup.sh", "run_autograder", "minillm/__init__.py", "book/grade.py", "book/confine.py",
            "labs/00_foundations.ipynb", "requirements.txt", "pyproject.toml", "data/tinyshakespeare.txt",
            "bench/results/sweeps/laptop_isoflop.jsonl"} <= names
    assert not any(n.startswith(("tests/", "labs/solutions/", ".venv/", "chapters/", "bench/kernel")) for n in names)
    assert [n for n in names if n.startswith("labs/")] == ["labs/00_foundations.ipynb"]
    assert autograder["modes"]["run_autograder"] & stat.S_IXUSR and autograder["modes"]["setup.sh"] & stat.S_IXUSR
    src = autograder["root"] / "source"
    setup = (src / "setup.sh").read_text()
    import torch

    assert f'torch=={torch.__version__.split("+")[0]}' in setup and "requirements.txt" in setup
    for script in ("setup.sh", "run_autograder"):
        assert subprocess.run(["bash", "-n", str(src / script)]).returncode == 0, script


def _run(autograder, submissions: dict) -> dict:
    """Lay out Gradescope's folders around the unpacked zip and run run_autograder on ``submissions``."""
    root = autograder["root"]
    sub, results = root / "submission", root / "results"
    for d in (sub, results):
        if d.exists():
            for f in d.rglob("*"):
                if f.is_file():
                    f.unlink()
    sub.mkdir(exist_ok=True)
    for name, nb in submissions.items():
        nbformat.write(nb, sub / name)
    env = {**os.environ, "AUTOGRADER": str(root), "PYTHON": sys.executable}
    subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, timeout=300)
    return json.loads((results / "results.json").read_text())


def test_run_autograder_grades_one_upload(autograder):
    solution = nbformat.read(REPO / "labs" / "solutions" / "00_foundations.ipynb", as_version=4)
    res = _run(autograder, {"my_lab.ipynb": solution})
    assert res["score"] == 3
    assert [t["name"] for t in res["tests"]] == ["softmax", "cross_entropy", "attention_head"]
    assert all(t["status"] == "passed" and t["max_score"] == 1 for t in res["tests"])
    assert (autograder["root"] / "results" / "reports" / "my_lab.md").is_file()
    stub = nbformat.read(LAB, as_version=4)
    res = _run(autograder, {"a.ipynb": stub, "b.ipynb": stub})  # two uploads: a clear zero, not a crash
    assert res["score"] == 0 and "exactly one .ipynb" in res["output"]


def test_build_refuses_what_is_not_a_student_lab(tmp_path):
    with pytest.raises(ValueError, match="student lab notebook"):
        gradescope.build(REPO / "labs" / "solutions" / "00_foundations.ipynb", tmp_path / "a.zip")
    with pytest.raises(ValueError, match="not inside the repository"):
        gradescope.build(tmp_path / "x.ipynb", tmp_path / "a.zip")
    assert not (tmp_path / "a.zip").exists()


def test_build_outside_a_git_checkout_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(gradescope, "_REPO", tmp_path)  # a folder git does not know
    with pytest.raises(ValueError, match="not a git checkout"):
        gradescope._tracked(("minillm",))
