"""Growing a trained model's vocabulary (Survey §4.1.2 tokenization, and §5.1 instruction tuning: a model pretrained
without chat tokens gets them before it is chat-tuned).

    tok = add_special_tokens(tok, CHAT_TOKENS)            # minillm.data.vocab: new ids vocab_size, vocab_size+1, ...
    resize_token_embeddings(model, tok.vocab_size)        # new rows = the mean of the old ones (Hewitt 2021)
    apply_lora(model, LoRAConfig(rank=8))                 # freezes the base, the new rows included ...
    train_new_token_rows(model, first_id=old_vocab_size)  # ... so let exactly the new rows learn

Why the mean (Hewitt, "Initializing New Word Embeddings for Pretrained Language Models", 2021): with a tied or
untied output layer, a new row w gives every context h the logit h . w. A random row can put a new token's logit
far above the others and wreck the model's distribution before any training; the mean of the old rows gives the
average logit of the old vocabulary, so the model's predictions barely move (the KL to the old distribution is
bounded), and the old ids' logits do not change at all. Every earlier row is copied unchanged, so logits for old
ids are bit-identical after the resize. Tied weights stay tied (one new table), an untied output layer grows the
same way, and `model.config` becomes a copy with the new vocab_size (the old config object, which other models may
share, is left alone). With `pad_vocab_multiple` the tables keep padding rows up to the next multiple (zero, as GPT
builds them); a resize that still fits the existing padding only fills rows.

`train_new_token_rows` makes just the new rows trainable after PEFT froze the tables: the whole table gets
requires_grad and a gradient hook zeroes the gradient of every older row. With AdamW and no weight decay on
embeddings (`train.optim.param_groups`), a zero gradient keeps both moments at zero, so old rows stay bit-identical.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from minillm.config import ModelConfig

__all__ = ["INITS", "resize_token_embeddings", "train_new_token_rows"]

INITS = ("mean", "normal")  # mean: Hewitt 2021 (default); normal: N(0, init_std) as GPT initialises fresh rows


def _tables(model: nn.Module) -> tuple[nn.Embedding, nn.Linear, bool]:
    """(token embedding, output layer, tied?) of a minillm GPT, checked to be plain tables this module can grow."""
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper shares the module
    cfg = getattr(model, "config", None)
    emb, head = getattr(model, "tok_emb", None), getattr(model, "lm_head", None)
    if not isinstance(cfg, ModelConfig) or emb is None or head is None:
        raise TypeError(f"resize_token_embeddings needs a minillm GPT (config, tok_emb, lm_head), got "
                        f"{type(model).__name__}")
    if type(emb) is not nn.Embedding or type(head) is not nn.Linear or head.bias is not None:
        raise TypeError(f"tok_emb is {type(emb).__name__} and lm_head is {type(head).__name__}: resize the vocabulary "
                        f"of a plain GPT, before wrapping its layers (apply_lora, quantize_model), not after")
    return emb, head, head.weight is emb.weight


def _grown(old: torch.Tensor, rows: int, vocab: int, new_vocab: int, init: str, std: float, seed: int) -> torch.Tensor:
    """A (rows, C) copy of `old` (old_rows, C): rows < vocab copied, rows vocab..new_vocab-1 initialised, rest 0."""
    new = torch.zeros(rows, old.size(1), dtype=old.dtype, device=old.device)  # padding rows stay exactly zero
    new[:vocab] = old[:vocab]
    n = new_vocab - vocab
    if init == "mean":
        new[vocab:new_vocab] = old[:vocab].float().mean(0).to(old.dtype)  # (C,) broadcast to the n new rows
    else:
        g = torch.Generator(device="cpu").manual_seed(seed)
        new[vocab:new_vocab] = (torch.randn(n, old.size(1), generator=g) * std).to(old.device, old.dtype)
    return new


@torch.no_grad()
def resize_token_embeddings(model: nn.Module, new_vocab_size: int, *, init: str = "mean", seed: int = 0) -> nn.Module:
    """Grow `model`'s token embedding (and an untied lm_head) to `new_vocab_size` ids, in place; returns the model.

    Rows of ids < the old vocab_size are copied unchanged (their logits stay exactly the same); new rows get the
    mean of the old rows (init="mean", Hewitt 2021) or N(0, init_std) (init="normal", drawn from `seed`). Tied
    weights stay tied; padding follows `config.pad_vocab_multiple`. Shrinking is refused (it would delete ids the
    tokenizer still emits); the same size returns the model unchanged.
    """
    emb, head, tied = _tables(model)
    target = getattr(model, "_orig_mod", model)
    cfg: ModelConfig = target.config
    if isinstance(new_vocab_size, bool) or not isinstance(new_vocab_size, int):
        raise TypeError(f"new_vocab_size must be an int (the tokenizer's vocab_size), got {new_vocab_size!r}")
    if init not in INITS:
        raise ValueError(f"init={init!r} is not valid; choose one of {', '.join(INITS)}")
    if new_vocab_size < cfg.vocab_size:
        raise ValueError(f"new_vocab_size={new_vocab_size} is smaller than the model's vocab_size={cfg.vocab_size}: "
                         f"shrinking would delete the rows of ids the tokenizer still produces; only growing is "
                         f"supported")
    if new_vocab_size == cfg.vocab_size:
        return model
    new_cfg = replace(cfg, vocab_size=new_vocab_size)  # a copy: validated again, and the old object is not mutated
    rows = new_cfg.padded_vocab_size
    requires_grad = emb.weight.requires_grad
    new_emb = nn.Embedding(rows, cfg.n_embd, device=emb.weight.device, dtype=emb.weight.dtype)
    new_emb.weight.copy_(_grown(emb.weight, rows, cfg.vocab_size, new_vocab_size, init, cfg.init_std, seed))
    new_emb.weight.requires_grad_(requires_grad)
    target.tok_emb = new_emb
    if tied:
        target.lm_head.weight = new_emb.weight  # still one shared (rows, C) matrix
    else:
        new_head = nn.Linear(cfg.n_embd, rows, bias=False, device=head.weight.device, dtype=head.weight.dtype)
        new_head.weight.copy_(_grown(head.weight, rows, cfg.vocab_size, new_vocab_size, init, cfg.init_std,
                                     seed + 1))
        new_head.requires_grad_(head.weight.requires_grad)
        target.lm_head = new_head
    target.config = new_cfg
    return model


def train_new_token_rows(model: nn.Module, first_id: int) -> int:
    """Make rows first_id..vocab_size-1 of the token embedding (and of an untied lm_head) trainable, and only those.

    For PEFT after a vocabulary resize: `apply_lora` freezes the tables, so new tokens would keep their initial
    rows (all equal under init="mean": the model could not tell them apart). Call it after `apply_*`. Returns the
    number of trainable rows' parameters (0 when first_id == vocab_size: no token was added). The gradient hook
    stays on the tensor; old rows get a zero gradient.
    """
    target = getattr(model, "_orig_mod", model)
    cfg = getattr(target, "config", None)
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"train_new_token_rows needs a minillm GPT, got {type(model).__name__}")
    if isinstance(first_id, bool) or not isinstance(first_id, int) or not 0 <= first_id <= cfg.vocab_size:
        raise ValueError(f"first_id={first_id!r} must be an int in [0, {cfg.vocab_size}]: the first new token id "
                         f"(the vocab_size before the resize; vocab_size itself = no new rows)")
    if first_id == cfg.vocab_size:
        return 0  # nothing was added: every table stays as PEFT left it
    head = getattr(target.lm_head, "base", target.lm_head)  # a LoRA-wrapped head: its own (untied) frozen weight
    weights = {id(w): w for w in (target.tok_emb.weight, head.weight)}.values()  # a tied matrix once
    for w in weights:
        keep = torch.zeros(w.size(0), 1, dtype=w.dtype, device=w.device)  # (rows, 1)
        keep[first_id:cfg.vocab_size] = 1  # padding rows past vocab_size stay frozen too
        w.requires_grad_(True)
        w.register_hook(lambda g, keep=keep: g * keep.to(g.device, g.dtype))  # the model may move after this
    return sum(w.size(1) for w in weights) * (cfg.vocab_size - first_id)
