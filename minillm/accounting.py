"""Training accounting: how many GPU-days a run costs, how much memory each GPU holds, how many bytes move.

Survey §2.1 (compute C ≈ 6ND) and §4.3.2 (scalable training: 3D parallelism, ZeRO, mixed precision). The
arithmetic that decides whether a run is feasible, written out so every number can be checked by hand:

- `training_compute`: FLOPs = 6 N D, in PF-days and in GPU-days at a peak throughput (`GPU_SPECS`) times the
  model-FLOPs utilization (MFU) real runs reach, 0.3-0.55.
- `ParallelPlan` + `plan_memory`: bytes per GPU for data (dp), tensor (tp) and pipeline (pp) parallelism with
  ZeRO stage 0-3 (Rajbhandari et al. 2020): mixed precision keeps 2 + 2 + 12 = 16 bytes per parameter (16-bit
  weights and grads; fp32 master weights, Adam m and v); ZeRO-1 shards the 12 across dp, ZeRO-2 also the
  grads, ZeRO-3 also the weights; tp and pp split the model itself. Activations follow Korthikanti et al. 2022.
- `plan_comm`: bytes each GPU sends per optimizer step (ring collectives); `bubble_fraction`: pipeline idle time.

Chapter 05's explorers (`book/ch05_training/plots_accounting.py`) put sliders on these numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from minillm.scaling.laws import FLOPS_PER_PARAM_TOKEN, PF_DAY
from minillm.train.precision import param_bytes


@dataclass(frozen=True)
class GPUSpec:
    """Peak dense 16-bit tensor-core throughput (no 2:4 sparsity) and memory of one accelerator."""

    name: str
    peak_tflops: float
    memory_gib: float
    source: str


GPU_SPECS: dict[str, GPUSpec] = {  # datasheets list 2:4-sparsity figures too (A100 624, H100 1979): halve those
    "A100": GPUSpec("A100", 312.0, 80.0, "NVIDIA A100 Tensor Core GPU datasheet: BF16 tensor core, dense"),
    "H100": GPUSpec("H100", 989.0, 80.0, "NVIDIA H100 datasheet: SXM BF16 1,979 TFLOPS with sparsity / 2"),
    # V100 has no bf16: fp16 tensor cores, so fp16 training with loss scaling (chapter 05 shows the underflow)
    "V100": GPUSpec("V100", 125.0, 32.0, "NVIDIA V100 Tensor Core GPU datasheet: SXM2 FP16 tensor core"),
}


def _pos_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


def _pos_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive finite number")
    return float(value)


def _gpu(name: Any) -> GPUSpec:
    if name not in GPU_SPECS:
        raise ValueError(f"gpu={name!r} is not known; choose one of {', '.join(GPU_SPECS)}")
    return GPU_SPECS[name]


# --------------------------------------------------------------------------------------------- compute


def training_compute(n_params: float, n_tokens: float, gpu: str = "A100", n_gpus: int = 1,
                     mfu: float = 0.4) -> dict[str, float]:
    """FLOPs of training `n_params` on `n_tokens` (6ND) and what they cost on `n_gpus` GPUs at utilization `mfu`.

    pf_days: FLOPs / (1e15 * 86400), Kaplan's and Brown et al.'s unit; gpu_days: FLOPs / (peak * mfu) / 86400,
    the machine time summed over GPUs; wall_days: gpu_days / n_gpus (perfect scaling: the MFU says how far from
    peak each GPU runs, communication and bubbles included).
    """
    n, d = _pos_float("n_params", n_params), _pos_float("n_tokens", n_tokens)
    spec, n_gpus = _gpu(gpu), _pos_int("n_gpus", n_gpus)
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu={mfu!r} must be in (0, 1]: the fraction of peak FLOP/s the run achieves")
    flops = FLOPS_PER_PARAM_TOKEN * n * d
    gpu_days = flops / (spec.peak_tflops * 1e12 * mfu) / 86_400
    return {"flops": flops, "pf_days": flops / PF_DAY, "gpu_days": gpu_days, "wall_days": gpu_days / n_gpus}


# --------------------------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class ParallelPlan:
    """One training step's shape and how it is split over n_gpus = dp * tp * pp GPUs.

    n_params: model parameters; n_layer, hidden, n_head: the transformer's shape (for activations and comm);
    seq_len, micro_batch: tokens per sequence and sequences per micro-batch on one dp rank; n_micro:
    micro-batches per optimizer step (gradient accumulation, and what fills the pipeline).
    zero_stage 0-3 shards optimizer states / + grads / + weights across the dp ranks.
    """

    n_params: int
    n_layer: int
    hidden: int
    n_head: int
    seq_len: int
    micro_batch: int = 1
    n_gpus: int = 1
    dp: int = 1
    tp: int = 1
    pp: int = 1
    n_micro: int = 1
    zero_stage: int = 0
    precision: str = "bf16"
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        for name in ("n_params", "n_layer", "hidden", "n_head", "seq_len", "micro_batch", "n_gpus", "dp", "tp",
                     "pp", "n_micro"):
            _pos_int(name, getattr(self, name))
        if self.dp * self.tp * self.pp != self.n_gpus:
            raise ValueError(f"dp*tp*pp = {self.dp}*{self.tp}*{self.pp} = {self.dp * self.tp * self.pp} must equal "
                             f"n_gpus={self.n_gpus}: every GPU holds exactly one (dp, tp, pp) position")
        if self.hidden % self.n_head or self.n_head % self.tp:
            raise ValueError(f"tp={self.tp} must divide n_head={self.n_head}, and n_head must divide "
                             f"hidden={self.hidden}: tensor parallelism gives each GPU whole attention heads")
        if self.n_layer % self.pp:
            raise ValueError(f"pp={self.pp} must divide n_layer={self.n_layer}: each stage holds whole layers")
        if self.zero_stage not in (0, 1, 2, 3) or isinstance(self.zero_stage, bool):
            raise ValueError(f"zero_stage={self.zero_stage!r} must be 0, 1, 2 or 3")
        if self.precision not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"precision={self.precision!r} is not valid; choose bf16, fp16 or fp32")
        if not isinstance(self.activation_checkpointing, bool):
            raise TypeError(f"activation_checkpointing={self.activation_checkpointing!r} must be a bool")


def state_bytes_per_param(precision: str) -> dict[str, int]:
    """(weights, grads, optimizer) bytes per parameter: mixed 2 + 2 + 12 (fp32 master + Adam m, v); fp32 4 + 4 + 8.

    The same 16 bytes as `precision.memory_estimate` (which lists the fp32 master copy on its own line).
    """
    if precision not in ("bf16", "fp16", "fp32"):
        raise ValueError(f"precision={precision!r} is not valid; choose bf16, fp16 or fp32")
    w = param_bytes(precision)
    return {"weights": w, "grads": w, "optimizer": 8 if precision == "fp32" else 12}


def layer_activation_bytes(plan: ParallelPlan) -> float:
    """Activations one layer stores for one micro-batch, per GPU, without recomputation.

    Korthikanti et al. 2022 eq. 1: s*b*h*(34 + 5*a*s/h) bytes with 16-bit activations. With tensor parallelism
    plus sequence parallelism (their §4.2.2, eq. 5) every term is split: divide by tp. fp32 doubles it
    (the 1-byte dropout masks inside the 34 would not double: an estimate, as the paper says).
    """
    s, b, h, a = plan.seq_len, plan.micro_batch, plan.hidden, plan.n_head
    per_layer = 34 * s * b * h + 5 * a * s * s * b  # = s b h (34 + 5 a s / h), kept in integers
    return per_layer / plan.tp * param_bytes(plan.precision) / 2


def plan_memory(plan: ParallelPlan) -> dict[str, float]:
    """Bytes per GPU: weights, grads, optimizer (states), activations and their total.

    Model state: tp and pp split the parameters (n_params / (tp*pp) per GPU); ZeRO then divides the optimizer
    states (stage >= 1), grads (>= 2) and weights (3) by dp. Activations, on the first pipeline stage (the worst:
    under 1F1B it holds min(pp, n_micro) micro-batches in flight) for its n_layer/pp layers:
    full storage, or with checkpointing only each layer's 16-bit input 2*s*b*h (/tp) plus one layer's full
    activations while it is recomputed in the backward pass.
    """
    if not isinstance(plan, ParallelPlan):
        raise TypeError(f"plan_memory needs a ParallelPlan, got {type(plan).__name__}")
    per_param = state_bytes_per_param(plan.precision)
    shard = plan.n_params / (plan.tp * plan.pp)  # parameters this GPU owns before ZeRO
    z, dp = plan.zero_stage, plan.dp
    out = {
        "weights": shard * per_param["weights"] / (dp if z >= 3 else 1),
        "grads": shard * per_param["grads"] / (dp if z >= 2 else 1),
        "optimizer": shard * per_param["optimizer"] / (dp if z >= 1 else 1),
    }
    layers, in_flight = plan.n_layer // plan.pp, min(plan.pp, plan.n_micro)
    full = layer_activation_bytes(plan)
    if plan.activation_checkpointing:
        inputs = 2 * plan.seq_len * plan.micro_batch * plan.hidden / plan.tp * param_bytes(plan.precision) / 2
        out["activations"] = layers * in_flight * inputs + full
    else:
        out["activations"] = layers * in_flight * full
    out["total"] = sum(out.values())
    return out


def plan_comm(plan: ParallelPlan) -> dict[str, float]:
    """Bytes each GPU sends per optimizer step (ring collectives: an all-reduce of M bytes over k GPUs sends
    2(k-1)/k * M, a reduce-scatter or all-gather (k-1)/k * M). Values in the training precision.

    grad_sync: stage 0 all-reduces the grads once per step; stage 1 reduce-scatters them once (each rank needs
      only its shard for its optimizer states); stages 2-3 keep no full grads, so they reduce-scatter every
      micro-batch.
    param_gather: stages 1-2 all-gather the updated weights once per step; stage 3 all-gathers every layer's
      weights in the forward and again in the backward of every micro-batch: with n_micro = 1 the total is
      3/2 of plain data parallelism, as the ZeRO paper says.
    tensor_parallel: 4 all-reduces of an (s, b, h) activation per layer per micro-batch (2 forward, 2 backward;
      6 with checkpointing, which reruns the forward). pipeline: a middle stage sends its (s, b, h) output forward
      and its input gradient backward per micro-batch (a 2-stage pipeline sends one of the two); each tp rank
      sends the whole activation (Megatron's scatter/gather optimization would divide it by tp).
    """
    if not isinstance(plan, ParallelPlan):
        raise TypeError(f"plan_comm needs a ParallelPlan, got {type(plan).__name__}")
    nbytes, m, z = param_bytes(plan.precision), plan.n_micro, plan.zero_stage
    M = plan.n_params / (plan.tp * plan.pp) * nbytes  # this GPU's share of the model, in bytes
    f = (plan.dp - 1) / plan.dp
    grad_sync = {0: 2 * f * M, 1: f * M, 2: m * f * M, 3: m * f * M}[z]
    param_gather = {0: 0.0, 1: f * M, 2: f * M, 3: m * 2 * f * M}[z]
    act = plan.seq_len * plan.micro_batch * plan.hidden * nbytes  # one (s, b, h) activation
    n_allreduce = 6 if plan.activation_checkpointing else 4
    tp = n_allreduce * (plan.n_layer // plan.pp) * m * 2 * (plan.tp - 1) / plan.tp * act
    pp = 0.0 if plan.pp == 1 else m * act * (1 if plan.pp == 2 else 2)
    out = {"grad_sync": grad_sync, "param_gather": param_gather, "tensor_parallel": tp, "pipeline": pp}
    out["total"] = sum(out.values())
    return out
