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
- `underflow_demo`: why fp16 needs loss scaling and bf16 does not.

`ComputeExplorer` and `ParallelExplorer` put sliders on these (``display(ParallelExplorer().widget)``);
matplotlib and ipywidgets are imported inside them, so importing minillm stays cheap.
"""
from __future__ import annotations

import dataclasses
import html
import math
from dataclasses import dataclass
from typing import Any

import torch

from ..model.calculator import format_bytes
from ..scaling.allocation import FLOPS_PER_PARAM_TOKEN, NAMED_BUDGETS
from ..scaling.laws import PF_DAY
from ..viz import SliderPanel, format_count
from .parallel.pipeline import bubble_fraction  # (pp - 1) / (n_micro + pp - 1): one definition
from .precision import param_bytes


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
    # V100 has no bf16: fp16 tensor cores, so fp16 training with loss scaling (see underflow_demo)
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


POWERS_OF_TWO = [2**k for k in range(15)]  # 1 .. 16384: GPU counts and parallel degrees move in doublings


class ComputeExplorer(SliderPanel):
    """Sliders for model size, tokens, GPU type, GPU count and MFU; bars compare the run to famous budgets.

    ``w = ComputeExplorer(); w.update(log10_params=10, n_gpus=64)`` returns `training_compute` of the setting.
    """

    RANGES = {"log10_params": (6.0, 13.0), "log10_tokens": (8.0, 14.0), "mfu": (0.05, 1.0)}

    def __init__(self, n_params: float = 175e9, n_tokens: float = 300e9, gpu: str = "A100", n_gpus: int = 1024,
                 mfu: float = 0.4):
        import ipywidgets as widgets

        training_compute(n_params, n_tokens, gpu, n_gpus, mfu)  # validate before building anything
        start = {"log10_params": math.log10(n_params), "log10_tokens": math.log10(n_tokens), "mfu": mfu}
        for name, value in start.items():
            self._check(name, value)
        if n_gpus not in POWERS_OF_TWO:
            raise ValueError(f"n_gpus={n_gpus} must be a power of two up to {POWERS_OF_TWO[-1]} (the dropdown)")
        common = dict(style={"description_width": "110px"}, layout=widgets.Layout(width="360px"))
        slider = dict(continuous_update=False, step=0.01, readout_format=".2f", **common)
        self._build({
            "log10_params": widgets.FloatSlider(value=start["log10_params"], min=6, max=13,
                                                description="log10 params", **slider),
            "log10_tokens": widgets.FloatSlider(value=start["log10_tokens"], min=8, max=14,
                                                description="log10 tokens", **slider),
            "gpu": widgets.Dropdown(options=list(GPU_SPECS), value=gpu, description="GPU", **common),
            "n_gpus": widgets.Dropdown(options=POWERS_OF_TWO, value=n_gpus, description="GPUs", **common),
            "mfu": widgets.FloatSlider(value=mfu, min=0.05, max=1.0, description="MFU", **slider),
        })

    def _check(self, name: str, value: Any) -> None:
        if name in self.RANGES:
            lo, hi = self.RANGES[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ValueError(f"{name}={value!r} is outside the explorer's range [{lo}, {hi}]")
        elif value not in self.controls[name].options:
            raise ValueError(f"{name}={value!r} must be one of {list(self.controls[name].options)}")

    def update(self, **values: Any) -> dict[str, float]:
        """Set any of log10_params, log10_tokens, gpu, n_gpus, mfu; redraw; return `training_compute`."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; choose from {', '.join(self.controls)}")
        for name, value in values.items():
            self._check(name, value)
        self._set(values)
        return self._render()

    def _render(self) -> dict[str, float]:
        import matplotlib.pyplot as plt

        v = {name: c.value for name, c in self.controls.items()}
        res = training_compute(10 ** v["log10_params"], 10 ** v["log10_tokens"], v["gpu"], v["n_gpus"], v["mfu"])
        self.result = res
        self.summary.value = (
            f"<b>{res['flops']:.3g}</b> FLOPs = {res['pf_days']:,.4g} PF-days<br>"
            f"{res['gpu_days']:,.4g} {v['gpu']}-days at MFU {v['mfu']:.2f}: "
            f"<b>{res['wall_days']:,.4g} days</b> on {v['n_gpus']} GPUs")
        names = [b.name for b in NAMED_BUDGETS] + ["this run"]
        flops = [b.flops for b in NAMED_BUDGETS] + [res["flops"]]
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.barh(range(len(names)), flops, color=["0.7"] * len(NAMED_BUDGETS) + ["C3"])
        for i, f in enumerate(flops):  # the wall time each budget would take on the chosen hardware
            ax.text(f, i, f" {res['wall_days'] * f / res['flops']:,.3g} days", va="center", fontsize=8)
        ax.set_yticks(range(len(names)), names)
        ax.set_xscale("log")
        ax.set_xlabel(f"training FLOPs (days on {v['n_gpus']} x {v['gpu']} at MFU {v['mfu']:.2f})")
        fig.tight_layout()
        self._show(fig)
        return res


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


class ParallelExplorer(SliderPanel):
    """Knobs for dp, tp, pp, ZeRO stage, precision, checkpointing and batch shape; bars of memory per GPU for
    each ZeRO stage against the GPU's memory. n_gpus follows as dp * tp * pp.

    ``w = ParallelExplorer(); w.update(zero_stage=3, tp=2)`` returns
    {"memory": plan_memory(plan), "comm": plan_comm(plan), "bubble_fraction": ...} for the new plan.
    """

    OPTIONS = {"dp": POWERS_OF_TWO, "tp": POWERS_OF_TWO[:7], "pp": POWERS_OF_TWO[:7], "zero_stage": [0, 1, 2, 3],
               "precision": ["bf16", "fp16", "fp32"], "micro_batch": POWERS_OF_TWO[:8],
               "seq_len": [2**k for k in range(7, 18)], "n_micro": POWERS_OF_TWO[:9],
               "activation_checkpointing": [False, True]}

    def __init__(self, plan: ParallelPlan | None = None, gpu: str = "A100"):
        import ipywidgets as widgets

        plan = ParallelPlan(n_params=7_000_000_000, n_layer=32, hidden=4096, n_head=32, seq_len=2048, n_gpus=8,
                            dp=8, zero_stage=1) if plan is None else plan
        if not isinstance(plan, ParallelPlan):
            raise TypeError(f"ParallelExplorer needs a ParallelPlan, got {type(plan).__name__}")
        self.base, self.gpu = plan, _gpu(gpu)
        for name in self.OPTIONS:
            self._check(name, getattr(plan, name))
        common = dict(style={"description_width": "110px"}, layout=widgets.Layout(width="300px"))
        controls = {name: widgets.Dropdown(options=opts, value=getattr(plan, name), description=name, **common)
                    for name, opts in self.OPTIONS.items() if name != "activation_checkpointing"}
        controls["activation_checkpointing"] = widgets.Checkbox(value=plan.activation_checkpointing,
                                                                description="activation checkpointing")
        self._build(controls)

    def _check(self, name: str, value: Any) -> None:
        if value not in self.OPTIONS[name] or type(value) is not type(self.OPTIONS[name][0]):
            raise ValueError(f"{name}={value!r} must be one of {self.OPTIONS[name]}")

    def plan(self, **overrides: Any) -> ParallelPlan:
        """The ParallelPlan the controls describe (with `overrides`); validates the combination."""
        v = {name: c.value for name, c in self.controls.items()} | overrides
        return dataclasses.replace(self.base, n_gpus=v["dp"] * v["tp"] * v["pp"], **v)

    def update(self, **values: Any) -> dict[str, Any]:
        """Set any of the knobs, redraw, return memory, comm and bubble. Bad values raise before anything moves."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; choose from {', '.join(self.controls)}")
        for name, value in values.items():
            self._check(name, value)
        self.plan(**values)  # raises for combinations no run has (tp not dividing n_head, ...)
        self._set(values)
        return self._render()

    def _on_change(self, change: dict) -> None:
        if self._syncing:
            return
        try:
            self._render()
        except ValueError as e:  # a knob combination no run has: say so where the numbers would be
            self.summary.value = f'<span style="color: #b00">{html.escape(str(e))}</span>'

    def _render(self) -> dict[str, Any]:
        import matplotlib.pyplot as plt

        plan = self.plan()
        res = {"memory": plan_memory(plan), "comm": plan_comm(plan),
               "bubble_fraction": bubble_fraction(plan.pp, plan.n_micro)}
        self.result = res
        mem, cap = res["memory"], self.gpu.memory_gib * 2**30
        fits = "fits" if mem["total"] <= cap else "does <b>not</b> fit"
        self.summary.value = (
            f"{format_count(plan.n_params)} params on {plan.n_gpus} GPUs: <b>{format_bytes(mem['total'])}</b> per GPU, "
            f"{fits} in {self.gpu.memory_gib:g} GiB ({self.gpu.name})<br>"
            f"sends {format_bytes(res['comm']['total'])} per step; pipeline bubble {res['bubble_fraction']:.0%}")
        fig, ax = plt.subplots(figsize=(6, 3.4))
        parts = ("weights", "grads", "optimizer", "activations")
        stages = [plan_memory(dataclasses.replace(plan, zero_stage=z)) for z in range(4)]
        bottom = [0.0] * 4
        for i, part in enumerate(parts):
            heights = [s[part] / 2**30 for s in stages]
            ax.bar(range(4), heights, bottom=bottom, color=f"C{i}", label=part)
            bottom = [b + h for b, h in zip(bottom, heights)]
        ax.axhline(self.gpu.memory_gib, color="black", linestyle="--", linewidth=1, label=f"{self.gpu.name} memory")
        ax.set_xticks(range(4), [f"ZeRO-{z}" + (" (chosen)" if z == plan.zero_stage else "") for z in range(4)])
        ax.set_ylabel("GiB per GPU")
        ax.legend(fontsize=8)
        fig.tight_layout()
        self._show(fig)
        return res


# --------------------------------------------------------------------------------------------- fp16 underflow


def underflow_demo(scale: float = 2.0**16, grads: torch.Tensor | None = None) -> dict[str, int]:
    """How many gradient values round to 0 in fp16 without, and with, loss scaling by `scale`.

    fp16's smallest subnormal is 2^-24 ≈ 6e-8: anything below 2^-25 becomes 0. Multiplying the loss (hence every
    gradient) by `scale` before the cast lifts small values into range; dividing in fp32 afterwards restores
    them. Too large a scale overflows the largest ones to inf (fp16 max 65504): `inf_with` counts those.
    grads: fp32 magnitudes to test; default torch.logspace(-10, -2, 81) (ten steps per decade).
    """
    scale = _pos_float("scale", scale)
    g = torch.logspace(-10, -2, 81, dtype=torch.float32) if grads is None else grads.to(torch.float32)
    if g.numel() == 0:
        raise ValueError("grads is empty: pass at least one gradient value")
    without = g.to(torch.float16).float()
    scaled = (g * scale).to(torch.float16)
    back = scaled.float() / scale  # the unscale step, in fp32 as GradScaler does
    return {"n": g.numel(), "zero_without": int((without == 0).sum()), "zero_with": int((back == 0).sum()),
            "inf_with": int(torch.isinf(scaled).sum())}
