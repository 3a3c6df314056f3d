"""minillm: a compact, complete PyTorch LLM package behind the interactive textbook.

Follows "A Survey of Large Language Models" (Zhao et al.). Importing this package only imports modules;
it does no work (no data generation, no downloads, no device probing).
"""
from .config import ModelConfig, TrainConfig
from .device import resolve_device, seed_everything
from .generate import generate, sample_next
from .model.attention import KVCache, causal_mask, prefix_mask, scaled_dot_product_attention
from .model.layers import cross_entropy, gelu, geglu, layer_norm, relu, rmsnorm, silu, softmax, swiglu
from .model.position import alibi_bias, apply_rope, sinusoidal_embedding
from .model.transformer import GPT
from .presets import by_size, model_preset, size_profile, train_preset

__version__ = "0.1.0"
