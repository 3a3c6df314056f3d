"""The check registry and runner: Case, Check, register_check, check (see the package docstring)."""
from __future__ import annotations

import json
import math
import os
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
    # How the student's function is called: None = fn(*args); else runner(fn, *args) (lab 05 runs fn on simulated
    # ranks, one thread each). The reference is always called as reference(*args).
    runner: Callable[..., Any] | None = None
    points: int = 1  # weight of this check in a gradebook (`python -m book.grade`)
    # Functions an implementation must not call, as dotted names resolved when the check runs: minillm's own
    # version and torch's built-in equivalents, where the lab says "implement it". A call to one, however deep
    # (a wrapper, a lambda, a helper), fails the check with status "shortcut".
    shortcuts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.points, int) or self.points < 0:
            raise ValueError(f"check {self.name!r}: points must be an int >= 0, got {self.points!r}")
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


def lab_version(names: list[str]) -> str:
    """A short hash of the named checks' definitions (names, summaries, case labels, points, in order).

    Stamped into each student notebook by `book.labs`, so a grader can tell a submission made against an older
    set of checks. It changes whenever a check is renamed, re-described, re-weighted or gains/loses a case.
    """
    import hashlib

    missing = [n for n in names if n not in CHECKS]
    if missing:
        raise ValueError(f"no checks named {missing}; import book.grading first, or fix the lab's check(...) calls")
    spec = [[n, CHECKS[n].summary, [c.label for c in CHECKS[n].cases], CHECKS[n].points]
            + ([list(CHECKS[n].shortcuts)] if CHECKS[n].shortcuts else []) for n in names]
    return hashlib.sha256(json.dumps(spec, ensure_ascii=False).encode("utf-8")).hexdigest()[:12]


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


class _Shortcut(_Mismatch):
    """Internal: the student's function called one of the check's `shortcuts` instead of implementing it."""


GRADE_LOG_ENV = "MINILLM_GRADE_LOG"  # when set, names a file that receives one JSON line per check outcome


def _log(name: str, status: str, fn: Any, case: str = "", message: str = "", hint: str = "") -> None:
    """Append one outcome to the file named by $MINILLM_GRADE_LOG (the grader's channel); no-op when unset.

    ``fn_module`` records where the checked function was defined, so a grader can tell a student's own
    function (``__main__``) from minillm's reference passed in its place.
    """
    path = os.environ.get(GRADE_LOG_ENV)
    if not path:
        return
    target = getattr(fn, "func", fn)  # functools.partial -> the wrapped function
    target = getattr(target, "__func__", target)  # bound method -> its function
    record = {"check": name, "status": status, "case": case, "message": message, "hint": hint,
              "fn_module": str(getattr(target, "__module__", "") or "")}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


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
            _log(name, "todo", fn, case.label, f"not implemented yet{detail}")
            raise NotImplementedError(
                f"not implemented yet: {name}{detail}. Replace the `raise NotImplementedError` line in "
                "your function with your code, run that cell, then run this check again.") from None
        except _ReferenceError as err:
            _log(name, "error", fn, case.label, str(err))
            raise
        except _Mismatch as err:
            hint = err.hint if isinstance(err, _Shortcut) else " ".join(h for h in (err.hint, spec.hint) if h)
            print(f"FAIL {name}: case '{case.label}': {err}\n     hint: {hint}")
            _log(name, "shortcut" if isinstance(err, _Shortcut) else "failed", fn, case.label, str(err), hint)
            raise AssertionError(f"{name} failed on case '{case.label}': {err}") from None
        except Exception as err:  # the student's code crashed: show what it raised, keep the traceback
            print(f"FAIL {name}: case '{case.label}': your function raised {type(err).__name__}: {err}\n"
                  f"     hint: {spec.hint}")
            _log(name, "failed", fn, case.label, f"your function raised {type(err).__name__}: {err}", spec.hint)
            raise AssertionError(
                f"{name} failed on case '{case.label}': your function raised {type(err).__name__}: {err}") from err
    print(f"PASS {name}: {len(spec.cases)}/{len(spec.cases)} cases match the reference "
          f"(largest error {worst:.1e})")
    _log(name, "passed", fn)


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
    got = _call_watched(spec, lambda: spec.runner(fn, *student_args) if spec.runner is not None else fn(*student_args))
    error = (spec.compare or _compare)(got, expected, spec, case)

    for a, p in zip(student_args, pristine):  # in-place edits would corrupt the model's activations
        if torch.is_tensor(a) and not torch.equal(a.detach(), p):
            raise _Mismatch("your function modified its input tensor in place",
                            "Use out-of-place ops (x - m, not x -= m or x.sub_(m)).")

    if case.grad:
        error = max(error, _compare_grads(got, expected, student_args, ref_args, spec))
    return error


def _resolve(dotted: str) -> Any:
    """The object a dotted name such as ``torch.nn.functional.softmax`` or ``torch.Tensor.softmax`` names."""
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"cannot resolve shortcut {dotted!r}")


def _call_watched(spec: Check, call: Callable[[], Any]) -> Any:
    """Run ``call()``; raise _Shortcut if it reached one of ``spec.shortcuts`` (in any thread it starts).

    A profile hook sees every Python-level call (matched by code object) and every call of a C function or
    method (matched by identity), so wrapping the reference in a function of one's own does not hide it.
    """
    if not spec.shortcuts:
        return call()
    import inspect
    import sys
    import threading

    python_code, builtins, methods = {}, {}, {}  # code -> name; id(C function) -> name; (method name) -> (class, name)
    for name in spec.shortcuts:
        obj = inspect.unwrap(_resolve(name))
        if getattr(obj, "__code__", None) is not None:
            python_code[obj.__code__] = name
        elif hasattr(obj, "__objclass__"):  # a C method such as torch.Tensor.softmax: each call binds it anew
            methods[obj.__name__] = (obj.__objclass__, name)
        else:
            builtins[id(obj)] = name
    hits: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        name = None
        if event == "call":
            name = python_code.get(frame.f_code)
        elif event == "c_call":
            name = builtins.get(id(arg))
            method = methods.get(getattr(arg, "__name__", ""))
            if name is None and method is not None and isinstance(getattr(arg, "__self__", None), method[0]):
                name = method[1]
        if name is not None and not hits:
            hits.append(name)

    before, before_threads = sys.getprofile(), threading.getprofile()
    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        got = call()
    finally:
        sys.setprofile(before)
        threading.setprofile(before_threads)
    if hits:
        raise _Shortcut(f"your function calls {hits[0]}, which does the work this lab asks you to write",
                        f"Implement it yourself from tensor operations; {', '.join(spec.shortcuts)} are off limits here.")
    return got


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


