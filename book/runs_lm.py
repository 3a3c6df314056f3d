"""Moved from `minillm.evaluation.scoring` (split: the library keeps the reusable part as `minillm.evaluation.scoring`)."""
from __future__ import annotations

import numpy as np
import torch
from minillm.data.tasks.generators import TASKS, Example, extract_answer, few_shot_prompt  # noqa: F401  (few_shot_prompt: re-exported)
from minillm.evaluation.scoring import heldout_loss


def train_lm(text: str, *, n_layer: int = 2, n_embd: int = 64, n_head: int = 2, steps: int = 300,
             batch_size: int = 16, block_size: int = 64, lr: float = 3e-3, seed: int = 1337, device: str = "cpu",
             val_text: str | None = None, val_fraction: float = 0.05, tokenizer=None,
             model_kwargs: dict | None = None):
    """Train a small GPT on `text` (random windows, cosine schedule, as `SmallRun`); returns
    (model, tokenizer, final_val_loss). Validation is `val_text`, or else the last `val_fraction` of `text`
    (cut at a newline, and not trained on). The tokenizer defaults to `emergence_tokenizer()`."""
    from minillm.config import ModelConfig, TrainConfig
    from book.ch03_data.studies_experiments import SmallRun
    from minillm.data.loader import DataSplits
    from minillm.model.transformer import GPT
    from minillm.train.trainer import Trainer
    from minillm.data.tasks.pretraining import emergence_tokenizer

    SmallRun(n_layer=n_layer, n_embd=n_embd, n_head=n_head, block_size=block_size, batch_size=batch_size,
             steps=steps, lr=lr, seed=seed, device=device)  # validates the knobs with SmallRun's messages
    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty str (e.g. pretraining_mixture(...).text)")
    if val_text is None:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction={val_fraction!r} must be in (0, 1) when no val_text is given")
        cut = text.rfind("\n", 0, int(len(text) * (1 - val_fraction))) + 1
        text, val_text = text[:cut], text[cut:]
    tok = tokenizer or emergence_tokenizer()
    train_ids = torch.from_numpy(tok.encode_to_array(text, dtype=np.int64))
    val_ids = torch.from_numpy(tok.encode_to_array(val_text, dtype=np.int64))
    for name, ids in (("training", train_ids), ("validation", val_ids)):
        if len(ids) <= block_size + 1:
            raise ValueError(f"the {name} text has {len(ids)} characters, not more than one window "
                             f"(block_size+1={block_size + 1}): give more text")
    torch.manual_seed(seed)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=n_layer, n_embd=n_embd,
                            n_head=n_head, **(model_kwargs or {})))
    cfg = TrainConfig(batch_size=batch_size, max_steps=steps, lr=lr, min_lr=lr / 10, warmup_steps=max(1, steps // 20),
                      schedule="cosine", eval_interval=0, eval_batches=1, log_interval=max(1, steps // 10),
                      seed=seed, device=device, progress=False)
    Trainer(model, cfg, DataSplits(train=train_ids, val=val_ids, vocab_size=tok.vocab_size)).fit()
    model.eval()
    return model, tok, heldout_loss(model, tok, val_text)
