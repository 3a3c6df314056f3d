"""Mixed precision: which number format the math runs in, and what that costs in memory.

Survey §4.3.2 (scalable training techniques, mixed precision training): training in 16-bit halves the memory
and bandwidth of activations and runs matmuls on tensor cores, while the weights and Adam's moments stay in
fp32 so that small updates are not rounded away. Two 16-bit formats matter:

- bf16 keeps fp32's 8 exponent bits (same range, fewer mantissa bits): gradients cannot overflow or vanish
  more than in fp32, so nothing else is needed. The default on CUDA.
- fp16 has 5 exponent bits: small gradients underflow to 0. A `GradScaler` multiplies the loss by a large
  factor before backward and divides the gradients by it before the optimizer step, lowering the factor
  whenever an inf/NaN appears (and skipping that step).

`PrecisionPolicy` packages this for the training loop; `param_bytes` / `memory_estimate` do the memory
arithmetic used in chapter 05 ("how many GB to train a 7B model?").
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from minillm.device import autocast_dtype

_DTYPE_BYTES = {
    torch.float64: 8, torch.float32: 4, torch.bfloat16: 2, torch.float16: 2, torch.int8: 1, torch.uint8: 1,
}
_NAMED = {"fp64": torch.float64, "fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16,
          "fp16": torch.float16, "int8": torch.int8}
# Extra bytes per parameter the optimizer keeps in fp32 (Adam: first and second moment; SGD with momentum: one).
_OPTIMIZER_BYTES = {"adamw": 8, "adam": 8, "sgd": 4, "none": 0}


def param_bytes(dtype: torch.dtype | str) -> int:
    """Bytes one number takes: 4 for fp32, 2 for bf16/fp16, 1 for int8. Accepts a torch dtype or a name."""
    if isinstance(dtype, str):
        if dtype not in _NAMED:
            raise ValueError(f"unknown dtype name {dtype!r}; choose one of {', '.join(_NAMED)}")
        dtype = _NAMED[dtype]
    if dtype not in _DTYPE_BYTES:
        raise ValueError(f"no byte size known for {dtype}; known: {', '.join(map(str, _DTYPE_BYTES))}")
    return _DTYPE_BYTES[dtype]


def memory_estimate(n_params: int, precision: str = "bf16", optimizer: str = "adamw") -> dict[str, int]:
    """Bytes of model state (weights, gradients, optimizer) for training `n_params` parameters.

    Accounting as in the ZeRO paper (Rajbhandari et al. 2020), which Survey §4.3.2 builds on:
      - fp32:             weights 4 + grads 4 + optimizer (Adam m, v: 8)            = 16 bytes/param
      - bf16/fp16 mixed:  16-bit weights 2 + 16-bit grads 2 + fp32 master weights 4 + Adam 8 = 16 bytes/param
    Mixed precision saves activation memory and time, not model-state memory. (torch autocast, used by the
    Trainer, keeps fp32 weights and grads and casts on the fly: 4 + 4 + 8, the same 16 bytes.)
    `optimizer='none'` means inference: weights only, no gradients (bf16 serving: 2 bytes/param).
    Activations, temporary buffers and the KV cache come on top and are not counted here.
    """
    if isinstance(n_params, bool) or not isinstance(n_params, int) or n_params < 0:
        raise ValueError(f"n_params={n_params!r} must be a non-negative integer")
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision={precision!r} is not valid; choose fp32, bf16 or fp16")
    if optimizer not in _OPTIMIZER_BYTES:
        raise ValueError(f"optimizer={optimizer!r} is not valid; choose one of {', '.join(_OPTIMIZER_BYTES)}")
    w = param_bytes(precision)
    training = optimizer != "none"
    mixed = precision != "fp32" and training
    out = {
        "weights": n_params * w,
        "grads": n_params * w if training else 0,
        "master_weights": n_params * 4 if mixed else 0,  # fp32 copy the optimizer updates
        "optimizer": n_params * _OPTIMIZER_BYTES[optimizer],
    }
    out["total"] = sum(out.values())
    return out


@dataclass
class PrecisionPolicy:
    """Autocast + (for fp16) loss scaling, chosen once from `precision` and the device.

    Usage inside a training step (the order matters with fp16: unscale before clipping, so the clip
    threshold applies to the true gradients):

        with policy.autocast():
            _, loss = model(x, y)
        policy.backward(loss)
        policy.unscale_(optimizer)
        clip_grad_norm_(model.parameters(), 1.0)
        policy.step(optimizer)
    """

    precision: str = "auto"  # auto | fp32 | bf16 | fp16, as in TrainConfig.precision
    device: torch.device | str = "cpu"
    dtype: torch.dtype | None = field(init=False)  # autocast dtype; None = plain fp32
    scaler: torch.amp.GradScaler | None = field(init=False)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.dtype = autocast_dtype(self.precision, self.device)  # raises for fp16 off CUDA
        self.scaler = torch.amp.GradScaler(self.device.type) if self.dtype == torch.float16 else None

    def autocast(self):
        """Context manager for the forward pass (and loss): ops run in `dtype` where that is safe."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """loss.backward(), scaling the loss first under fp16 so small gradients do not underflow."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the loss scale (fp16 only) so clipping and logging see true values."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """optimizer.step(); under fp16 the scaler skips the step when grads hold inf/NaN, then adapts the scale."""
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def skip(self, optimizer: torch.optim.Optimizer) -> None:
        """Drop this step's update (used for a non-finite loss); keeps the scaler's bookkeeping consistent."""
        if self.scaler is not None:
            self.scaler.update()  # unscale_ was called this step: update() resets that and lowers the scale

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
