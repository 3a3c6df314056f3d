"""The check tests here pass minillm's own functions (and mistakes built from them) as answers, to test each
check's cases and comparisons; `Check.shortcuts` would refuse those, so it is lifted for them. The shortcut watch
itself is tested in test_shortcuts.py (kept on there), through the grader in tests/book/test_grade.py, and on real
answers by nbval running the solution notebooks."""
import dataclasses

import pytest

from book import grading


@pytest.fixture(autouse=True)
def _answers_may_call_the_reference(request, monkeypatch):
    if request.module.__name__.endswith("test_shortcuts"):
        return
    for name, spec in list(grading.CHECKS.items()):
        if spec.shortcuts:
            monkeypatch.setitem(grading.CHECKS, name, dataclasses.replace(spec, shortcuts=()))
