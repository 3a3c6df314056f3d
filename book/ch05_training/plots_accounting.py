"""Chapter 05's explorers on `minillm.accounting`, and fp16 underflow. Survey §2.1 (C ≈ 6ND), §4.3.2.

- `ComputeExplorer`: sliders on parameters, tokens, GPU type and count, MFU -> PF-days and GPU-days.
- `ParallelExplorer`: sliders on dp / tp / pp, ZeRO stage, micro-batches -> memory per GPU, bytes sent per step,
  the pipeline bubble.
- `underflow_demo`: why fp16 needs loss scaling and bf16 does not (how many small gradients flush to zero).
matplotlib and ipywidgets are imported inside the functions.
"""
from __future__ import annotations

import dataclasses
import html
import math
from typing import Any
import torch
from minillm.model.calculator import format_bytes
from minillm.scaling.laws import NAMED_BUDGETS
from book.viz import SliderPanel, format_count
from minillm.train.parallel.pipeline import bubble_fraction  # (pp - 1) / (n_micro + pp - 1): one definition
from minillm.accounting import GPU_SPECS, ParallelPlan, _gpu, _pos_float, plan_comm, plan_memory, training_compute


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
