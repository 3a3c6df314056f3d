"""Beam search, left-padded batched generation, streaming, and what the KV cache buys.

Survey §4.2.4 (decoding strategy): beam search keeps the `beam_width` most likely partial sequences at each
step instead of one, so it can find a continuation whose first token is not the locally best one (greedy is
myopic); a length penalty (Wu et al. 2016) divides the summed log-probability by length**alpha so longer
hypotheses are not punished merely for having more negative terms. Batching prompts of different lengths
pads them on the left so every row's next token sits in the last column; a padding mask hides the pads and
restores each row's real positions. Survey §4.2.2: the KV cache turns each decoding step from re-encoding the
whole prefix into one position's work (`kv_cache_speed`, bench/kv_cache.py).

`minillm.generate` re-exports everything public here.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .generate import decode_steps, generate, next_logits


@dataclass
class BeamResult:
    """Beam search output, best first: sequences (each 1-D ids, prompt included) and their scores."""

    sequences: list[torch.Tensor]
    scores: list[float]


def _beam_score(logp_sum: float, n_generated: int, length_penalty: float) -> float:
    return logp_sum / (n_generated ** length_penalty)


@torch.no_grad()
def beam_search(model, idx: torch.Tensor, max_new_tokens: int, beam_width: int = 4, length_penalty: float = 1.0,
                stop_tokens: Sequence[int] | None = None, use_cache: bool = True) -> BeamResult:
    """Beam search from one prompt idx (1, T); returns up to beam_width hypotheses, best first.

    Score = sum of the generated tokens' log-probs / (number generated) ** length_penalty (0 = raw sum). Each
    step runs all live beams through the model as one batch (beams = batch rows), expands each by its best
    tokens, and keeps the beam_width best by summed log-prob; with the cache, its rows are reordered to follow
    the surviving beams' parents. A beam that emits a stop token is finished (stop token kept). Search stops
    once beam_width beams have finished (early stopping, as Hugging Face's early_stopping=True) and then returns
    those; if the budget runs out first, finished and live beams compete on score. beam_width=1 is greedy.
    """
    if idx.dim() != 2 or idx.size(0) != 1 or idx.size(1) == 0:
        raise ValueError(f"beam_search takes one non-empty prompt of shape (1, T), got {tuple(idx.shape)}; "
                         "loop over prompts to search several")
    if beam_width < 1 or max_new_tokens < 1:
        raise ValueError(f"beam_width={beam_width} and max_new_tokens={max_new_tokens} must both be >= 1")
    stop = torch.tensor(list(stop_tokens or []), device=idx.device, dtype=idx.dtype)
    was_training = model.training
    model.eval()
    beams, sums = idx, torch.zeros(1, device=idx.device)  # (n, T) live beams, (n,) their summed log-probs
    finished: list[tuple[float, torch.Tensor]] = []
    cache, early = None, False
    try:
        for step in range(1, max_new_tokens + 1):  # step = tokens generated so far, this one included
            logits, cache = next_logits(model, beams, cache, use_cache)  # (n, V)
            cand = sums[:, None] + F.log_softmax(logits.float(), dim=-1)  # (n, V) sum if extended by each token
            V = cand.size(1)
            # k + |stop| candidates always hold k that do not stop (when the vocabulary has them)
            top, flat = cand.flatten().topk(min(beam_width + stop.numel(), cand.numel()))  # best first
            parent, token = flat // V, flat % V
            stops = torch.isin(token, stop)
            ranked = torch.arange(len(flat), device=idx.device) < beam_width
            for j in (stops & ranked).nonzero().flatten().tolist():  # stop candidates among the top k finish
                seq = torch.cat([beams[parent[j]], token[j:j + 1]])
                finished.append((_beam_score(float(top[j]), step, length_penalty), seq))
            keep = (~stops).nonzero().flatten()[:beam_width]  # the k best that go on
            if len(finished) >= beam_width:
                early = True
                break
            if keep.numel() == 0:
                break
            parent, token = parent[keep], token[keep]
            beams, sums = torch.cat([beams[parent], token[:, None]], dim=1), top[keep]
            if cache is not None:
                cache.reorder(parent)  # each surviving beam continues from its parent's keys and values
        if not early:  # out of budget (or of tokens): live beams compete with the finished ones
            finished += [(_beam_score(float(s), beams.size(1) - idx.size(1), length_penalty), b)
                         for s, b in zip(sums, beams) if beams.size(1) > idx.size(1)]
    finally:
        model.train(was_training)
    finished.sort(key=lambda h: h[0], reverse=True)
    best = finished[:beam_width]
    return BeamResult(sequences=[seq for _, seq in best], scores=[score for score, _ in best])


def generate_batch(model, prompts: list[list[int]] | list[torch.Tensor], max_new_tokens: int, pad_id: int,
                   **sampling) -> list[list[int]]:
    """Generate for prompts of different lengths in one batch; returns each prompt's new tokens (up to and
    including its stop token / stop sequence). sampling: generate's keyword arguments (temperature, top_k,
    top_p, stop_tokens, stop_sequences, repetition_penalty, use_cache, generator).

    Prompts are left-padded with pad_id into one (B, T) batch, so every row's next token is the last column.
    The model gets a padding mask: pads are never attended to and real tokens keep the positions they would
    have alone, so greedy output equals per-prompt `generate`. The repetition penalty ignores pads.
    """
    if not prompts:
        raise ValueError("prompts is empty: give at least one prompt")
    rows = [p.tolist() if isinstance(p, torch.Tensor) else list(p) for p in prompts]
    if any(len(r) == 0 for r in rows):
        raise ValueError("a prompt is empty: give each at least one token (e.g. a BOS/EOS id)")
    device = next(model.parameters()).device
    T = max(len(r) for r in rows)
    idx = torch.tensor([[pad_id] * (T - len(r)) + r for r in rows], device=device)  # (B, T) left-padded
    lengths = torch.tensor([len(r) for r in rows], device=device)
    pad_mask = torch.arange(T, device=device)[None, :] >= (T - lengths)[:, None]  # (B, T) True = real
    new, done_at = [], torch.full((len(rows),), max_new_tokens, device=device)
    for step, (nxt, finished) in enumerate(decode_steps(model, idx, max_new_tokens, pad_mask=pad_mask, **sampling)):
        new.append(nxt)
        done_at = torch.where(finished & (done_at == max_new_tokens), step + 1, done_at)  # first finishing step
    out = torch.stack(new, dim=1) if new else idx[:, :0]  # (B, n)
    return [out[i, :int(done_at[i])].tolist() for i in range(len(rows))]


def stream(model, idx: torch.Tensor, max_new_tokens: int, **sampling) -> Iterator[int]:
    """Yield each new token id of one prompt idx (1, T) as soon as it is sampled; a stop token (or the end of
    a stop sequence) is yielded and ends the stream. Same loop as `generate`: with the same generator seed the
    tokens are those generate appends."""
    if idx.dim() != 2 or idx.size(0) != 1:
        raise ValueError(f"stream takes one prompt of shape (1, T), got {tuple(idx.shape)}; use generate for batches")
    steps = decode_steps(model, idx, max_new_tokens, **sampling)  # validates now, not at the first next()
    return _stream(steps)


def _stream(steps) -> Iterator[int]:
    for nxt, finished in steps:
        yield int(nxt[0])
        if bool(finished[0]):
            return


def kv_cache_speed(model, prompt_len: int, new_tokens: int, use_cache: bool, *, cpu_time: bool = False) -> float:
    """Greedy decoding speed in new tokens per second from a random prompt of prompt_len tokens (one untimed
    token first, so allocation and first-call costs are not counted).

    cpu_time=True divides by this process's CPU time instead of wall time: on a shared machine other processes
    stretch wall time but not the work done, and with one thread the two agree when the machine is idle."""
    if prompt_len < 1 or new_tokens < 1 or prompt_len + new_tokens > model.config.block_size:
        raise ValueError(f"need prompt_len >= 1, new_tokens >= 1 and prompt_len + new_tokens <= block_size="
                         f"{model.config.block_size}; got {prompt_len} + {new_tokens}")
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, model.config.vocab_size, (1, prompt_len), generator=g).to(device)
    generate(model, prompt, 1, temperature=0, use_cache=use_cache)  # warm-up
    clock = time.process_time if cpu_time else time.perf_counter
    t0 = clock()
    generate(model, prompt, new_tokens, temperature=0, use_cache=use_cache)
    return new_tokens / (clock() - t0)


def plot_kv_speed(rows: list[dict]):
    """Figure from bench/kv_cache.py rows ({seq_len, cached_tps, uncached_tps, speedup}): tokens/s with and
    without the cache against sequence length (left) and the speedup (right)."""
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no rows to plot: run bench/kv_cache.py (or kv_cache_speed) first")
    rows = sorted(rows, key=lambda r: r["seq_len"])
    x = [r["seq_len"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(x, [r["cached_tps"] for r in rows], "o-", label="with KV cache")
    ax1.plot(x, [r["uncached_tps"] for r in rows], "s--", label="without (re-encode prefix)")
    ax1.set(xscale="log", yscale="log", xlabel="sequence length (tokens)", ylabel="new tokens / s",
            title="Decoding speed")
    ax1.legend()
    ax2.plot(x, [r["speedup"] for r in rows], "o-", color="C2")
    ax2.axhline(1.0, color="gray", lw=0.8)
    ax2.set(xscale="log", xlabel="sequence length (tokens)", ylabel="cached / uncached", title="KV-cache speedup")
    fig.tight_layout()
    return fig
