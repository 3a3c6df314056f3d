"""Figures and checks of chapter 08's FlashAttention section. Survey §4.2.2 (attention) and §4.3 (efficiency).

- `plot_attention_roofline`: section 1's roofline (plots.plot_roofline, with its ops) plus attention at a few
  sequence lengths: materialised, and FlashAttention with every tile re-read counted as memory traffic or served
  by the cache (studies_flash.attention_cost).
- `plot_attention_memory`: measured peak memory of materialised vs tiled attention against T, log-log, with the
  counts of studies_flash_memory.attention_memory_model as lines.
- `check_flash`: the PyTorch reference and the Triton kernel against torch's SDPA, forward and backward, in the
  rows format of plots.check_kernels (the kernel needs the interpreter on a CPU).

matplotlib is imported inside the functions, so importing this module stays cheap.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from book.ch08_kernels import plots as kplots
from book.ch08_kernels import studies_flash as sf
from book.ch08_kernels.studies_flash_memory import one_cpu_thread

# one colour per implementation; diamonds set attention apart from section 1's circles
ATTN_STYLE = {"materialised": ("C5", "none", "attention, scores materialised"),
              "flash": ("C9", "none", "FlashAttention, every tile re-read from memory"),
              "flash_cached": ("C9", "C9", "FlashAttention, re-reads served by the cache")}


def plot_attention_roofline(device: str = "H100 SXM", lengths: Sequence[int] = (1024, 4096), ax: Any = None,
                            **shape: Any):
    """plots.plot_roofline(device) with attention added at each sequence length in `lengths` (diamonds, labelled
    with T): materialised (hollow), flash without cache (hollow, another colour) and flash with cache (filled).
    shape: studies_flash.attention_cost's keyword arguments (default: LLAMA_8B_ATTENTION without its seq_len)."""
    if not lengths:
        raise ValueError("lengths is empty: pass the sequence lengths to place, e.g. (1024, 4096)")
    shape = {**{k: v for k, v in sf.LLAMA_8B_ATTENTION.items() if k != "seq_len"}, **shape}
    fig = kplots.plot_roofline(device, ax=ax)
    ax = fig.axes[0]
    d = kplots.rl.get_device(device)
    for impl, (color, face, label) in ATTN_STYLE.items():
        points = []
        for t in lengths:
            cost = sf.attention_cost("flash" if impl.startswith("flash") else impl, t, **shape,
                                     cached=impl == "flash_cached")
            points.append((cost.intensity, kplots.rl.attainable_flops(cost.intensity, d)))
        ax.scatter(*zip(*points), s=80, marker="D", zorder=4, facecolors=face, edgecolors=color, label=label)
        if impl == "flash_cached":  # these move right with T: one label each
            for t, xy in zip(lengths, points):
                ax.annotate(f"T={t}", xy, textcoords="offset points", xytext=(-10, -15), fontsize=7, color=color)
        else:  # these barely move: one label for all
            ax.annotate("T=" + ", ".join(map(str, lengths)), points[-1], textcoords="offset points",
                        xytext=(8, -12) if impl == "materialised" else (-75, 8), fontsize=7, color=color)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{d.name}: attention (diamonds) beside section 1's ops")
    return fig


def plot_attention_memory(rows: Sequence[dict]):
    """Peak MB (log-log) against T: measured materialised and tiled (markers), their counted model (lines),
    and one (B, H, T, T) fp32 score matrix for scale."""
    import matplotlib.pyplot as plt

    need = ("T", "materialised MB", "tiled MB", "materialised model MB", "tiled model MB", "scores MB")
    if not rows or any(k not in rows[0] for k in need):
        raise ValueError("no rows to plot: pass what studies_flash_memory.measure_attention_memory returns")
    t = [r["T"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, color, marker in (("materialised", "C5", "o"), ("tiled", "C9", "s")):
        ax.plot(t, [r[f"{name} MB"] for r in rows], marker, color=color, label=f"{name}: measured")
        ax.plot(t, [r[f"{name} model MB"] for r in rows], "-", color=color, lw=1, label=f"{name}: counted")
    ax.plot(t, [r["scores MB"] for r in rows], ":", color="0.5", lw=1, label="one (B, H, T, T) fp32 matrix")
    ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="peak memory, forward + backward (MB)",
           title="causal attention on the CPU, fp32: materialised vs tiled")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig


def growth_exponent(rows: Sequence[dict], column: str) -> float:
    """Slope of log(column) against log(T) between the last two rows: 2 for quadratic growth, 1 for linear."""
    import math

    if len(rows) < 2:
        raise ValueError("need at least two rows (two sequence lengths) to measure a growth exponent")
    a, b = rows[-2], rows[-1]
    return math.log(b[column] / a[column]) / math.log(b["T"] / a["T"])


# --------------------------------------------------------------------------------------------- checking


# (B, H, Tq, Tk, D, causal): lengths across tile edges at 16 x 16 tiles, one query over a cache, Tq != Tk
CHECK_SHAPES = [(1, 2, 37, 37, 16, True), (1, 2, 1, 37, 16, True), (1, 2, 20, 37, 24, False)]


def sdpa_reference(causal: bool) -> Callable[..., torch.Tensor]:
    """torch's scaled_dot_product_attention with minillm's causal convention: queries aligned to the END of the
    keys (an explicit bottom-right mask; SDPA's own is_causal aligns them to the start)."""
    import torch.nn.functional as F
    from minillm.kernels.flash_reference import causal_mask_bottom_right

    def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        mask = causal_mask_bottom_right(q.shape[-2], k.shape[-2], q.device) if causal else None
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    return sdpa


def check_flash(impls: Sequence[str] = ("reference", "triton"), dtypes: Sequence[torch.dtype] = (torch.float32,
                torch.bfloat16), device: str = "cpu", block: int = 16, seed: int = 0) -> list[dict]:
    """max |impl - SDPA| of the output and of dq, dk, dv (plots.max_errors) at CHECK_SHAPES with `block` x `block`
    tiles, one row per case. impls: "reference" (flash_attention_reference, plain PyTorch) and/or "triton"
    (minillm.kernels.flash_attention; on a CPU it needs minillm.kernels.use_interpreter() before its import)."""
    unknown = sorted(set(impls) - {"reference", "triton"})
    if unknown:
        raise ValueError(f"unknown impl(s) {unknown}; choose from 'reference', 'triton'")
    rows = []
    with one_cpu_thread():  # tiny tensors: extra CPU threads only add overhead (restored afterwards)
        for impl in impls:
            rows += _check_impl(impl, dtypes, device, block, seed)
    return rows


def _check_impl(impl: str, dtypes: Sequence[torch.dtype], device: str, block: int, seed: int) -> list[dict]:
    """check_flash's rows of one implementation."""
    if impl == "triton":
        from minillm.kernels.flash_attention import flash_attention as fn
    else:
        from minillm.kernels.flash_reference import flash_attention_reference as fn
    rows = []
    for dtype in dtypes:
        for b, h, tq, tk, d, causal in CHECK_SHAPES:
            g = torch.Generator().manual_seed(seed)
            q, k, v = (torch.randn(b, h, t, d, generator=g).to(device, dtype) for t in (tq, tk, tk))

            def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = causal) -> torch.Tensor:
                return fn(q, k, v, causal, block_m=block, block_n=block)

            err = kplots.max_errors(run, sdpa_reference(causal), [q, k, v], seed)
            rows.append({"impl": impl, "dtype": str(dtype).removeprefix("torch."), "shape": (b, h, tq, tk, d),
                         "causal": causal, **err})
    return rows
