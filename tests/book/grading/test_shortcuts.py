"""Check.shortcuts: a student function that calls minillm's or torch's own implementation fails, however wrapped."""
import threading

import pytest
import torch
import torch.nn.functional as F

from book import grading
from book.grading.core import Case, Check, _call_watched, _resolve, _Shortcut

SOFTMAX = ("minillm.model.layers.softmax", "torch.softmax", "torch.nn.functional.softmax", "torch.Tensor.softmax")
SPEC = Check(name="watched", summary="s", hint="h", reference=torch.relu,
             cases=(Case("c", lambda: (torch.zeros(1),)),), shortcuts=SOFTMAX)
X = torch.randn(3, 5)


def test_every_registered_shortcut_resolves():
    named = {n: c.shortcuts for n, c in grading.CHECKS.items() if c.shortcuts}
    assert len(named) >= 30  # every "implement it" check of labs 00-07 and 09 names what it must not call
    for name, shortcuts in named.items():
        for dotted in shortcuts:
            assert callable(_resolve(dotted)), (name, dotted)


def _helper(x):
    return F.softmax(x, -1)


@pytest.mark.parametrize("call, caught", [
    (lambda: torch.softmax(X, -1), "torch.softmax"),                       # a C function
    (lambda: X.softmax(-1), "torch.Tensor.softmax"),                       # a C method, bound anew at each call
    (lambda: _helper(X), "torch.nn.functional.softmax"),                   # a Python function, one level down
    (lambda: torch.nn.Softmax(-1)(X), "torch.nn.functional.softmax"),      # through an nn.Module
])
def test_shortcuts_are_caught_however_reached(call, caught):
    with pytest.raises(_Shortcut, match=caught.replace(".", r"\.")):
        _call_watched(SPEC, call)


def test_own_code_passes_and_profile_is_restored():
    before = threading.getprofile()
    got = _call_watched(SPEC, lambda: (X - X.amax(-1, keepdim=True)).exp().log_softmax(-1))  # log_softmax: allowed
    assert got.shape == X.shape
    assert threading.getprofile() is before


def test_shortcut_in_a_thread_the_function_starts():
    def threaded():
        out = []
        t = threading.Thread(target=lambda: out.append(torch.softmax(X, -1)))
        t.start()
        t.join()
        return out[0]

    with pytest.raises(_Shortcut, match="torch.softmax"):
        _call_watched(SPEC, threaded)


def test_check_reports_shortcut(capsys):
    with pytest.raises(AssertionError, match="calls torch.nn.functional.softmax"):
        grading.check("softmax", lambda x, dim: F.softmax(x, dim))
    assert "FAIL softmax" in capsys.readouterr().out
