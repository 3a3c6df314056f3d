"""Lab 05 checks (Survey §4.3): each passes on a right answer and fails, with a pointer, on a typical mistake.
The all-reduce check runs the function on simulated ranks (threads) and must not hang on a broken one."""
import math

import pytest

from book import grading
from book.grading.lab05 import _adamw_reference, _lr_reference


def adamw_l2(param, grad, m, v, step, lr, b1, b2, eps, wd):  # typical mistake: L2 decay added to the gradient
    g = grad + wd * param
    t = step + 1
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return param - lr * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps), m, v


def adamw_no_bias_correction(param, grad, m, v, step, lr, b1, b2, eps, wd):
    p = param * (1 - lr * wd)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    return p - lr * m / (v.sqrt() + eps), m, v


def lr_from_zero(step, S, W, lr, min_lr):  # typical mistake: warmup starts at 0 (the first step is wasted)
    return lr * step / W if step < W else _lr_reference(step, S, W, lr, min_lr)


def lr_unclipped(step, S, W, lr, min_lr):  # typical mistake: the cosine keeps going past the last step
    if step < W:
        return lr * (step + 1) / W
    p = (step - W) / (S - 1 - W)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * p))


def allreduce_right(model, world_size, dist):
    for p in model.parameters():
        dist.all_reduce(p.grad)
        p.grad /= world_size


def allreduce_sum_only(model, world_size, dist):  # typical mistake: forgets to divide
    for p in model.parameters():
        dist.all_reduce(p.grad)


def allreduce_rank0_only(model, world_size, dist):  # a rank that skips the collective: must fail, not hang
    if dist.get_rank() == 0:
        allreduce_right(model, world_size, dist)


@pytest.mark.parametrize("name, fn", [("adamw_step", _adamw_reference), ("lr_schedule", _lr_reference),
                                      ("allreduce_gradients", allreduce_right)])
def test_right_answers_pass(name, fn, capsys):
    grading.check(name, fn)
    assert "PASS" in capsys.readouterr().out


@pytest.mark.parametrize("name, fn, message", [
    ("adamw_step", adamw_l2, "FAIL adamw_step"),
    ("adamw_step", adamw_no_bias_correction, "bias correction"),
    ("lr_schedule", lr_from_zero, "not 0"),
    ("lr_schedule", lr_unclipped, "clip the progress"),
    ("allreduce_gradients", allreduce_sum_only, "divide by the world size"),
    ("allreduce_gradients", allreduce_rank0_only, "did not all call all_reduce"),
])
def test_wrong_answers_fail(name, fn, message, capsys):
    with pytest.raises(AssertionError):
        grading.check(name, fn)
    assert message in capsys.readouterr().out
