"""Lab 06 checks (Survey §5.1-5.3): minillm.finetune's own references pass, and each typical mistake (mask not
shifted, prompt or padding kept; DPO sign flipped, beta missing, no reference, sum not mean; LoRA scaled by alpha,
A and B swapped, W not transposed, merged in place) fails with the hint that names it."""
import math

import pytest
import torch
import torch.nn.functional as F

from book import grading
from minillm.finetune.dpo import dpo_loss
from book.grading.lab06 import _lora_forward_reference, _targets_reference


def _targets(ids, mask, fill=-100, shift=1):
    return ids[:, :-1], torch.where(mask[:, shift:] if shift else mask[:, :-1], ids[:, 1:], fill)


def _dpo(pc, pr, rc, rr, beta, sign=1.0, b=None, ref=True, red="mean", logsig=True):
    b = beta if b is None else b
    c, r = (pc - rc, pr - rr) if ref else (pc, pr)
    z = sign * b * (c - r)
    loss = -F.logsigmoid(z) if logsig else -torch.log(torch.sigmoid(z))
    return (loss.mean() if red == "mean" else loss.sum()), b * c, b * r


def _lora(x, W, A, B, alpha, rank):
    return x @ W.T + (alpha / rank) * (x @ A.T) @ B.T


def _merge(W, A, B, alpha, rank):
    return W + (alpha / rank) * B @ A


def _merge_in_place(W, A, B, alpha, rank):
    W += (alpha / rank) * B @ A
    return W


WRONG = [
    ("response_targets", lambda i, m: _targets(i, m, shift=0), "The mask is not shifted"),
    ("response_targets", lambda i, m: (i[:, :-1], i[:, 1:]), "Prompt tokens kept"),
    ("response_targets", lambda i, m: _targets(i, m.long().cummax(1).values.bool()), "Padding (and later prompt"),
    ("response_targets", lambda i, m: _targets(i, m, fill=0), "must be -100"),
    ("response_targets", lambda i, m: (i, torch.where(m, i, -100)), "output shape"),
    ("dpo_loss", lambda *a: _dpo(*a, sign=-1.0), "Sign flipped"),
    ("dpo_loss", lambda *a: _dpo(*a, b=1.0), "beta is missing"),
    ("dpo_loss", lambda *a: _dpo(*a, ref=False), "No reference"),
    ("dpo_loss", lambda *a: _dpo(*a, red="sum"), "MEAN loss"),
    ("dpo_loss", lambda *a: _dpo(*a, logsig=False), "use F.logsigmoid"),
    ("dpo_loss", lambda *a: (_dpo(*a)[0].detach(), *_dpo(*a)[1:]), "Stay in torch"),
    ("lora_forward", lambda x, W, A, B, a, r: _lora(x, W, A, B, a, 1), "not by alpha"),
    ("lora_forward", lambda x, W, A, B, a, r: x @ W.T + (a / r) * (x @ B.T) @ A.T, "A and B in the wrong order"),
    ("lora_forward", lambda x, W, A, B, a, r: x @ W + (a / r) * (x @ A.T) @ B.T, "Transpose W"),
    ("lora_forward", lambda x, W, A, B, a, r: _lora(x, W, A, B, a, r).detach(), "no gradient flows"),
    ("lora_merge", lambda W, A, B, a, r: W + a * B @ A, "not by alpha"),
    ("lora_merge", lambda W, A, B, a, r: W + (a / r) * A @ B, "B @ A, not A @ B"),
    ("lora_merge", lambda W, A, B, a, r: (a / r) * B @ A, "the update alone"),
    ("lora_merge", _merge_in_place, "modified its input tensor in place"),
]


@pytest.mark.parametrize("name, fn", [
    ("response_targets", _targets_reference), ("response_targets", _targets),
    ("dpo_loss", dpo_loss), ("dpo_loss", _dpo),
    ("lora_forward", _lora_forward_reference), ("lora_forward", _lora),
    ("lora_merge", _merge),
])
def test_right_answers_pass(name, fn, capsys):
    grading.check(name, fn)
    assert f"PASS {name}" in capsys.readouterr().out


@pytest.mark.parametrize("name, fn, message", WRONG, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WRONG)])
def test_wrong_answers_fail_with_the_right_hint(name, fn, message, capsys):
    with pytest.raises(AssertionError):
        grading.check(name, fn)
    out = capsys.readouterr().out
    assert f"FAIL {name}" in out and message in out, out


def test_dpo_hand_values():
    """Policy = reference gives log 2; a 2-nat margin for the chosen response at beta = 1 gives log(1 + e^-2)."""
    loss, rc, rr = dpo_loss(torch.tensor([-10.0, -8.0]), torch.tensor([-12.0, -12.0]),
                            torch.tensor([-10.0, -9.0]), torch.tensor([-12.0, -11.0]), 1.0)
    expected = (math.log(2.0) + math.log1p(math.exp(-2.0))) / 2
    assert abs(loss.item() - expected) < 1e-6
    assert rc.tolist() == [0.0, 1.0] and rr.tolist() == [0.0, -1.0]


def test_a_stub_reports_not_implemented():
    def stub(*args):
        raise NotImplementedError("write it")

    for name in ("response_targets", "dpo_loss", "lora_forward", "lora_merge"):
        with pytest.raises(NotImplementedError, match=f"not implemented yet: {name}"):
            grading.check(name, stub)
