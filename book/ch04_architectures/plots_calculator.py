"""The architecture calculator widget of chapter 04 (Survey §4.2.2, §4.2.4, §4.3.2).

`ArchCalculator` puts sliders on a model's shape (n_layer, n_embd, n_head, n_kv_head, vocab, context, experts)
and redraws the numbers `minillm.model.calculator.arch_stats` computes (parameters, FLOPs per token, KV-cache and
training memory) as bars: ``w = ArchCalculator.from_preset("gpt2-124m"); w.update(n_kv_head=1); display(w.widget)``.
matplotlib and ipywidgets are imported inside the functions.
"""
from __future__ import annotations

import dataclasses
import html
import math
from typing import Any
from minillm.config import ModelConfig
from book.viz import SliderPanel, format_count
from minillm.model.calculator import _moe, _positive_int, arch_stats, format_bytes


def plot_arch(stats: dict[str, Any]):
    """Two panels from `arch_stats`: memory (weights, grads + Adam, KV cache, activations; log scale) and
    parameters per component. Returns the Figure."""
    import matplotlib.pyplot as plt

    B, T = stats["batch_size"], stats["seq_len"]
    memory = {"weights (16-bit)": stats["weights_bytes"],
              "grads + Adam": stats["grads_bytes"] + stats["adam_bytes"],
              f"KV cache (B={B}, T={T})": stats["kv_cache_bytes"],
              f"activations (B={B}, T={T})": stats["activation_bytes"]}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    y = range(len(memory))
    ax1.barh(y, list(memory.values()), color=["C0", "C1", "C2", "C3"])
    for i, v in enumerate(memory.values()):
        ax1.text(v, i, " " + format_bytes(v), va="center", fontsize=8)
    ax1.set_yticks(list(y), list(memory))
    ax1.set_xscale("log")  # the four differ by orders of magnitude; log keeps each one readable
    ax1.set_xlim(right=max(memory.values()) * 30)  # room for the labels
    ax1.invert_yaxis()
    ax1.set(xlabel="bytes", title="memory of one training step / of decoding")
    parts = {k: v for k, v in stats["breakdown"].items() if v}
    ax2.bar(list(parts), list(parts.values()), color="C0")
    ax2.set(ylabel="parameters", title=f"{format_count(stats['params_total'])} parameters by component")
    ax2.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig


def divisors(n: int) -> list[int]:
    """Divisors of n in increasing order: the valid n_kv_head values for n_head = n."""
    return [d for d in range(1, n + 1) if n % d == 0]


class ArchCalculator(SliderPanel):
    """Sliders for a model's shape; bars of its memory, a summary line of its parameters and FLOPs.

    Fields the sliders do not cover (norm, activation, position, bias, tying...) come from `cfg`.
    ``update(n_layer=24, n_kv_head=2)`` moves controls, redraws and returns `arch_stats` of the new shape;
    `config()` is the ModelConfig the sliders describe.
    """

    # name -> (min, max) of the value; vocab_size and block_size sliders move in log10 and log2 steps
    RANGES = {"n_layer": (1, 128), "n_embd": (64, 16384), "n_head": (1, 128), "vocab_size": (10, 10**6),
              "block_size": (16, 2**17), "n_expert": (0, 64), "expert_top_k": (1, 8)}
    EMBD_STEP = 64

    def __init__(self, cfg: ModelConfig | None = None, batch_size: int = 1, bytes_per_value: int = 2):
        import ipywidgets as widgets

        cfg = ModelConfig() if cfg is None else cfg
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"ArchCalculator needs a ModelConfig, got {type(cfg).__name__}")
        self.base = cfg
        self.batch_size = _positive_int("batch_size", batch_size)
        self.bytes_per_value = _positive_int("bytes_per_value", bytes_per_value)
        # a custom MLP width keeps its ratio to n_embd as n_embd moves; the default is re-derived by ModelConfig
        default_ffn = cfg.replace(ffn_hidden=None).ffn_hidden
        self._ffn_ratio = None if cfg.ffn_hidden == default_ffn else cfg.ffn_hidden / cfg.n_embd
        self._has_moe = "n_expert" in {f.name for f in dataclasses.fields(ModelConfig)}
        start = {"n_layer": cfg.n_layer, "n_embd": cfg.n_embd, "n_head": cfg.n_head, "vocab_size": cfg.vocab_size,
                 "block_size": cfg.block_size, "n_expert": getattr(cfg, "n_expert", 0),
                 "expert_top_k": getattr(cfg, "expert_top_k", 2)}
        for name, value in start.items():
            self._check(name, value)
        common = dict(continuous_update=False, style={"description_width": "90px"},
                      layout=widgets.Layout(width="360px"))
        lo, hi = self.RANGES["vocab_size"], self.RANGES["block_size"]
        controls = {
            "n_layer": widgets.IntSlider(value=cfg.n_layer, min=1, max=128, description="n_layer", **common),
            "n_embd": widgets.IntSlider(value=cfg.n_embd, min=64, max=16384, step=self.EMBD_STEP,
                                        description="n_embd", **common),
            "n_head": widgets.IntSlider(value=cfg.n_head, min=1, max=128, description="n_head", **common),
            "n_kv_head": widgets.Dropdown(options=divisors(cfg.n_head), value=cfg.n_kv_head, description="n_kv_head",
                                          style=common["style"], layout=common["layout"]),
            "vocab_size": widgets.FloatLogSlider(value=cfg.vocab_size, base=10, min=math.log10(lo[0]),
                                                 max=math.log10(lo[1]), step=0.01, readout_format=".3s",
                                                 description="vocab_size", **common),
            "block_size": widgets.FloatLogSlider(value=cfg.block_size, base=2, min=math.log2(hi[0]),
                                                 max=math.log2(hi[1]), step=1, readout_format=".3s",
                                                 description="block_size", **common),
            "n_expert": widgets.IntSlider(value=start["n_expert"], min=0, max=64, description="n_expert", **common),
            "expert_top_k": widgets.IntSlider(value=start["expert_top_k"], min=1, max=8, description="top-k",
                                              **common),
        }
        self._build(controls)

    @classmethod
    def from_preset(cls, name: str, batch_size: int = 1, bytes_per_value: int = 2, **overrides) -> ArchCalculator:
        """A calculator starting at a named preset of minillm.presets.MODEL_PRESETS (with field overrides)."""
        from minillm.presets import model_preset

        return cls(model_preset(name, **overrides), batch_size=batch_size, bytes_per_value=bytes_per_value)

    # --- values and validation ----------------------------------------------------------------------------
    def _check(self, name: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name}={value!r} must be an integer")
        lo, hi = self.RANGES[name]
        if not lo <= value <= hi:
            raise ValueError(f"{name}={value} is outside the calculator's range [{lo}, {hi}]")
        if name == "n_embd" and value % self.EMBD_STEP:
            raise ValueError(f"n_embd={value} must be a multiple of {self.EMBD_STEP} (the slider's step)")
        if name == "block_size" and value & (value - 1):
            raise ValueError(f"block_size={value} must be a power of two (the slider moves in log2 steps)")
        if name == "n_expert" and value and not self._has_moe:
            raise ValueError("n_expert > 0 needs a ModelConfig with mixture-of-experts fields; this one has none")

    def _values(self) -> dict[str, int]:
        """The controls' values as the integers a ModelConfig takes (log sliders hold floats)."""
        return {name: int(round(c.value)) for name, c in self.controls.items()}

    def _make_config(self, v: dict[str, int]) -> ModelConfig:
        fields = {k: v[k] for k in ("n_layer", "n_embd", "n_head", "n_kv_head", "vocab_size", "block_size")}
        fields["ffn_hidden"] = None if self._ffn_ratio is None else max(1, round(self._ffn_ratio * v["n_embd"]))
        if self._has_moe:
            fields.update(n_expert=v["n_expert"], expert_top_k=v["expert_top_k"])
        cfg = self.base.replace(**fields)  # ModelConfig validates: n_embd % n_head, RoPE needs even head dims...
        _moe(cfg)  # top-k <= n_expert
        return cfg

    def config(self) -> ModelConfig:
        """The ModelConfig the controls describe now."""
        return self._make_config(self._values())

    @staticmethod
    def _fit_kv(n_kv_head: int, n_head: int) -> int:
        """The largest divisor of n_head not above n_kv_head: keeps GQA close to what was chosen."""
        return max(d for d in divisors(n_head) if d <= n_kv_head)

    def _refresh_kv(self, n_kv_head: int | None = None) -> None:
        """Offer the divisors of the current n_head; keep n_kv_head (or the nearest valid value below it)."""
        dropdown, n_head = self.controls["n_kv_head"], self.controls["n_head"].value
        want = dropdown.value if n_kv_head is None else n_kv_head
        syncing, self._syncing = self._syncing, True
        try:
            dropdown.options = divisors(n_head)  # ipywidgets resets the value to the first option here
            dropdown.value = self._fit_kv(want, n_head)
        finally:
            self._syncing = syncing

    def update(self, **values: int) -> dict[str, Any]:
        """Set any of the controls (n_layer, n_embd, n_head, n_kv_head, vocab_size, block_size, n_expert,
        expert_top_k), redraw, and return `arch_stats` of the new shape. Bad values raise before anything moves.
        Changing n_head without n_kv_head keeps the largest valid n_kv_head not above the current one."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; choose from {', '.join(self.controls)}")
        for name, value in values.items():
            if name != "n_kv_head":
                self._check(name, value)
        merged = {**self._values(), **values}
        if "n_kv_head" in values:
            kv = values["n_kv_head"]
            if not isinstance(kv, int) or isinstance(kv, bool) or kv <= 0 or merged["n_head"] % kv:
                raise ValueError(f"n_kv_head={kv!r} must be a divisor of n_head={merged['n_head']}: "
                                 f"one of {divisors(merged['n_head'])}")
        else:
            merged["n_kv_head"] = self._fit_kv(merged["n_kv_head"], merged["n_head"])
        self._make_config(merged)  # raises for combinations no model has (e.g. n_embd not divisible by n_head)
        self._set({k: v for k, v in values.items() if k != "n_kv_head"})
        self._refresh_kv(merged["n_kv_head"])
        return self._render()

    # --- drawing ------------------------------------------------------------------------------------------
    def _on_change(self, change: dict) -> None:
        if self._syncing:
            return
        if change["owner"] is self.controls["n_head"]:
            self._refresh_kv()
        try:
            self._render()
        except ValueError as e:  # a slider combination no model has: say so where the numbers would be
            self.summary.value = f'<span style="color: #b00">{html.escape(str(e))}</span>'

    def _render(self) -> dict[str, Any]:
        cfg = self.config()
        stats = arch_stats(cfg, self.batch_size, cfg.block_size, self.bytes_per_value)
        self.result = stats
        train = stats["weights_bytes"] + stats["grads_bytes"] + stats["adam_bytes"]
        active = (f" ({format_count(stats['params_active'])} active per token)"
                  if stats["params_active"] != stats["params_total"] else "")
        self.summary.value = (
            f"<b>{format_count(stats['params_total'])}</b> parameters{active}, "
            f"{format_count(stats['params_non_embedding'])} non-embedding; "
            f"{format_count(stats['flops_per_token'])} training FLOPs per token<br>"
            f"weights + grads + Adam {format_bytes(train)}, activations {format_bytes(stats['activation_bytes'])}, "
            f"KV cache {format_bytes(stats['kv_cache_bytes'])} (batch {self.batch_size}, {cfg.block_size} tokens)")
        self._show(plot_arch(stats))
        return stats
