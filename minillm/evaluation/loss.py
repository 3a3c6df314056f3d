"""Held-out loss: the one function behind every "how well does the model predict text it never trained on" number.
Survey §7 (capacity evaluation), §7.1.1 (language modeling: loss in nats/token, perplexity = exp(loss)).

`heldout_loss(model, ids)` cuts windows of `length` tokens (default: the model's block_size) from a long token
stream and scores next-token predictions with pure cross-entropy from the logits (float32, nats). Never the
model's own loss, which may add MoE router terms or a z-loss. Divide by ln 2 for bits. Two window layouts:

- sampled (max_windows=k, the default 64): up to k non-overlapping windows spread evenly over the stream
  (`eval_window_starts`; deterministic, so two models are scored on the same targets). Every target of a
  window is scored, target t with the t+1 tokens before it in its window. What the studies report.
- full (max_windows=None): every token after the first is scored exactly once (HF's "perplexity of
  fixed-length models"): windows start every `stride` tokens (default: length), the last one moved back to end
  at the stream's end, and a target counts in the first window that holds it. A smaller stride gives each
  target more left context. What `minillm.evaluation.harness.perplexity` reports.

Options (sampled layout only):
- prefix_len=P: score only the targets at window positions >= P-1 (the suffix), as for prefix LMs: a prefix
  decoder (attention_mask="prefix") is called with prefix_len=P, an encoder-decoder reads x[:, :P] in its encoder
  and decodes from x[:, P-1:] (`split_prefix_batch`); a causal decoder just has its prefix targets dropped.
- per_position=True: return the (n, L') tensor of losses (on the CPU) instead of its mean; column j is the target
  at window position (P-1 if prefix_len else 0) + j, so columns >= L are positions a model trained on windows of
  L tokens never saw. `.mean()` is the scalar loss up to float32 rounding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from minillm.data.loader import eval_window_starts
from minillm.data.tokenizer import encode_array
from minillm.device import model_device
from minillm.model.encdec import EncoderDecoder
from minillm.model.transformer import logits_of


def _as_ids(ids, tokenizer) -> torch.Tensor:
    """A 1-D int64 token tensor from ids (T,) / (1, T), or from a str encoded with `tokenizer`."""
    if isinstance(ids, str):
        if tokenizer is None:
            raise ValueError("text needs a tokenizer to encode it: heldout_loss(model, text, tokenizer=tok)")
        if not ids:
            raise ValueError("text must be a non-empty str")
        ids = torch.from_numpy(encode_array(tokenizer, ids))
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() == 2 and ids.size(0) == 1:
        ids = ids[0]
    if ids.dim() != 1:
        raise ValueError(f"ids must be one sequence (T,) or (1, T), got shape {tuple(ids.shape)}")
    if ids.numel() < 2:
        raise ValueError(f"need at least 2 tokens to score one prediction, got {ids.numel()}")
    return ids


def _full_windows(n: int, L: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(starts (W,), score (W, L)) covering targets 1..n exactly once with windows of L inputs."""
    starts = torch.tensor(sorted(set(range(0, n - L, stride)) | {n - L}), dtype=torch.long)  # last ends at n
    prev_end = torch.cat([torch.zeros(1, dtype=torch.long), starts[:-1] + L])  # (W,) end of the window before
    score = (starts[:, None] + torch.arange(L) + 1) > prev_end[:, None]       # (W, L) target not yet scored
    assert int(score.sum()) == n, (int(score.sum()), n)  # every target once: a bug here would bias the loss
    return starts, score


def _suffix_logits(model, x: torch.Tensor, prefix_len: int | None) -> tuple[torch.Tensor, int]:
    """(logits (b, L', V) for the scored targets, window index of the first scored target)."""
    encdec = isinstance(model, EncoderDecoder)
    prefix_mask = getattr(getattr(model, "config", None), "attention_mask", "causal") == "prefix"
    if prefix_len is None:
        if encdec or prefix_mask:
            raise ValueError("an encoder-decoder or prefix decoder needs prefix_len: the encoder reads the prefix, "
                             "a prefix decoder sees it bidirectionally (a loss there would be copying)")
        return logits_of(model(x)), 0
    start = prefix_len - 1
    if encdec:  # encoder reads x[:, :P], decoder starts at the last prefix token and predicts y[:, P-1:]
        return logits_of(model(x[:, :prefix_len], x[:, start:])), start
    kw = {"prefix_len": prefix_len} if prefix_mask else {}
    return logits_of(model(x, **kw))[:, start:], start  # (b, L-P+1, V): the suffix targets only


@torch.no_grad()
def heldout_loss(model: torch.nn.Module, ids, *, tokenizer=None, length: int | None = None,
                 max_windows: int | None = 64, stride: int | None = None, prefix_len: int | None = None,
                 per_position: bool = False, batch_size: int = 32) -> float | torch.Tensor:
    """Mean next-token loss (nats/token) of `model` on `ids` (a token stream, or a str with `tokenizer`).

    length: tokens per window (default: model.config.block_size; at most that). max_windows: how many evenly
    spread windows (None: score every token once, windows every `stride` tokens). prefix_len, per_position:
    see the module docstring. batch_size windows go through the model at once (an MoE's routing sees them
    together, so keep it fixed to compare numbers). Returns a float, or the (n, L') CPU tensor if per_position."""
    ids = _as_ids(ids, tokenizer)
    n = ids.numel() - 1  # the first token has no context, so it is not predicted
    block = getattr(getattr(model, "config", None), "block_size", None)
    L = length if length is not None else block if block is not None else n if max_windows is None else None
    if not isinstance(L, int) or isinstance(L, bool) or L < 1:
        raise ValueError(f"length={L!r} must be a positive int (a model without config.block_size needs one)")
    if block is not None and L > block:
        raise ValueError(f"length={L} is longer than the model's context ({block}); use length<={block}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive int")
    if max_windows is None:  # ---- full layout: every target once
        if per_position or prefix_len is not None:
            raise ValueError("per_position and prefix_len need whole windows: give max_windows, not None")
        L = min(L, n)
        stride = L if stride is None else stride
        if not isinstance(stride, int) or not 1 <= stride <= L:
            raise ValueError(f"stride={stride!r} must be an int in [1, length={L}] (overlap, never gaps)")
        starts, score = _full_windows(n, L, stride)
    else:  # ---- sampled layout: whole windows spread evenly
        if stride is not None:
            raise ValueError("stride lays out the full layout: pass max_windows=None with it")
        if not isinstance(max_windows, int) or isinstance(max_windows, bool) or max_windows < 1:
            raise ValueError(f"max_windows={max_windows!r} must be a positive int (or None: every token)")
        if prefix_len is not None and (not isinstance(prefix_len, int) or not 1 <= prefix_len <= L):
            raise ValueError(f"prefix_len={prefix_len!r} must be an int in [1, length={L}]")
        starts = eval_window_starts(len(ids), L, max_windows)  # (W,)
        score = None
    device, total, count, rows = model_device(model), 0.0, 0, []
    was_training = model.training
    model.eval()  # dropout off
    try:
        for s in range(0, len(starts), batch_size):  # a loop over batches of windows, not over tokens
            w = ids[starts[s:s + batch_size, None] + torch.arange(L + 1)].to(device)  # (b, L+1)
            logits, start = _suffix_logits(model, w[:, :-1], prefix_len)           # (b, L', V)
            nll = F.cross_entropy(logits.float().transpose(1, 2), w[:, 1 + start:], reduction="none")  # (b, L')
            if per_position:
                rows.append(nll.cpu())
                continue
            m = nll.new_ones(nll.shape, dtype=torch.bool) if score is None else score[s:s + batch_size].to(device)
            total += float(nll[m].double().sum())
            count += int(m.sum())
    finally:
        model.train(was_training)
    return torch.cat(rows) if per_position else total / count
