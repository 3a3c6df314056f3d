"""Lab 04 checks (Survey §4.2): each passes on a right answer and fails, with a message that points at the
mistake, on a typical wrong answer (forward or backward)."""
import pytest
import torch
import torch.nn.functional as F

from minillm import apply_rope
from book import grading
from book.grading.lab04 import _balance_reference, _gates_reference


def rope_rotate_half(x, positions, theta=10000.0):  # typical mistake: the rotate-half layout of HF Llama
    D = x.size(-1)
    omega = theta ** (-torch.arange(0, D, 2, dtype=torch.float32) / D)
    ang = torch.cat([positions.float()[:, None] * omega] * 2, dim=-1)
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return x * ang.cos() + torch.cat([-x2, x1], dim=-1) * ang.sin()


def rope_positions_from_zero(x, positions, theta=10000.0):  # typical mistake: ignores the given positions
    return apply_rope(x, torch.arange(x.size(-2)), theta)


def gates_always_renormalised(logits, k):  # typical mistake: k = 1 renormalised to a gate of exactly 1
    probs = torch.softmax(logits, -1)
    top, idx = probs.topk(k, -1)
    return torch.zeros_like(probs).scatter(1, idx, top / top.sum(-1, keepdim=True))


def gates_hard_argmax(logits, k):  # typical mistake: detaches the gates (no gradient to the router)
    return _gates_reference(logits, k).detach()


def balance_not_divided_by_k(probs, index):  # typical mistake: f counts tokens, not token-slots
    E = probs.size(-1)
    return E * (F.one_hot(index, E).float().sum(1).mean(0) * probs.mean(0)).sum()


def balance_f_with_gradient_through_max(probs, index):  # typical mistake: P from the chosen probs only
    E = probs.size(-1)
    f = F.one_hot(index, E).float().sum(1).mean(0) / index.size(-1)
    return E * (f * (probs * F.one_hot(index[:, 0], E)).mean(0)).sum()


@pytest.mark.parametrize("name, fn", [
    ("apply_rope", apply_rope), ("moe_gates", _gates_reference), ("load_balancing_loss", _balance_reference),
])
def test_right_answers_pass(name, fn, capsys):
    grading.check(name, fn)
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("name, fn, message", [
    ("apply_rope", rope_rotate_half, "interleaved back into pairs"),
    ("apply_rope", rope_positions_from_zero, "Positions are given"),
    ("moe_gates", gates_always_renormalised, "do not renormalise"),
    ("moe_gates", gates_hard_argmax, "FAIL moe_gates"),
    ("load_balancing_loss", balance_not_divided_by_k, "divide by N * k"),
    ("load_balancing_loss", balance_f_with_gradient_through_max, "FAIL load_balancing_loss"),
])
def test_wrong_answers_fail(name, fn, message, capsys):
    with pytest.raises(AssertionError):
        grading.check(name, fn)
    assert message in capsys.readouterr().out
