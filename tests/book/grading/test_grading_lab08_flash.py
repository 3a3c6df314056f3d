"""Lab 08's FlashAttention checks (book.grading.lab08_flash; Survey §4.2.2, §4.3): the solution notebook's tiled
forward and Triton kernel pass; each typical mistake fails with the hint that names it; right values obtained from
SDPA or from minillm's own attention, or through the whole (Tq, Tk) score matrix, fail."""
import linecache
import os
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():  # before the notebook's kernel is decorated: @triton.jit decides then
    os.environ.setdefault("TRITON_INTERPRET", "1")

from book import grading  # noqa: E402
from book.grading.lab08_flash import (TILED_MISTAKES, attention_reference, bottom_right_mask,  # noqa: E402
                                      check_tiled_attention, run_watched, tiled_formula)

SOLUTION = Path(__file__).resolve().parents[3] / "labs" / "solutions" / "08_kernels.ipynb"


def _solution(name):
    """A function defined in the solution notebook's exercise cells, run as the lab runs them (each cell's text
    registered under its own file name, as IPython does: @triton.jit reads its function's source)."""
    namespace = {"torch": torch}
    for i, cell in enumerate(nbformat.read(SOLUTION, as_version=4).cells):
        if cell.cell_type == "code" and "### BEGIN SOLUTION" in cell.source:
            filename = f"<{SOLUTION.name}, cell {i}>"
            linecache.cache[filename] = (len(cell.source), None, cell.source.splitlines(True), filename)
            exec(compile(cell.source, filename, "exec"), namespace)
    return namespace[name]


def _fail(name, fn, capsys):
    with pytest.raises(AssertionError, match=f"{name} failed on case"):
        grading.check(name, fn)
    return capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ right answers


def test_the_solution_notebooks_tiled_attention_passes(capsys):
    check_tiled_attention(_solution("student_tiled_attention"))
    assert capsys.readouterr().out.startswith("PASS tiled_attention: 9/9 cases")


def test_the_solution_notebooks_triton_forward_passes(capsys):
    pytest.importorskip("triton")
    grading.check("flash_attention_kernel", _solution("student_flash_forward"))
    assert capsys.readouterr().out.startswith("PASS flash_attention_kernel: 4/4 cases")


def test_the_formula_with_its_defaults_is_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 3, 19, 8, generator=g), torch.randn(2, 3, 30, 8, generator=g), torch.randn(2, 3, 30, 8,
                                                                                                         generator=g)
    for causal in (True, False):
        torch.testing.assert_close(tiled_formula(q, k, v, causal, block=7), attention_reference(q, k, v, causal),
                                   atol=1e-6, rtol=1e-5)
    assert bottom_right_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]


# ------------------------------------------------------------------------------------------------ typical mistakes


def _student(**knobs):
    """A student's tiled forward with one of the formula's mistakes (the loop is the formula's own)."""
    return lambda q, k, v, causal=True, block=16: tiled_formula(q, k, v, causal, block, **knobs)


@pytest.mark.parametrize("knobs, case, message", [
    (dict(rescale_acc=False), "T = 37 (not a multiple", "Rescale the accumulator too"),
    (dict(offset="start"), "one query over 37 keys", "SDPA's is_causal (j <= i)"),
    (dict(offset="tile"), "T = 37 (not a multiple", "positions inside the tile"),
    (dict(divide="each_tile"), "T = 37 (not a multiple", "Divide by l once, after the last key tile"),
    (dict(divide="each_term"), "T = 37 (not a multiple", "Divide by l once, after the last key tile"),
    (dict(subtract_max=False), "large scores", "Subtract the running max before exp"),
    (dict(scale=False), "T = 37 (not a multiple", "Scale the scores"),
], ids=["no_rescale", "causal_top_left", "causal_tile_local", "divide_each_tile", "divide_each_term", "no_max",
        "no_scale"])
def test_each_typical_mistake_fails_with_its_hint(knobs, case, message, capsys):
    out = _fail("tiled_attention", _student(**knobs), capsys)
    first = out.splitlines()[0]
    assert first.startswith("FAIL tiled_attention: case '") and case in first, out
    assert message in out, out


def test_the_three_mistakes_of_the_brief_are_distinct():
    """No rescale, wrong causal offset (either kind) and dividing early give different wrong outputs (so each gets
    its own hint) where queries follow a cache (Tq < Tk: with Tq == Tk, SDPA's is_causal offset is right)."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, t, 16, generator=g) for t in (20, 37, 37))
    right = attention_reference(q, k, v, True)
    outs = [model(q, k, v, True, 16) for _, model in TILED_MISTAKES[:4]]
    for i, a in enumerate(outs):
        assert not torch.allclose(a, right, atol=1e-3)
        assert all(not torch.allclose(a, b, atol=1e-3) for b in outs[i + 1:])


def test_a_student_written_loop_without_the_rescale_gets_the_hint(capsys):
    """A different loop than the formula's (softmax numerator kept per tile), with the same mistake."""
    def no_rescale(q, k, v, causal=True, block=16):
        tq, tk = q.shape[-2], k.shape[-2]
        rows = []
        for a in range(0, tq, block):
            qi = q[..., a:a + block, :]
            m = torch.full(qi.shape[:-1], float("-inf"))
            l, acc = torch.zeros(qi.shape[:-1]), torch.zeros(qi.shape)
            for b in range(0, tk, block):
                s = qi @ k[..., b:b + block, :].transpose(-1, -2) / q.shape[-1] ** 0.5
                if causal:
                    i = torch.arange(a, a + qi.shape[-2])[:, None]
                    j = torch.arange(b, b + s.shape[-1])[None, :]
                    s = s.masked_fill(j > i + tk - tq, float("-inf"))
                new = torch.maximum(m, s.amax(-1))
                p = torch.exp(s - new[..., None])
                l = l * torch.exp(m - new) + p.sum(-1)
                acc = acc + p @ v[..., b:b + block, :]  # forgot: acc * exp(m - new)
                m = new
            rows.append(acc / l[..., None])
        return torch.cat(rows, -2)

    assert "Rescale the accumulator too" in _fail("tiled_attention", no_rescale, capsys)


# ------------------------------------------------------------------------------------------------ not one's own


def via_sdpa(q, k, v, causal=True, block=16):  # right values, from torch
    mask = bottom_right_mask(q.shape[-2], k.shape[-2]) if causal else None
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def whole_score_matrix(q, k, v, causal=True, block=16):  # right values, with the (Tq, Tk) matrix in memory
    s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if causal:
        s = s.masked_fill(~bottom_right_mask(q.shape[-2], k.shape[-2]), float("-inf"))
    return torch.softmax(s, -1) @ v


def wrapped_reference(q, k, v, causal=True, block=16):  # minillm's reference behind a function of one's own
    from minillm.kernels import flash_attention_reference

    return flash_attention_reference(q, k, v, causal, block_m=block, block_n=block)


def reshaped_reference(q, k, v, causal=True, block=16):  # ... that also reshapes 3-D inputs to 4-D
    four = [x.reshape(1, -1, *x.shape[-2:]) for x in (q, k, v)]
    return wrapped_reference(*four, causal, block).reshape(q.shape)


@pytest.mark.parametrize("fn, message", [
    (lambda: F.scaled_dot_product_attention, "you passed torch's scaled_dot_product_attention itself"),
    (lambda: __import__("minillm").scaled_dot_product_attention,
     "you passed minillm.model.attention.scaled_dot_product_attention itself"),
    (lambda: __import__("minillm.kernels", fromlist=["x"]).flash_attention_reference,
     "you passed minillm.kernels.flash_reference.flash_attention_reference itself"),
    (lambda: via_sdpa, "by calling torch's scaled_dot_product_attention (1 call(s))"),
    (lambda: (lambda q, k, v, causal=True, block=16: F.scaled_dot_product_attention(q, k, v, is_causal=causal)),
     "by calling torch's scaled_dot_product_attention"),
    (lambda: whole_score_matrix, "the whole (Tq, Tk) score matrix, which a tiled forward never holds"),
    (lambda: wrapped_reference, "case 'a 3-D input"),
    (lambda: reshaped_reference, "case 'head dim 160"),
], ids=["sdpa_itself", "minillm_sdpa_itself", "reference_itself", "sdpa_with_mask", "sdpa_is_causal",
        "score_matrix", "wrapped_reference", "reshaped_reference"])
def test_right_values_that_are_not_ones_own_fail(fn, message, capsys):
    out = _fail("tiled_attention", fn(), capsys)
    assert message in out, out


def test_the_runner_restores_threads_and_lets_the_stub_through():
    threads = torch.get_num_threads()
    q = torch.randn(1, 1, 4, 8)

    def stub(q, k, v, causal, block):
        raise NotImplementedError("write the tiled forward")

    with pytest.raises(NotImplementedError):
        run_watched(stub, q, q, q, True, 16)
    assert torch.get_num_threads() == threads
    with pytest.raises(NotImplementedError, match="not implemented yet: tiled_attention"):
        grading.check("tiled_attention", stub)


def test_triton_check_wants_a_kernel_of_ones_own_and_names_mistakes(capsys):
    pytest.importorskip("triton")
    out = _fail("flash_attention_kernel", lambda q, k, v, causal: attention_reference(q, k, v, causal), capsys)
    assert "launched no Triton kernel of its own" in out, out
    out = _fail("flash_attention_kernel",
                lambda q, k, v, causal: tiled_formula(q, k, v, causal, 32, rescale_acc=False), capsys)
    assert "Rescale the accumulator too" in out, out
