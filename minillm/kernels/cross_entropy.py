"""Cross-entropy over a large vocabulary in Triton: online softmax, with the gradient written in the forward pass.

Survey §4.3 (efficient training). The output layer of a language model scores every token of the vocabulary
(V = 32k..256k), so the logits (N, V) are the largest activation of the model and cross-entropy is pure
memory traffic. Eager PyTorch reads them for a max, again for exp/sum, writes log-softmax, and backward reads
and writes (N, V) twice more. Here one program per row reads the row twice and writes its gradient once.

Per row x (V,) with target t, in blocks of BLOCK columns:
  pass 1, online softmax (Milakov & Gimelshein 2018): keep a running max m and d = sum_j exp(x_j - m); when a
          block raises the max to m', rescale d by exp(m - m') first. Then lse = m + log d, and
              loss = (1 - eps) * (lse - x_t) + eps * (lse - mean_j x_j)
          which is torch's label smoothing (eps/V of the target mass spread over every class; eps = 0: plain NLL).
  pass 2, the gradient of the row's loss (of the SUM over rows, not yet of the mean), written straight away:
              d loss / d x_j = softmax_j - eps / V - (1 - eps) * [j == t]          in [-1, 1]
          and backward is a single multiply by grad_output / n_valid, in fp32 (`runtime.scale_saved_grad`).
Why the sum and not the mean: the gradient is stored in the logits' dtype, and in fp16 (5 exponent bits) the
mean's softmax_j / n_valid is below fp16's smallest number (6e-8) for most classes (1/V / n_valid ~ 1.5e-8 at
V = 4096, n_valid = 16384), so it flushed to zero before a GradScaler's scale could lift it. Unnormalised, a
probability keeps fp16's full precision down to 6e-5 and is nonzero down to 3e-8 (torch's own fp16 gradient
under a GradScaler, scale / n_valid * softmax_j, has the same limits at scale = n_valid), and 1/n_valid meets
the scale in fp32, in backward.
The gradient may overwrite the logits themselves (`grad_buffer=logits`): no second (N, V) buffer at all, which
fused_linear_cross_entropy does on its own chunk of logits. The public function writes a new buffer, because
the caller may still need the logits (e.g. to sample from them).

Rows whose target is `ignore_index` (prompt tokens in SFT, padding) get loss 0 and gradient 0. Unlike torch,
when EVERY row is ignored the mean loss is 0 with a zero gradient, not 0/0 = nan: a batch of only prompt
tokens must not put NaN into the weights. bf16/fp16 logits are read as fp32; the gradient is stored in the
logits' dtype (see above for fp16). The launcher also returns lse (N,) fp32 for every row, ignored ones
included: the model's z-loss (PaLM) is mean(lse^2) over the scored rows, at no extra cost.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from minillm.kernels import runtime

JIT_MODE = runtime.current_mode()  # fixed now: @triton.jit below decides interpreter vs compiled at import

# Columns per loop trip, and warps per program. On a GPU a wider block means fewer trips, but each live (BLOCK,)
# fp32 vector takes BLOCK / (32 * warps) registers per thread: 32768 columns over 32 warps spilled registers to
# local memory on sm_90a, while 8192 over 16 warps (16 registers per vector) does not. So the block stops at
# 8192 and a larger vocabulary takes more trips (7 at GPT-2's V = 50304, 16 at Llama 3's 128256); the loads of
# one trip are independent of the last, so the extra trips cost little. In the interpreter every trip is slow
# Python, but a small block makes the tests go round the loop (and cross block edges) with V of a few hundred.
MAX_BLOCK_GPU = 8192
NUM_WARPS_GPU = 16  # for MAX_BLOCK_GPU; narrower blocks use runtime.num_warps
MAX_BLOCK_INTERPRETER = 128


def cross_entropy_reference(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
                            label_smoothing: float = 0.0) -> torch.Tensor:
    """The PyTorch definition the kernel is tested against: mean over non-ignored rows, in fp32.

    torch returns nan when every row is ignored; so does this reference (the kernel returns 0, see above).
    """
    return torch.nn.functional.cross_entropy(logits.float(), targets, ignore_index=ignore_index,
                                             label_smoothing=label_smoothing, reduction="mean")


@triton.jit
def _cross_entropy_kernel(X, x_stride, G, g_stride, T, LOSS, LSE, n_cols, ignore_index, eps,
                          WRITE_GRAD: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)  # int64: row * stride overflows int32 past 2^31 elements (N * V!)
    X += row * x_stride
    t = tl.load(T + row)
    valid = t != ignore_index

    # Pass 1: running max m, running sum d of exp(x - m), the target's logit, and the row sum for smoothing.
    m = float("-inf")
    d = 0.0
    x_t = 0.0
    x_sum = 0.0
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(X + cols, mask=mask, other=float("-inf")).to(tl.float32)  # tail lanes: exp(-inf) = 0
        m_new = tl.maximum(m, tl.max(x, axis=0))
        d = d * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)  # old terms were relative to m
        m = m_new
        # Pick x[t] with a compare, not a load at X + t: an out-of-range target (unchecked on CUDA, to avoid a
        # sync) then reads nothing out of bounds.
        x_t += tl.sum(tl.where(cols == t, x, 0.0), axis=0)
        x_sum += tl.sum(tl.where(mask, x, 0.0), axis=0)
    lse = m + tl.log(d)
    loss = (1.0 - eps) * (lse - x_t) + eps * (lse - x_sum / n_cols)
    tl.store(LSE + row, lse)
    tl.store(LOSS + row, tl.where(valid, loss, 0.0))

    # Pass 2: d(row loss)/dx, with x re-read (cheaper than keeping a whole vocabulary row on chip). Not divided
    # by n_valid: in [-1, 1] it fits fp16 (see the module docstring); backward applies grad_output / n_valid.
    if WRITE_GRAD:
        G += row * g_stride
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < n_cols
            x = tl.load(X + cols, mask=mask, other=0.0).to(tl.float32)
            g = tl.exp(x - lse) - eps / n_cols - tl.where(cols == t, 1.0 - eps, 0.0)
            g = tl.where(valid, g, 0.0)  # where, not * 0: an ignored row of inf logits stays 0
            tl.store(G + cols, g.to(G.dtype.element_ty), mask=mask)  # G may be X: this block is read already


def check_inputs(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, label_smoothing: float,
                 what: str = "logits") -> None:
    """One clear error for each way the arguments can be wrong; the range of targets is checked on CPU only."""
    if logits.dim() != 2:
        raise ValueError(f"cross_entropy expects {what} of shape (N, V), got {tuple(logits.shape)}; "
                         f"flatten the leading dims first, e.g. {what}.view(-1, {what}.size(-1))")
    if logits.shape[1] == 0:
        raise ValueError(f"cross_entropy needs at least one class, got {what} of shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"cross_entropy expects floating-point {what}, got {logits.dtype}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy expects targets of shape ({logits.shape[0]},) to match {what} "
                         f"{tuple(logits.shape)}, got {tuple(targets.shape)}; flatten with targets.view(-1)")
    if targets.dtype != torch.int64:
        raise TypeError(f"cross_entropy expects int64 targets (class indices), got {targets.dtype}; "
                        "convert with targets.long()")
    if targets.device != logits.device:
        raise ValueError(f"targets are on {targets.device} but {what} on {logits.device}; move them together")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing!r} must be a number in [0, 1)")
    if targets.device.type == "cpu" and targets.numel():  # on CUDA this check would cost a host sync
        bad = (targets != ignore_index) & ((targets < 0) | (targets >= logits.shape[1]))
        if bad.any():
            raise ValueError(f"targets must be class indices in [0, {logits.shape[1]}) or ignore_index="
                             f"{ignore_index}; found {targets[bad][0].item()} at position "
                             f"{bad.nonzero()[0, 0].item()}")


def count_valid(targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Number of scored rows as an fp32 device scalar, at least 1 (so 'all ignored' gives 0, not 0/0)."""
    return (targets != ignore_index).sum().clamp_min(1).to(torch.float32)


def launch_config(n_cols: int, device: torch.device) -> tuple[int, int]:
    """(block, num_warps) for rows of n_cols classes: the whole row up to the block cap (MAX_BLOCK_*), else trips."""
    if device.type == "cuda" and JIT_MODE == "compiled":
        block = min(triton.next_power_of_2(n_cols), MAX_BLOCK_GPU)
        return block, NUM_WARPS_GPU if block == MAX_BLOCK_GPU else runtime.num_warps(block)
    block = min(triton.next_power_of_2(n_cols), MAX_BLOCK_INTERPRETER)
    return block, runtime.num_warps(block)


def cross_entropy_forward(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, label_smoothing: float,
                          grad_buffer: torch.Tensor | None,
                          block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the kernel on logits (N, V). Returns (loss_sum, lse).

    loss_sum: fp32 scalar, the SUM of the N row losses (ignored rows count 0); divide by n_valid for the mean.
    lse:      (N,) fp32 log-sum-exp of every row (for a z-loss).
    grad_buffer: (N, V) with unit column stride, written with d(loss_sum)/d logits in its own dtype (divide by
              n_valid for the mean's, in fp32: see `runtime.scale_saved_grad`); it may be `logits` itself (in
              place). None: no gradient pass (evaluation).
    block:    columns per loop trip (a power of two); default by device, see `launch_config`.
    Inputs are not validated here (see `check_inputs`), except that the kernel can run on this device.
    """
    runtime.check_runnable(logits, JIT_MODE, "cross-entropy")
    if logits.stride(-1) != 1:
        if grad_buffer is logits:
            raise ValueError("in-place cross-entropy needs logits with unit column stride; pass .contiguous()")
        logits = logits.contiguous()
    n_rows, n_cols = logits.shape
    if grad_buffer is not None and (grad_buffer.shape != logits.shape or grad_buffer.stride(-1) != 1):
        raise ValueError(f"grad_buffer must have shape {tuple(logits.shape)} and unit column stride, got "
                         f"shape {tuple(grad_buffer.shape)} strides {grad_buffer.stride()}")
    block, num_warps = (block, runtime.num_warps(block)) if block else launch_config(n_cols, logits.device)
    losses = torch.empty(n_rows, dtype=torch.float32, device=logits.device)  # (N,)
    lse = torch.empty(n_rows, dtype=torch.float32, device=logits.device)  # (N,)
    if n_rows:
        g = grad_buffer if grad_buffer is not None else logits  # unused pointer when WRITE_GRAD is False
        with runtime.on_device(logits):
            _cross_entropy_kernel[(n_rows,)](
                logits, logits.stride(0), g, g.stride(0), targets.contiguous(), losses, lse, n_cols,
                ignore_index, float(label_smoothing), WRITE_GRAD=grad_buffer is not None, BLOCK=block,
                num_warps=num_warps)
    return losses.sum(), lse


class CrossEntropyFunction(torch.autograd.Function):
    """Mean cross-entropy whose forward also computes the gradient (of the sum); backward only scales it.

    Like any autograd.Function, one backward per forward unless the graph is retained; with retain_graph=True
    further backward calls return the same (correctly scaled) gradient, since the saved one is never modified.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, ignore_index: int,
                label_smoothing: float, grad_enabled: bool) -> torch.Tensor:
        check_inputs(logits, targets, ignore_index, label_smoothing)
        n_valid = count_valid(targets, ignore_index)
        # needs_input_grad is True under torch.no_grad() too; grad_enabled (read before apply) tells them apart
        needed = grad_enabled and ctx.needs_input_grad[0]
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format) if needed else None
        loss_sum, _ = cross_entropy_forward(logits, targets, ignore_index, label_smoothing, grad)
        ctx.save_for_backward(grad, n_valid)
        return loss_sum / n_valid

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad, n_valid = ctx.saved_tensors
        # Always the multiply: testing grad_output == 1 to skip it would read the device (a sync per step)
        return runtime.scale_saved_grad(grad, grad_output, n_valid), None, None, None, None


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of logits (N, V) against int64 targets (N,), as F.cross_entropy(reduction='mean').

    Returns an fp32 scalar. Differences from torch: 0 (and a zero gradient) when every target is ignored.
    """
    return CrossEntropyFunction.apply(logits, targets, ignore_index, label_smoothing, torch.is_grad_enabled())
