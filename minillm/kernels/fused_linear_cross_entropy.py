"""The output layer and its cross-entropy, fused and chunked over tokens: the (N, V) logits never exist.

Survey §4.3 (efficient training). loss = CE(hidden @ weight.T, targets) with hidden (N, C) and weight (V, C).
At GPT-2's V = 50304 and N = 8 * 1024 tokens, the fp32 logits are 1.6 GB and their gradient as much again,
more than all the activations of a small model: the largest tensor of training is one nobody needs to keep.

For each chunk of c tokens (the idea of Liger-Kernel's FusedLinearCrossEntropy, written afresh):
    logits_c  = hidden_c @ weight.T          (c, V)  the only vocabulary-wide buffer
    loss     += CE step on logits_c          which also overwrites logits_c with d(summed loss)/d logits_c
    grad_hidden_c  = grad_logits_c @ weight  (c, C)
    grad_weight   += grad_logits_c.T @ hidden_c   (V, C), accumulated in fp32
Every chunk's gradient is final when it is computed, up to one factor: forward does all the work, and backward
only multiplies the saved grad_hidden (N, C) and grad_weight (V, C) by grad_output / n_valid (n_valid: the
scored tokens of the whole batch), in fp32. The chunks hold the gradient of the SUM, in [-1, 1] per logit, not
of the mean: in fp16 the mean's softmax / n_valid underflows to zero before a GradScaler's scale can lift it
(see cross_entropy.py). Under autocast the weight is cast once per call, not once per chunk, and each chunk's
weight gradient is added into the fp32 accumulator by the matmul itself (no (V, C) temporary).
Peak extra memory is one (c, V) chunk instead of (N, V) logits + their gradient; the default c makes a chunk of
logits about as large as `hidden` (c = N / ceil(V / C), to a power of two). The matmuls are the same FLOPs as
unfused; nothing is recomputed, since backward needs nothing that forward did not already produce.

Two CE steps share the one loop (`chunked_forward(..., ce_step)`):
    triton_ce_step  the online-softmax kernel of cross_entropy.py, in place on the chunk (GPU, or interpreter)
    torch_ce_step   the same maths in PyTorch ops: runs on any CPU, so the memory saving can be shown on a laptop
`peak_intermediate_numel` measures that saving honestly, by watching every aten op's output size.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from minillm.kernels import runtime

if runtime.triton_installed():  # the torch path works without triton (e.g. on a Mac); the Triton path needs it
    from minillm.kernels.cross_entropy import JIT_MODE, cross_entropy_forward  # no kernels here: it launches cross_entropy's
else:
    JIT_MODE = runtime.current_mode()

# (logits_c (c, V), targets_c (c,), ignore_index, label_smoothing, write_grad) -> (loss_sum, lse (c,))
CEStep = Callable[[torch.Tensor, torch.Tensor, int, float, bool], tuple[torch.Tensor, torch.Tensor]]


def linear_cross_entropy_reference(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                   ignore_index: int = -100, label_smoothing: float = 0.0) -> torch.Tensor:
    """The unfused definition: the full (N, V) logits, then F.cross_entropy in fp32 (nan if all are ignored)."""
    return torch.nn.functional.cross_entropy((hidden @ weight.T).float(), targets, ignore_index=ignore_index,
                                             label_smoothing=label_smoothing, reduction="mean")


def torch_ce_step(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, label_smoothing: float,
                  write_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The CE step in PyTorch ops: (loss_sum, lse), and d(loss_sum)/d logits written into logits."""
    eps = float(label_smoothing)
    x = logits.float()  # (c, V)
    lse = torch.logsumexp(x, dim=-1)  # (c,)
    valid = targets != ignore_index  # (c,)
    t = torch.where(valid, targets, 0)[:, None]  # (c, 1): a safe index for ignored rows
    loss = (1 - eps) * (lse - x.gather(1, t).squeeze(1)) + eps * (lse - x.mean(dim=-1))  # (c,)
    loss_sum = torch.where(valid, loss, 0.0).sum()
    if write_grad:
        g = torch.exp(x - lse[:, None]) - eps / x.shape[1]  # softmax - eps/V
        g.scatter_add_(1, t, torch.full_like(t, -(1 - eps), dtype=g.dtype))  # - (1 - eps) * onehot
        g.masked_fill_(~valid[:, None], 0.0)  # ignored rows: 0 (the mean's 1/n_valid comes in backward)
        logits.copy_(g)
    return loss_sum, lse


def triton_ce_step(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, label_smoothing: float,
                   write_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The CE step as the Triton kernel of cross_entropy.py, writing the gradient over the logits in place."""
    return cross_entropy_forward(logits, targets, ignore_index, label_smoothing, logits if write_grad else None)


MAX_CHUNKS = 8  # every chunk re-reads W and updates the (V, C) fp32 dW accumulator: more chunks, more traffic


def default_chunk_size(n_tokens: int, vocab_size: int, hidden_dim: int) -> int:
    """Tokens per chunk: a chunk of logits (c, V) about as large as the hidden states (N, C), as Liger-Kernel
    chooses, but never more than MAX_CHUNKS chunks. At GPT-2 sizes the first rule alone gives 64 chunks of 128
    tokens: small matmuls and 64 passes over W and dW, slower than eager. With at most 8 chunks the logits that
    exist at once are still <= 1/8 of eager's (N, V)."""
    ratio = min(-(-vocab_size // max(hidden_dim, 1)), MAX_CHUNKS)  # ceil(V / C), capped
    chunk = -(-n_tokens // ratio)
    return max(1, min(1 << max(0, (chunk - 1).bit_length()), n_tokens))  # next power of two, within [1, N]


def check_inputs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int,
                 label_smoothing: float, chunk_size: int | None) -> None:
    """One clear error for each way the arguments can be wrong (target range checked on CPU only: no sync)."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"expected hidden (N, C) and weight (V, C), got {tuple(hidden.shape)} and "
                         f"{tuple(weight.shape)}; flatten the leading dims of hidden with .view(-1, C)")
    if weight.shape[0] == 0:
        raise ValueError("the vocabulary is empty: weight has shape (0, C)")
    if not hidden.is_floating_point() or (hidden.dtype != weight.dtype
                                          and not torch.is_autocast_enabled(hidden.device.type)):
        raise TypeError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) must be the same floating-point "
                        "dtype (or run under torch.autocast)")
    if hidden.device != weight.device or targets.device != hidden.device:
        raise ValueError(f"hidden ({hidden.device}), weight ({weight.device}) and targets ({targets.device}) "
                         "must be on one device")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"expected targets of shape ({hidden.shape[0]},) to match hidden "
                         f"{tuple(hidden.shape)}, got {tuple(targets.shape)}; flatten with targets.view(-1)")
    if targets.dtype != torch.int64:
        raise TypeError(f"expected int64 targets (class indices), got {targets.dtype}; use targets.long()")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing!r} must be a number in [0, 1)")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size={chunk_size!r} must be a positive int (tokens per chunk) or None")
    if targets.device.type == "cpu" and targets.numel():
        bad = (targets != ignore_index) & ((targets < 0) | (targets >= weight.shape[0]))
        if bad.any():
            raise ValueError(f"targets must be class indices in [0, {weight.shape[0]}) or ignore_index="
                             f"{ignore_index}; found {targets[bad][0].item()} at position "
                             f"{bad.nonzero()[0, 0].item()}")


def matmul_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The dtype `hidden @ weight.T` computes in: autocast's where it is on (for this device), else hidden's."""
    device_type = hidden.device.type
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else hidden.dtype


def add_weight_grad(grad_weight: torch.Tensor, grad_logits: torch.Tensor, h: torch.Tensor) -> None:
    """grad_weight (V, C) fp32 += grad_logits (c, V).T @ h (c, C), with no (V, C) temporary.

    fp32 inputs: addmm_ in place. fp16/bf16 on CUDA: cuBLAS accumulates in fp32 and adds into the fp32 buffer
    (addmm's out_dtype). Other devices have no such mixed matmul: the chunk (c, V) and h go to fp32 first, which
    rounds less than a 16-bit product would and still makes nothing of the weight's size.
    """
    if grad_logits.dtype == grad_weight.dtype:
        grad_weight.addmm_(grad_logits.T, h)
    elif grad_logits.is_cuda:
        torch.addmm(grad_weight, grad_logits.T, h, out_dtype=grad_weight.dtype, out=grad_weight)
    else:
        grad_weight.addmm_(grad_logits.T.to(grad_weight.dtype), h.to(grad_weight.dtype))


def chunked_forward(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int,
                    label_smoothing: float, chunk_size: int | None, ce_step: CEStep, grad_hidden_needed: bool = True,
                    grad_weight_needed: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The one loop over token chunks. Returns (loss_sum, n_valid, grad_hidden (N, C), grad_weight (V, C)).

    loss_sum: fp32 scalar over the scored tokens; n_valid: their number (fp32 device scalar, >= 1: the mean of
    none is 0, not 0/0). The gradients are of loss_sum, to be scaled by grad_output / n_valid in backward:
    grad_hidden in hidden's dtype, grad_weight in fp32. None where not needed (then no backward matmuls run,
    and with neither needed the CE step skips its gradient pass: evaluation costs the matmul and the CE only).
    """
    n_tokens, n_vocab = targets.shape[0], weight.shape[0]
    chunk = chunk_size or default_chunk_size(n_tokens, n_vocab, hidden.shape[1])
    write_grad = grad_hidden_needed or grad_weight_needed
    n_valid = (targets != ignore_index).sum().clamp_min(1).to(torch.float32)  # whole batch
    grad_hidden = torch.empty_like(hidden) if grad_hidden_needed else None  # (N, C)
    grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if grad_weight_needed \
        else None  # (V, C): fp32, since it sums N / c partial products
    loss_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
    dtype = matmul_dtype(hidden)
    w = weight.to(dtype)  # (V, C): cast once here; under autocast every chunk's two matmuls would cast it again
    with torch.autocast(hidden.device.type, enabled=False):  # the casts are explicit from here on
        for start in range(0, n_tokens, chunk):
            h = hidden[start:start + chunk].to(dtype)  # (c, C)
            logits = h @ w.T  # (c, V), overwritten by its own gradient below
            loss_c, _ = ce_step(logits, targets[start:start + chunk], ignore_index, label_smoothing, write_grad)
            loss_sum += loss_c
            if grad_hidden_needed:
                grad_hidden[start:start + chunk] = logits @ w  # (c, C); |.| <= 2 max|w|: no fp16 overflow
            if grad_weight_needed:
                add_weight_grad(grad_weight, logits, h)
    return loss_sum, n_valid, grad_hidden, grad_weight


class LinearCrossEntropyFunction(torch.autograd.Function):
    """Mean CE of hidden @ weight.T, all work done in forward; backward scales the saved gradients (of the sum).

    Like any autograd.Function, one backward per forward unless the graph is retained; with retain_graph=True
    further backward calls give the same gradients again (the saved ones are never modified).
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int,
                label_smoothing: float, chunk_size: int | None, ce_step: CEStep, grad_enabled: bool) -> torch.Tensor:
        # needs_input_grad is True under torch.no_grad() too; grad_enabled (read before apply) tells them apart
        loss_sum, n_valid, grad_hidden, grad_weight = chunked_forward(
            hidden, weight, targets, ignore_index, label_smoothing, chunk_size, ce_step,
            grad_hidden_needed=grad_enabled and ctx.needs_input_grad[0],
            grad_weight_needed=grad_enabled and ctx.needs_input_grad[1])
        ctx.save_for_backward(grad_hidden, grad_weight, n_valid)
        ctx.weight_dtype = weight.dtype
        return loss_sum / n_valid

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_hidden, grad_weight, n_valid = ctx.saved_tensors
        # grad_weight stays fp32 until here: the sum over N tokens may exceed fp16's range before the 1/n_valid
        return (runtime.scale_saved_grad(grad_hidden, grad_output, n_valid),
                runtime.scale_saved_grad(grad_weight, grad_output, n_valid, ctx.weight_dtype),
                None, None, None, None, None, None)


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                               ignore_index: int = -100, label_smoothing: float = 0.0,
                               chunk_size: int | None = None) -> torch.Tensor:
    """Mean CE of hidden (N, C) @ weight (V, C).T against int64 targets (N,), with the Triton CE kernel.

    Returns an fp32 scalar; 0 with zero gradients when every target is ignored (torch would give nan).
    chunk_size: tokens per chunk (default: `default_chunk_size`); any value gives the same result.
    """
    runtime.require_triton()
    runtime.check_runnable(hidden, JIT_MODE, "fused linear cross-entropy")
    check_inputs(hidden, weight, targets, ignore_index, label_smoothing, chunk_size)
    return LinearCrossEntropyFunction.apply(hidden, weight, targets, ignore_index, label_smoothing, chunk_size,
                                            triton_ce_step, torch.is_grad_enabled())


def chunked_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                 ignore_index: int = -100, label_smoothing: float = 0.0,
                                 chunk_size: int | None = None) -> torch.Tensor:
    """The same chunked algorithm with the CE step in PyTorch ops: any device, no Triton needed."""
    check_inputs(hidden, weight, targets, ignore_index, label_smoothing, chunk_size)
    return LinearCrossEntropyFunction.apply(hidden, weight, targets, ignore_index, label_smoothing, chunk_size,
                                            torch_ce_step, torch.is_grad_enabled())


class _LargestOutput(TorchDispatchMode):
    """Records the largest new tensor any aten op returns.

    Returns that alias an input (views such as .T or slicing, in-place ops, out= ops) allocate nothing; the
    op's schema says which they are, e.g. `t(Tensor(a) self) -> Tensor(a)`, `add_(Tensor(a!) self, ...)`.
    """

    def __init__(self, exclude_shapes: Iterable[tuple[int, ...]]):
        super().__init__()
        self.exclude = {tuple(s) for s in exclude_shapes}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        outs = out if isinstance(out, (tuple, list)) and len(returns) > 1 else (out,)
        for ret, t in zip(returns, outs):
            if ret.alias_info is not None:
                continue
            for x in tree_flatten(t)[0]:
                if isinstance(x, torch.Tensor) and tuple(x.shape) not in self.exclude:
                    self.peak = max(self.peak, x.numel())
        return out


def peak_intermediate_numel(fn: Callable, *args, exclude_shapes: Iterable[tuple[int, ...]] = (), **kwargs) -> int:
    """Elements in the largest tensor that any aten op creates while fn(*args, **kwargs) runs (on any device).

    An honest, device-independent stand-in for peak memory: it sees every PyTorch op, including those of a
    backward run inside fn, so an (N, V) logits tensor cannot hide. Outputs that alias an input (views, in-place
    and out= ops) are skipped, since they allocate nothing, and so are outputs whose shape is in `exclude_shapes`
    (e.g. the weight's (V, C): every method must make the weight's gradient).
    Triton kernels are not aten ops; they allocate nothing themselves (their buffers come from PyTorch).
        peak_intermediate_numel(lambda: chunked_linear_cross_entropy(h, w, t, chunk_size=8).backward())
    """
    with _LargestOutput(exclude_shapes) as mode:
        fn(*args, **kwargs)
    return mode.peak
