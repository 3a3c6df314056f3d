"""book.grading: correct implementations pass, stubs and typical student mistakes fail with useful messages."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from book import grading

# Independent references straight from PyTorch: if these pass every check, the expectations are right.
TORCH_REFERENCES = {
    "softmax": lambda x, dim: torch.softmax(x, dim),
    "cross_entropy": lambda logits, t: F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1)),
    "attention_head": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
}


def _causal(T):
    return torch.ones(T, T, dtype=torch.bool).tril()


def naive_softmax(x, dim):  # no max subtraction: overflows for large logits
    e = torch.exp(x)
    return e / e.sum(dim, keepdim=True)


def stable_softmax(x, dim):
    e = torch.exp(x - x.amax(dim, keepdim=True))
    return e / e.sum(dim, keepdim=True)


def attention(q, k, v, scale_dim=None, causal=True, transpose=(-2, -1), softmax=stable_softmax):
    """A configurable attention head: the correct one by default, each argument one classic mistake."""
    T = q.shape[-2]
    scores = q @ k.transpose(*transpose) / math.sqrt(q.shape[-1] if scale_dim is None else scale_dim(q, v))
    if causal:
        scores = scores.masked_fill(~_causal(T), float("-inf"))
    return softmax(scores, -1) @ v


def test_registry_lists_the_lab00_checks():
    checks = grading.list_checks()
    assert {"softmax", "cross_entropy", "attention_head"} <= set(checks)
    assert all(summary for summary in checks.values())
    assert all(c.hint and len(c.cases) >= 4 for c in grading.CHECKS.values())


@pytest.mark.parametrize("name", sorted(TORCH_REFERENCES))
def test_torch_reference_passes(name, capsys):
    grading.check(name, TORCH_REFERENCES[name])
    assert capsys.readouterr().out.startswith(f"PASS {name}: ")


@pytest.mark.parametrize("name", sorted(TORCH_REFERENCES))
def test_minillm_reference_passes(name):
    grading.check(name, grading.CHECKS[name].reference)


def test_correct_student_implementations_pass():
    grading.check("softmax", stable_softmax)
    grading.check("attention_head", attention)


@pytest.mark.parametrize("name", sorted(TORCH_REFERENCES))
def test_stub_raises_not_implemented(name, capsys):
    def stub(*args):
        raise NotImplementedError("write me")

    with pytest.raises(NotImplementedError, match=f"not implemented yet: {name} \\(write me\\)"):
        grading.check(name, stub)
    assert capsys.readouterr().out.startswith(f"TODO {name}: not implemented yet")


def _same(x, y) -> bool:
    """Equal inputs, whatever they are: tensors, numpy arrays, numbers, strings, or sequences of them."""
    if torch.is_tensor(x):
        return torch.is_tensor(y) and torch.equal(x, y)
    if isinstance(x, np.ndarray):
        return isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y)
    if isinstance(x, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(_same(p, q) for p, q in zip(x, y))
    return x == y


def test_cases_are_deterministic():
    for c in grading.CHECKS.values():
        for case in c.cases:
            assert _same(case.make(), case.make()), case.label


WRONG = [  # (check, wrong implementation, text the failure must contain)
    ("softmax", naive_softmax, "large logits.*nan/inf"),
    ("softmax", lambda x, dim: stable_softmax(x, -1), "not the last dim"),
    ("softmax", lambda x, dim: torch.exp(x) / torch.exp(x).sum(), "values differ"),  # sums over everything
    ("softmax", lambda x, dim: x.sub_(x.amax(dim, keepdim=True)).exp() / x.exp().sum(dim, keepdim=True), "in place"),
    ("softmax", lambda x, dim: stable_softmax(x, dim).double(), "dtype torch.float64"),
    ("softmax", lambda x, dim: stable_softmax(x, dim).detach(), "no gradient flows"),
    ("softmax", lambda x, dim: stable_softmax(x, dim).numpy(), "expected a torch.Tensor, got ndarray"),
    ("cross_entropy", lambda l, t: F.cross_entropy(l.reshape(-1, l.shape[-1]), t.reshape(-1), reduction="sum"),
     "logits \\(8, 10\\).*values differ"),
    ("cross_entropy", lambda l, t: F.cross_entropy(l.transpose(1, -1), t, reduction="none").mean(-1) if l.dim() == 3
     else F.cross_entropy(l, t), "mean over batch AND time.*output shape \\(2,\\)"),
    ("cross_entropy", lambda l, t: -torch.log(naive_softmax(l, -1)).gather(-1, t[..., None]).mean(), "large logits"),
    ("cross_entropy", lambda l, t: torch.tensor(F.cross_entropy(l.reshape(-1, l.shape[-1]), t.reshape(-1)).item()),
     "no gradient flows"),
    ("attention_head", lambda q, k, v: attention(q, k, v, causal=False), r"\(B, T, D\) = \(2, 5, 8\).*values differ"),
    ("attention_head", lambda q, k, v: attention(q, k, v, scale_dim=lambda q, v: v.shape[-1]), "another width"),
    ("attention_head", lambda q, k, v: attention(q, k, v, scale_dim=lambda q, v: 1.0), "values differ"),
    ("attention_head", lambda q, k, v: attention(q, k, v, transpose=(1, 2)), "with heads.*raised RuntimeError"),
    ("attention_head", lambda q, k, v: attention(q, k, v, softmax=naive_softmax), "large scores.*nan/inf"),
    ("attention_head", lambda q, k, v: (stable_softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1)
                                        * _causal(q.shape[-2])) @ v, "values differ"),  # masks after the softmax
]


@pytest.mark.parametrize("name,fn,message", WRONG, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WRONG)])
def test_wrong_implementation_fails(name, fn, message, capsys):
    with pytest.raises(AssertionError, match=message):
        grading.check(name, fn)
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL {name}: case '") and "hint: " in out


def test_failure_message_carries_the_case_hint(capsys):
    with pytest.raises(AssertionError):
        grading.check("softmax", naive_softmax)
    assert "subtract the maximum" in capsys.readouterr().out


def test_student_exception_is_chained():
    def broken(x, dim):
        raise KeyError("oops")

    with pytest.raises(AssertionError, match="raised KeyError") as info:
        grading.check("softmax", broken)
    assert isinstance(info.value.__cause__, KeyError)


def test_bad_arguments():
    with pytest.raises(ValueError, match="no check named 'sofmax'; available checks: softmax"):
        grading.check("sofmax", stable_softmax)
    with pytest.raises(ValueError, match="fn must be your function, got ndarray"):
        grading.check("softmax", np.zeros(3))


def test_register_and_validate(monkeypatch):
    monkeypatch.setattr(grading, "CHECKS", {})
    case = grading.Case("ones", lambda: (torch.ones(3),))
    grading.register_check(grading.Check("double", "2x", "multiply by 2", lambda x: 2 * x, (case,)))
    grading.check("double", lambda x: x + x)
    with pytest.raises(AssertionError, match="values differ"):
        grading.check("double", lambda x: x)
    with pytest.raises(ValueError, match="already registered"):
        grading.register_check(grading.Check("double", "2x", "h", lambda x: 2 * x, (case,)))
    with pytest.raises(ValueError, match="must be a Python identifier"):
        grading.Check("two words", "s", "h", lambda x: x, (case,))
    with pytest.raises(ValueError, match="needs at least one Case"):
        grading.Check("empty", "s", "h", lambda x: x, ())
    with pytest.raises(ValueError, match="non-empty description"):
        grading.Case("", lambda: ())


def test_broken_reference_is_not_blamed_on_the_student(monkeypatch):
    monkeypatch.setattr(grading, "CHECKS", {})
    case = grading.Case("ones", lambda: (torch.ones(3),))
    grading.register_check(grading.Check("bad", "s", "h", lambda x: x.nonexistent(), (case,)))
    with pytest.raises(RuntimeError, match="bug in minillm, not in your code"):
        grading.check("bad", lambda x: x)
