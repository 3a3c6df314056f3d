"""Lab 01 checks (Survey §2.1): each passes on a reference-equivalent answer and fails, with a message that
points at the mistake, on the stub and on a typical wrong answer."""
import numpy as np
import pytest
from scipy.special import logsumexp

from book import grading
from minillm.scaling import ChinchillaLaw, chinchilla_allocation, fit_chinchilla


def huber_right(params, N, D, L, delta=1e-3):
    a, b, e, alpha, beta = params
    r = logsumexp([a - alpha * np.log(N), b - beta * np.log(D), np.full(np.shape(N), e)], axis=0) - np.log(L)
    return float(np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)).mean())


def huber_linear_space(params, N, D, L, delta=1e-3):  # typical mistake: residual of L, not of log L
    a, b, e, alpha, beta = params
    r = np.exp(e) + np.exp(a) / N**alpha + np.exp(b) / D**beta - L
    return float(np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)).mean())


def huber_squared(params, N, D, L, delta=1e-3):  # typical mistake: plain squared error
    a, b, e, alpha, beta = params
    r = logsumexp([a - alpha * np.log(N), b - beta * np.log(D), np.full(np.shape(N), e)], axis=0) - np.log(L)
    return float((0.5 * r**2).mean())


def allocation_right(C, E, A, B, alpha, beta):
    C = np.asarray(C, dtype=float)
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    n = G * (C / 6) ** (beta / (alpha + beta))
    return n, C / (6 * n)


def allocation_swapped(C, E, A, B, alpha, beta):  # typical mistake: the exponents swapped
    C = np.asarray(C, dtype=float)
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    n = G * (C / 6) ** (alpha / (alpha + beta))
    return n, C / (6 * n)


def fit_via_reference(N, D, L):
    f = fit_chinchilla(N=N, D=D, L=L)
    return f.E, f.A, f.B, f.alpha, f.beta


def fit_logs(N, D, L):  # typical mistake: returning the optimiser's log-parameters e, a, b
    E, A, B, alpha, beta = fit_via_reference(N, D, L)
    return np.log(E), np.log(A), np.log(B), alpha, beta


def stub(*args):
    raise NotImplementedError("exercise: replace this line with your implementation")


def test_lab01_checks_are_registered():
    assert {"huber_log_loss", "fit_chinchilla_simple", "compute_optimal"} <= set(grading.list_checks())


@pytest.mark.parametrize("name, right", [("huber_log_loss", huber_right), ("compute_optimal", allocation_right),
                                         ("fit_chinchilla_simple", fit_via_reference)])
def test_passes_on_a_right_answer_and_fails_on_the_stub(name, right, capsys):
    grading.check(name, right)
    assert f"PASS {name}" in capsys.readouterr().out
    with pytest.raises(NotImplementedError, match=f"not implemented yet: {name}"):
        grading.check(name, stub)


@pytest.mark.parametrize("name, wrong, where", [
    ("huber_log_loss", huber_linear_space, "true parameters"),
    ("huber_log_loss", huber_squared, "far off"),
    ("compute_optimal", allocation_swapped, "Gopher"),
    ("fit_chinchilla_simple", fit_logs, "known law"),
])
def test_fails_on_a_typical_wrong_answer(name, wrong, where, capsys):
    with pytest.raises(AssertionError, match=f"{name} failed on case .*{where}"):
        grading.check(name, wrong)
    assert "hint:" in capsys.readouterr().out


def test_swapped_exponents_fail_even_where_alpha_is_close_to_beta(capsys):
    # Chinchilla's own alpha (0.34) and beta (0.28) are close; the check must still tell them apart.
    law = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    n_right, _ = chinchilla_allocation(5.76e23, law)
    n_wrong, _ = allocation_swapped(5.76e23, 1.69, 406.4, 410.7, 0.34, 0.28)
    assert abs(n_wrong / n_right - 1) > 0.5


def test_compare_numbers_messages():
    spec = grading.CHECKS["compute_optimal"]
    case = spec.cases[0]
    with pytest.raises(grading._Mismatch, match=r"shape \(3,\) but expected \(2,\)"):
        grading.compare_numbers((1.0, 2.0, 3.0), (1.0, 2.0), spec, case)
    with pytest.raises(grading._Mismatch, match="nan or inf"):
        grading.compare_numbers((float("nan"), 2.0), (1.0, 2.0), spec, case)
    with pytest.raises(grading._Mismatch, match="expected numbers"):
        grading.compare_numbers("abc", (1.0, 2.0), spec, case)
    assert grading.compare_numbers(np.array([1.0, 2.0]), (1.0, 2.0), spec, case) == 0.0
