"""Named model/training presets and the size profile that scales every experiment.

One switch, the environment variable ``MINILLM_SIZE`` = ``ci`` | ``laptop`` | ``gpu``, picks model sizes and
step counts everywhere: ``ci`` keeps each notebook to seconds, ``laptop`` to minutes on a CPU, ``gpu`` runs
the real thing. Unset, it is ``gpu`` when CUDA is present and ``laptop`` otherwise. The same code path
runs at every size; only numbers change (Survey §2.1: scaling is about the numbers).

The ``gpu`` profile also switches on what only pays on a GPU: torch's fused AdamW (``optimizer='torch_adamw'``),
``torch.compile`` (``compile=True``) and a vocabulary padded to a multiple of 64 (``pad_vocab_multiple=64``: aligned
logits rows for the cross-entropy kernel). ``ci`` and ``laptop`` leave all three off, so CPU runs are unchanged.
"""
from __future__ import annotations

import os
from typing import TypeVar

import torch

from minillm.config import ModelConfig, TrainConfig

SIZES = ("ci", "laptop", "gpu")
T = TypeVar("T")


def size_profile() -> str:
    """The active size profile: $MINILLM_SIZE, or 'gpu' with CUDA present, else 'laptop'."""
    value = os.environ.get("MINILLM_SIZE", "").strip().lower()
    if not value:
        return "gpu" if torch.cuda.is_available() else "laptop"
    if value not in SIZES:
        raise ValueError(f"MINILLM_SIZE={value!r} is not valid; set it to one of {', '.join(SIZES)} (or unset it)")
    return value


def by_size(ci: T, laptop: T, gpu: T, size: str | None = None) -> T:
    """Pick a value for the active profile: ``steps = by_size(ci=20, laptop=500, gpu=5000)``."""
    size = size or size_profile()
    if size not in SIZES:
        raise ValueError(f"size={size!r} is not valid; choose one of {', '.join(SIZES)}")
    return {"ci": ci, "laptop": laptop, "gpu": gpu}[size]


# Architecture presets. Shapes follow the papers; vocab_size and block_size are overridden per dataset.
MODEL_PRESETS: dict[str, dict] = {
    # ~0.1M non-embedding params (100,096): CI smoke tests and the first chapter at `ci`.
    "tiny": dict(n_layer=2, n_head=2, n_embd=64, block_size=64),
    # ~0.8M non-embedding (793,344): nanoGPT's CPU Shakespeare config, a minute or two on a laptop.
    "small": dict(n_layer=4, n_head=4, n_embd=128, block_size=128),
    # ~10M non-embedding (10,647,552): a real laptop run (tens of minutes) or seconds per step on a GPU.
    "medium": dict(n_layer=6, n_head=6, n_embd=384, block_size=256),
    # GPT-2 small (Radford et al. 2019): 124M params with the 50257 BPE vocabulary.
    "gpt2-124m": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),
    # Llama-style block (RMSNorm, SwiGLU, RoPE, no biases, GQA) at toy width, for architecture comparisons.
    "llama-tiny": dict(n_layer=4, n_head=4, n_kv_head=2, n_embd=128, block_size=128, norm="rmsnorm",
                       activation="swiglu", position="rope", bias=False, tie_embeddings=False),
}

# Which model preset each size profile trains by default.
DEFAULT_MODEL = {"ci": "tiny", "laptop": "small", "gpu": "medium"}

TRAIN_PRESETS: dict[str, dict] = {
    "ci": dict(batch_size=8, max_steps=30, warmup_steps=5, eval_interval=0, eval_batches=2, log_interval=5, progress=False),
    "laptop": dict(batch_size=16, max_steps=600, warmup_steps=50, eval_interval=100, eval_batches=10, log_interval=10),
    # fused AdamW: one kernel for all parameters instead of ~10 per tensor; compile: fused elementwise ops (the
    # first steps pay a minute of compiling). Both are for CUDA: on a CPU they are no faster.
    "gpu": dict(batch_size=64, max_steps=5000, warmup_steps=200, eval_interval=250, eval_batches=20, log_interval=25,
                optimizer="torch_adamw", compile=True),
}

# ModelConfig fields each size profile sets under the preset's own (what only pays on a GPU; see the module doc).
MODEL_SIZE_DEFAULTS: dict[str, dict] = {"ci": {}, "laptop": {}, "gpu": dict(pad_vocab_multiple=64)}


def model_preset(name: str, size: str | None = None, **overrides) -> ModelConfig:
    """A ModelConfig from a named preset with field overrides: ``model_preset('small', vocab_size=65)``.

    The size profile (default: the active one) adds MODEL_SIZE_DEFAULTS (at ``gpu``: the vocabulary padded to a
    multiple of 64); an override wins, e.g. ``pad_vocab_multiple=None``.
    """
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(MODEL_PRESETS)}")
    size = size or size_profile()
    if size not in MODEL_SIZE_DEFAULTS:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(MODEL_SIZE_DEFAULTS)}")
    return ModelConfig(**{**MODEL_PRESETS[name], **MODEL_SIZE_DEFAULTS[size], **overrides})


def train_preset(size: str | None = None, **overrides) -> TrainConfig:
    """A TrainConfig scaled to a size profile (default: the active one), with overrides."""
    size = size or size_profile()
    if size not in TRAIN_PRESETS:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(TRAIN_PRESETS)}")
    return TrainConfig(**{**TRAIN_PRESETS[size], **overrides})
