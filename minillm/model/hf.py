"""Hugging Face interop: a Llama-style minillm GPT to and from the `transformers` Llama checkpoint layout.

Survey §7.3 (evaluation approaches and benchmarks): public evaluation harnesses and leaderboards load models
through Hugging Face `transformers`, so a model trained here is evaluated there once it is written in the
layout `LlamaForCausalLM.from_pretrained` reads; and an open Llama-family checkpoint can be imported and
studied with minillm's own tools. Survey §4.2.2 lists what "Llama-style" means in minillm's ModelConfig:
pre-RMSNorm, SwiGLU, RoPE, no biases, grouped-query attention (n_kv_head).

What has to be converted, and why the rest maps one to one:

- RoPE layout. minillm rotates ADJACENT pairs (x[2i], x[2i+1]) by angle pos * theta^(-2i/d) (RoFormer, Meta's
  original Llama code); HF Llama rotates HALVES (x[i], x[i + d/2]) by the same angle ("rotate_half"). Queries
  and keys only meet in the dot product q.k, which is unchanged when both are permuted alike, so permuting the
  rows of each head of wq and wk (even rows first, then odd rows) turns one convention into the other. This is
  the `permute` of HF's convert_llama_weights_to_hf (Meta -> HF) on export; its inverse on import.
- Frequencies: both use inv_freq = theta^(-arange(0, d, 2) / d) (HF's "default" rope type); other rope types
  (linear, dynamic, yarn, llama3 scaling) change the angles, so they are refused, not silently ignored.
- RMSNorm: both compute weight * x / sqrt(mean(x^2) + eps) with the weight initialised to 1 (no "+1" offset
  as in Gemma), so norm weights and eps copy over unchanged.
- GQA: HF's repeat_kv serves query heads h*r .. h*r + r - 1 from key/value head h, as minillm's
  repeat_interleave does, so k and v projections copy over as they are.

Only `safetensors` and `json` are needed for export and import; `transformers` only to check the result.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from minillm.config import ModelConfig
from minillm.io import read_json, replace_dir
from minillm.model.transformer import GPT

CONFIG_FILE, WEIGHTS_FILE, INDEX_FILE = "config.json", "model.safetensors", "model.safetensors.index.json"
_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
# minillm block parameter -> HF Llama decoder-layer parameter (under "model.layers.{i}.")
_LAYER_NAMES = {
    "norm1.weight": "input_layernorm.weight",
    "norm2.weight": "post_attention_layernorm.weight",
    "attn.wq.weight": "self_attn.q_proj.weight",
    "attn.wk.weight": "self_attn.k_proj.weight",
    "attn.wv.weight": "self_attn.v_proj.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "mlp.w1.weight": "mlp.gate_proj.weight",  # SwiGLU gate: silu(w1 x)
    "mlp.w3.weight": "mlp.up_proj.weight",  # SwiGLU up: multiplied with the gate
    "mlp.w2.weight": "mlp.down_proj.weight",
}


# ---------------------------------------------------------------------------------------------------------
# RoPE layout: adjacent pairs (minillm) <-> halves (HF).


def _rope_perm(head_dim: int) -> torch.Tensor:
    """Indices p with hf_dim[j] = minillm_dim[p[j]]: [0, 2, 4, ..., d-2, 1, 3, ..., d-1].

    HF pairs dim j with dim j + d/2 under frequency j; minillm pairs 2j with 2j + 1 under the same frequency.
    """
    return torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])


def _permute_heads(w: torch.Tensor, n_heads: int, perm: torch.Tensor) -> torch.Tensor:
    """Reorder the rows of each head of a q or k projection w (n_heads * head_dim, C) by perm."""
    out_dim, C = w.shape
    per_head = w.reshape(n_heads, out_dim // n_heads, C)  # (H, D, C)
    return per_head[:, perm].reshape(out_dim, C)


# ---------------------------------------------------------------------------------------------------------
# Export.


def _export_problems(cfg: ModelConfig) -> list[str]:
    """What keeps cfg from being a HF Llama, one readable item per difference."""
    want = {"norm": "rmsnorm", "norm_position": "pre", "activation": "swiglu", "position": "rope",
            "attention_mask": "causal", "bias": False, "qk_norm": False, "n_expert": 0, "sliding_window": None,
            "sparse_attention": None}
    return [f"{name}={getattr(cfg, name)!r} (Llama needs {value!r})"
            for name, value in want.items() if getattr(cfg, name) != value]


def _hf_config(cfg: ModelConfig, dtype: torch.dtype) -> dict[str, Any]:
    dtype_name = _DTYPE_NAMES[dtype]
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.norm_eps,
        # rope_theta at top level is what transformers 4.x reads; 5.x reads rope_parameters (and accepts both)
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "rope_scaling": None,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.block_size,
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": cfg.init_std,
        "use_cache": True,
        "torch_dtype": dtype_name,  # transformers 4.x name
        "dtype": dtype_name,  # transformers 5.x name
    }


def _hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """minillm parameters under HF Llama names, q/k rows in rotate-half order; fresh contiguous tensors."""
    cfg = model.config
    perm = _rope_perm(cfg.head_dim)
    src = {k: v.detach() for k, v in model.state_dict().items()}
    V = cfg.vocab_size  # a vocabulary padded for the GPU (pad_vocab_multiple) exports its real rows only
    out = {"model.embed_tokens.weight": src["tok_emb.weight"][:V], "model.norm.weight": src["norm_f.weight"]}
    if not cfg.tie_embeddings:  # tied: HF rebuilds lm_head from embed_tokens (safetensors stores no aliases)
        out["lm_head.weight"] = src["lm_head.weight"][:V]
    for i in range(cfg.n_layer):
        for ours, theirs in _LAYER_NAMES.items():
            w = src[f"blocks.{i}.{ours}"]
            if ours == "attn.wq.weight":
                w = _permute_heads(w, cfg.n_head, perm)
            elif ours == "attn.wk.weight":
                w = _permute_heads(w, cfg.n_kv_head, perm)
            out[f"model.layers.{i}.{theirs}"] = w
    return {k: v.cpu().clone().contiguous() for k, v in out.items()}


def export_llama(model: GPT, out_dir: str | Path) -> Path:
    """Write a Llama-style minillm GPT as a HF Llama checkpoint: out_dir/config.json + model.safetensors.

    `transformers.LlamaForCausalLM.from_pretrained(out_dir)` then computes the same logits. The directory is
    built next to out_dir and swapped in whole, so an interrupted export never leaves a half-written one;
    an existing out_dir is replaced only if it holds nothing but a previous export's files. Returns out_dir.
    """

    if not isinstance(model, GPT):
        raise ValueError(f"export_llama takes a minillm GPT (decoder-only); got {type(model).__name__}")
    cfg = model.config
    problems = _export_problems(cfg)
    if problems:
        raise ValueError("this model is not Llama-style, so HF LlamaForCausalLM cannot represent it: "
                         + "; ".join(problems) + ". Build it with ModelConfig(norm='rmsnorm', norm_position='pre', "
                         "activation='swiglu', position='rope', bias=False) to export it")
    dtype = model.tok_emb.weight.dtype
    if dtype not in _DTYPE_NAMES:
        raise ValueError(f"weights of dtype {dtype} cannot be exported; cast the model to float32, bfloat16 or "
                         "float16 first (model.float())")
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ValueError(f"{out_dir} exists and is a file; choose a directory path for the export")
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in (CONFIG_FILE, WEIGHTS_FILE))
        if foreign:
            raise ValueError(f"{out_dir} already holds {foreign[:5]}, which the export would delete; "
                             "choose an empty or new directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        save_file(_hf_state_dict(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(_hf_config(cfg, dtype), indent=2) + "\n", encoding="utf-8")
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# ---------------------------------------------------------------------------------------------------------
# Import.


def _import_problems(c: dict[str, Any]) -> list[str]:
    """Features of a HF config that minillm's Llama-style GPT would silently get wrong."""
    problems = []
    if c.get("model_type") != "llama":
        problems.append(f"model_type={c.get('model_type')!r} (only 'llama' is supported)")
    if c.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={c.get('hidden_act')!r} (SwiGLU needs 'silu')")
    for flag in ("attention_bias", "mlp_bias"):
        if c.get(flag):
            problems.append(f"{flag}=True (minillm's Llama has no biases)")
    if c.get("rope_scaling"):
        problems.append(f"rope_scaling={c['rope_scaling']!r} (only plain RoPE is supported)")
    rope = c.get("rope_parameters") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        problems.append(f"rope_parameters={rope!r} (only rope_type='default' is supported)")
    if c.get("partial_rotary_factor", rope.get("partial_rotary_factor", 1.0)) != 1.0:
        problems.append("partial_rotary_factor != 1 (minillm rotates every head dimension)")
    if c.get("sliding_window") is not None or c.get("use_sliding_window"):
        problems.append(f"sliding_window={c.get('sliding_window')!r} (Llama attends to the whole context)")
    if c.get("quantization_config"):
        problems.append("quantization_config is set (dequantize to float weights first)")
    H, C = c.get("num_attention_heads"), c.get("hidden_size")
    if isinstance(H, int) and isinstance(C, int) and H > 0 and c.get("head_dim") not in (None, C // H):
        problems.append(f"head_dim={c['head_dim']} != hidden_size // num_attention_heads = {C // H}")
    return problems


def _model_config(c: dict[str, Any]) -> ModelConfig:
    problems = _import_problems(c)
    missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                           "num_attention_heads") if c.get(k) is None]
    if missing:
        problems.append(f"missing field(s) {missing}")
    if problems:
        raise ValueError("cannot import this checkpoint as a minillm Llama-style GPT: " + "; ".join(problems))
    rope = c.get("rope_parameters") or {}
    theta = rope.get("rope_theta", c.get("rope_theta", 10000.0))
    return ModelConfig(
        vocab_size=c["vocab_size"], block_size=c.get("max_position_embeddings") or 2048,
        n_layer=c["num_hidden_layers"], n_head=c["num_attention_heads"],
        n_kv_head=c.get("num_key_value_heads") or c["num_attention_heads"], n_embd=c["hidden_size"],
        ffn_hidden=c["intermediate_size"], norm="rmsnorm", norm_position="pre", activation="swiglu",
        position="rope", bias=False, dropout=0.0, norm_eps=float(c.get("rms_norm_eps", 1e-6)),
        rope_theta=float(theta), tie_embeddings=bool(c.get("tie_word_embeddings", False)),
        init_std=float(c.get("initializer_range", 0.02)))


def _read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config dict, tensors) of a HF checkpoint directory: one model.safetensors or a sharded index."""

    if not path.is_dir():
        raise FileNotFoundError(f"HF checkpoint directory not found: {path} (expected config.json + model.safetensors)")
    config = read_json(path / CONFIG_FILE, "Hugging Face config")
    if (path / WEIGHTS_FILE).is_file():
        files = [path / WEIGHTS_FILE]
    elif (path / INDEX_FILE).is_file():
        weight_map = read_json(path / INDEX_FILE, "safetensors index").get("weight_map", {})
        files = [path / name for name in sorted(set(weight_map.values()))]
    else:
        raise FileNotFoundError(f"no {WEIGHTS_FILE} (or {INDEX_FILE}) in {path}; only safetensors checkpoints "
                                "are read (convert .bin/.pth weights with transformers' save_pretrained)")
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            tensors.update(load_file(str(f)))
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{f} is not a readable safetensors file ({e}); re-export the checkpoint") from None
    return config, tensors


def _load_weights(model: GPT, tensors: dict[str, torch.Tensor]) -> None:
    """Copy HF-named tensors into model, undoing the rotate-half row order of q and k."""
    cfg = model.config
    inv = torch.argsort(_rope_perm(cfg.head_dim))
    # LlamaModel checkpoints lack the "model." prefix; old ones carry rotary inv_freq buffers (recomputed here)
    hf = {(k if k.startswith(("model.", "lm_head.")) else f"model.{k}"): v
          for k, v in tensors.items() if not k.endswith("rotary_emb.inv_freq")}
    want = {"tok_emb.weight": "model.embed_tokens.weight", "norm_f.weight": "model.norm.weight"}
    if not cfg.tie_embeddings:
        want["lm_head.weight"] = "lm_head.weight"
    for i in range(cfg.n_layer):
        want.update({f"blocks.{i}.{ours}": f"model.layers.{i}.{theirs}" for ours, theirs in _LAYER_NAMES.items()})
    missing = [name for name in want.values() if name not in hf]
    unused = sorted(set(hf) - set(want.values()) - {"lm_head.weight"})  # a tied lm_head copy is redundant
    if missing or unused:
        raise ValueError(f"checkpoint tensors do not match its config: missing {missing[:5]}, unexpected "
                         f"{unused[:5]}; is this a complete LlamaForCausalLM checkpoint?")
    params = model.state_dict()
    new = {}
    for ours, theirs in want.items():
        w = hf[theirs]
        if tuple(w.shape) != tuple(params[ours].shape):
            raise ValueError(f"{theirs} has shape {tuple(w.shape)}, but the config implies "
                             f"{tuple(params[ours].shape)}; the checkpoint and its config.json disagree")
        if ours.endswith("attn.wq.weight"):
            w = _permute_heads(w, cfg.n_head, inv)
        elif ours.endswith("attn.wk.weight"):
            w = _permute_heads(w, cfg.n_kv_head, inv)
        new[ours] = w
    if cfg.tie_embeddings:
        new["lm_head.weight"] = new["tok_emb.weight"]  # same Parameter in the model; keeps strict loading happy
    model.load_state_dict(new, strict=True)


def import_llama(path_or_hf_model: str | Path | Any) -> GPT:
    """A minillm GPT from a HF Llama checkpoint directory (config.json + safetensors) or an in-memory
    `transformers.LlamaForCausalLM`; computes the same logits. Weights are loaded as float32 (minillm trains
    in fp32 with autocast). Configs with features minillm lacks (rope scaling, biases, sliding window) raise."""
    if isinstance(path_or_hf_model, (str, Path)):
        config, tensors = _read_checkpoint(Path(path_or_hf_model))
    elif hasattr(path_or_hf_model, "config") and hasattr(path_or_hf_model, "state_dict"):
        config = path_or_hf_model.config.to_dict()
        tensors = {k: v.detach() for k, v in path_or_hf_model.state_dict().items()}
    else:
        raise ValueError(f"import_llama takes a checkpoint directory or a transformers LlamaForCausalLM; "
                         f"got {type(path_or_hf_model).__name__}")
    model = GPT(_model_config(config))
    _load_weights(model, {k: v.float() for k, v in tensors.items()})
    return model.eval()
