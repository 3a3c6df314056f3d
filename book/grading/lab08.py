"""Lab 08 checks: a student's Triton kernels for SwiGLU and the RMSNorm forward pass (Survey §4.2.2 RMSNorm and
SwiGLU; Survey §4.3, efficient training: fused kernels).

The function under test is the student's *launcher* (a plain Python callable that runs their @triton.jit kernel).
Right values are not enough: while the launcher runs, every Triton launch is recorded (`kernel_launches`, which
wraps `run` of Triton's JITFunction and of the interpreter's InterpretedFunction), and a case passes only if the
launcher launched a kernel of its own (one not defined in minillm, triton or torch) and returned a tensor that such
a launch was given, i.e. wrote. So a few lines of PyTorch with the right result fail with "computed the right values
but launched no Triton kernel", and so does a call of minillm's own kernels. Every case's values are compared
first, the launches after the last case, so a wrong answer gets the hint of its mistake whatever computed it.

Inputs live on CUDA when there is a GPU and on the CPU otherwise, where the kernel must have been defined under
Triton's interpreter (`minillm.kernels.use_interpreter()` before the @triton.jit cell; the test suite sets
TRITON_INTERPRET=1).

The cases are chosen so that each classic kernel mistake fails somewhere: one row, widths that are not a power
of two (33, 130: the masked tail), a 3-D input (flatten the leading dims), bf16 (the fp32 cast), small activations
(eps matters), several blocks (the grid). On a mismatch the output is also compared with each mistake's own formula
(sum instead of mean, no eps, no weight, ...), so the hint names the mistake rather than only the failing case.

The lab's FlashAttention exercises (the tiled forward in PyTorch, optionally in Triton) are checked in
lab08_flash.py, imported at the end of this module so that importing lab08 registers every lab 08 check.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from book.grading.core import Case, Check, _Mismatch, check, register_check

_TOL = {torch.float32: (1e-5, 1e-5), torch.bfloat16: (1e-2, 1e-2), torch.float16: (2e-3, 2e-3)}  # (atol, rtol)
_CAST = ("Cast to fp32 right after loading: tl.load(...).to(tl.float32), and back when storing: "
         ".to(Y.dtype.element_ty). bf16 arithmetic gives NaN in the interpreter, and on a GPU a bf16 sum of "
         "squares loses precision.")
_MASK = ("Mask the tail: the block is a power of two >= the width, so load with mask=cols < n_cols, other=0.0 "
         "and store with the same mask.")


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _randn(seed: int, *shape: int, scale: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Seeded normal values, drawn on the CPU (the same numbers on every machine), then moved and cast."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale
    return x.to(device=_device(), dtype=dtype)


# ------------------------------------------------------------------------------------------------ running


def _not_implemented(err: BaseException | None) -> NotImplementedError | None:
    """The NotImplementedError behind err, if any: the interpreter wraps a stub kernel's error in an
    InterpreterError (the original is its __cause__); the GPU compiler rejects the `raise` in a CompilationError."""
    for _ in range(10):  # follow the chain of causes, never forever
        if err is None:
            return None
        if isinstance(err, NotImplementedError):
            return err
        if type(err).__name__ == "CompilationError" and "NotImplementedError" in str(err):
            return NotImplementedError("your @triton.jit kernel is still the stub: write its body")
        err = err.__cause__ or err.__context__
    return None


def launch(fn: Callable[..., Any], *args: Any) -> Any:
    """Run the student's launcher; turn a kernel stub's error and a kernel compiled for the wrong place into
    clear messages (the check runner reports everything else as "your function raised ...")."""
    try:
        out = fn(*args)
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # a kernel's illegal memory access surfaces here, in this case, not later
        return out
    except NotImplementedError:
        raise
    except Exception as err:
        stub = _not_implemented(err)
        if stub is not None:
            raise stub from None
        on_cpu = any(torch.is_tensor(a) and a.device.type == "cpu" for a in args)
        if on_cpu and "active drivers" in str(err):
            raise _Mismatch(
                "your kernel was compiled for a GPU, but there is none: the inputs are on the CPU",
                "Call minillm.kernels.use_interpreter() BEFORE the cell that defines your @triton.jit kernel "
                "(the decorator chooses interpreter or compiler when it runs). Restart the notebook kernel and "
                "run the cells in order.") from err
        raise


# Kernels defined in these packages are not the student's: calling minillm.kernels.ops.swiglu is not writing one.
_LIBRARIES = ("minillm", "triton", "torch")


@dataclass(frozen=True)
class Launch:
    """One Triton launch seen by `kernel_launches`: the kernel's name, whether the student wrote it, and the
    storages of the tensors it was given (what it could read or write)."""

    name: str
    own: bool
    storages: frozenset[int]


def _is_own(kernel: Any) -> bool:
    module = getattr(getattr(kernel, "fn", None), "__module__", None) or ""  # None when exec'd without __name__
    return module.split(".")[0] not in _LIBRARIES


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


@contextmanager
def kernel_launches() -> Iterator[list[Launch]]:
    """Record every @triton.jit launch (`kernel[grid](...)`) made inside the block, compiled or interpreted.

    Triton launches a kernel through `run` of its JITFunction (compiled; autotuned kernels end there too) or of its
    InterpretedFunction (TRITON_INTERPRET=1); both are wrapped for the duration of the block, then restored.
    A call of one @triton.jit function from inside another is not a launch and is not recorded."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    seen: list[Launch] = []
    saved = [(cls, cls.__dict__["run"]) for cls in (JITFunction, InterpretedFunction)]

    def recording(run: Callable[..., Any]) -> Callable[..., Any]:
        def run_and_record(kernel: Any, *args: Any, **kwargs: Any) -> Any:
            if not kwargs.get("warmup", False):
                tensors = [a for a in (*args, *kwargs.values()) if torch.is_tensor(a)]
                seen.append(Launch(getattr(kernel, "__name__", repr(kernel)), _is_own(kernel),
                                   frozenset(_storage(t) for t in tensors)))
            return run(kernel, *args, **kwargs)
        return run_and_record

    try:
        for cls, run in saved:
            cls.run = recording(run)
        yield seen
    finally:
        for cls, run in saved:
            cls.run = run


@dataclass(frozen=True)
class _Launched:
    """What the runner hands the comparison: the launcher's output and the launches it made."""

    out: Any
    launches: list[Launch] = field(default_factory=list)


def launch_recorded(fn: Callable[..., Any], *args: Any) -> _Launched:
    """The checks' runner: `launch(fn, *args)` inside `kernel_launches()`."""
    with kernel_launches() as seen:
        out = launch(fn, *args)
    return _Launched(out, list(seen))


_NO_KERNEL = ("Compute the output in your @triton.jit kernel and launch it from this function, "
              "kernel[grid](...), on the output buffer you return (y = torch.empty_like(x)); PyTorch ops, or "
              "minillm's own kernels, do not count.")


def own_kernel_problem(run: _Launched, y: torch.Tensor) -> str | None:
    """None when `run` launched a kernel of the student's own that was given the storage of `y`; else what is wrong."""
    own = [k for k in run.launches if k.own]
    if not own:
        others = sorted({k.name for k in run.launches})
        return (f"only library kernels ({', '.join(others)}), none of your own" if others
                else "no @triton.jit kernel was launched while it ran")
    if not any(_storage(y) in k.storages for k in own):
        names = ", ".join(sorted({k.name for k in own}))
        return f"it launched {names}, but the tensor it returned was not given to that kernel"
    return None


# check name -> [(case label, problem)]: the cases whose right values came without a kernel of the student's own.
# Kept until the check's last case, so that every case's values are compared first (a wrong answer gets its
# mistake's hint, whatever computed it); reset at the check's first case.
_NO_KERNEL_CASES: dict[str, list[tuple[str, str]]] = {}


def require_own_kernel(run: _Launched, y: torch.Tensor, spec: Check, case: Case) -> None:
    """Note a case whose right `y` no Triton kernel of the student's own wrote; at the check's last case, raise if
    any case was noted (after every case's values were found right)."""
    if case is spec.cases[0]:
        _NO_KERNEL_CASES[spec.name] = []
    noted = _NO_KERNEL_CASES.setdefault(spec.name, [])
    problem = own_kernel_problem(run, y)
    if problem is not None:
        noted.append((case.label, problem))
    if case is spec.cases[-1] and noted:
        _NO_KERNEL_CASES[spec.name] = []
        first, problem = noted[0]
        where = (f"in all {len(spec.cases)} cases" if len(noted) == len(spec.cases)
                 else f"in {len(noted)} of {len(spec.cases)} cases, the first '{first}'")
        raise _Mismatch(f"your function computed the right values but launched no Triton kernel of its own: "
                        f"{problem} ({where})", _NO_KERNEL)


def _unpack(got: Any) -> tuple[Any, Any]:
    """(y, rstd or None): an RMSNorm launcher may return y alone or (y, rstd)."""
    if isinstance(got, (tuple, list)):
        if len(got) != 2:
            raise _Mismatch(f"expected y (or a pair (y, rstd)), got a {type(got).__name__} of {len(got)} items",
                            "Return the normalized tensor y (optionally with rstd, as (y, rstd)).")
        return got[0], got[1]
    return got, None


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    atol, rtol = _TOL.get(want.dtype, _TOL[torch.float32])
    return got.shape == want.shape and torch.allclose(got.float(), want.float(), atol=atol, rtol=rtol)


def compare_kernel_output(got: Any, expected: torch.Tensor, spec: Check, case: Case,
                          mistakes: tuple[tuple[str, Callable[..., torch.Tensor]], ...] = (),
                          allow_rstd: bool = False) -> float:
    """Type, shape, dtype, device, NaN and values, with dtype-aware tolerances; on a value mismatch, the hint of
    the first mistake formula that reproduces the student's output. Returns the largest error relative to
    1 + |expected| (what the PASS line reports). `got` may be the runner's `_Launched`: then, once the values are
    right, the output must also have been written by a Triton kernel of the student's own: checked after the last
    case, so that every case's values are compared first (`require_own_kernel`)."""
    run = got if isinstance(got, _Launched) else None
    got = run.out if run is not None else got
    got, rstd = _unpack(got) if allow_rstd else (got, None)
    if not torch.is_tensor(got):
        raise _Mismatch(f"expected a torch.Tensor, got {type(got).__name__}", "Return the output tensor y.")
    if got.shape != expected.shape:
        raise _Mismatch(f"output shape {tuple(got.shape)} but expected {tuple(expected.shape)}",
                        "Return y in the input's shape: flatten for the launch, then y.view(x.shape).")
    if got.dtype != expected.dtype:
        raise _Mismatch(f"output dtype {got.dtype} but expected {expected.dtype}",
                        "Return y in the input's dtype: y = torch.empty_like(x), and store "
                        "value.to(Y.dtype.element_ty) in the kernel.")
    if got.device != expected.device:
        raise _Mismatch(f"output on {got.device} but the inputs are on {expected.device}",
                        "Allocate the output on the input's device: torch.empty_like(x).")
    got = got.detach()
    bad = ~torch.isfinite(got) & torch.isfinite(expected)
    if bad.any():
        hint = _CAST if expected.dtype != torch.float32 else _MASK
        raise _Mismatch(f"{int(bad.sum())} of {got.numel()} output values are nan/inf where the reference is finite",
                        hint)
    if not _close(got, expected):
        diff = (got.float() - expected.float()).abs()
        where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        args = case.make()
        hint = next((h for h, model in mistakes if _close(got, model(*args))), case.hint)
        raise _Mismatch(f"values differ from the reference by up to {diff.max().item():.3g} (at index {where}: "
                        f"got {got[where].item():.6g}, expected {expected[where].item():.6g}; "
                        f"{expected.dtype}, shape {tuple(expected.shape)})", hint)
    # reported error: |got - expected| / (1 + |expected|), so a bf16 rounding of a large value (one unit in the
    # last place is 0.06 at 16) does not read as a big error in the PASS line
    err = (got.float() - expected.float()).abs() / (1 + expected.float().abs())
    worst = float(err.max()) if got.numel() else 0.0
    if rstd is not None:  # optional: a launcher that also returns 1/rms per row must get it right too
        x, _, eps = case.make()
        want = torch.rsqrt(x.float().pow(2).mean(-1) + eps).flatten()
        if not torch.is_tensor(rstd) or rstd.numel() != want.numel() or not torch.allclose(
                rstd.detach().float().flatten().cpu(), want.cpu(), atol=1e-5, rtol=1e-5):
            raise _Mismatch("y is right but the rstd you return is not 1/sqrt(mean(x^2) + eps) per row (fp32)",
                            "Store rstd for each row (shape (rows,), fp32), or return y alone.")
    if run is not None:
        require_own_kernel(run, got, spec, case)
    return worst


# ------------------------------------------------------------------------------------------------ SwiGLU


def swiglu_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """silu(a) * b in fp32, in a's dtype: minillm's definition (minillm.kernels.swiglu), imported when a check runs."""
    from minillm.kernels.swiglu import swiglu_reference as reference

    return reference(a, b)


def _in_dtype(f: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """A mistake formula evaluated in fp32 and rounded to the first argument's dtype, as a kernel would."""
    return lambda first, *rest: f(first.float(), *(r.float() if torch.is_tensor(r) and r.is_floating_point()
                                                   else r for r in rest)).to(first.dtype)


SWIGLU_MISTAKES = (
    ("silu(a) = a * sigmoid(a): you computed sigmoid(a) * b; multiply by a as well.",
     _in_dtype(lambda a, b: torch.sigmoid(a) * b)),
    ("The gate is the first argument: silu(a) * b, not silu(b) * a.", _in_dtype(lambda a, b: F.silu(b) * a)),
    ("Multiply by b: y = silu(a) * b.", _in_dtype(lambda a, b: F.silu(a))),
)


def _swiglu_args(seed: int, *shape: int, dtype: torch.dtype = torch.float32) -> tuple:
    return _randn(seed, *shape, scale=2.0, dtype=dtype), _randn(seed + 1, *shape, dtype=dtype)


def _compare_swiglu(got, expected, spec, case) -> float:
    return compare_kernel_output(got, expected, spec, case, SWIGLU_MISTAKES)


# ------------------------------------------------------------------------------------------------ RMSNorm


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """minillm's definition (minillm.kernels.rmsnorm), imported when a check runs: it imports triton."""
    from minillm.kernels.rmsnorm import rms_norm_reference as reference

    return reference(x, weight, eps)


def _rms_formula(x, w, eps, denominator=None, eps_inside=True, sqrt=True, weight=True):
    """RMSNorm in fp32 with one knob per classic mistake; the defaults give the right answer."""
    ms = x.pow(2).sum(-1, keepdim=True) / (denominator or x.shape[-1])  # (..., 1)
    if not sqrt:
        norm = ms + eps
    elif eps_inside:
        norm = (ms + eps).sqrt()
    else:
        norm = ms.sqrt() + eps
    return x / norm * w if weight else x / norm


RMS_MISTAKES = (
    ("Take the MEAN of x^2 (divide the sum by n_cols), not the sum: your output is sqrt(n_cols) times too small.",
     _in_dtype(lambda x, w, eps: _rms_formula(x, w, eps, denominator=1))),
    ("Divide the sum of squares by n_cols, not by BLOCK: the masked tail lanes are zeros, not data.",
     _in_dtype(lambda x, w, eps: _rms_formula(x, w, eps, denominator=1 << (x.shape[-1] - 1).bit_length()))),
    ("Multiply by the weight: y = x * rstd * w (load w at the same column offsets, with the same mask).",
     _in_dtype(lambda x, w, eps: _rms_formula(x, w, eps, weight=False))),
    # before 'no eps': with normal-sized x, a fixed 1e-5 and no eps at all give nearly the same output
    ("Use the eps argument (pass it to the kernel) instead of a fixed 1e-5.",
     _in_dtype(lambda x, w, eps: _rms_formula(x, w, 1e-5))),
    ("Add eps inside the square root: rstd = 1 / sqrt(mean(x^2) + eps); it matters when activations are small.",
     _in_dtype(lambda x, w, eps: _rms_formula(x, w, 0.0))),
    ("eps goes inside the square root: 1 / sqrt(mean(x^2) + eps), not 1 / (sqrt(mean(x^2)) + eps).",
     _in_dtype(lambda x, w, eps: _rms_formula(x, w, eps, eps_inside=False))),
    ("Take the square root: rstd = 1 / sqrt(mean(x^2) + eps) (tl.sqrt or tl.rsqrt).",
     _in_dtype(lambda x, w, eps: _rms_formula(x, w, eps, sqrt=False))),
)


def _rms_args(seed: int, *shape: int, dtype: torch.dtype = torch.float32, scale: float = 1.0,
              eps: float = 1e-5) -> tuple:
    """x (shape), a weight (shape[-1],) away from 1 (so a forgotten weight shows), eps."""
    n = shape[-1]
    weight = (0.5 + torch.rand(n, generator=torch.Generator().manual_seed(seed + 1))).to(_device(), dtype)
    return _randn(seed, *shape, scale=scale, dtype=dtype), weight, eps


def _compare_rms(got, expected, spec, case) -> float:
    return compare_kernel_output(got, expected, spec, case, RMS_MISTAKES, allow_rstd=True)


# ------------------------------------------------------------------------------------------------ registry


def _register_lab08() -> None:
    register_check(Check(
        name="swiglu_kernel",
        summary="swiglu_kernel: your launcher student_swiglu(a, b) -> silu(a) * b (a's shape and dtype), "
                "computed by your own @triton.jit kernel over a 1-D grid of blocks (PyTorch ops do not pass)",
        hint="offs = pid * BLOCK + tl.arange(0, BLOCK); mask = offs < n; load a and b with the mask and "
             ".to(tl.float32); y = a * tl.sigmoid(a) * b; store y.to(Y.dtype.element_ty) with the mask. "
             "Launch grid = (triton.cdiv(a.numel(), BLOCK),) on contiguous inputs.",
        reference=swiglu_reference, compare=_compare_swiglu, runner=launch_recorded,
        cases=(
            Case("one row of 64 (fp32)", lambda: _swiglu_args(0, 1, 64)),
            Case("(4, 33) fp32: 132 elements, not a multiple of the block", lambda: _swiglu_args(1, 4, 33), _MASK),
            Case("(2, 3, 130) fp32: a 3-D input", lambda: _swiglu_args(2, 2, 3, 130),
                 "Treat the input as one flat array of a.numel() elements and return y in a's shape."),
            Case("(5, 1001) fp32: several blocks", lambda: _swiglu_args(3, 5, 1001),
                 "Launch triton.cdiv(n, BLOCK) programs, each at offset pid * BLOCK."),
            Case("(3, 130) bf16", lambda: _swiglu_args(4, 3, 130, dtype=torch.bfloat16), _CAST),
        ),
    ))
    register_check(Check(
        name="rms_norm_kernel",
        summary="rms_norm_kernel: your launcher student_rms_norm(x, weight, eps) -> x / sqrt(mean(x^2) + eps) * "
                "weight over the last dim (x's shape and dtype), by your own @triton.jit kernel, one program per row "
                "(PyTorch ops do not pass)",
        hint="View x as (rows, n_cols); one program per row at X + row * stride; BLOCK = "
             "triton.next_power_of_2(n_cols); load with mask=cols < n_cols, other=0.0, in fp32; "
             "rstd = 1 / tl.sqrt(tl.sum(x * x, axis=0) / n_cols + eps); store (x * rstd * w) in Y's dtype.",
        reference=rms_norm_reference, compare=_compare_rms, runner=launch_recorded,
        cases=(
            Case("one row of 64 (fp32, a power of two)", lambda: _rms_args(0, 1, 64)),
            Case("(4, 33) fp32: width 33 is not a power of two", lambda: _rms_args(1, 4, 33), _MASK),
            Case("(3, 130) fp32: width 130", lambda: _rms_args(2, 3, 130), _MASK),
            Case("(2, 3, 33) fp32: a 3-D input (batch, time, channels)", lambda: _rms_args(3, 2, 3, 33),
                 "Normalize over the last dim only: x.reshape(-1, n_cols) for the launch, y.view(x.shape) after."),
            Case("(4, 130) bf16 input and weight", lambda: _rms_args(4, 4, 130, dtype=torch.bfloat16), _CAST),
            Case("small activations (|x| ~ 1e-3), where eps matters", lambda: _rms_args(5, 3, 48, scale=1e-3),
                 "eps belongs inside the square root: 1 / sqrt(mean(x^2) + eps)."),
            Case("eps = 1e-3 (use the argument)", lambda: _rms_args(6, 2, 40, eps=1e-3),
                 "Pass eps from the launcher to the kernel; do not hard-code it."),
        ),
    ))


_register_lab08()  # cheap: builds Check objects only; tensors are made, and triton imported, when a check runs


def check_swiglu(fn: Callable[..., torch.Tensor]) -> None:
    """grading.check("swiglu_kernel", fn): print PASS, or FAIL with a hint and raise AssertionError."""
    check("swiglu_kernel", fn)


def check_rms_norm(fn: Callable[..., torch.Tensor]) -> None:
    """grading.check("rms_norm_kernel", fn): print PASS, or FAIL with a hint and raise AssertionError."""
    check("rms_norm_kernel", fn)


__all__ = ["check_swiglu", "check_rms_norm", "swiglu_reference", "rms_norm_reference", "launch",
           "launch_recorded", "kernel_launches", "Launch", "own_kernel_problem", "require_own_kernel",
           "compare_kernel_output", "SWIGLU_MISTAKES", "RMS_MISTAKES"]

from book.grading import lab08_flash  # noqa: E402,F401  (registers tiled_attention and flash_attention_kernel)
