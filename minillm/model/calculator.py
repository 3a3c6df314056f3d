"""Architecture calculator: parameters, FLOPs and memory of a model from its ModelConfig alone.

Survey §4.2.2 (detailed configuration) lists the knobs of a transformer; this module says what each knob
costs before anything is built or trained. Survey §4.2.4 (decoding: the KV cache grows with batch and
context) and §4.3.2 (scalable training: mixed precision, ZeRO) are why memory is the number that decides
whether a model fits. `arch_stats` counts:

- parameters exactly as `GPT(cfg).num_params()` does (tests check it against the real model), split by
  component; for a mixture of experts (`n_expert > 0`) also the parameters *active* per token (top-k experts);
- training FLOPs per token exactly as `GPT.flops_per_token()` (PaLM appendix B / nanoGPT):
  6 * N_matmul + 12 * n_layer * n_embd * T, N_matmul the active non-embedding weights plus the output layer;
- KV-cache bytes for (batch, T): 2 (k and v) * n_layer * batch * T * n_kv_head * head_dim * bytes_per_value,
  what `GPT(cfg).make_cache(batch, T)` allocates; GQA/MQA shrink it by n_head / n_kv_head;
- training-state bytes in mixed precision (Rajbhandari et al. 2020, ZeRO §3.1: 16 bytes per parameter):
  2 (16-bit weights) + 2 (16-bit grads) + 12 (Adam: fp32 master weights, first and second moments);
- activation bytes of one training step without recomputation (Korthikanti et al. 2022, "Reducing Activation
  Recomputation in Large Transformer Models", eq. 1): per layer s*b*h*(34 + 5*a*s/h) bytes for sequence s,
  batch b, width h and a heads, 16-bit activations and 1-byte dropout masks. 34*s*b*h covers the GPT block's
  linear inputs, GeLU, norms and dropout masks; 5*a*s^2*b the attention scores, softmax and its dropout mask.
  It is an estimate for a GPT-style block (4h MLP, MHA): FlashAttention (attn_impl="sdpa" on CUDA) stores no
  scores and removes the s^2 term, and MoE, GLU or GQA shift the 34 somewhat.

`ArchCalculator` puts sliders on the shape (n_layer, n_embd, n_head, n_kv_head, vocab, context, experts) and
redraws the memory bars: ``w = ArchCalculator.from_preset("gpt2-124m"); w.update(n_kv_head=1); display(w.widget)``.
matplotlib and ipywidgets are imported inside the functions: importing minillm stays cheap.
"""
from __future__ import annotations

import dataclasses
import html
import math
from typing import Any

from ..config import ModelConfig
from ..viz import SliderPanel, format_count

# Mixed-precision training state per parameter (ZeRO §3.1): bf16/fp16 weights and grads, fp32 Adam state.
WEIGHT_BYTES, GRAD_BYTES, ADAM_BYTES = 2, 2, 12  # Adam: fp32 master copy 4 + first moment 4 + second moment 4


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


def _moe(cfg: ModelConfig) -> tuple[int, int]:
    """(n_expert, expert_top_k); (0, 0) for a dense model or a ModelConfig that predates MoE."""
    n_expert = getattr(cfg, "n_expert", 0)
    if n_expert == 0:
        return 0, 0
    k = getattr(cfg, "expert_top_k", 2)
    if not 1 <= k <= n_expert:
        raise ValueError(f"expert_top_k={k} must be between 1 and n_expert={n_expert}: each token picks k experts")
    return n_expert, k


def param_breakdown(cfg: ModelConfig) -> dict[str, int]:
    """Parameters per component, as GPT(cfg) builds them; the values sum to the total.

    embeddings: token table (+ position table if learned); attention: q, k, v, o of every layer; mlp: the
    feed-forward of every layer (all experts for MoE); router: the MoE routers; norms: every norm including
    the final one; lm_head: the output layer when untied (0 when tied: it is the token table).
    """
    C, V, L = cfg.n_embd, cfg.vocab_size, cfg.n_layer
    kv = cfg.n_kv_head * cfg.head_dim  # width of k and of v: GQA/MQA shrink it
    attn = 2 * C * C + 2 * C * kv + ((2 * C + 2 * kv) if cfg.bias else 0)  # wq, wo (C, C); wk, wv (kv, C)
    gated = cfg.activation in ("swiglu", "geglu")
    H, n_mat = cfg.ffn_hidden, (3 if gated else 2)  # GLU variants add the gate matrix w3
    mlp = n_mat * C * H + (((n_mat - 1) * H + C) if cfg.bias else 0)
    n_expert, _ = _moe(cfg)
    norm = C * (2 if cfg.norm != "rmsnorm" and cfg.bias else 1)  # LayerNorm has a bias only when bias=True
    position = "post" if cfg.norm == "deepnorm" else cfg.norm_position
    per_block_norms = 4 if position == "sandwich" else 2
    final_norm = 0 if position == "post" else norm  # post-LN blocks already end in a norm
    return {
        "embeddings": V * C + (cfg.block_size * C if cfg.position == "learned" else 0),
        "attention": L * attn,
        "mlp": L * mlp * max(n_expert, 1),
        "router": L * C * n_expert,  # a bias-free (C -> E) linear per layer
        "norms": L * (per_block_norms * norm + (2 * cfg.head_dim if cfg.qk_norm else 0)) + final_norm,
        "lm_head": 0 if cfg.tie_embeddings else V * C,
    }


def arch_stats(cfg: ModelConfig, batch_size: int = 1, seq_len: int | None = None,
               bytes_per_value: int = 2) -> dict[str, Any]:
    """Parameters, training FLOPs per token and memory of `cfg`, without building the model.

    batch_size, seq_len (default cfg.block_size): the shape the KV cache and the activations are sized for.
    bytes_per_value: bytes per cached key/value element (2 for fp16/bf16, 4 for fp32).
    Training-state bytes assume mixed precision (2 + 2 + 12 bytes per parameter); activations are in 16 bits.
    """
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"arch_stats needs a ModelConfig, got {type(cfg).__name__}")
    B = _positive_int("batch_size", batch_size)
    T = cfg.block_size if seq_len is None else _positive_int("seq_len", seq_len)
    _positive_int("bytes_per_value", bytes_per_value)
    parts = param_breakdown(cfg)
    n_expert, k = _moe(cfg)
    L, C, V = cfg.n_layer, cfg.n_embd, cfg.vocab_size
    total = sum(parts.values())
    non_embedding = total - parts["embeddings"]
    # every expert sits in memory, but a token runs through only k of them
    inactive = L * (n_expert - k) * (parts["mlp"] // (L * n_expert)) if n_expert else 0
    active_non_embedding = non_embedding - inactive
    # the tied output layer reuses the token table but is still a (C -> V) matmul per token
    n_matmul = active_non_embedding + (V * C if cfg.tie_embeddings else 0)
    flops = 6 * n_matmul + 12 * L * cfg.n_head * cfg.head_dim * T  # + q k^T and (scores) v, forward and backward
    kv_cache = 2 * L * B * T * cfg.n_kv_head * cfg.head_dim * bytes_per_value
    # Korthikanti et al. 2022, eq. 1, per layer: s b h (34 + 5 a s / h) = 34 s b h + 5 a s^2 b (kept in integers)
    activations = L * (34 * T * B * C + 5 * cfg.n_head * T * T * B)
    return {
        "params_total": total,
        "params_non_embedding": non_embedding,
        "params_active": total - inactive,
        "params_active_non_embedding": active_non_embedding,
        "params_embedding": parts["embeddings"],
        "breakdown": parts,
        "flops_per_token": flops,
        "kv_cache_bytes": kv_cache,
        "activation_bytes": activations,
        "weights_bytes": WEIGHT_BYTES * total,
        "grads_bytes": GRAD_BYTES * total,
        "adam_bytes": ADAM_BYTES * total,
        "batch_size": B,
        "seq_len": T,
    }


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB', 3 * 2**30 -> '3 GiB'."""
    for power, unit in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        if abs(n) >= 1024**power:
            return f"{n / 1024**power:.3g} {unit}"
    return f"{n:.0f} B"


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
        from ..presets import model_preset

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
