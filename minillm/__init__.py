"""minillm: a compact, complete PyTorch LLM package behind the interactive textbook.

Follows "A Survey of Large Language Models" (Zhao et al.). Importing this package only imports modules;
it does no work (no data generation, no downloads, no device probing). Submodules worth knowing:
`minillm.data.synthetic` (corpora with exact entropy), `minillm.grading` (lab checks), `minillm.viz`.
"""
from .config import ModelConfig, TrainConfig
from .data import synthetic
from .data.bpe import ByteBPE
from .data.bpe_train import train_bpe
from .data.loader import DataSplits, RandomLoader, SequentialLoader, get_batch
from .data.prepare import PreparedData, prepare
from .data.shards import check_compatible, read_header, read_shard, write_shard
from .data.sources import load_hf_dataset, read_jsonl, read_text_files
from .data.synthetic import CORPORA, Corpus, FactWorld, corpus, entropy_per_token
from .data.tokenizer import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer
from .device import resolve_device, seed_everything
from .generate import generate, sample_next
from .model.attention import KVCache, causal_mask, prefix_mask, scaled_dot_product_attention
from .model.calculator import arch_stats
from .model.encdec import EncoderDecoder, span_corruption, split_prefix_batch
from .model.layers import cross_entropy, gelu, geglu, layer_norm, relu, rmsnorm, silu, softmax, swiglu
from .model.moe import MoE, load_balancing_loss, router_z_loss, top_k_routing
from .model.position import alibi_bias, apply_rope, sinusoidal_embedding
from .model.transformer import GPT
from .presets import by_size, model_preset, size_profile, train_preset
from .train.checkpoint import latest_checkpoint, load_checkpoint, load_checkpoint_state, save_checkpoint
from .train.history import read_history
from .train.optim import AdamW, build_optimizer, clip_grad_norm_, lr_at, lr_curve, param_groups
from .train.precision import PrecisionPolicy, memory_estimate, param_bytes
from .train.trainer import Trainer

__version__ = "0.1.0"
