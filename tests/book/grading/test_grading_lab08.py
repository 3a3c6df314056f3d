"""Lab 08 checks (Survey §4.2.2, §4.3): a real Triton solution passes (the tests' own and the solution notebook's);
right values computed without a Triton kernel of the student's own fail; each classic kernel mistake fails with the
hint that names it. The wrong answers are written in torch (values are compared before launches are); the right
ones are Triton kernels, run in the interpreter when there is no GPU."""
import linecache
import os
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():  # before the kernels below are decorated: @triton.jit decides then
    os.environ.setdefault("TRITON_INTERPRET", "1")

triton = pytest.importorskip("triton", reason="Triton is not installed (it is a Linux-only dependency)")
import triton.language as tl  # noqa: E402

from book import grading  # noqa: E402
from book.grading.lab08 import (check_rms_norm, check_swiglu, kernel_launches, rms_norm_reference,  # noqa: E402
                                swiglu_reference)

# ------------------------------------------------------------------------------------------------ right answers


@triton.jit
def _swiglu_kernel(A, B, Y, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    a = tl.load(A + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + offs, (a * tl.sigmoid(a) * b).to(Y.dtype.element_ty), mask=mask)


def triton_swiglu(a, b):
    a2, b2 = a.contiguous(), b.contiguous()
    y = torch.empty_like(a2)
    _swiglu_kernel[(triton.cdiv(a2.numel(), 1024),)](a2, b2, y, a2.numel(), BLOCK=1024)
    return y


@triton.jit
def _rms_kernel(X, W, Y, RSTD, stride, n_cols, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / n_cols + eps)
    tl.store(RSTD + row, rstd)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


def triton_rms_norm_with_rstd(x, weight, eps):
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    y = torch.empty_like(x2)
    rstd = torch.empty(x2.shape[0], dtype=torch.float32, device=x.device)
    _rms_kernel[(x2.shape[0],)](x2, weight, y, rstd, x2.stride(0), x2.shape[1], eps,
                                BLOCK=triton.next_power_of_2(x2.shape[1]))
    return y.view(x.shape), rstd


def triton_rms_norm(x, weight, eps):
    return triton_rms_norm_with_rstd(x, weight, eps)[0]


@triton.jit
def _stub_kernel(X, n, BLOCK: tl.constexpr):
    raise NotImplementedError("write the kernel body")


def stub_kernel_launcher(x, weight, eps):  # the launcher is written, the kernel is still the lab's stub
    _stub_kernel[(1,)](x, x.numel(), BLOCK=16)
    return x


@pytest.mark.parametrize("name, fn", [
    ("swiglu_kernel", triton_swiglu), ("rms_norm_kernel", triton_rms_norm),
    ("rms_norm_kernel", triton_rms_norm_with_rstd),  # returning rstd too is allowed
])
def test_right_answers_pass(name, fn, capsys):
    grading.check(name, fn)
    assert capsys.readouterr().out.startswith(f"PASS {name}: ")


SOLUTION = Path(__file__).resolve().parents[3] / "labs" / "solutions" / "08_kernels.ipynb"


def _solution_namespace():
    """The solution notebook's exercise cells (kernels and launchers), run as the lab runs them: each cell's text is
    registered under its own file name, as IPython does, since @triton.jit reads its function's source."""
    namespace = {"torch": torch}
    for i, cell in enumerate(nbformat.read(SOLUTION, as_version=4).cells):
        if cell.cell_type == "code" and "### BEGIN SOLUTION" in cell.source:
            filename = f"<{SOLUTION.name}, cell {i}>"
            linecache.cache[filename] = (len(cell.source), None, cell.source.splitlines(True), filename)
            exec(compile(cell.source, filename, "exec"), namespace)
    return namespace


@pytest.mark.parametrize("name, launcher", [("swiglu_kernel", "student_swiglu"),
                                            ("rms_norm_kernel", "student_rms_norm")])
def test_the_solution_notebooks_kernels_pass(name, launcher, capsys):
    grading.check(name, _solution_namespace()[launcher])
    assert capsys.readouterr().out.startswith(f"PASS {name}: ")


# ----------------------------------------------------------------------------------------- no kernel of one's own


def rms_norm_by_library_kernel(x, w, eps):  # right values, from minillm's kernel, not the student's
    from minillm.kernels import ops

    return ops.rms_norm(x, w, eps)


def swiglu_by_library_kernel(a, b):
    from minillm.kernels import ops

    return ops.swiglu(a, b)


def swiglu_kernel_on_the_side(a, b):  # launches a kernel of its own, but returns what torch computed
    triton_swiglu(a, b)
    return swiglu_reference(a, b)


@pytest.mark.parametrize("name, fn, message", [
    ("swiglu_kernel", swiglu_reference, "no @triton.jit kernel was launched"),
    ("swiglu_kernel", lambda a, b: (F.silu(a.float()) * b.float()).to(a.dtype), "no @triton.jit kernel was launched"),
    ("rms_norm_kernel", rms_norm_reference, "no @triton.jit kernel was launched"),
    ("rms_norm_kernel", lambda x, w, eps: (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
                                           * w.float()).to(x.dtype), "no @triton.jit kernel was launched"),
    ("rms_norm_kernel", rms_norm_by_library_kernel, "only library kernels (_rms_norm_fwd_kernel)"),
    ("swiglu_kernel", swiglu_by_library_kernel, "only library kernels (_swiglu_fwd_kernel)"),
    ("swiglu_kernel", swiglu_kernel_on_the_side, "_swiglu_kernel, but the tensor it returned was not given to"),
    ("swiglu_kernel", lambda a, b: triton_swiglu(a, b) if a.dtype == torch.float32 else swiglu_reference(a, b),
     "no @triton.jit kernel was launched while it ran (in 1 of 5 cases, the first '(3, 130) bf16')"),
], ids=["swiglu_torch_reference", "swiglu_torch", "rms_torch_reference", "rms_torch", "rms_minillm_kernel",
        "swiglu_minillm_kernel", "kernel_on_the_side", "torch_for_bf16_only"])
def test_right_values_without_a_kernel_of_ones_own_fail(name, fn, message, capsys):
    with pytest.raises(AssertionError, match="computed the right values but launched no Triton kernel of its own"):
        grading.check(name, fn)
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL {name}: case '") and message in out, out
    assert "launch it from this function, kernel[grid](...)" in out, out
    grading.check(name, triton_swiglu if name == "swiglu_kernel" else triton_rms_norm)  # nothing left over


def test_kernel_launches_records_launches_not_device_calls_and_restores_triton():
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    runs = (JITFunction.run, InterpretedFunction.run)
    a = b = torch.randn(2, 3)
    with kernel_launches() as seen:
        y = triton_swiglu(a, b)
        triton_rms_norm(a, torch.ones(3), 1e-5)
    assert [(k.name, k.own) for k in seen] == [("_swiglu_kernel", True), ("_rms_kernel", True)]
    assert y.untyped_storage().data_ptr() in seen[0].storages
    assert (JITFunction.run, InterpretedFunction.run) == runs


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.bfloat16, 2 ** -7)])
def test_triton_solutions_are_close(dtype, tol):
    """The errors the checks tolerate are rounding, not slack: fp32 ~1e-7 relative, bf16 within one unit in the
    last place (2^-7 relative)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(0)
    x, b = (torch.randn(3, 5, 130, generator=g).to(device, dtype) for _ in range(2))
    w = (0.5 + torch.rand(130, generator=g)).to(device, dtype)
    for got, want in [(triton_rms_norm(x, w, 1e-5), rms_norm_reference(x, w, 1e-5)),
                      (triton_swiglu(x, b), swiglu_reference(x, b))]:
        rel = ((got.float() - want.float()).abs() / want.float().abs().clamp_min(1e-3)).max().item()
        assert got.dtype == dtype and rel <= tol, rel


def test_wrappers_and_registry(capsys):
    check_swiglu(triton_swiglu)
    check_rms_norm(triton_rms_norm)
    assert capsys.readouterr().out.count("PASS") == 2
    assert {"swiglu_kernel", "rms_norm_kernel"} <= set(grading.list_checks())


# ------------------------------------------------------------------------------------------------ wrong answers


def _rms(x, w, eps, denominator=None, eps_inside=True, weight=True, out_dtype=None):
    x32 = x.float()
    ms = x32.pow(2).sum(-1, keepdim=True) / (denominator or x.shape[-1])
    y = x32 / ((ms + eps).sqrt() if eps_inside else ms.sqrt() + eps)
    y = y * w.float() if weight else y
    return y.to(out_dtype or x.dtype)


def rms_reads_next_row(x, w, eps):  # an unmasked load: the tail lanes hold the next row's first values
    n, block = x.shape[-1], 1 << (x.shape[-1] - 1).bit_length()
    flat = torch.cat([x.reshape(-1).float(), torch.ones(block, device=x.device)])
    rows = torch.stack([flat[i * n:i * n + block] for i in range(x.numel() // n)])
    y = x.float() * torch.rsqrt(rows.pow(2).sum(-1, keepdim=True) / n + eps).view(*x.shape[:-1], 1)
    return (y * w.float()).to(x.dtype)


def rms_nan_in_bf16(x, w, eps):  # what the interpreter gives for bf16 arithmetic without the fp32 cast
    y = rms_norm_reference(x, w, eps)
    return y if x.dtype == torch.float32 else torch.full_like(y, float("nan"))


def rms_bad_rstd(x, w, eps):
    return rms_norm_reference(x, w, eps), torch.ones(x.shape[:-1]).flatten()


def swiglu_first_block_only(a, b):  # a grid of one program
    y = swiglu_reference(a, b).reshape(-1).clone()
    y[1024:] = 0
    return y.view(a.shape)


@pytest.mark.parametrize("fn, case, message", [
    (lambda x, w, eps: _rms(x, w, eps, denominator=1), "one row of 64", "MEAN of x^2"),
    (lambda x, w, eps: _rms(x, w, 0.0), "small activations", "Add eps inside the square root"),
    (lambda x, w, eps: _rms(x, w, eps, eps_inside=False), "small activations", "eps goes inside the square root"),
    (lambda x, w, eps: _rms(x, w, eps, weight=False), "one row of 64", "Multiply by the weight"),
    (lambda x, w, eps: _rms(x, w, eps, out_dtype=torch.float32), "bf16", "output dtype torch.float32 but expected "
                                                                           "torch.bfloat16"),
    (lambda x, w, eps: _rms(x, w, eps, denominator=1 << (x.shape[-1] - 1).bit_length()), "width 33", "not by BLOCK"),
    (lambda x, w, eps: _rms(x, w, 1e-5), "eps = 1e-3", "Use the eps argument"),
    (lambda x, w, eps: rms_norm_reference(x, w, eps).reshape(-1, x.shape[-1]), "3-D", "y.view(x.shape)"),
    (rms_reads_next_row, "width 33", "Mask the tail"),
    (rms_nan_in_bf16, "bf16", "Cast to fp32 right after loading"),
    (rms_bad_rstd, "one row of 64", "rstd you return"),
], ids=["sum", "no_eps", "eps_outside", "no_weight", "dtype", "block_mean", "fixed_eps", "shape", "unmasked",
        "bf16_nan", "rstd"])
def test_wrong_rms_norm_fails_with_the_right_hint(fn, case, message, capsys):
    with pytest.raises(AssertionError, match="rms_norm_kernel failed on case"):
        grading.check("rms_norm_kernel", fn)
    out = capsys.readouterr().out
    assert out.startswith("FAIL rms_norm_kernel: case '") and case in out.splitlines()[0], out
    assert message in out, out


@pytest.mark.parametrize("fn, case, message", [
    (lambda a, b: (torch.sigmoid(a.float()) * b.float()).to(a.dtype), "one row", "multiply by a as well"),
    (lambda a, b: (F.silu(b.float()) * a.float()).to(a.dtype), "one row", "The gate is the first argument"),
    (lambda a, b: F.silu(a), "one row", "Multiply by b"),
    (lambda a, b: swiglu_reference(a, b).float(), "bf16", "output dtype torch.float32"),
    (swiglu_first_block_only, "several blocks", "Launch triton.cdiv(n, BLOCK) programs"),
    (lambda a, b: (swiglu_reference(a, b), None), "one row", "expected a torch.Tensor, got tuple"),
], ids=["sigmoid", "swapped", "no_b", "dtype", "one_block", "tuple"])
def test_wrong_swiglu_fails_with_the_right_hint(fn, case, message, capsys):
    with pytest.raises(AssertionError, match="swiglu_kernel failed on case"):
        grading.check("swiglu_kernel", fn)
    out = capsys.readouterr().out
    assert case in out.splitlines()[0] and message in out, out


def test_failure_says_by_how_much(capsys):
    with pytest.raises(AssertionError):
        grading.check("rms_norm_kernel", lambda x, w, eps: rms_norm_reference(x, w, eps) * 1.01)
    out = capsys.readouterr().out
    assert "values differ from the reference by up to" in out and "torch.float32, shape (1, 64)" in out, out


def test_stub_kernel_reads_as_not_implemented(capsys):
    with pytest.raises(NotImplementedError, match="not implemented yet: rms_norm_kernel"):
        grading.check("rms_norm_kernel", stub_kernel_launcher)
    assert capsys.readouterr().out.startswith("TODO rms_norm_kernel")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the inputs are on the GPU there")
def test_kernel_compiled_without_a_gpu_gets_a_pointer(capsys):
    def compiled_on_cpu(a, b):  # what a kernel decorated before use_interpreter() raises on a CPU-only machine
        raise RuntimeError("0 active drivers ([]). There should only be one.")

    with pytest.raises(AssertionError):
        grading.check("swiglu_kernel", compiled_on_cpu)
    out = capsys.readouterr().out
    assert "compiled for a GPU" in out and "use_interpreter() BEFORE" in out, out
