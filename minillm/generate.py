"""Text generation: greedy, temperature, top-k and top-p (nucleus) sampling, with a KV cache.

Survey §4.2.4 (decoding strategy): greedy search picks the most likely next token; sampling draws from the
distribution, reshaped by a temperature (sharper < 1 < flatter) and truncated to the k most likely tokens
(top-k) or to the smallest set whose probability reaches p (top-p). The KV cache (§4.2.2) makes each new
token cost one position's work instead of the whole prefix's. A repetition penalty (CTRL, Keskar et al. 2019)
discourages tokens the row already holds; stop tokens / stop sequences end a row. Beam search, left-padded
batches and streaming.

Beam search keeps the `beam_width` most likely partial sequences at each step instead of one, so it can find
a continuation whose first token is not the locally best one (greedy is myopic); a length penalty (Wu et al.
2016) divides the summed log-probability by length**alpha so longer hypotheses are not punished merely for
having more negative terms. Batching prompts of different lengths pads them on the left so every row's next
token sits in the last column; a padding mask hides the pads and restores each row's real positions.
`kv_cache_speed` measures what the cache buys (bench/kv_cache.py).

Everything here works on token ids and stops only where told; `minillm.textgen.generate_text` takes text, stops
at the tokenizer's end tokens by default, and returns text.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minillm.model.layers import softmax


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


def apply_repetition_penalty(logits: torch.Tensor, idx: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL / Hugging Face repetition penalty: logits (B, V), idx (B, T) -> (B, V).

    For every token id present in its row of idx, a positive logit is divided by `penalty` and a negative one
    multiplied by it, so with penalty > 1 a seen token always becomes less likely (dividing a negative logit
    would raise it). penalty 1 changes nothing."""
    return _penalize(logits, _seen(idx, logits.size(-1)), penalty)


def _seen(idx: torch.Tensor, vocab_size: int, real: torch.Tensor | None = None) -> torch.Tensor:
    """(B, V) bool: which ids occur in each row of idx (B, T), counting only positions where real (B, T)."""
    weight = torch.ones_like(idx, dtype=torch.float32) if real is None else real.float()
    counts = torch.zeros(idx.size(0), vocab_size, device=idx.device).scatter_add_(1, idx, weight)  # (B, V)
    return counts > 0


def _penalize(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    if penalty <= 0:
        raise ValueError(f"repetition_penalty={penalty} must be > 0 (1 = off, > 1 discourages repeats)")
    scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, scaled, logits)  # (B, V)


def _check_stop_sequences(stop_sequences) -> list[list[int]]:
    seqs = [list(s) for s in (stop_sequences or [])]
    if any(len(s) == 0 for s in seqs):
        raise ValueError("stop_sequences holds an empty sequence: each must list at least one token id")
    return seqs


def _ends_with(idx: torch.Tensor, seqs: list[torch.Tensor], n_generated: int) -> torch.Tensor:
    """(B,) bool: rows of idx (B, T) whose last n_generated tokens end with one of seqs."""
    hit = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    for s in seqs:  # a handful of sequences, each compared over the whole batch at once
        if len(s) <= n_generated:
            hit |= (idx[:, -len(s):] == s).all(dim=-1)
    return hit


def next_logits(model, idx: torch.Tensor, cache, use_cache: bool, pad_mask: torch.Tensor | None = None):
    """Logits (B, V) for the token after idx (B, T), and the cache to pass next time.

    With use_cache the first call encodes the context ("prefill") and later calls feed only the newest token;
    past block_size the context is cropped and re-encoded each step, exactly what the uncached path does, so
    both give the same tokens. pad_mask (B, T), True = real token, is passed on only for padded batches."""
    block = model.config.block_size
    if use_cache and cache is not None and cache.pos < block:
        kw = {} if pad_mask is None else {"pad_mask": pad_mask}  # (B, cache.pos + 1): every cached key
        logits, _ = model(idx[:, -1:], cache=cache, **kw)  # one new position
    else:
        context = idx[:, -block:]
        cache = model.make_cache(idx.size(0)) if use_cache and context.size(1) < block else None
        kw = {} if pad_mask is None else {"pad_mask": pad_mask[:, -block:]}
        logits, _ = model(context, cache=cache, **kw)  # (re)encode the whole context
    return logits[:, -1, :], cache


def decode_steps(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 stop_tokens: Sequence[int] | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None, repetition_penalty: float = 1.0,
                 stop_sequences: list[list[int]] | None = None,
                 pad_mask: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The decoding loop behind generate, generate_batch and stream: validates now, then yields
    (next tokens (B,), finished (B,)) once per step. Finished rows repeat their last token."""
    if idx.dim() != 2:
        raise ValueError(f"idx must be (B, T) token ids, got shape {tuple(idx.shape)}")
    if idx.size(1) == 0:
        raise ValueError("idx is empty: give at least one prompt token (e.g. a BOS/EOS id or a newline)")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 = greedy)")
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty={repetition_penalty} must be > 0 (1 = off, > 1 discourages repeats)")
    seqs = [torch.tensor(s, device=idx.device, dtype=idx.dtype) for s in _check_stop_sequences(stop_sequences)]
    stop = torch.tensor(list(stop_tokens or []), device=idx.device, dtype=idx.dtype)
    return _steps(model, idx, max_new_tokens, (temperature, top_k, top_p, generator), stop, seqs, use_cache,
                  repetition_penalty, pad_mask)


@torch.no_grad()
def _steps(model, idx, max_new_tokens, sampling, stop, seqs, use_cache, penalty, pad_mask):
    was_training = model.training
    model.eval()
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)  # (B,)
    can_stop = bool(stop.numel() or seqs)
    cache = None
    try:
        for step in range(max_new_tokens):
            logits, cache = next_logits(model, idx, cache, use_cache, pad_mask)  # (B, V)
            if penalty != 1.0:
                logits = _penalize(logits, _seen(idx, logits.size(-1), pad_mask), penalty)
            nxt = sample_next(logits, *sampling)  # (B,)
            if can_stop:
                nxt = torch.where(finished, idx[:, -1], nxt)  # finished rows repeat their last token
                finished = finished | torch.isin(nxt, stop)
            idx = torch.cat([idx, nxt[:, None]], dim=1)
            if pad_mask is not None:
                pad_mask = torch.cat([pad_mask, pad_mask.new_ones(idx.size(0), 1)], dim=1)
            if seqs:
                finished = finished | _ends_with(idx, seqs, step + 1)
            yield nxt, finished
            if can_stop and bool(finished.all()):
                break
    finally:
        model.train(was_training)


def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, stop_tokens: list[int] | tuple[int, ...] | None = None,
             use_cache: bool = True, generator: torch.Generator | None = None, repetition_penalty: float = 1.0,
             stop_sequences: list[list[int]] | None = None) -> torch.Tensor:
    """Continue each row of idx (B, T) by up to max_new_tokens tokens; returns (B, T + n).

    A row that emits a stop token, or whose generated tokens end with one of stop_sequences, is finished: it
    keeps those tokens and is padded by repeating its last one until every row has finished or the budget is
    spent. repetition_penalty > 1 discourages ids already in the row (`apply_repetition_penalty`). With
    use_cache the prompt is encoded once and each step feeds only the newest token (see `next_logits`).
    Without stop tokens it always runs the whole budget: for text that stops at the tokenizer's end tokens
    ("<|endoftext|>", "<|end|>") by default, use `minillm.textgen.generate_text`.
    """
    steps = decode_steps(model, idx, max_new_tokens, temperature, top_k, top_p, stop_tokens, use_cache, generator,
                         repetition_penalty, stop_sequences)
    new = [nxt[:, None] for nxt, _ in steps]  # each (B, 1)
    return torch.cat([idx, *new], dim=1)


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


__all__ = ["filter_logits", "sample_next", "apply_repetition_penalty", "generate", "decode_steps", "next_logits",
           "BeamResult", "beam_search", "generate_batch", "stream", "kv_cache_speed"]
