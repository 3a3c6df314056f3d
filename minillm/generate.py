"""Text generation: greedy, temperature, top-k and top-p (nucleus) sampling, with a KV cache.

Survey §4.2.4 (decoding strategy): greedy search picks the most likely next token; sampling draws from the
distribution, reshaped by a temperature (sharper < 1 < flatter) and truncated to the k most likely tokens
(top-k) or to the smallest set whose probability reaches p (top-p). The KV cache (§4.2.2) makes each new
token cost one position's work instead of the whole prefix's.
"""
from __future__ import annotations

import torch

from .model.layers import softmax


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set logits outside the top-k / nucleus to -inf. logits (B, V) -> (B, V)."""
    if top_k is not None:
        if top_k <= 0:
            raise ValueError(f"top_k={top_k} must be a positive integer (or None for no limit)")
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p={top_p} must be in (0, 1]")
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = softmax(sorted_logits, dim=-1)
        # drop a token when the tokens ranked above it already reach top_p (so the top one always stays)
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row from logits (B, V) -> (B,). temperature 0 means greedy (argmax)."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 = greedy)")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, stop_tokens: list[int] | tuple[int, ...] | None = None,
             use_cache: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue each row of idx (B, T) by up to max_new_tokens tokens; returns (B, T + n).

    A row that emits a stop token is finished: it keeps that token and is padded with it until every row
    has finished or the budget is spent. With use_cache the prompt is encoded once ("prefill") and each
    step feeds only the newest token; past block_size the context is cropped and re-encoded each step,
    exactly what the uncached path does, so both give identical tokens.
    """
    if idx.dim() != 2:
        raise ValueError(f"idx must be (B, T) token ids, got shape {tuple(idx.shape)}")
    if idx.size(1) == 0:
        raise ValueError("idx is empty: give at least one prompt token (e.g. a BOS/EOS id or a newline)")
    was_training = model.training
    model.eval()
    block = model.config.block_size
    stop = torch.tensor(list(stop_tokens or []), device=idx.device, dtype=idx.dtype)
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    cache = None
    try:
        for _ in range(max_new_tokens):
            if use_cache and cache is not None and cache.pos < block:
                logits, _ = model(idx[:, -1:], cache=cache)  # one new position
            else:
                context = idx[:, -block:]
                cache = model.make_cache(idx.size(0)) if use_cache and context.size(1) < block else None
                logits, _ = model(context, cache=cache)  # (re)encode the whole context
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B,)
            if stop.numel():
                last = idx[:, -1]
                nxt = torch.where(finished, last, nxt)  # finished rows repeat their stop token
                finished |= torch.isin(nxt, stop)
            idx = torch.cat([idx, nxt[:, None]], dim=1)
            if stop.numel() and bool(finished.all()):
                break
    finally:
        model.train(was_training)
    return idx
