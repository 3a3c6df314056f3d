"""Why fusing pays: a roofline model of the ops minillm's Triton kernels replace. Survey §4.3 (efficiency).

A GPU kernel cannot finish faster than its memory traffic allows (bytes / bandwidth) nor faster than its
arithmetic allows (FLOPs / peak FLOP/s): its time is at least the larger of the two (Williams et al. 2009,
"Roofline"). The ratio FLOPs / bytes is the kernel's *arithmetic intensity*; below the device's ridge point
(peak / bandwidth, ~295 FLOP/byte on an H100) the kernel is memory-bound and only moving fewer bytes makes
it faster. RMSNorm, SwiGLU, RoPE and cross-entropy do a handful of FLOPs per element, so they sit far left of
the ridge; a matmul does 2K FLOPs per output and sits far right.

Eager PyTorch runs such an op as a chain of kernels, each reading its inputs from GPU memory and writing its
output back; a fused kernel reads the inputs once and writes the outputs once. Each op below lists the passes
eager makes (forward, and backward as autograd runs it) and the passes the fused kernel makes. The counts are
a model, written out so they can be checked by hand: every kernel pays its own roofline time, caches are
ignored (a pass reads all its operands from memory), and FLOPs count +, *, exp, rsqrt... as one each.

    op_cost("rmsnorm", "fused", rows=4096, hidden=4096, phase="forward").bytes
        == 2*4096*4096*2 + 4096*2 + 4096*4     # read x, write y (bf16); read w; write 1/rms (fp32)

Peak numbers come from the vendors' data sheets (dense bf16 tensor-core FLOP/s, no 2:4 sparsity). Elementwise
FLOPs run on the slower vector units (an H100 does ~67 TFLOP/s fp32 there), but at ~1 FLOP/byte they would need
only a few TFLOP/s to keep up with memory, so using the tensor-core peak changes no conclusion. The fused
linear cross-entropy is modelled as minillm implements it: chunks of `default_chunk` tokens, each re-reading
the weight, with an fp32 weight-gradient accumulator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

OPS = ("rmsnorm", "swiglu", "rope", "cross_entropy", "linear_cross_entropy", "matmul")
IMPLS = ("eager", "fused")
PHASES = ("forward", "train")  # train = forward + backward
FP32 = 4  # bytes: per-row statistics and accumulators stay fp32 whatever the activations' dtype
ROPE_HEAD_DIM = 128  # Llama's head dim: sets the size of the (T, D/2) cos/sin tables RoPE reads


@dataclass(frozen=True)
class Device:
    """An accelerator's memory bandwidth (B/s) and dense bf16 tensor-core peak (FLOP/s)."""

    name: str
    bandwidth: float
    peak_flops: float
    source: str

    @property
    def ridge(self) -> float:
        """Arithmetic intensity (FLOP/byte) above which a kernel is compute-bound on this device."""
        return self.peak_flops / self.bandwidth


DEVICES: dict[str, Device] = {
    "H100 SXM": Device("H100 SXM", 3.35e12, 989e12, "NVIDIA H100 datasheet: SXM5 HBM3 3.35 TB/s, BF16 989 TFLOPS dense"),
    "H200": Device("H200", 4.8e12, 989e12, "NVIDIA H200 datasheet: HBM3e 4.8 TB/s, BF16 989 TFLOPS dense"),
    "A100 80GB": Device("A100 80GB", 2.0e12, 312e12, "NVIDIA A100 datasheet: 80GB SXM ~2.0 TB/s, BF16 312 TFLOPS dense"),
    "RTX 4090": Device("RTX 4090", 1.0e12, 165e12,
                       "NVIDIA Ada (AD102) whitepaper: 1.0 TB/s GDDR6X, BF16 165 TFLOPS dense (fp32 accumulate)"),
}


@dataclass(frozen=True)
class Pass:
    """One kernel launch: bytes it reads and writes in GPU memory, and FLOPs it does."""

    name: str
    read: float
    written: float
    flops: float

    @property
    def bytes(self) -> float:
        return self.read + self.written


@dataclass(frozen=True)
class OpCost:
    """The kernel passes one implementation of one op makes, and their totals."""

    op: str
    impl: str
    phase: str
    passes: tuple[Pass, ...]
    largest_buffer: float = 0.0  # bytes of the largest intermediate tensor (0: none besides inputs and outputs)

    @property
    def bytes(self) -> float:
        return sum(p.bytes for p in self.passes)

    @property
    def flops(self) -> float:
        return sum(p.flops for p in self.passes)

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved over all passes."""
        return self.flops / self.bytes

    def time(self, device: str | Device) -> float:
        """Predicted seconds: every pass is its own kernel, bounded by its own roofline (launch overhead ignored)."""
        return sum(roofline_time(p.bytes, p.flops, device) for p in self.passes)


def get_device(device: str | Device) -> Device:
    if isinstance(device, Device):
        return device
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    return DEVICES[device]


def roofline_time(n_bytes: float, flops: float, device: str | Device) -> float:
    """Lower bound on a kernel's seconds: max(bytes / bandwidth, FLOPs / peak)."""
    for name, v in (("bytes", n_bytes), ("flops", flops)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name}={v!r} must be a finite number >= 0")
    d = get_device(device)
    return max(n_bytes / d.bandwidth, flops / d.peak_flops)


def attainable_flops(intensity: float, device: str | Device) -> float:
    """The roof: min(peak, intensity * bandwidth) FLOP/s for a kernel of this arithmetic intensity."""
    d = get_device(device)
    return min(d.peak_flops, intensity * d.bandwidth)


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


# ----------------------------------------------------------------------------------------- the ops' passes
# m = rows (tokens), n = hidden (row width), b = bytes per activation element; each Pass is in bytes and FLOPs.
# Eager is counted for the formula written in the activation dtype; the model's references also upcast to fp32
# (x.float() ... .to(dtype)), which adds passes: these eager counts are on the kind side.


def _rmsnorm(impl: str, m: int, n: int, b: int, train: bool) -> list[Pass]:
    mn = m * n
    if impl == "fused":
        fwd = [Pass("rmsnorm fwd", mn * b + n * b, mn * b + m * FP32, 4 * mn)]  # x, w -> y, 1/rms
        # dy, x, w, 1/rms -> dx, dw (per-program fp32 partial sums of dw neglected: programs x n, a few %)
        bwd = [Pass("rmsnorm bwd", 2 * mn * b + n * b + m * FP32, mn * b + n * b, 9 * mn)]
        return fwd + (bwd if train else [])
    # eager: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w: 6 kernels
    fwd = [Pass("pow", mn * b, mn * b, mn), Pass("mean", mn * b, m * b, mn), Pass("add eps", m * b, m * b, m),
           Pass("rsqrt", m * b, m * b, m), Pass("mul x*r", (mn + m) * b, mn * b, mn),
           Pass("mul *w", (mn + n) * b, mn * b, mn)]
    # autograd replays it backwards: 11 kernels, 13 full reads and 8 full writes
    bwd = [Pass("dw: dy*xhat", 2 * mn * b, mn * b, mn), Pass("dw: sum rows", mn * b, n * b, mn),
           Pass("dy*w", (mn + n) * b, mn * b, mn), Pass("dx1: *r", (mn + m) * b, mn * b, mn),
           Pass("dr: *x", 2 * mn * b, mn * b, mn), Pass("dr: sum", mn * b, m * b, mn),
           Pass("rsqrt bwd", 2 * m * b, m * b, 3 * m), Pass("mean bwd: expand/n", m * b, mn * b, mn),
           Pass("pow bwd: 2*x", mn * b, mn * b, mn), Pass("pow bwd: *grad", 2 * mn * b, mn * b, mn),
           Pass("dx = dx1 + dx2", 2 * mn * b, mn * b, mn)]
    return fwd + (bwd if train else [])


def _swiglu(impl: str, m: int, n: int, b: int, train: bool) -> list[Pass]:
    mn = m * n  # a (gate) and b (up) are both (m, n)
    if impl == "fused":
        fwd = [Pass("swiglu fwd", 2 * mn * b, mn * b, 5 * mn)]
        bwd = [Pass("swiglu bwd (recomputes silu)", 3 * mn * b, 2 * mn * b, 10 * mn)]  # dc, a, b -> da, db
        return fwd + (bwd if train else [])
    # eager F.silu(a) * b: silu writes a temporary that the mul reads back (and autograd keeps)
    fwd = [Pass("silu", mn * b, mn * b, 4 * mn), Pass("mul", 2 * mn * b, mn * b, mn)]
    bwd = [Pass("db = dc*silu", 2 * mn * b, mn * b, mn), Pass("dsilu = dc*b", 2 * mn * b, mn * b, mn),
           Pass("silu bwd", 2 * mn * b, mn * b, 6 * mn)]
    return fwd + (bwd if train else [])


def _rope(impl: str, m: int, n: int, b: int, train: bool) -> list[Pass]:
    # q and k both (m tokens, n = heads x head dim) (MHA); one sequence, so the fp32 tables are (m, D/2) each
    e = m * n
    table = m * (ROPE_HEAD_DIM // 2) * FP32
    if impl == "fused":
        one = Pass("rope q and k", 2 * e * b + 2 * table, 2 * e * b, 6 * e)  # backward: the same, by -angle
        return [one, one] if train else [one]
    # eager (the model's apply_rope_cached) per tensor: 4 muls of a strided half by a table, a sub and an
    # add of two halves, a stack of the halves: reads 5e, writes 4e. Backward: autograd replays as many.
    per_tensor = [Pass(f"mul {i}", e / 2 * b + table, e / 2 * b, e / 2) for i in range(4)]
    per_tensor += [Pass("sub", e * b, e / 2 * b, e / 2), Pass("add", e * b, e / 2 * b, e / 2),
                   Pass("stack", e * b, e * b, 0)]
    fwd = per_tensor * 2  # q and k
    return fwd + (fwd if train else [])


def _cross_entropy(impl: str, m: int, v: int, b: int, train: bool) -> list[Pass]:
    nv = m * v  # logits (m tokens, v vocabulary) in the activation dtype; targets int64
    if impl == "fused":
        # pass 1 over each row: online max and sum of exp; pass 2: write d(loss_sum)/d(logits). Backward
        # scales that gradient by grad_output / n_valid (a read and a write of the logits' size).
        if not train:  # loss only: a single online-softmax pass
            return [Pass("online softmax", nv * b + m * 8, m * FP32, 5 * nv)]
        return [Pass("online softmax + grad", 2 * nv * b + m * 8, nv * b + m * FP32, 6 * nv),
                Pass("bwd: grad x scale", nv * b, nv * b, nv)]
    fwd = [Pass("log_softmax", nv * b, nv * b, 4 * nv), Pass("nll_loss", m * b + m * 8, FP32, m)]
    bwd = [Pass("nll bwd: zeros + scatter", m * 8, nv * b, m),
           Pass("log_softmax bwd", 2 * nv * b, nv * b, 3 * nv)]
    return fwd + (bwd if train else [])


def default_chunk(m: int, n: int, v: int) -> int:
    """Tokens per chunk of fused linear cross-entropy: next power of two of m / min(ceil(v / n), 8), at most m,
    so that a chunk's logits (chunk, v) are about as large as the hidden states (m, n) but there are never more
    than 8 chunks (mirrors fused_linear_cross_entropy.default_chunk_size; a test keeps them equal)."""
    return min(m, 1 << max(0, (-(-m // min(-(-v // n), 8)) - 1).bit_length()))


def _linear_cross_entropy(impl: str, m: int, n: int, v: int, b: int, train: bool,
                          chunk: int | None = None) -> list[Pass]:
    mm = 2 * m * n * v  # FLOPs of one of the three (m, n) x (n, v) matmuls
    if impl == "eager":
        fwd = [Pass("logits = h @ W.T", (m * n + v * n) * b, m * v * b, mm)] + _cross_entropy("eager", m, v, b, False)
        bwd = _cross_entropy("eager", m, v, b, True)[2:] + [
            Pass("dh = dlogits @ W", (m * v + v * n) * b, m * n * b, mm),
            Pass("dW = dlogits.T @ h", (m * v + m * n) * b, v * n * b, mm)]
        return fwd + (bwd if train else [])
    # fused: gradients are made in the forward, chunk by chunk; every chunk re-reads W and updates the fp32
    # dW accumulator, which is what chunking costs. Backward scales dh and dW by grad_output / n_valid.
    chunks = -(-m // (chunk or default_chunk(m, n, v)))
    logits = Pass("chunk logits", m * n * b + chunks * v * n * b, m * v * b, mm)
    if not train:  # loss only: one online-softmax pass over each chunk's logits
        return [logits, Pass("chunk CE (loss only)", m * v * b + m * 8, m * FP32, 5 * m * v)]
    return [logits,
            Pass("chunk CE, grad in place", 2 * m * v * b + m * 8, m * v * b, 6 * m * v),
            Pass("chunk dh", (m * v + chunks * v * n) * b, m * n * b, mm),
            Pass("chunk dW +=", (m * v + m * n) * b + chunks * v * n * FP32, chunks * v * n * FP32, mm)]


def _matmul(m: int, n: int, b: int, train: bool) -> list[Pass]:
    # (m, n) @ (n, n): one kernel either way; for contrast
    fwd = [Pass("y = x @ W", (m * n + n * n) * b, m * n * b, 2 * m * n * n)]
    bwd = [Pass("dx = dy @ W.T", (m * n + n * n) * b, m * n * b, 2 * m * n * n),
           Pass("dW = x.T @ dy", 2 * m * n * b, n * n * b, 2 * m * n * n)]
    return fwd + (bwd if train else [])


def op_cost(op: str, impl: str, rows: int, hidden: int, dtype_bytes: int = 2, vocab: int = 50304,
            phase: str = "train") -> OpCost:
    """Bytes and FLOPs of `op` over (rows, hidden) activations, as eager PyTorch or as one fused kernel.

    rows: tokens (batch x sequence); hidden: the row width (the model width for rmsnorm, rope and the linear
    cross-entropy's input; the MLP width for swiglu); vocab: the cross-entropies' vocabulary; dtype_bytes: 2 for
    bf16/fp16, 4 for fp32; phase: "forward" or "train" (forward + backward).
    """
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; choose one of {', '.join(OPS)}")
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r} must be one of {', '.join(IMPLS)}")
    if phase not in PHASES:
        raise ValueError(f"phase={phase!r} must be 'forward' or 'train' (forward + backward)")
    m, n, v = _count("rows", rows), _count("hidden", hidden), _count("vocab", vocab)
    if dtype_bytes not in (1, 2, 4, 8):
        raise ValueError(f"dtype_bytes={dtype_bytes!r} must be 1, 2, 4 or 8 (bytes per element: bf16 is 2)")
    b, train = dtype_bytes, phase == "train"
    eager = impl == "eager"
    # largest intermediate tensor, besides inputs and outputs: what a memory profile sees on top of the model
    if op == "rmsnorm":
        passes, largest = _rmsnorm(impl, m, n, b, train), m * n * b * eager  # x.pow(2)
    elif op == "swiglu":
        passes, largest = _swiglu(impl, m, n, b, train), m * n * b * eager  # silu(a), kept for backward
    elif op == "rope":
        passes, largest = _rope(impl, m, n, b, train), m * n * b / 2 * eager  # x_even * cos, a half
    elif op == "cross_entropy":  # eager: the log-probs; fused: the gradient buffer it writes in forward
        passes, largest = _cross_entropy(impl, m, v, b, train), m * v * b * (eager or train)
    elif op == "linear_cross_entropy":  # eager: the (N, V) logits; fused: one chunk of them
        passes = _linear_cross_entropy(impl, m, n, v, b, train)
        largest = m * v * b if eager else default_chunk(m, n, v) * v * b
    else:
        passes, largest = _matmul(m, n, b, train), 0
    return OpCost(op, impl, phase, tuple(passes), largest)


def fusion_speedup(op: str, device: str | Device, **shape) -> float:
    """Predicted eager time / fused time of `op` on `device` (shape: op_cost's keyword arguments)."""
    return op_cost(op, "eager", **shape).time(device) / op_cost(op, "fused", **shape).time(device)


def roofline_table(device: str | Device, rows: int, hidden: int, dtype_bytes: int = 2, vocab: int = 50304,
                   phase: str = "train", ops: tuple[str, ...] = OPS) -> list[dict]:
    """One row per op: kernels, GB moved, GFLOPs, intensity, bound and predicted ms for eager and fused."""
    d = get_device(device)
    out = []
    for op in ops:
        eager, fused = (op_cost(op, impl, rows, hidden, dtype_bytes, vocab, phase) for impl in IMPLS)
        out.append({
            "op": op, "eager kernels": len(eager.passes), "fused kernels": len(fused.passes),
            "eager GB": eager.bytes / 1e9, "fused GB": fused.bytes / 1e9, "GFLOP": fused.flops / 1e9,
            "fused FLOP/byte": fused.intensity,
            "bound": "compute" if fused.intensity > d.ridge else "memory",
            "eager ms": eager.time(d) * 1e3, "fused ms": fused.time(d) * 1e3,
            "speedup": eager.time(d) / fused.time(d),
        })
    return out


# ----------------------------------------------------------------------------------------- the chapter's prose

LLAMA_8B_STEP = dict(rows=8192, hidden=4096, vocab=128256)  # chapter 08's shape: 8 x 1024 tokens, width 4096, bf16


def chapter_numbers(device: str = "H100 SXM") -> dict:
    """The model's numbers that chapter 08's markdown quotes, for its keys `@book.ch08_kernels.studies:
    chapter_numbers/PATH` (book/prose.py): the Llama-3-8B-sized training step of `LLAMA_8B_STEP` on `device`.
    No GPU record exists; these are the roofline predictions the chapter's code cells print."""
    d, s = get_device(device), LLAMA_8B_STEP
    m, n, v, b = s["rows"], s["hidden"], s["vocab"], 2
    cost = {op: {impl: op_cost(op, impl, **s) for impl in IMPLS} for op in OPS}
    memory_bound = ("rmsnorm", "swiglu", "rope", "cross_entropy")
    rms_fwd = op_cost("rmsnorm", "eager", m, n, phase="forward")
    # Liger-Kernel's chunk rule without minillm's cap of 8 chunks: next power of two of m / ceil(v / n)
    liger = lambda m_, n_, v_: min(m_, 1 << max(0, (-(-m_ // -(-v_ // n_)) - 1).bit_length()))  # noqa: E731
    lce_time = lambda chunk=None: sum(roofline_time(p.bytes, p.flops, d)  # noqa: E731
                                      for p in _linear_cross_entropy("fused", m, n, v, b, True, chunk))
    lce_e, lce_f = cost["linear_cross_entropy"]["eager"], cost["linear_cross_entropy"]["fused"]
    matmul_flops = 3 * 2 * m * n * v  # logits, dh, dW
    return {
        "ridge": d.ridge,
        "speedup": {op: fusion_speedup(op, d, **s) for op in OPS},
        # bytes moved over one activation-sized tensor (rows x hidden in bf16): "28 passes down to 5"
        "passes": {op: {impl: c.bytes / (m * n * b) for impl, c in cost[op].items()} for op in ("rmsnorm",)},
        "rmsnorm_eager_kernels": {"forward": len(rms_fwd.passes),
                                  "backward": len(cost["rmsnorm"]["eager"].passes) - len(rms_fwd.passes)},
        "memory_bound_intensity": {"min": min(cost[op]["fused"].intensity for op in memory_bound),
                                   "max": max(cost[op]["fused"].intensity for op in memory_bound)},
        "matmul_64_rows_intensity": op_cost("matmul", "fused", 64, n).intensity,
        "llama3_8b_logits_gb": 8 * 8192 * v * FP32 / 1e9,  # 8 sequences of 8192 tokens, fp32 logits
        "linear_ce": {
            "eager_largest_gb": lce_e.largest_buffer / 1e9, "fused_largest_gb": lce_f.largest_buffer / 1e9,
            "bytes_ratio": lce_f.bytes / lce_e.bytes,
            "matmul_tflop": matmul_flops / 1e12, "matmul_ms": matmul_flops / d.peak_flops * 1e3,
            "liger_chunks": -(-m // liger(m, n, v)), "liger_chunks_gpt2": -(-m // liger(m, 768, 50257)),
            "liger_slowdown": lce_time(liger(m, n, v)) / lce_e.time(d),
        },
    }
