"""Lab 08 checks, part 2: FlashAttention's tiled forward, in PyTorch and (optionally) in Triton. Survey §4.2.2
(attention; FlashAttention among the efficient implementations) and §4.3 (efficient training).

tiled_attention          student_tiled_attention(q, k, v, causal, block): softmax(q k^T / sqrt(D), causal) v
                         computed `block` queries x `block` keys at a time with the online softmax, in PyTorch
flash_attention_kernel   student_flash_forward(q, k, v, causal): the same forward as a @triton.jit kernel of the
                         student's own (optional part; lab08's launch recording applies)

Both are graded against torch's scaled_dot_product_attention (SDPA) with minillm's causal convention: the queries
sit at the END of the keys, query i sees keys j <= i + Tk - Tq (the KV-cache case; SDPA's own is_causal aligns
them to the start, so the reference passes an explicit mask). The cases: lengths that are not a multiple of the
tile, causal and not, one query over many keys (Tq = 1), a few queries after a cache (Tq < Tk), scores large
enough that exp overflows without the running max, and for the PyTorch version a 3-D input and a head dim of 160.

Right values are not enough. A PyTorch solution fails if the function IS torch's or minillm's attention (checked
before it runs), if it calls SDPA while it runs (a TorchFunctionMode sees the call, whatever backend SDPA picks),
or if it creates a tensor shaped like the whole (Tq, Tk) score matrix (a TorchDispatchMode sees every op's
outputs): a tiled forward never holds it. minillm's own tiled functions are caught by the cases they refuse: a
3-D input and a head dim above 128. On a value mismatch the output is compared with each typical mistake's own
formula (no rescaling of the accumulator, the causal mask at the wrong offset, dividing by l inside the loop,
...), so the hint names the mistake.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from book.grading.core import Case, Check, _Mismatch, check, register_check
from book.grading.lab08 import _device, compare_kernel_output, launch_recorded

# ------------------------------------------------------------------------------------------------ the reference


def bottom_right_mask(tq: int, tk: int, device: Any = None) -> torch.Tensor:
    """(Tq, Tk) bool, True = may attend: query i sees keys j <= i + Tk - Tq (minillm's causal convention)."""
    i = torch.arange(tq, device=device)[:, None]
    return torch.arange(tk, device=device)[None, :] <= i + (tk - tq)


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                        block: int | None = None) -> torch.Tensor:
    """SDPA with the bottom-right causal mask; `block` is the student's tile size and changes nothing here."""
    import torch.nn.functional as F

    mask = bottom_right_mask(q.shape[-2], k.shape[-2], q.device) if causal else None
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def tiled_formula(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True, block: int = 16,
                  rescale_acc: bool = True, offset: str = "end", divide: str = "end", scale: bool = True,
                  subtract_max: bool = True) -> torch.Tensor:
    """The tiled forward in fp32 with one knob per typical mistake; the defaults give the right answer.

    offset: "end" (right: queries at the end of the keys), "start" (SDPA's is_causal, j <= i) or "tile" (the
    mask built from positions inside the tile, forgetting where the tile starts); divide: "end" (right),
    "each_tile" (acc = (alpha acc + P V) / l at every tile) or "each_term" (acc = alpha acc + P V / l)."""
    tq, tk, d = q.shape[-2], k.shape[-2], q.shape[-1]
    q32, k32, v32 = q.float(), k.float(), v.float()
    out = []
    for sm in range(0, tq, block):
        qi = q32[..., sm:sm + block, :]  # (..., bm, D)
        bm = qi.shape[-2]
        m = qi.new_full(qi.shape[:-1], float("-inf") if subtract_max else 0.0)  # (..., bm)
        l = qi.new_zeros(qi.shape[:-1])
        acc = torch.zeros_like(qi)
        for sn in range(0, tk, block):
            kj, vj = k32[..., sn:sn + block, :], v32[..., sn:sn + block, :]  # (..., bn, D)
            bn = kj.shape[-2]
            s = qi @ kj.transpose(-1, -2) * (d ** -0.5 if scale else 1.0)  # (..., bm, bn)
            if causal:
                rows = torch.arange(bm, device=q.device)[:, None] + (0 if offset == "tile" else sm)
                cols = torch.arange(bn, device=q.device)[None, :] + (0 if offset == "tile" else sn)
                s = s.masked_fill(cols > rows + (0 if offset == "start" else tk - tq), float("-inf"))
            m_new = torch.maximum(m, s.amax(-1)) if subtract_max else m
            p = torch.exp(s - m_new[..., None])
            alpha = torch.exp(m - m_new)
            l = alpha * l + p.sum(-1)
            pv = p @ vj
            if divide == "each_term":
                pv = pv / l[..., None]
            acc = (alpha[..., None] if rescale_acc else 1.0) * acc + pv
            if divide == "each_tile":
                acc = acc / l[..., None]
            m = m_new
        out.append(acc / l[..., None] if divide == "end" else acc)
    return torch.cat(out, dim=-2).to(q.dtype)


def _mistake(**knobs: Any) -> Callable[..., torch.Tensor]:
    return lambda q, k, v, causal=True, block=16: tiled_formula(q, k, v, causal, block, **knobs)


_OFFSET = ("Causal offset: the queries sit at the END of the keys. Query i (of Tq) may see keys "
           "j <= i + (Tk - Tq): with Tq == Tk that is j <= i, and a single query (Tq = 1) sees every key. Inside a "
           "tile compare absolute positions: rows start_m + arange(bm), columns start_n + arange(bn).")
_DIVIDE = ("Divide by l once, after the last key tile: acc and l are both running sums (each rescaled by "
           "alpha when the max grows); dividing inside the loop normalises the early tiles by a partial sum.")
_RESCALE = ("Rescale the accumulator too: acc = alpha * acc + P @ V_j with alpha = exp(m_old - m_new), as for l. "
            "Without it, the terms summed before the max grew keep weights relative to the old max.")
TILED_MISTAKES = (
    (_RESCALE, _mistake(rescale_acc=False)),
    ("Your mask is SDPA's is_causal (j <= i), which aligns the queries to the START of the keys. " + _OFFSET,
     _mistake(offset="start")),
    ("Your mask compares positions inside the tile, not in the sequence. " + _OFFSET, _mistake(offset="tile")),
    (_DIVIDE, _mistake(divide="each_tile")),
    (_DIVIDE, _mistake(divide="each_term")),
    ("Scale the scores: s = q_i @ k_j^T / sqrt(D).", _mistake(scale=False)),
    ("Apply the causal mask when causal=True: set the scores of keys j > i + (Tk - Tq) to -inf before exp.",
     lambda q, k, v, causal=True, block=16: tiled_formula(q, k, v, False, block)),
)
_MAX = ("Subtract the running max before exp: p = exp(s - m_new) with m_new = max(m, rowmax(s)); exp of a large "
        "score overflows to inf, and inf / inf is nan.")
_ALL = "Compute the output yourself, tile by tile, with the online softmax (running max m, sum l, accumulator)."


def _randn(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale  # the same on every machine
    return x.to(_device())


def _qkv(seed: int, lead: tuple[int, ...], tq: int, tk: int, d: int, scale: float = 1.0) -> tuple:
    return (_randn(seed, *lead, tq, d, scale=scale), _randn(seed + 1, *lead, tk, d, scale=scale),
            _randn(seed + 2, *lead, tk, d))


# ------------------------------------------------------------------------------------------------ watching a run


def _library_attention() -> dict[int, str]:
    """id -> name of the attention functions that are not the student's own (already imported ones only)."""
    import torch.nn.functional as F

    found = {id(F.scaled_dot_product_attention): "torch's scaled_dot_product_attention"}
    names = {"minillm.model.attention": ["scaled_dot_product_attention"],
             "minillm.kernels.flash_reference": ["flash_attention_reference", "flash_forward_reference"],
             "minillm.kernels.flash_attention": ["flash_attention", "flash_attention_forward"],
             "minillm.kernels.ops": ["flash_attention"]}
    for module, attrs in names.items():
        mod = sys.modules.get(module)
        for attr in attrs:
            if mod is not None and hasattr(mod, attr):
                found[id(getattr(mod, attr))] = f"{module}.{attr}"
    return found


class _SdpaCalls(TorchFunctionMode):
    """Counts the calls of torch's scaled_dot_product_attention made inside the mode (any backend)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "scaled_dot_product_attention":
            self.calls += 1
        return func(*args, **(kwargs or {}))


class _ScoreShapes(TorchDispatchMode):
    """Records the shapes of new tensors (not views) whose last two dims are (Tq, Tk) or (Tk, Tq)."""

    def __init__(self, tq: int, tk: int) -> None:
        super().__init__()
        self.targets = {(tq, tk), (tk, tq)}
        self.seen: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        outs = out if isinstance(out, (tuple, list)) and len(returns) > 1 else (out,)
        for ret, t in zip(returns, outs):
            if ret.alias_info is None:
                self.seen += [tuple(x.shape) for x in tree_flatten(t)[0] if isinstance(x, torch.Tensor)
                              and x.dim() >= 2 and tuple(x.shape[-2:]) in self.targets]
        return out


@dataclass(frozen=True)
class _Watched:
    """What the runner hands the comparison: the output, SDPA calls, and score-matrix-shaped tensors created."""

    out: Any
    sdpa_calls: int = 0
    score_shapes: list[tuple[int, ...]] = field(default_factory=list)


def run_watched(fn: Callable[..., Any], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                block: int) -> _Watched:
    """The tiled check's runner: refuse a library function outright, then run fn watching for SDPA calls and for
    whole (Tq, Tk) score matrices (only where a tile cannot have that shape: a length longer than the block)."""
    name = _library_attention().get(id(fn))
    if name is not None:
        raise _Mismatch(f"you passed {name} itself, not a function of your own", _ALL)
    tq, tk = q.shape[-2], k.shape[-2]
    watch_scores = max(tq, tk) > block
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiles are tiny: on a busy CPU, waking threads for each small op costs 10x more
    try:
        with _SdpaCalls() as calls, _ScoreShapes(tq, tk) as shapes:
            out = fn(q, k, v, causal, block)
    finally:
        torch.set_num_threads(threads)
    return _Watched(out, calls.calls, shapes.seen if watch_scores else [])


def _compare_tiled(got: Any, expected: torch.Tensor, spec: Check, case: Case) -> float:
    """Type, shape, dtype, device, nan and values (with the hint of the mistake that reproduces a wrong output);
    then, the values being right: no SDPA call and no whole score matrix."""
    run = got if isinstance(got, _Watched) else _Watched(got)
    out = run.out
    if not torch.is_tensor(out):
        raise _Mismatch(f"expected a torch.Tensor, got {type(out).__name__}", "Return the output tensor O.")
    if out.shape != expected.shape:
        raise _Mismatch(f"output shape {tuple(out.shape)} but expected {tuple(expected.shape)}",
                        "O has q's shape (..., Tq, D): concatenate the query tiles along dim -2.")
    if out.dtype != expected.dtype or out.device != expected.device:
        raise _Mismatch(f"output {out.dtype} on {out.device} but expected {expected.dtype} on {expected.device}",
                        "Return O in q's dtype, on q's device (make m, l, acc with q.new_full, torch.zeros_like).")
    out = out.detach()
    if not torch.isfinite(out).all():
        raise _Mismatch(f"{int((~torch.isfinite(out)).sum())} of {out.numel()} output values are nan/inf", _MAX)
    if not torch.allclose(out, expected, atol=spec.atol, rtol=spec.rtol):
        diff = (out - expected).abs()
        where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        args = case.make()
        hint = next((h for h, model in TILED_MISTAKES
                     if torch.allclose(out, model(*args), atol=spec.atol, rtol=spec.rtol)), case.hint)
        raise _Mismatch(f"values differ from the reference by up to {diff.max().item():.3g} (at index {where}: got "
                        f"{out[where].item():.6g}, expected {expected[where].item():.6g}; shape "
                        f"{tuple(expected.shape)})", hint)
    if run.sdpa_calls:
        raise _Mismatch("your function computed the right values by calling torch's scaled_dot_product_attention "
                        f"({run.sdpa_calls} call(s))", _ALL)
    if run.score_shapes:
        raise _Mismatch(f"your function created a tensor of shape {run.score_shapes[0]}: the whole (Tq, Tk) score "
                        "matrix, which a tiled forward never holds",
                        "Compute one (block, block) tile of scores at a time: s = q_i @ k_j^T, with q_i and k_j "
                        "slices of `block` rows.")
    return float((out - expected).abs().max()) if out.numel() else 0.0


# ------------------------------------------------------------------------------------------------ Triton (optional)


def _compare_flash_kernel(got: Any, expected: torch.Tensor, spec: Check, case: Case) -> float:
    # the mistakes' outputs depend on the tile size, which is the student's choice: try the usual ones
    mistakes = tuple((hint, (lambda f, b: lambda q, k, v, causal=True: f(q, k, v, causal, b))(model, block))
                     for block in (16, 32, 64) for hint, model in TILED_MISTAKES)
    return compare_kernel_output(got, expected, spec, case, mistakes)


# ------------------------------------------------------------------------------------------------ registry


def _register() -> None:
    register_check(Check(
        name="tiled_attention",
        summary="tiled_attention: student_tiled_attention(q, k, v, causal, block) -> softmax(q k^T / sqrt(D), "
                "causal) v of shape (..., Tq, D), computed block x block tiles at a time with the online softmax "
                "(queries at the end of the keys when causal); no SDPA, no whole (Tq, Tk) score matrix",
        hint="For each query tile: m = -inf, l = 0, acc = 0; for each key tile: s = q_i @ k_j^T * D**-0.5 "
             "(masked), m_new = max(m, s.amax(-1)), p = exp(s - m_new), alpha = exp(m - m_new), "
             "l = alpha * l + p.sum(-1), acc = alpha * acc + p @ v_j, m = m_new; then O_i = acc / l.",
        reference=attention_reference, compare=_compare_tiled, runner=run_watched,
        cases=(
            Case("(1, 2) heads, T = 37 (not a multiple of the tile), causal, tiles of 16",
                 lambda: (*_qkv(0, (1, 2), 37, 37, 16), True, 16)),
            Case("(1, 2) heads, T = 37, not causal, tiles of 16", lambda: (*_qkv(3, (1, 2), 37, 37, 16), False, 16)),
            Case("one query over 37 keys (Tq = 1, causal: the KV-cache case)",
                 lambda: (*_qkv(6, (1, 2), 1, 37, 16), True, 16), _OFFSET),
            Case("5 queries after 32 cached keys (Tq = 5, Tk = 37), causal, tiles of 4",
                 lambda: (*_qkv(9, (1, 2), 5, 37, 16), True, 4), _OFFSET),
            Case("(2, 3) heads, T = 50, head dim 24, causal, tiles of 8",
                 lambda: (*_qkv(12, (2, 3), 50, 50, 24), True, 8)),
            Case("a 3-D input (heads folded into the batch): (6, 21, 8), causal, tiles of 16",
                 lambda: (*_qkv(15, (6,), 21, 21, 8), True, 16),
                 "Work on any leading dims: slice with q[..., a:b, :] and transpose with .transpose(-1, -2)."),
            Case("head dim 160, T = 20, causal, tiles of 8", lambda: (*_qkv(18, (1, 1), 20, 20, 160), True, 8)),
            Case("large scores (q, k scaled by 30), T = 37, causal",
                 lambda: (*_qkv(21, (1, 2), 37, 37, 16, scale=30.0), True, 16), _MAX),
            Case("the block is longer than the sequence: T = 7, tiles of 16",
                 lambda: (*_qkv(24, (1, 2), 7, 7, 16), True, 16)),
        ),
    ))
    register_check(Check(
        name="flash_attention_kernel",
        summary="flash_attention_kernel (optional): student_flash_forward(q, k, v, causal) -> O (B, H, Tq, D) for "
                "contiguous fp32 q (B, H, Tq, D), k, v (B, H, Tk, D), D 16 or 32, by your own @triton.jit kernel, "
                "one program per (query tile, batch x head)",
        hint="Grid (triton.cdiv(Tq, BLOCK_M), B * H). Load the query tile once; loop over key tiles to the last "
             "one the tile sees; mask keys >= Tk (and j > i + Tk - Tq when causal) with -inf; keep m, l, acc in "
             "fp32; tl.dot(..., input_precision='ieee') for exact fp32 products on a GPU; store acc / l masked.",
        reference=lambda q, k, v, causal: attention_reference(q, k, v, causal),
        compare=_compare_flash_kernel, runner=launch_recorded,
        cases=(
            Case("(1, 2, 37, 16), causal", lambda: (*_qkv(30, (1, 2), 37, 37, 16), True)),
            Case("(1, 2, 37, 32), not causal", lambda: (*_qkv(33, (1, 2), 37, 37, 32), False)),
            Case("one query over 37 keys, causal", lambda: (*_qkv(36, (1, 2), 1, 37, 16), True), _OFFSET),
            Case("(2, 2) heads, 20 queries after 25 cached keys, causal",
                 lambda: (*_qkv(39, (2, 2), 20, 45, 16), True), _OFFSET),
        ),
    ))


_register()  # cheap: builds Check objects only; tensors are made when a check runs


def check_tiled_attention(fn: Callable[..., torch.Tensor]) -> None:
    """grading.check("tiled_attention", fn): print PASS, or FAIL with a hint and raise AssertionError."""
    check("tiled_attention", fn)


def check_flash_kernel(fn: Callable[..., torch.Tensor]) -> None:
    """grading.check("flash_attention_kernel", fn): print PASS, or FAIL with a hint and raise AssertionError."""
    check("flash_attention_kernel", fn)


__all__ = ["check_tiled_attention", "check_flash_kernel", "attention_reference", "bottom_right_mask",
           "tiled_formula", "run_watched", "TILED_MISTAKES"]
