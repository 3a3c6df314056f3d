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

Chapter 04's calculator widget (`book/ch04_architectures/plots_calculator.py`) puts sliders on these numbers.
"""
from __future__ import annotations

from typing import Any

from minillm.config import ModelConfig

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
