"""Test files need unique basenames: tests/ folders are not packages, so pytest imports each file as a top-level
module, and two files of the same name collide ("import file mismatch") when one run collects both."""
from collections import Counter
from pathlib import Path


def test_test_file_basenames_are_unique():
    names = Counter(p.name for p in Path(__file__).resolve().parent.rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1], f"duplicate test file names: {names.most_common(3)}"
