"""The fine-tuning recipe as one call: a base run folder + a JSONL of conversations -> a chat-tuned run folder
(Survey §5.1 instruction tuning, with §5.3 parameter-efficient LoRA).

    summary = finetune_run("runs/mine", "pairs.jsonl", "runs/mine-chat", merge=True)
    model, tok = load_run("runs/mine-chat")      # then generate / eval --run, like any run

The steps, each a library function a reader can call alone:
1. `load_run(base)`: the model and the tokenizer its ids mean.
2. `add_chat_tokens`: a base pretrained without the chat tags gets them (`data.vocab.add_special_tokens`, new ids
   after the old ones) and its embedding grows to match (`model.resize.resize_token_embeddings`, mean-initialised).
3. `load_jsonl(data)` (any of `sft.JSONL_SHAPES`), rendered by `ChatTemplate`, packed with the model's block_size:
   one conversation per row by default (few short pairs learn far better so; see `sft.pack`), or across
   conversations (one_per_row=False) for large corpora of long responses.
4. `apply_lora(LoRAConfig(rank, alpha))` freezes the base; `train_new_token_rows` lets the added tokens' rows learn
   (else all four tags would share one frozen embedding and the model could not tell them apart).
5. `train_sft` through `finetune.loop.optimize`: checkpoints go to OUT/ckpt while it trains, so a killed run
   resumes (call again with the same arguments); the history goes to OUT/history.jsonl.
6. merge=True: `merge_lora` + `save_run` -> a plain run folder (full weights). merge=False: `save_adapter_run`
   -> only the LoRA factors and new token rows (small) next to a pointer to the base run; `load_run` rebuilds
   the model from both (so the base folder must stay where it is).
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minillm.config import TrainConfig
from minillm.data.tokenizer import Tokenizer
from minillm.data.vocab import add_special_tokens
from minillm.device import seed_everything
from minillm.finetune.chat import CHAT_TOKENS, ChatTemplate
from minillm.finetune.peft import LoRAConfig, apply_lora, merge_lora
from minillm.finetune.sft import IGNORE, Conversation, load_jsonl, pack, response_accuracy, train_sft
from minillm.model.resize import resize_token_embeddings, train_new_token_rows
from minillm.train.checkpoint import checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint_state
from minillm.train.rundir import CONFIG, load_run, save_adapter_run, save_run

__all__ = ["FINETUNE_DEFAULTS", "add_chat_tokens", "finetune_run", "train_new_token_rows"]  # the last re-exported: the
# README's LoRA example imports everything from minillm.finetune

# Defaults checked on tiny CPU base runs (tests/minillm/finetune/test_recipe.py): 32 short pairs reach 100% training
# exact match in a few seconds on a base that has learned its text (loss ~0.2/char), and ~95% on a barely trained
# one (loss 1.7). LoRA takes ~10x the full fine-tuning lr (minillm's presets pretrain at 1e-3): only B A moves.
FINETUNE_DEFAULTS = dict(lora_rank=8, steps=300, lr=1e-2, batch_size=16)


def add_chat_tokens(model: torch.nn.Module, tokenizer: Tokenizer) -> tuple[Tokenizer, list[str], int]:
    """(tokenizer with CHAT_TOKENS, the tokens added, first new id): grows `model`'s vocabulary in place to match.

    Nothing is added when the tokenizer already has all four tags (then first new id = vocab_size). New rows are the
    mean of the old ones (Hewitt 2021); call `train_new_token_rows(model, first_id)` after `apply_lora`."""
    added = [t for t in CHAT_TOKENS if t not in tokenizer.special_tokens]
    first = tokenizer.vocab_size
    tokenizer = add_special_tokens(tokenizer, CHAT_TOKENS)
    resize_token_embeddings(model, max(tokenizer.vocab_size, model.config.vocab_size))
    return tokenizer, added, first


def _render_all(convs: list[Conversation], template: ChatTemplate, block_size: int, data: Path) -> int:
    """Check every conversation encodes and fits the model's context, naming its line and the fix; returns the
    longest one's length in tokens."""
    longest = 0
    for c in convs:  # a loop over conversations: the error must name the line
        where = f"{data}:{c.meta.get('line', '?')}"
        try:
            n = len(template.render(c.messages)[0])
        except ValueError as e:
            raise ValueError(f"{where}: the base run's tokenizer cannot encode this conversation ({e}). Remove those "
                             f"characters from the data, or pretrain the base on text that contains them") from None
        if n > block_size + 1:
            raise ValueError(f"{where}: the conversation is {n} tokens with its chat tags, more than the base model's "
                             f"block_size + 1 = {block_size + 1}: shorten it, or fine-tune a base trained with a "
                             f"larger --block_size")
        longest = max(longest, n)
    return longest


@torch.no_grad()
def _heldout_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Mean next-token loss over the response tokens of packed rows (y = -100 elsewhere)."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    for s in range(0, len(x), batch_size):  # a loop over batches
        xb, yb = x[s:s + batch_size].to(device), y[s:s + batch_size].to(device)  # (b, T)
        logits = model(xb)[0].float()  # (b, T, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), yb.reshape(-1),
                                                 ignore_index=IGNORE, reduction="sum")
        total, count = total + float(loss), count + int((yb != IGNORE).sum())
    return total / count


def _check_out(out: Path, base: Path) -> bool:
    """True when OUT holds an unfinished fine-tuning run to resume; errors on a folder that must not be written."""
    if out.resolve() == base.resolve():
        raise ValueError(f"out={out} is the base run itself: write the fine-tuned run to a new folder")
    if (out / CONFIG).exists():
        raise ValueError(f"{out} already holds a finished run ({out / CONFIG}): choose a new out folder, or delete it "
                         f"to fine-tune again")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={out} exists and is not a folder")
    return bool(list_checkpoints(out)) if out.is_dir() else False


def finetune_run(base: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, *,
                 lora_rank: int = FINETUNE_DEFAULTS["lora_rank"], lora_alpha: float | None = None,
                 lora_targets: tuple[str, ...] | None = None, merge: bool = False,
                 steps: int = FINETUNE_DEFAULTS["steps"], lr: float = FINETUNE_DEFAULTS["lr"],
                 batch_size: int = FINETUNE_DEFAULTS["batch_size"], one_per_row: bool = True, holdout: int = 0,
                 seed: int = 0, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """LoRA-tune the run folder `base` on the conversations in `data` (JSONL) and save the result as run folder `out`.

    lora_rank / lora_alpha: LoRA's r and alpha (default 2 r). lora_targets: Linear names to adapt (default: every
    Linear in the blocks: attention and MLP, as QLoRA found best; e.g. ("wq", "wv") for the LoRA paper's choice).
    merge: True saves full merged weights (a plain run); False saves the adapter only (needs `base` to stay).
    one_per_row: each conversation alone in its padded row (default); False packs across conversations.
    holdout: conversations (chosen with `seed`) kept out of training to report a held-out loss and exact match.
    progress: print what happens (tokens added, rows, parameters, the result).
    A folder with checkpoints but no config.json (a killed run) is resumed; a finished one is refused.
    Returns {"out", "merged", "steps", "seconds" (training time), "final_loss", "heldout_loss", "train_exact_match"
    (greedy answers vs the data, on up to 256 training conversations), "heldout_exact_match", "n_train",
    "n_heldout", "rows", "row_tokens", "trainable_params", "total_params", "added_tokens", "notes"}.
    """
    base, data, out = Path(base), Path(data), Path(out)
    resume = _check_out(out, base)
    say = print if progress else (lambda *a, **k: None)
    if isinstance(holdout, bool) or not isinstance(holdout, int) or holdout < 0:
        raise ValueError(f"holdout={holdout!r} must be a non-negative int (conversations kept out of training)")
    model, tok = load_run(base)
    if tok is None:
        raise FileNotFoundError(f"{base} has no tokenizer.json, so the conversations cannot be encoded: train the "
                                f"base with its tokenizer (python -m minillm train does; Trainer(..., tokenizer=tok))")
    base_ckpt = latest_checkpoint(base)
    if base_ckpt is None and not merge:
        raise ValueError(f"{base} has no checkpoint of its own (it is an adapter run): fine-tune it with merge=True "
                         f"(--merge), so the new run carries full weights")
    notes: list[str] = []
    tok, added, first_new = add_chat_tokens(model, tok)
    if added:
        notes.append(f"added {added} to the tokenizer (ids {first_new}..{tok.vocab_size - 1}) and grew the model's "
                     f"embedding to {model.config.vocab_size} rows (new rows = the mean of the old ones)")
    template = ChatTemplate(tok)
    convs = load_jsonl(data)
    T = model.config.block_size
    longest = _render_all(convs, template, T, data)
    if holdout >= len(convs):
        raise ValueError(f"holdout={holdout} leaves no conversation to train on ({len(convs)} in {data})")
    order = np.random.default_rng(seed).permutation(len(convs))
    train, held = [convs[i] for i in sorted(order[holdout:])], [convs[i] for i in sorted(order[:holdout])]
    # One per row: rows as long as the longest conversation, not block_size (the rest would be padding: wasted work)
    rows_T = min(T, longest - 1) if one_per_row else T
    x, y = pack(train, rows_T, template, one_per_row=one_per_row)  # (N, rows_T) each
    if batch_size > len(x):
        notes.append(f"batch_size {batch_size} > {len(x)} rows: using {len(x)}")
        batch_size = len(x)
    seed_everything(seed)  # the LoRA factors' initial values (and a resumed run's) come from the seed alone
    if lora_targets is None:  # every Linear inside the blocks (QLoRA's finding: all layers, not only q and v)
        lora_targets = tuple(dict.fromkeys(n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                                           if isinstance(m, torch.nn.Linear) and n.startswith("blocks.")))
    lora = LoRAConfig(rank=lora_rank, alpha=float(2 * lora_rank if lora_alpha is None else lora_alpha),
                      target_modules=lora_targets)
    if not merge and model.config.tie_embeddings and "lm_head" in lora.target_modules:
        raise ValueError("LoRA on lm_head, whose weight is tied to the token embedding, cannot be saved as an "
                         "adapter (merging it would change the embedding too): pass merge=True (--merge)")
    report = apply_lora(model, lora)
    # only the added rows of the tables learn (the whole table has a gradient, zero on the old rows)
    n_train, n_total = report.trainable + (train_new_token_rows(model, first_new) if added else 0), report.total
    cfg = TrainConfig(max_steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(20, steps // 10),
                      weight_decay=0.0, device=device, seed=seed, log_interval=max(1, steps // 20),
                      checkpoint_interval=max(1, steps // 4), out_dir=str(out), resume=resume, progress=False)
    for n in notes:
        say(f"note: {n}")
    layout = "one conversation per row" if one_per_row else "packed across conversations"
    say(f"fine-tuning {base} on {len(train)} conversations -> {len(x)} rows of {rows_T} tokens ({layout}); LoRA rank "
        f"{lora.rank}: {n_train:,} trainable of {n_total:,} parameters; {steps} steps -> {out}")
    start = time.perf_counter()
    history = train_sft(model, x, y, cfg)
    seconds = time.perf_counter() - start
    summary: dict[str, Any] = {
        "out": str(out), "merged": merge, "steps": steps, "seconds": seconds, "final_loss": history[-1]["loss"],
        "heldout_loss": None,
        "train_exact_match": float(response_accuracy(model, template, train[:256]).mean()),
        "heldout_exact_match": None, "n_train": len(train), "n_heldout": len(held), "rows": len(x),
        "row_tokens": rows_T, "trainable_params": n_train, "total_params": n_total, "added_tokens": added,
        "notes": notes}
    if held:
        hx, hy = pack(held, rows_T, template, one_per_row=one_per_row)
        summary["heldout_loss"] = _heldout_loss(model, hx, hy, batch_size)
        summary["heldout_exact_match"] = float(response_accuracy(model, template, held).mean())
    record = {"base_run": str(base.resolve()), "data": str(data.resolve()), "lora": lora.to_dict(),
              "one_per_row": one_per_row, "summary": {k: v for k, v in summary.items() if k != "notes"}}
    if merge:
        merge_lora(model)  # a plain GPT again: the run folder needs no LoRA code to load
        save_run(out, model, tok, train_cfg=cfg, step=steps, finetune=record)  # replaces the training checkpoint
    else:
        save_adapter_run(out, model, tok, base_run=base, base_checkpoint=int(load_checkpoint_state(base_ckpt)["step"]),
                         lora=lora.to_dict(), first_new_id=first_new if added else None, train_cfg=cfg,
                         finetune=record)
        ckpt_dir = checkpoint_path(out, steps).parent
        if ckpt_dir.is_dir():  # full LoRA-model copies, only needed to resume: the adapter replaces them
            shutil.rmtree(ckpt_dir)
    held_txt = (f", held-out loss {summary['heldout_loss']:.4f}, held-out exact match "
                f"{summary['heldout_exact_match']:.0%}" if held else "")
    say(f"done: loss {summary['final_loss']:.4f}, training exact match {summary['train_exact_match']:.0%}{held_txt}; "
        f"{'merged run' if merge else 'adapter run (base: ' + str(base) + ')'} in {out}/")
    return summary
