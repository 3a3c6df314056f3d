"""The README's package example runs as written (with fewer steps) and its quick start names real targets."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## The package\n\n```python\n(.*?)```", readme, re.S).group(1)
    assert code.count("\n") <= 12, "the README promises a short example"
    fast = code.replace("max_steps=300", "max_steps=3").replace("n_docs=5000", "n_docs=200")
    fast = fast.replace("max_new_tokens=200", "max_new_tokens=5")
    assert fast != code
    exec(compile(fast, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "nats/char; floor" in out


def test_quick_start_targets_exist():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", readme, re.M):
        assert re.search(rf"^{target}:", makefile, re.M), f"README mentions `make {target}` but the Makefile has no such target"
    for nb in re.findall(r"`((?:chapters|labs)/[\w/]*\d\d_[a-z]\w*\.ipynb)`", readme):
        assert (ROOT / nb).exists(), f"README lists {nb}, which does not exist"
