"""Figures, tables and the widget of chapter 08 (fused Triton kernels). Survey §4.3 (efficiency).

- `plot_roofline`: attainable FLOP/s against arithmetic intensity on one device, with the ops of `roofline.py`
  placed on it, eager (hollow) and fused (filled).
- `RooflineWidget`: sliders for the shape, dtype and device; bars of predicted eager vs fused time per op.
- `max_errors`, `check_kernels`: forward and gradient max |kernel - reference|, for the chapter's check tables;
  `time_forward_backward`: a median wall-clock time of forward + backward.
- `measure_linear_ce_memory` + `plot_linear_ce_memory`: the largest tensor made by the unfused output layer vs
  the chunked one, measured op by op on this machine (any device: the torch path of the chunked algorithm).
- `shipped_kernel_results` + `plot_shipped_kernels`: GPU benchmark records in bench/results, or None.

matplotlib and ipywidgets are imported inside the functions, so importing this module stays cheap.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from book import results
from book.viz import SliderPanel
from book.ch08_kernels import studies as rl

OP_COLORS = {"rmsnorm": "C0", "swiglu": "C1", "rope": "C2", "cross_entropy": "C3", "linear_cross_entropy": "C4",
             "matmul": "C7"}


# --------------------------------------------------------------------------------------------- the roofline


def plot_roofline(device: str = "H100 SXM", rows: int = 8192, hidden: int = 4096, dtype_bytes: int = 2,
                  vocab: int = 128256, phase: str = "train", ax: Any = None):
    """Log-log roofline of `device` with every op at its intensity: hollow = eager (all its passes together),
    filled = fused. The height of a point is the FLOP/s its intensity allows, not a measurement."""
    import matplotlib.pyplot as plt

    d = rl.get_device(device)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.5))
    x = [10 ** (k / 20) for k in range(-40, 101)]  # 0.01 .. 1e5 FLOP/byte
    ax.plot(x, [rl.attainable_flops(i, d) for i in x], color="black", lw=2)
    ax.axvline(d.ridge, color="0.5", ls=":", lw=1)
    ax.text(d.ridge * 1.1, d.peak_flops * 0.02, f"ridge\n{d.ridge:.0f} FLOP/byte", fontsize=8, color="0.3")
    for op in rl.OPS:
        for impl, face in (("eager", "none"), ("fused", OP_COLORS[op])):
            c = rl.op_cost(op, impl, rows, hidden, dtype_bytes, vocab, phase)
            ax.scatter(c.intensity, rl.attainable_flops(c.intensity, d), s=60, zorder=3, facecolors=face,
                       edgecolors=OP_COLORS[op], label=op if impl == "fused" else None)
    ax.scatter([], [], facecolors="none", edgecolors="black", label="(hollow: eager)")
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP per byte moved)",
           ylabel="attainable FLOP/s", title=f"{d.name}: memory-bound left of the ridge, compute-bound right")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    return ax.figure


HIDDEN_SIZES = [256, 512, 768, 1024, 2048, 4096, 8192, 16384]
ROW_COUNTS = [2**k for k in range(6, 18)]  # 64 .. 131072 tokens
VOCABS = [32000, 50304, 128256, 256000]
DTYPES = {"bf16 (2 bytes)": 2, "fp32 (4 bytes)": 4}


class RooflineWidget(SliderPanel):
    """Predicted time of each op, eager vs fused, for a shape, dtype and device (roofline.roofline_table).

    ``w = RooflineWidget(); w.update(rows=1024, device="A100 80GB")`` returns the table rows it drew.
    """

    def __init__(self, hidden: int = 4096, rows: int = 8192, dtype_bytes: int = 2, device: str = "H100 SXM",
                 vocab: int = 128256):
        import ipywidgets as widgets

        rl.roofline_table(device, rows, hidden, dtype_bytes, vocab)  # validate before building anything
        common = dict(style={"description_width": "90px"}, layout=widgets.Layout(width="340px"))
        self._build({
            "hidden": widgets.SelectionSlider(options=HIDDEN_SIZES, value=hidden, description="hidden size",
                                              continuous_update=False, **common),
            "rows": widgets.SelectionSlider(options=ROW_COUNTS, value=rows, description="rows (tokens)",
                                            continuous_update=False, **common),
            "dtype_bytes": widgets.Dropdown(options=DTYPES, value=dtype_bytes, description="dtype", **common),
            "device": widgets.Dropdown(options=list(rl.DEVICES), value=device, description="device", **common),
            "vocab": widgets.Dropdown(options=VOCABS, value=vocab, description="vocabulary", **common),
        })

    def update(self, **values: Any) -> list[dict]:
        """Set any of hidden, rows, dtype_bytes, device, vocab; redraw; return the table rows."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; choose from {', '.join(self.controls)}")
        for name, value in values.items():
            options = self.controls[name].options
            allowed = list(options.values()) if isinstance(options, dict) else [o[1] if isinstance(o, tuple) else o
                                                                                for o in options]
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not offered; choose one of {allowed}")
        self._set(values)
        return self._render()

    def _render(self) -> list[dict]:
        import matplotlib.pyplot as plt

        v = {name: c.value for name, c in self.controls.items()}
        rows = rl.roofline_table(v["device"], v["rows"], v["hidden"], v["dtype_bytes"], v["vocab"])
        self.result = {**v, "table": rows}
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        y = range(len(rows))
        ax.barh([i + 0.2 for i in y], [r["eager ms"] for r in rows], height=0.4, color="0.7", label="eager")
        ax.barh([i - 0.2 for i in y], [r["fused ms"] for r in rows], height=0.4,
                color=[OP_COLORS[r["op"]] for r in rows], label="fused")
        for i, r in enumerate(rows):
            ax.text(max(r["eager ms"], r["fused ms"]), i, f" x{r['speedup']:.2f}", va="center", fontsize=8)
        ax.set_yticks(list(y), [r["op"] for r in rows])
        ax.invert_yaxis()
        ax.set(xscale="log", xlabel="predicted ms, forward + backward (roofline lower bound)",
               title=f"{v['device']}: {v['rows']} x {v['hidden']}, vocab {v['vocab']}")
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        self._show(fig)
        self.summary.value = "<br>".join(f"{r['op']}: {r['bound']}-bound, fusion x{r['speedup']:.2f}" for r in rows)
        return rows


# --------------------------------------------------------------------------------------------- checking kernels


def max_errors(kernel: Callable, reference: Callable, inputs: Sequence[Any], seed: int = 0,
               grad_inputs: Sequence[int] | None = None) -> dict[str, float]:
    """Max |kernel - reference| of the outputs ("forward") and of the input gradients ("backward"), in fp32,
    with the same random upstream gradient for both implementations; "... rel": divided by the reference's
    largest magnitude (bf16 keeps 8 significant bits: about 4e-3 relative per rounding).

    grad_inputs: indices of the inputs to differentiate (default: every floating-point tensor); other inputs
    (eps, targets, RoPE's cos/sin tables) are passed through. A gradient only one side produces counts as inf.
    """
    if grad_inputs is None:
        grad_inputs = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.is_floating_point()]
    both = []
    for fn in (kernel, reference):
        args = [x.detach().clone().requires_grad_() if i in grad_inputs else x for i, x in enumerate(inputs)]
        outs = fn(*args)
        outs = outs if isinstance(outs, tuple) else (outs,)
        g = torch.Generator().manual_seed(seed)
        grads = [torch.randn(o.shape, generator=g).to(o.device, o.dtype) for o in outs]
        torch.autograd.backward(outs, grads)
        both.append(([o.detach() for o in outs], [args[i].grad for i in grad_inputs]))
    (outs_k, grads_k), (outs_r, grads_r) = both

    def diff(x: torch.Tensor | None, y: torch.Tensor | None) -> float:
        if x is None or y is None:  # a gradient only one implementation produced: as wrong as can be
            return 0.0 if x is y else float("inf")
        return float((x.float() - y.float()).abs().max()) if x.numel() else 0.0

    def worst(a: list, b: list) -> float:
        return max((diff(x, y) for x, y in zip(a, b)), default=0.0)

    def scale(b: list) -> float:  # the reference's largest magnitude: errors relative to it compare across ops
        return max((float(y.float().abs().max()) for y in b if y is not None and y.numel()), default=0.0) or 1.0

    fwd, bwd = worst(outs_k, outs_r), worst(grads_k, grads_r)
    return {"forward": fwd, "backward": bwd, "forward rel": fwd / scale(outs_r), "backward rel": bwd / scale(grads_r)}


# Small shapes with non-power-of-two widths, one row, 3-D leading dims (the interpreter runs them in seconds).
# rope: (B, H, Hkv, T, D); cross_entropy: (N, V); fused_linear_cross_entropy: (N, C, V).
CHECK_SHAPES = {
    "rmsnorm": [(1, 7), (5, 33), (3, 4, 96)],
    "swiglu": [(1, 1), (5, 33), (2, 3, 130)],
    "rope": [(1, 1, 1, 1, 6), (2, 4, 2, 5, 16)],
    "cross_entropy": [(1, 7), (6, 300)],
    "fused_linear_cross_entropy": [(1, 8, 7), (12, 16, 300)],
}


def _check_case(op: str, shape: tuple, dtype: torch.dtype, device: str, g: torch.Generator):
    """(kernel, reference, inputs, grad_inputs) of one op at one shape."""
    from minillm.model.position import rope_angles
    from minillm.kernels import ops  # the public entry points (each imports its kernel module on first call)

    def randn(*size, scale=1.0):
        return (torch.randn(size, generator=g) * scale).to(device=device, dtype=dtype)

    if op == "rmsnorm":
        from minillm.kernels.rmsnorm import rms_norm_reference
        return ops.rms_norm, rms_norm_reference, [randn(*shape, scale=3), randn(shape[-1]) + 1, 1e-5], (0, 1)
    if op == "swiglu":
        from minillm.kernels.swiglu import swiglu_reference
        return ops.swiglu, swiglu_reference, [randn(*shape), randn(*shape)], (0, 1)
    if op == "rope":
        from minillm.kernels.rope import rope_reference
        b, h, hkv, t, d = shape
        cos, sin = (c.to(device) for c in rope_angles(torch.arange(t), d))
        return ops.rope, rope_reference, [randn(b, h, t, d), randn(b, hkv, t, d), cos, sin], (0, 1)
    if op == "cross_entropy":
        from minillm.kernels.cross_entropy import cross_entropy_reference
        n, v = shape
        targets = torch.randint(0, v, (n,), generator=g).to(device)
        return ops.cross_entropy, cross_entropy_reference, [randn(n, v, scale=3), targets], (0,)
    if op == "fused_linear_cross_entropy":
        from minillm.kernels.fused_linear_cross_entropy import linear_cross_entropy_reference
        n, c, v = shape
        targets = torch.randint(0, v, (n,), generator=g).to(device)
        return (ops.fused_linear_cross_entropy, linear_cross_entropy_reference,
                [randn(n, c), randn(v, c, scale=c ** -0.5), targets], (0, 1))
    raise ValueError(f"unknown op {op!r}; choose one of {', '.join(CHECK_SHAPES)}")


def check_kernels(ops: Sequence[str] = tuple(CHECK_SHAPES), dtypes: Sequence[torch.dtype] = (torch.float32,
                  torch.bfloat16), device: str = "cpu", seed: int = 0) -> list[dict]:
    """max_errors of each Triton kernel against its PyTorch reference at CHECK_SHAPES, one row per case.

    On a CPU this needs the Triton interpreter (minillm.kernels.use_interpreter() before the first kernel)."""
    rows = []
    for op in ops:
        for dtype in dtypes:
            for shape in CHECK_SHAPES.get(op, [()]):
                kernel, reference, inputs, grad_inputs = _check_case(op, shape, dtype, device,
                                                                     torch.Generator().manual_seed(seed))
                err = max_errors(kernel, reference, inputs, seed, grad_inputs)
                rows.append({"op": op, "dtype": str(dtype).removeprefix("torch."), "shape": shape, **err})
    return rows


def time_forward_backward(fn: Callable, inputs: Sequence[torch.Tensor], repeats: int = 5) -> float:
    """Median milliseconds of fn(*inputs).backward(...) after one warm-up call (CUDA-synchronised on a GPU)."""
    import time

    args = [x.detach().clone().requires_grad_() if x.is_floating_point() else x for x in inputs]
    times = []
    for i in range(repeats + 1):
        if args[0].is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn(*args)
        out.backward(torch.ones_like(out))
        if args[0].is_cuda:
            torch.cuda.synchronize()
        if i:  # the first call compiles (GPU) or warms caches
            times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


# --------------------------------------------------------------------------------------------- fused linear CE


def measure_linear_ce_memory(vocabs: Sequence[int], n_tokens: int = 256, hidden: int = 32,
                             chunk_size: int | None = None, seed: int = 0) -> list[dict]:
    """For each vocabulary size: the largest tensor (elements) any op creates during forward + backward of the
    unfused output layer (logits, then cross-entropy) and of the chunked one, and how far apart their loss and
    gradients are. The weight's gradient (V, C) is left out of both: every method must make it."""
    from minillm.kernels.fused_linear_cross_entropy import (chunked_linear_cross_entropy, default_chunk_size,
                                             linear_cross_entropy_reference, peak_intermediate_numel)

    out = []
    for v in vocabs:
        g = torch.Generator().manual_seed(seed)
        h, w = torch.randn(n_tokens, hidden, generator=g), torch.randn(v, hidden, generator=g) * hidden ** -0.5
        t = torch.randint(0, v, (n_tokens,), generator=g)
        row = {"vocab": v, "tokens": n_tokens, "hidden": hidden,
               "chunk": chunk_size or default_chunk_size(n_tokens, v, hidden)}
        grads = {}
        for name, fn, kw in (("eager", linear_cross_entropy_reference, {}),
                             ("chunked", chunked_linear_cross_entropy, {"chunk_size": chunk_size})):
            hi, wi = h.clone().requires_grad_(), w.clone().requires_grad_()

            def step():
                loss = fn(hi, wi, t, **kw)
                loss.backward()
                grads[name] = (loss.detach(), hi.grad, wi.grad)

            row[f"{name} numel"] = peak_intermediate_numel(step, exclude_shapes=[(v, hidden)])
        row["max grad diff"] = max(float((a - b).abs().max()) for a, b in zip(grads["eager"], grads["chunked"]))
        row["loss"] = float(grads["eager"][0])
        out.append(row)
    return out


def plot_linear_ce_memory(rows: Sequence[dict]):
    """Largest intermediate (elements, log-log) against vocabulary size: eager vs chunked, with N x V and N x C."""
    import matplotlib.pyplot as plt

    if not rows or "eager numel" not in rows[0]:
        raise ValueError("no rows to plot: pass what measure_linear_ce_memory returns")
    v = [r["vocab"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(v, [r["eager numel"] for r in rows], "o-", color="C3", label="eager: logits, then cross-entropy")
    ax.plot(v, [r["chunked numel"] for r in rows], "s-", color="C4", label="chunked (fused linear CE)")
    ax.plot(v, [r["tokens"] * r["vocab"] for r in rows], "--", color="0.5", lw=1, label="N x V (the logits)")
    ax.plot(v, [r["tokens"] * r["hidden"] for r in rows], ":", color="0.5", lw=1, label="N x C (the hidden states)")
    ax.set(xscale="log", yscale="log", xlabel="vocabulary size V",
           ylabel="largest intermediate tensor (elements)",
           title=f"output layer of {rows[0]['tokens']} tokens, width {rows[0]['hidden']}, forward + backward")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig


# --------------------------------------------------------------------------------------------- shipped results


def shipped_kernel_results() -> dict[str, dict | None] | None:
    """The latest GPU record of bench/results/kernels.jsonl and of mfu.jsonl, as {"kernels": rec, "mfu": rec}
    (None for a file with no GPU record); or None, after printing why, when there are none at all.

    Records made with --smoke (CPU interpreter, tiny shapes) are skipped: they test the scripts, they are not
    measurements. So are the per-row lines the benches stream while they measure ({"record": "row"}): a run's
    own record ({"record": "run"}, or no "record" field in older files) holds all its rows."""
    def is_run(r: dict) -> bool:
        return not r.get("smoke") and r.get("record", "run") == "run"

    found = {name: results.last(f"{name}.jsonl", where=is_run, missing_ok=True) for name in ("kernels", "mfu")}
    if not any(found.values()):
        print("No GPU kernel or MFU results are recorded in bench/results yet: no run of bench/kernel_speed.py or "
              "bench/mfu.py on a CUDA machine has been shipped. On a GPU, run `python bench/kernel_speed.py` and "
              "`python bench/mfu.py`; they append their records there.")
        return None
    return found


def plot_shipped_kernels(record: dict):
    """Speed-up over eager (left) and peak-memory ratio to eager (right) per op and implementation."""
    import matplotlib.pyplot as plt

    rows = [r for r in record.get("rows", []) if r.get("speedup_vs_eager") is not None]
    if not rows:
        raise ValueError("the record has no rows with speedup_vs_eager: pass a bench/kernel_speed.py record")
    ops = list(dict.fromkeys(r["op"] for r in rows))
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    width = 0.8 / len(impls)
    for ax, key, label in ((axes[0], "speedup_vs_eager", "speed-up over eager (x)"),
                           (axes[1], "mem_ratio_vs_eager", "peak memory / eager")):
        for j, impl in enumerate(impls):
            vals = []
            for op in ops:  # several shapes per op: their geometric mean
                xs = [r[key] for r in rows if r["op"] == op and r["impl"] == impl and r.get(key)]
                vals.append(float(torch.tensor(xs).log().mean().exp()) if xs else 0.0)
            ax.bar([i + j * width for i in range(len(ops))], vals, width, label=impl)
        ax.axhline(1.0, color="black", lw=1)
        ax.set_xticks([i + width * (len(impls) - 1) / 2 for i in range(len(ops))], ops, rotation=20)
        ax.set(ylabel=label)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"shipped kernel benchmark on {record.get('device', '?')} ({record.get('dtype', '?')})")
    return fig
