"""minillm: a compact, complete PyTorch LLM package, and the library behind the interactive textbook.

Follows "A Survey of Large Language Models" (Zhao et al.). Importing this package only imports modules; it does
no work (no data generation, no downloads, no device probing).

The rule: a module belongs here if someone could call it with their own data (homework, another project). Code
that names a chapter, draws a figure, builds a widget, reads `bench/results` or fixes study sizes belongs in the
sibling package `book/`. `book` imports `minillm`; nothing here imports `book`, and subpackages depend on each
other one way only (tests/minillm/test_layout.py checks both). No module is named after a chapter, one file
name has one meaning, and every `__init__.py` maps its modules in reading order.

    config.py  presets.py  device.py  io.py  provenance.py     settings, size profiles, devices, atomic writes
    model/       the GPT and its parts (attention, layers, position, moe), encoder-decoder, calculator, HF interop
    kernels/     fused Triton kernels, one op per file, each beside its PyTorch reference
    train/       one training step (step.py), the Trainer, optimizers, precision, checkpoints, parallelism
    data/        tokenizers, token shards, loaders, sources, synthetic corpora, task suites, crawl/clean/dedup/PII
    evaluation/  held-out loss, metrics, multiple-choice scoring, benchmarks, contamination
    generate.py  sampling, beam search, batched and streamed decoding with a KV cache
    textgen.py   text in, text out: generate_text stops at end tokens or stop strings, chat=True answers
    tools.py     a calculator the model calls mid-generation
    accounting.py  what a run costs: compute (6ND, GPU-days), memory per GPU under 3D parallelism and ZeRO, bytes sent
    finetune/    SFT, DPO, reward models, PPO, GRPO, PEFT, quantization
    scaling/     scaling laws with allocation, fits, prediction, the sweep runner
    cli/         the command line, one module per command; __main__.py runs it:
                 python -m minillm {prepare,train,generate,eval,finetune,sweep} --help

Start here (each name is importable from `minillm`; `help(name)` documents it):

    data       corpus, CharTokenizer, BPETokenizer, prepare, DataSplits, token_stream, read_text_files
    model      ModelConfig, GPT, arch_stats, EncoderDecoder; layer functions (rmsnorm, swiglu, apply_rope, ...)
    training   TrainConfig, Trainer, fit_for_seconds, seed_everything, build_optimizer, lr_at, save_checkpoint, load_checkpoint
    runs       load_run, save_run, write_run_config: one run folder for the CLI and the API
    using it   generate_text (text in, text out), generate, sample_next; fine-tuning, evaluation and scaling in minillm.finetune / .evaluation / .scaling
"""
from minillm.config import ModelConfig, TrainConfig
from minillm.data import synthetic
from minillm.data.bpe import ByteBPE
from minillm.data.bpe_train import train_bpe
from minillm.data.loader import DataSplits, RandomLoader, SequentialLoader, get_batch
from minillm.data.prepare import PreparedData, prepare, token_stream
from minillm.data.shards import check_compatible, read_header, read_shard, write_shard
from minillm.data.sources import load_hf_dataset, read_jsonl, read_text_files
from minillm.data.synthetic import CORPORA, Corpus, FactWorld, corpus, entropy_per_token
from minillm.data.tokenizer import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer
from minillm.device import resolve_device, seed_everything
from minillm.generate import generate, sample_next
from minillm.textgen import generate_text
from minillm.model.attention import KVCache, causal_mask, prefix_mask, scaled_dot_product_attention
from minillm.model.calculator import arch_stats
from minillm.model.encdec import EncoderDecoder, span_corruption, split_prefix_batch
from minillm.model.layers import cross_entropy, gelu, geglu, layer_norm, relu, rmsnorm, silu, softmax, swiglu
from minillm.model.moe import MoE, load_balancing_loss, router_z_loss, top_k_routing
from minillm.model.position import alibi_bias, apply_rope, sinusoidal_embedding
from minillm.model.transformer import GPT
from minillm.presets import by_size, model_preset, size_profile, train_preset
from minillm.train.checkpoint import latest_checkpoint, load_checkpoint, load_checkpoint_state, save_checkpoint
from minillm.train.history import read_history
from minillm.train.optim import AdamW, build_optimizer, clip_grad_norm_, lr_at, lr_curve, param_groups
from minillm.train.precision import PrecisionPolicy, memory_estimate, param_bytes
from minillm.train.trainer import Trainer
from minillm.train.budget import fit_for_seconds
from minillm.train.rundir import load_run, save_run, write_run_config

__version__ = "0.1.0"

__all__ = ["ModelConfig", "TrainConfig", "synthetic", "ByteBPE", "train_bpe", "DataSplits", "RandomLoader",
           "SequentialLoader", "get_batch", "PreparedData", "prepare", "check_compatible", "read_header",
           "read_shard", "write_shard", "load_hf_dataset", "read_jsonl", "read_text_files", "CORPORA", "Corpus",
           "FactWorld", "corpus", "entropy_per_token", "BPETokenizer", "CharTokenizer", "Tokenizer",
           "load_tokenizer", "resolve_device", "seed_everything", "generate", "sample_next", "KVCache",
           "causal_mask", "prefix_mask", "scaled_dot_product_attention", "arch_stats", "EncoderDecoder",
           "span_corruption", "split_prefix_batch", "cross_entropy", "gelu", "geglu", "layer_norm", "relu",
           "rmsnorm", "silu", "softmax", "swiglu", "MoE", "load_balancing_loss", "router_z_loss", "top_k_routing",
           "alibi_bias", "apply_rope", "sinusoidal_embedding", "GPT", "by_size", "model_preset", "size_profile",
           "train_preset", "latest_checkpoint", "load_checkpoint", "load_checkpoint_state", "save_checkpoint",
           "read_history", "AdamW", "build_optimizer", "clip_grad_norm_", "lr_at", "lr_curve", "param_groups",
           "PrecisionPolicy", "memory_estimate", "param_bytes", "Trainer", "fit_for_seconds", "load_run", "save_run",
           "write_run_config", "token_stream", "generate_text"]
