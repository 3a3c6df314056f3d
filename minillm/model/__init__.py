"""Transformer models and their building blocks (Survey §4.2, architecture).

In reading order:

    layers.py       norms (LayerNorm, RMSNorm, DeepNorm), MLPs (GELU, SwiGLU, GeGLU) and their functional forms
    position.py     learned, sinusoidal, RoPE and ALiBi position information
    attention.py    multi-head attention (MHA / GQA / MQA), causal and prefix masks, sliding windows, KV cache
    sparse.py       Sparse Transformer's strided and fixed attention masks, their block-sparse tile layout and cost
    moe.py          mixture-of-experts FFN: top-k routing, capacity, load-balancing and router z losses
    transformer.py  GPT: blocks, residual paths (pre / post / sandwich), the output layer; `logits_of`
    encdec.py       a T5-style encoder-decoder from the same blocks; span corruption; prefix batches
    calculator.py   parameters, FLOPs, KV-cache and training memory of a ModelConfig, without building it
    resize.py       resize_token_embeddings (new rows at the mean of the old), train_new_token_rows
    hf.py           export to / import from Hugging Face LlamaForCausalLM (config.json + safetensors)
"""
from minillm.model.attention import KVCache, causal_mask, prefix_mask, scaled_dot_product_attention
from minillm.model.calculator import arch_stats, param_breakdown
from minillm.model.encdec import EncoderDecoder, span_corruption, split_prefix_batch
from minillm.model.layers import cross_entropy, gelu, geglu, layer_norm, relu, rmsnorm, silu, softmax, swiglu
from minillm.model.moe import MoE, load_balancing_loss, router_z_loss, top_k_routing
from minillm.model.position import alibi_bias, apply_rope, rope_angles, sinusoidal_embedding
from minillm.model.transformer import GPT
from minillm.model.sparse import (attention_cost, block_sparse_layout, expand_block_layout, fixed_block_layout,
                                  fixed_sparse_mask, sparse_attention_fn, sparse_mask, strided_block_layout,
                                  strided_sparse_mask)
from minillm.model.resize import resize_token_embeddings, train_new_token_rows

__all__ = ["expand_block_layout", "fixed_block_layout", "strided_block_layout", "attention_cost", "block_sparse_layout", "fixed_sparse_mask", "sparse_attention_fn", "sparse_mask",
           "strided_sparse_mask", "resize_token_embeddings", "train_new_token_rows", "KVCache", "causal_mask", "prefix_mask", "scaled_dot_product_attention", "arch_stats", "param_breakdown",
           "EncoderDecoder", "span_corruption", "split_prefix_batch", "cross_entropy", "gelu", "geglu", "layer_norm",
           "relu", "rmsnorm", "silu", "softmax", "swiglu", "MoE", "load_balancing_loss", "router_z_loss",
           "top_k_routing", "alibi_bias", "apply_rope", "rope_angles", "sinusoidal_embedding", "GPT"]
