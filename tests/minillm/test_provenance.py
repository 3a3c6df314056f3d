"""minillm.provenance: a record says which code produced it (git commit and whether the checkout was dirty)."""
import subprocess
from pathlib import Path

import pytest

from minillm.provenance import git_state, provenance


def test_provenance_names_the_commit_of_this_checkout():
    here = Path(__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("not run from a git checkout")
    rec = provenance(["bench/x.py"])
    assert rec["git"]["commit"] == head and len(head) == 40
    assert isinstance(rec["git"]["dirty"], bool)


def test_git_state_sees_uncommitted_changes_and_no_checkout(tmp_path):
    assert git_state(tmp_path) is None  # not a checkout (an installed package): no made-up commit
    repo = tmp_path / "r"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (repo / "f.txt").write_text("a")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = git_state(repo)
    assert clean["dirty"] is False and len(clean["commit"]) == 40
    (repo / "f.txt").write_text("b")
    assert git_state(repo) == {"commit": clean["commit"], "dirty": True}
