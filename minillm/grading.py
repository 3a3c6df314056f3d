"""Autograded lab checks: compare a student's function with minillm's reference on fixed inputs.

Survey §4.2.2 (detailed configuration: attention, softmax) and §4.2.3 (the language-modeling loss) are
the first things the labs ask students to build from scratch. This module is how a lab tells a student
whether their version is right, with a message that says what is wrong and where to look.

How a check works
    ``check("softmax", my_softmax)`` runs ``my_softmax`` on a handful of *cases*: inputs generated from
    fixed seeds, chosen to include the edge cases that separate a working implementation from a subtly
    broken one (large logits that overflow a naive ``exp``, ``-inf`` masked entries, a length-1 sequence,
    a non-last ``dim``). Each output is compared with the output of minillm's own reference function on
    the same inputs (``minillm.softmax``, ``minillm.cross_entropy``,
    ``minillm.scaled_dot_product_attention``, imported from ``minillm.model``; the test-suite pins those to PyTorch's implementations), and
    for some cases the gradients are compared too, since the model trains through the student's code.

    Expectations are computed at check time from the references rather than stored as ``.npz``
    snapshots: the inputs are a few kilobytes, the references are already tested against torch, and there
    is no binary file that could silently go stale.

What a student sees
    One line ``PASS name: ...`` on success. On a mismatch, a ``FAIL`` line naming the failing case and
    the largest error plus a hint, then an ``AssertionError`` so that a notebook run (and CI) stops. A
    function that still raises ``NotImplementedError`` (the stub the lab builder leaves) gives
    ``NotImplementedError("not implemented yet: ...")``.

Adding a check for a new lab: build a list of `Case` objects and call `register_check`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

# ------------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class Case:
    """One input the student's function is run on.

    ``make()`` must build fresh inputs every call, from a fixed seed, so that a student function that
    modifies its inputs in place cannot corrupt the reference run (and so every run is reproducible).
    """

    label: str  # shown in messages, e.g. "large logits (|x| up to 1e4)"
    make: Callable[[], tuple[Any, ...]]  # -> positional arguments for the function under test
    hint: str = ""  # extra advice shown when exactly this case fails
    grad: bool = False  # also compare gradients w.r.t. the floating-point tensor arguments

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("Case.label must be a non-empty description of the input")
        if not callable(self.make):
            raise ValueError(f"Case {self.label!r}: make must be a function returning the argument tuple")


@dataclass(frozen=True)
class Check:
    """A named check: run ``fn`` and ``reference`` on every case and compare outputs (and gradients)."""

    name: str  # what students pass to `check(name, fn)`
    summary: str  # one line: what the function must do (its "docstring" in `list_checks()`)
    hint: str  # general advice printed on any failure
    reference: Callable[..., torch.Tensor]  # minillm's implementation, called with the same arguments
    cases: tuple[Case, ...] = field(default_factory=tuple)
    atol: float = 1e-5  # absolute tolerance (fp32 arithmetic in a different order differs by ~1e-7)
    rtol: float = 1e-4  # relative tolerance, for outputs far from 1 such as large losses
    # How outputs are compared: None = as torch tensors (type, shape, dtype, values); labs whose functions
    # return plain numbers or numpy arrays (lab 01) pass `compare_numbers`.
    compare: Callable[..., float] | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"check name {self.name!r} must be a Python identifier, e.g. 'softmax'")
        if not self.cases:
            raise ValueError(f"check {self.name!r} needs at least one Case")
        if self.atol < 0 or self.rtol < 0:
            raise ValueError(f"check {self.name!r}: atol and rtol must be >= 0")


CHECKS: dict[str, Check] = {}


def register_check(check_: Check) -> Check:
    """Add a check to `CHECKS`; names are unique so a lab can never run a different check by accident."""
    if check_.name in CHECKS:
        raise ValueError(f"a check named {check_.name!r} is already registered; pick another name")
    CHECKS[check_.name] = check_
    return check_


def list_checks() -> dict[str, str]:
    """Every registered check name with its one-line summary, in registration order."""
    return {name: c.summary for name, c in CHECKS.items()}


# ------------------------------------------------------------------------------------------------
# Running a check


class _ReferenceError(RuntimeError):
    """Internal: minillm's reference itself failed, which is a bug in minillm, not in the student's code."""


class _Mismatch(Exception):
    """Internal: a case failed; carries the student-facing message and the case's own hint."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def check(name: str, fn: Callable[..., torch.Tensor]) -> None:
    """Run check ``name`` on the student's function ``fn``; print PASS, or print FAIL and raise.

    Raises ``NotImplementedError`` while ``fn`` is still the stub, ``AssertionError`` when an output is
    wrong (or ``fn`` crashes), ``ValueError`` for an unknown check name or a non-callable ``fn``.
    """
    if name not in CHECKS:
        raise ValueError(f"no check named {name!r}; available checks: {', '.join(CHECKS) or '(none)'}")
    if not callable(fn):
        raise ValueError(f"check({name!r}, fn): fn must be your function, got {type(fn).__name__}")
    spec = CHECKS[name]
    worst = 0.0
    for case in spec.cases:
        try:
            worst = max(worst, _run_case(spec, case, fn))
        except NotImplementedError as err:
            detail = f" ({err})" if str(err) else ""
            print(f"TODO {name}: not implemented yet{detail}")
            raise NotImplementedError(
                f"not implemented yet: {name}{detail}. Replace the `raise NotImplementedError` line in "
                "your function with your code, run that cell, then run this check again.") from None
        except _ReferenceError:
            raise
        except _Mismatch as err:
            hint = " ".join(h for h in (err.hint, spec.hint) if h)
            print(f"FAIL {name}: case '{case.label}': {err}\n     hint: {hint}")
            raise AssertionError(f"{name} failed on case '{case.label}': {err}") from None
        except Exception as err:  # the student's code crashed: show what it raised, keep the traceback
            print(f"FAIL {name}: case '{case.label}': your function raised {type(err).__name__}: {err}\n"
                  f"     hint: {spec.hint}")
            raise AssertionError(
                f"{name} failed on case '{case.label}': your function raised {type(err).__name__}: {err}") from err
    print(f"PASS {name}: {len(spec.cases)}/{len(spec.cases)} cases match the reference "
          f"(largest error {worst:.1e})")


def _run_case(spec: Check, case: Case, fn: Callable[..., torch.Tensor]) -> float:
    """Compare ``fn`` with the reference on one case; return the largest abs error or raise _Mismatch."""
    student_args, ref_args = case.make(), case.make()  # two independent copies of the same inputs
    pristine = case.make()
    if case.grad:  # gradients flow into the float tensors; set before the call so autograd records it
        for a in (*student_args, *ref_args):
            if torch.is_tensor(a) and a.is_floating_point():
                a.requires_grad_(True)

    try:
        expected = spec.reference(*ref_args)
    except Exception as err:
        raise _ReferenceError(f"the reference for check {spec.name!r} failed on case '{case.label}' "
                              f"({type(err).__name__}: {err}); this is a bug in minillm, not in your code") from err
    got = fn(*student_args)
    error = (spec.compare or _compare)(got, expected, spec, case)

    for a, p in zip(student_args, pristine):  # in-place edits would corrupt the model's activations
        if torch.is_tensor(a) and not torch.equal(a.detach(), p):
            raise _Mismatch("your function modified its input tensor in place",
                            "Use out-of-place ops (x - m, not x -= m or x.sub_(m)).")

    if case.grad:
        error = max(error, _compare_grads(got, expected, student_args, ref_args, spec))
    return error


def _compare(got: Any, expected: torch.Tensor, spec: Check, case: Case) -> float:
    """Type, shape, dtype, finiteness and values, each with its own message."""
    if not torch.is_tensor(got):
        raise _Mismatch(f"expected a torch.Tensor, got {type(got).__name__}",
                        "Return the tensor itself (not a Python float, list, or tuple).")
    if got.shape != expected.shape:
        raise _Mismatch(f"output shape {tuple(got.shape)} but expected {tuple(expected.shape)}")
    if got.dtype != expected.dtype:
        raise _Mismatch(f"output dtype {got.dtype} but expected {expected.dtype}",
                        "Keep the input's dtype; avoid .double() or numpy round trips.")
    got, expected = got.detach(), expected.detach()
    bad = ~torch.isfinite(got) & torch.isfinite(expected)
    if bad.any():
        raise _Mismatch(f"{int(bad.sum())} of {got.numel()} output values are nan/inf where the reference "
                        "is finite", case.hint)
    if not torch.allclose(got, expected, atol=spec.atol, rtol=spec.rtol, equal_nan=True):
        diff = (got - expected).abs().nan_to_num(nan=math.inf)
        where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.dim() else ()
        at = f"at index {where}: " if where else ""
        raise _Mismatch(f"values differ from the reference by up to {diff.max().item():.3g} "
                        f"({at}got {got[where].item():.6g}, expected {expected[where].item():.6g})", case.hint)
    finite = torch.isfinite(expected)
    return float((got - expected)[finite].abs().max()) if finite.any() else 0.0


def _compare_grads(got: torch.Tensor, expected: torch.Tensor, student_args: tuple, ref_args: tuple,
                   spec: Check) -> float:
    """Backpropagate the same random weighting of both outputs; compare the input gradients."""
    if got.grad_fn is None:
        raise _Mismatch("no gradient flows through your function's output",
                        "Stay in torch: no .detach(), .item(), .numpy() or torch.no_grad() inside it.")
    gen = torch.Generator().manual_seed(1234)
    weight = torch.randn(expected.shape, generator=gen, dtype=expected.dtype)
    finite = torch.isfinite(expected.detach())
    (expected.where(finite, 0) * weight).sum().backward()
    (got.where(finite, 0) * weight).sum().backward()
    worst = 0.0
    for i, (a, r) in enumerate(zip(student_args, ref_args)):
        if not (torch.is_tensor(a) and a.is_floating_point()):
            continue
        if a.grad is None or not torch.isfinite(a.grad).all():
            raise _Mismatch(f"the gradient with respect to argument {i} is missing or not finite",
                            "The model trains through this function, so its backward pass must work too.")
        if not torch.allclose(a.grad, r.grad, atol=spec.atol * 10, rtol=spec.rtol * 10):
            raise _Mismatch(f"the gradient with respect to argument {i} differs from the reference by up to "
                            f"{(a.grad - r.grad).abs().max().item():.3g}")
        worst = max(worst, float((a.grad - r.grad).abs().max()))
    return worst


# ------------------------------------------------------------------------------------------------
# Lab 00 checks: softmax, cross-entropy, a causal attention head


def _randn(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _with_masked(seed: int, *shape: int) -> torch.Tensor:
    """Random logits with about a third of the entries set to -inf (never a whole row along dim -1)."""
    x = _randn(seed, *shape)
    drop = torch.rand(*shape, generator=torch.Generator().manual_seed(seed + 1)) < 1 / 3
    drop[..., 0] = False  # keep one finite entry per row: an all -inf row has no defined softmax
    return x.masked_fill(drop, float("-inf"))


def _softmax_reference(x: torch.Tensor, dim: int) -> torch.Tensor:
    from minillm.model.layers import softmax  # imported here: keeps `import minillm.grading` light

    return softmax(x, dim)


def _cross_entropy_reference(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    from minillm.model.layers import cross_entropy

    return cross_entropy(logits, targets)


def _attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    from minillm.model.attention import scaled_dot_product_attention

    T = q.shape[-2]
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T), True = may attend (key <= query)
    return scaled_dot_product_attention(q, k, v, mask=causal)


_STABLE = "exp() overflows for large inputs: subtract the maximum along `dim` first (softmax is shift-invariant)."


def _register_lab00() -> None:
    register_check(Check(
        name="softmax",
        summary="softmax(x, dim): exp(x) normalized to sum to 1 along dim; stable for large inputs",
        hint="softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m) with m = x.max(dim, keepdim=True).values.",
        reference=_softmax_reference,
        cases=(
            Case("random (4, 7), dim=-1", lambda: (_randn(0, 4, 7), -1)),
            Case("random (2, 3, 5), dim=1 (not the last dim)", lambda: (_randn(1, 2, 3, 5), 1),
                 "Reduce along `dim` and keep it (keepdim=True) so the result broadcasts back."),
            Case("random (6, 4), dim=0, with gradients", lambda: (_randn(2, 6, 4), 0), grad=True),
            Case("a single element along dim (3, 1)", lambda: (_randn(3, 3, 1), -1)),
            Case("large logits (|x| up to ~1e4)", lambda: (_randn(4, 3, 8, scale=1000.0) + 5000.0, -1), _STABLE),
            Case("-inf entries (masked positions)", lambda: (_with_masked(5, 4, 9), -1),
                 "exp(-inf) = 0, so masked entries must come out exactly 0 and not turn into nan.", grad=True),
        ),
    ))
    register_check(Check(
        name="cross_entropy",
        summary="cross_entropy(logits (..., V), targets (...)): mean of -log softmax(logits)[target]",
        hint="loss = mean(logsumexp(logits, -1) - logits[target]); flatten leading dims, then average all.",
        reference=_cross_entropy_reference,
        cases=(
            Case("logits (8, 10), targets (8,)",
                 lambda: (_randn(10, 8, 10), torch.randint(10, (8,), generator=torch.Generator().manual_seed(11))),
                 grad=True),
            Case("logits (2, 5, 11), targets (2, 5): mean over batch AND time",
                 lambda: (_randn(12, 2, 5, 11), torch.randint(11, (2, 5), generator=torch.Generator().manual_seed(13))),
                 "The loss is one scalar: the mean over every position, as F.cross_entropy on flattened inputs.",
                 grad=True),
            Case("large logits (|x| up to ~1e4)",
                 lambda: (_randn(14, 4, 6, scale=1000.0), torch.tensor([0, 5, 2, 3])),
                 "log(softmax(x)) underflows to log(0) = -inf; use log-sum-exp with the max subtracted."),
            Case("a confident correct prediction (loss close to 0)",
                 lambda: (torch.tensor([[20.0, 0.0, 0.0], [0.0, 0.0, 20.0]]), torch.tensor([0, 2]))),
            Case("a single position, vocabulary of 1 (loss exactly 0)",
                 lambda: (_randn(15, 1, 1), torch.tensor([0]))),
        ),
    ))
    register_check(Check(
        name="attention_head",
        summary="attention_head(q, k, v): softmax(q k^T / sqrt(d) + causal mask) v for (B, T, D) or (B, H, T, D)",
        hint="scores = q @ k.transpose(-2, -1) / sqrt(q.shape[-1]); set scores above the diagonal to -inf "
             "(torch.tril of ones gives the allowed positions); weights = softmax(scores, -1); return weights @ v.",
        reference=_attention_reference,
        cases=(
            Case("(B, T, D) = (2, 5, 8)", lambda: (_randn(20, 2, 5, 8), _randn(21, 2, 5, 8), _randn(22, 2, 5, 8)),
                 "Position t may only attend to positions <= t: mask the upper triangle of the scores.", grad=True),
            Case("with heads (B, H, T, D) = (2, 3, 6, 4)",
                 lambda: (_randn(23, 2, 3, 6, 4), _randn(24, 2, 3, 6, 4), _randn(25, 2, 3, 6, 4)),
                 "Use k.transpose(-2, -1) (the last two dims) so extra leading dims just broadcast.", grad=True),
            Case("a single position T = 1", lambda: (_randn(26, 1, 1, 4), _randn(27, 1, 1, 4), _randn(28, 1, 1, 4)),
                 "With one position the head must return v unchanged."),
            Case("values with another width (D_v = 3, D_qk = 16)",
                 lambda: (_randn(29, 2, 4, 16), _randn(30, 2, 4, 16), _randn(31, 2, 4, 3)),
                 "Scale by sqrt of the query/key width q.shape[-1], not of v's width."),
            Case("large scores (|q|, |k| ~ 30)",
                 lambda: (_randn(32, 1, 7, 8, scale=30.0), _randn(33, 1, 7, 8, scale=30.0), _randn(34, 1, 7, 8)),
                 "Use your numerically stable softmax, and mask with -inf, not by multiplying weights by 0."),
        ),
    ))


_register_lab00()  # cheap: builds small Python objects only; inputs are created when a check runs


# ------------------------------------------------------------------------------------------------
# Lab 01 checks (Survey §2.1, scaling laws): the Chinchilla objective, its fit, compute-optimal allocation


def compare_numbers(got: Any, expected: Any, spec: Check, case: Case) -> float:
    """Compare numbers, tuples of numbers or numpy arrays (float64) with the reference's, within tolerance."""
    import numpy as np

    want = np.asarray(expected, dtype=np.float64)
    try:
        have = np.asarray(got.detach().cpu().numpy() if torch.is_tensor(got) else got, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Mismatch(f"expected numbers shaped like {want.shape}, got {type(got).__name__}",
                        "Return plain floats, a tuple of them, or numpy arrays, as the docstring says.") from None
    if have.shape != want.shape:
        raise _Mismatch(f"output shape {have.shape} but expected {want.shape}",
                        "Check what your function returns: the number of values and their order.")
    if not np.isfinite(have).all():
        raise _Mismatch("your function returned nan or inf", case.hint)
    if not np.allclose(have, want, rtol=spec.rtol, atol=spec.atol):
        diff = np.abs(have - want)
        i = np.unravel_index(int(np.argmax(diff / (spec.atol + spec.rtol * np.abs(want)))), want.shape)
        at = f"at index {tuple(int(j) for j in i)}: " if want.ndim else ""
        raise _Mismatch(f"values differ from the reference ({at}got {have[i]:.6g}, expected {want[i]:.6g})", case.hint)
    return float(np.max(np.abs(have - want))) if want.size else 0.0


def _synthetic_runs(seed: int, noise: float, law=(1.8, 400.0, 1500.0, 0.35, 0.3)) -> tuple:
    """(N, D, L), tuples of floats, of a small IsoFLOP-style sweep whose losses follow a known Chinchilla law, plus seeded
    multiplicative noise: 3 budgets x 6 sizes, sizes spread around each budget's optimum."""
    import numpy as np

    E, A, B, alpha, beta = law
    rng = np.random.default_rng(seed)
    N = np.concatenate([np.geomspace(3e6, 3e8, 6) * f for f in (1.0, 3.0, 10.0)])  # (18,)
    C = np.repeat([1e17, 1e18, 1e19], 6)  # (18,) budgets, FLOPs
    D = C / (6 * N)
    L = (E + A / N**alpha + B / D**beta) * np.exp(noise * rng.standard_normal(N.size))
    return tuple(N.tolist()), tuple(D.tolist()), tuple(L.tolist())  # plain floats: cases compare with ==


def _huber_reference(params, N, D, L):
    import numpy as np

    from minillm.scaling import huber_objective

    N, D, L = (np.asarray(x, dtype=np.float64) for x in (N, D, L))
    obj, _ = huber_objective(np.asarray(params, dtype=np.float64), np.log(N), np.log(D), np.log(L), 1e-3)
    return float(obj)


_FIT_CACHE: dict[bytes, tuple] = {}


def _fit_reference(N, D, L):
    """minillm's approach-3 fit, cached: a fit takes seconds and a check may be run many times in a lab."""
    import numpy as np

    from minillm.scaling import fit_chinchilla

    key = np.asarray([N, D, L], dtype=np.float64).tobytes()
    if key not in _FIT_CACHE:
        f = fit_chinchilla(N=N, D=D, L=L, n_polish=2)
        _FIT_CACHE[key] = (f.E, f.A, f.B, f.alpha, f.beta)
    return _FIT_CACHE[key]


def _allocation_reference(C, E, A, B, alpha, beta):
    from minillm.scaling import ChinchillaLaw, chinchilla_allocation

    return chinchilla_allocation(C, ChinchillaLaw(E=E, A=A, B=B, alpha=alpha, beta=beta))


def _params_at(law, shift: float) -> tuple:
    """(a, b, e, alpha, beta) of a law, with a, b, e moved by `shift` (0: the true parameters)."""
    import math as m

    E, A, B, alpha, beta = law
    return (m.log(A) + shift, m.log(B) - shift, m.log(E) + shift / 2, alpha, beta)


_LAW = (1.8, 400.0, 1500.0, 0.35, 0.3)


def _register_lab01() -> None:
    register_check(Check(
        name="huber_log_loss",
        summary="huber_log_loss(params=(a, b, e, alpha, beta), N, D, L): mean Huber (delta=1e-3) of log L_pred - log L",
        hint="log L_pred = logsumexp([a - alpha log N, b - beta log D, e]); r = log L_pred - log L; "
             "Huber(r) = r^2 / 2 where |r| <= delta, else delta (|r| - delta / 2); return the mean over runs.",
        reference=_huber_reference, compare=compare_numbers, atol=1e-12, rtol=1e-6,
        cases=(
            Case("the true parameters, noisy runs (residuals inside delta)",
                 lambda: (_params_at(_LAW, 0.0), *_synthetic_runs(0, 3e-4)),
                 "Small residuals are in the quadratic part: r^2 / 2, not r^2."),
            Case("parameters far off (residuals beyond delta: the linear part)",
                 lambda: (_params_at(_LAW, 0.5), *_synthetic_runs(1, 3e-4)),
                 "Large residuals count linearly: delta * (|r| - delta / 2). Residuals are in LOG space."),
            Case("a mix of both regimes", lambda: ((5.5, 7.0, 0.5, 0.33, 0.31), *_synthetic_runs(2, 2e-3))),
            Case("a large model term (a = 800: exp(a) overflows)",
                 lambda: ((800.0, 7.0, 0.5, 40.0, 0.3), *_synthetic_runs(3, 1e-3)),
                 "Do not compute exp(a) / N^alpha directly: take logsumexp of the three log-terms."),
        ),
    ))
    register_check(Check(
        name="fit_chinchilla_simple",
        summary="fit_chinchilla_simple(N, D, L) -> (E, A, B, alpha, beta) minimising your huber_log_loss",
        hint="Minimise huber_log_loss over (a, b, e, alpha, beta) with scipy.optimize.minimize from the best "
             "few points of a small grid of starts; return E = exp(e), A = exp(a), B = exp(b), alpha, beta.",
        reference=_fit_reference, compare=compare_numbers, atol=1e-3, rtol=0.03,
        cases=(
            Case("18 runs exactly on a known law", lambda: _synthetic_runs(10, 0.0),
                 "Return E, A, B (not their logs e, a, b), then alpha, beta, in that order."),
            Case("the same runs with 0.1% noise", lambda: _synthetic_runs(11, 1e-3),
                 "If you land elsewhere, try more starting points or a tighter tolerance."),
            Case("a law with alpha > beta", lambda: _synthetic_runs(12, 1e-3, (2.0, 900.0, 300.0, 0.45, 0.25))),
            Case("a law with a low floor (E = 0.5)", lambda: _synthetic_runs(13, 1e-3, (0.5, 200.0, 2000.0, 0.3, 0.35))),
        ),
    ))
    register_check(Check(
        name="compute_optimal",
        summary="compute_optimal(C, E, A, B, alpha, beta) -> (N_opt, D_opt) minimising L under C = 6 N D",
        hint="N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = (C/6)^(alpha/(alpha+beta)) / G, "
             "G = (alpha A / (beta B))^(1/(alpha+beta)).",
        reference=_allocation_reference, compare=compare_numbers, atol=0.0, rtol=1e-6,
        cases=(
            Case("Chinchilla's law at Gopher's budget (5.76e23 FLOPs)", lambda: (5.76e23, 1.69, 406.4, 410.7, 0.34, 0.28)),
            Case("an array of budgets, Besiroglu et al.'s refit",
                 lambda: ((1e18, 1e20, 1e22, 1e24), 1.82, 482.01, 2085.43, 0.3478, 0.3658),
                 "C may be a list of budgets: convert it with np.asarray(C, dtype=float) and use numpy operations."),
            Case("alpha != beta (0.5 vs 0.2): which exponent goes where",
                 lambda: (1e21, 1.5, 300.0, 900.0, 0.5, 0.2),
                 "N grows with exponent beta/(alpha+beta): a larger beta (data term falls faster) favours the model."),
            Case("a tiny budget (1e15 FLOPs)", lambda: (1e15, 1.69, 406.4, 410.7, 0.34, 0.28)),
        ),
    ))


_register_lab01()
