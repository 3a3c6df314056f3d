"""Attention studies: full vs sliding-window attention, and MHA vs GQA vs MQA.

Survey §4.2.2 (attention): full attention costs O(T²) per sequence, so long-context models restrict each
query to a local window (sparse / sliding-window attention, as Mistral) and cut the decoding memory of the
KV cache by sharing key/value heads among query heads (multi-query attention, PaLM; grouped-query attention,
Llama 2). Survey §4.2.4 (decoding) is why the cache matters: at inference the cache, not the weights, grows
with batch × context, and reading it is what each new token waits on. Two small experiments measure what
each choice buys and what it costs, on the book's one small-run recipe (`book.runs`: same data, budget, seed):

- `attention_pairs`, `attention_flops`: the query-key pairs a causal (or windowed) mask keeps, and the
  attention FLOPs they cost; counted by formula, T(T+1)/2 vs ~T·w.
- `attention_study`: held-out loss, measured forward time per token and attention FLOPs for full attention and
  each window size.
- `kv_cache_bytes`: what `model.make_cache(batch, max_len)` really allocates (sum of tensor nbytes).
- `kv_heads_study`: MHA/GQA/MQA at one query-head count: cache bytes per context, decode speed with the cache
  (measured side by side), held-out loss at equal steps.

Timings interleave the arms (repeat r of every arm before repeat r+1 of any) and take medians, so a burst of
load on a shared machine slows all arms alike. Rows are plain dicts (JSON-ready). Figures: `plots_attention.py`.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from book.runs import ArchRun, check_run, study_data, train_config


_check_run = check_run  # shared with the other study modules (book.runs.check_run)


def _positive_int(name: str, v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name}={v!r} must be a positive int")
    return v


def _distinct(name: str, values: Sequence, check: Callable[[str, object], object]) -> list:
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty: give at least one value")
    for v in values:
        check(name, v)
    if len(set(values)) != len(values):
        raise ValueError(f"{name}={values} has repeated values")
    return values


def median_times(fns: Sequence[Callable[[], object]], repeats: int = 5, device: str | torch.device = "cpu",
                 warmup: int = 1) -> list[float]:
    """Median wall time (s) of each fn over `repeats` calls, interleaved: repeat r runs every fn once.

    CUDA work is asynchronous, so on a GPU the clock is read only after `torch.cuda.synchronize()`."""
    _positive_int("repeats", repeats)
    cuda = torch.device(device).type == "cuda"
    for fn in fns:  # first calls pay for allocation and kernel selection: not part of the measurement
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


# ============================================================================================ 1. sliding window


def attention_pairs(seq_len: int, window: int | None = None) -> int:
    """Query-key pairs a causal mask of seq_len positions keeps: Σ_i min(i + 1, w).

    Full causal attention (window None): T(T+1)/2 ≈ T²/2. A sliding window of w (each query sees itself and
    the w-1 tokens before it, `attention.sliding_window_mask`): w·T − w(w−1)/2 ≈ T·w once T ≫ w."""
    T = _positive_int("seq_len", seq_len)
    if window is None or window >= T:
        return T * (T + 1) // 2
    w = _positive_int("window", window)
    return w * T - w * (w - 1) // 2


def attention_flops(seq_len: int, n_layer: int, n_embd: int, window: int | None = None) -> int:
    """Forward FLOPs of the attention products (q·kᵀ scores and the weighted sum of v) for one sequence.

    Each kept query-key pair costs one multiply-add (2 FLOPs) per head dimension in each of the two products,
    over all heads: 4 · pairs · n_embd per layer. The projections are the same with or without a window and
    are left out. A fused kernel (FlashAttention) skips masked blocks, so this is the work a good kernel
    does; the explicit math path computes all T² scores and masks them afterwards."""
    return 4 * attention_pairs(seq_len, window) * _positive_int("n_embd", n_embd) * _positive_int("n_layer", n_layer)


def _check_window(name: str, w) -> None:
    if w is not None:
        _positive_int(name, w)


def _forward_fn(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    @torch.inference_mode()
    def forward():
        model(x)
    return forward


def attention_study(windows: Sequence[int | None] = (None, 16, 8), *, run: ArchRun | None = None,
                    repeats: int = 5) -> list[dict]:
    """Full causal attention (window None) vs sliding windows: what a window costs in loss and saves in work.

    Each arm trains run's model with ModelConfig.sliding_window = w (train_config: same data, steps, seed).
    Forward time: the trained models in eval mode on the same (run.batch_size, run.block_size) held-out batch,
    median of `repeats` interleaved calls, divided by the batch's tokens. At toy context lengths the window
    saves little time (the projections dominate, and a windowed mask forgoes SDPA's fused causal kernel), so
    the FLOPs column is the one that shows the T² vs T·w scaling; the plot extends it to long contexts.

    Rows: window (None = full), label, val_loss, final_loss, diverged, params, fwd_us_per_token, attn_pairs,
    attn_flops (per sequence of block_size, formula), attn_flops_per_token, attn_flops_ratio (vs full at the
    same length), block_size, n_layer, n_embd, history (loss per step)."""
    run = _check_run(run)
    windows = _distinct("windows", windows, _check_window)
    _positive_int("repeats", repeats)
    splits, vocab, _, _ = study_data(run)
    T = run.block_size
    results = [train_config(run.model_config(vocab, sliding_window=w), run) for w in windows]
    x = splits.val[:run.batch_size * T].reshape(-1, T)  # (b, T) the same held-out tokens for every arm
    if len(x) < run.batch_size:
        raise ValueError(f"the held-out split has {len(splits.val)} tokens, fewer than batch_size × block_size = "
                         f"{run.batch_size * T}: raise run.n_docs")
    fns = []
    for res in results:
        model = res["model"].eval()
        device = next(model.parameters()).device
        fns.append(_forward_fn(model, x.to(device)))
    times = median_times(fns, repeats, device)
    full = attention_flops(T, run.n_layer, run.n_embd)
    rows = []
    for w, res, t in zip(windows, results, times):
        flops = attention_flops(T, run.n_layer, run.n_embd, w)
        rows.append({"window": w, "label": "full" if w is None else f"window {w}", "val_loss": res["val_loss"],
                     "final_loss": res["final_loss"], "diverged": res["diverged"], "params": res["params"],
                     "fwd_us_per_token": 1e6 * t / x.numel(), "attn_pairs": attention_pairs(T, w),
                     "attn_flops": flops, "attn_flops_per_token": flops / T, "attn_flops_ratio": flops / full,
                     "block_size": T, "n_layer": run.n_layer, "n_embd": run.n_embd,
                     "history": [r["loss"] for r in res["history"]]})
    return rows


# ============================================================================================ 2. MHA/GQA/MQA


def kv_cache_bytes(model: nn.Module, batch_size: int, max_len: int) -> int:
    """Bytes `model.make_cache(batch_size, max_len)` allocates: the sum of its key and value tensors' nbytes.

    Equals 2 (k and v) · n_layer · batch · max_len · n_kv_head · head_dim · bytes per element."""
    cache = model.make_cache(batch_size, max_len)
    return sum(t.nbytes for t in cache.k) + sum(t.nbytes for t in cache.v)


def attention_kind(n_head: int, n_kv_head: int) -> str:
    """"MHA" (a key/value head per query head), "MQA" (one shared), "GQA" (groups in between)."""
    return "MHA" if n_kv_head == n_head else "MQA" if n_kv_head == 1 else "GQA"


def _decode_fn(model: nn.Module, prompt: torch.Tensor, n_tokens: int) -> Callable[[], object]:
    """A function that greedily decodes n_tokens tokens after `prompt` (B, P), whose keys and values are
    computed once here (one prefill forward) and kept: each call rewinds the cache to the prompt's end and
    decodes again, so what is timed is decoding with P + n_tokens cached positions, not the prefill.

    One forward per token is inherent to autoregressive decoding: token t+1 depends on token t."""
    cache = model.make_cache(prompt.size(0), prompt.size(1) + n_tokens)
    with torch.inference_mode():
        logits, _ = model(prompt, cache=cache)  # (B, P, V): fills positions 0..P-1
    first = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)

    @torch.inference_mode()
    def decode():
        cache.pos = prompt.size(1)  # the positions after the prompt are overwritten
        idx = first
        for _ in range(n_tokens):
            logits, _ = model(idx, cache=cache)  # (B, 1, V): one new position, attending to the cache
            idx = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
    return decode


def kv_heads_study(n_head: int = 8, kv_heads: Sequence[int] = (8, 2, 1), seq_lens: Sequence[int] = (64, 256, 1024),
                   *, run: ArchRun | None = None, batch_size: int = 4, decode_tokens: int = 32,
                   repeats: int = 5) -> list[dict]:
    """MHA vs GQA vs MQA: KV-cache memory, decode speed and held-out loss at n_head query heads.

    Every arm is run's model with n_head query heads, n_kv_head in `kv_heads` and RoPE positions (as the
    Llama-family models that use GQA; RoPE also has no table to outgrow, so decoding may run past the training
    context to the longest of `seq_lens`). Each is trained with train_config at equal steps, then, for every
    length L in seq_lens: the bytes of make_cache(batch_size, L), and the decode speed at context L: the cache
    is prefilled with L - decode_tokens held-out tokens, then decode_tokens tokens are generated greedily, one
    forward each; speed = batch_size · decode_tokens / time (median of `repeats`, all arms and lengths
    interleaved in one measurement). Fewer KV heads also mean fewer parameters (smaller wk, wv): reported.

    Rows, one per (n_kv_head, seq_len): n_head, n_kv_head, kind, seq_len, batch_size, kv_cache_bytes,
    kv_cache_ratio (vs the largest n_kv_head), decode_tokens, decode_tok_per_s, val_loss, final_loss, diverged, params,
    head_dim, n_layer."""
    run = _check_run(run)
    _positive_int("n_head", n_head)
    if run.n_embd % n_head:
        raise ValueError(f"run.n_embd={run.n_embd} must be divisible by n_head={n_head}")

    def divisor(name, k):
        _positive_int(name, k)
        if n_head % k:
            raise ValueError(f"{name} holds {k}, which does not divide n_head={n_head} (each key/value head "
                             f"serves n_head / n_kv_head query heads)")
    kv_heads = _distinct("kv_heads", kv_heads, divisor)
    seq_lens = sorted(_distinct("seq_lens", seq_lens, _positive_int))
    _positive_int("batch_size", batch_size)
    _positive_int("decode_tokens", decode_tokens)
    _positive_int("repeats", repeats)
    if seq_lens[0] <= decode_tokens:
        raise ValueError(f"seq_lens must all exceed decode_tokens={decode_tokens} (the cache holds a prompt of "
                         f"seq_len - decode_tokens tokens, at least one), got {seq_lens[0]}")
    splits, vocab, _, _ = study_data(run)
    if len(splits.val) < seq_lens[-1]:
        raise ValueError(f"the held-out split has {len(splits.val)} tokens, fewer than the longest prompt "
                         f"{seq_lens[-1]}: raise run.n_docs or lower seq_lens")
    results = [train_config(run.model_config(vocab, n_head=n_head, n_kv_head=k, position="rope"), run)
               for k in kv_heads]
    models = [res["model"].eval() for res in results]
    device = next(models[0].parameters()).device
    prompts = {L: splits.val[:L - decode_tokens].to(device).expand(batch_size, -1) for L in seq_lens}  # (B, P)
    fns = [_decode_fn(m, prompts[L], decode_tokens) for L in seq_lens for m in models]  # seq_len-major
    times = median_times(fns, repeats, device)
    ref_bytes = {L: kv_cache_bytes(models[kv_heads.index(max(kv_heads))], batch_size, L) for L in seq_lens}
    rows = []
    for j, L in enumerate(seq_lens):
        for i, (k, res, model) in enumerate(zip(kv_heads, results, models)):
            nbytes = kv_cache_bytes(model, batch_size, L)
            rows.append({"n_head": n_head, "n_kv_head": k, "kind": attention_kind(n_head, k), "seq_len": L,
                         "batch_size": batch_size, "kv_cache_bytes": nbytes, "kv_cache_ratio": nbytes / ref_bytes[L],
                         "decode_tokens": decode_tokens,
                         "decode_tok_per_s": batch_size * decode_tokens / times[j * len(models) + i],
                         "val_loss": res["val_loss"], "final_loss": res["final_loss"],
                         "diverged": res["diverged"], "params": res["params"], "head_dim": run.n_embd // n_head,
                         "n_layer": run.n_layer})
    return rows
