"""Self-attention: MHA/GQA/MQA, attention masks, KV cache.

Survey §4.2.2 (attention: full, sparse, multi-query/grouped-query, FlashAttention) and §4.2.1 (the mask is
what separates a causal decoder from a prefix decoder). Three interchangeable paths compute the same thing:
`attn_impl="math"` spells out softmax(q k^T / sqrt(d) + bias) v for teaching, `attn_impl="sdpa"` calls
torch's fused `scaled_dot_product_attention` (FlashAttention kernels on CUDA), and `attn_impl="flash"` runs
minillm's own FlashAttention-2 Triton kernel (minillm/kernels/flash_attention.py; plain causal attention only,
on CUDA or under the Triton interpreter). Tests check they agree.

Boolean masks mean True = may attend. The sparse patterns (ModelConfig.sparse_attention) are built in sparse.py.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm import kernels
from minillm.config import ModelConfig
from minillm.model.layers import RMSNorm, softmax
from minillm.model.position import alibi_slopes, apply_rope_cached
from minillm.model.sparse import sparse_mask

# ---------------------------------------------------------------------------------------------------------
# Functional attention and masks.


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                                 scale: float | None = None) -> torch.Tensor:
    """softmax(q k^T * scale + bias, masked) v for q (..., Tq, D), k and v (..., Tk, D); mask True = attend."""
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., Tq, Tk)
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return softmax(scores.float(), dim=-1).to(v.dtype) @ v  # (..., Tq, D)


def causal_mask(T: int, T_k: int | None = None, offset: int = 0, device=None) -> torch.Tensor:
    """(T, T_k) lower-triangular mask; query i sits at absolute position offset + i."""
    T_k = T if T_k is None else T_k
    i = torch.arange(offset, offset + T, device=device)[:, None]
    return torch.arange(T_k, device=device)[None, :] <= i


def sliding_window_mask(T: int, window: int, T_k: int | None = None, offset: int = 0, device=None) -> torch.Tensor:
    """Causal mask that also hides keys more than `window - 1` positions back (Mistral-style local attention)."""
    T_k = T if T_k is None else T_k
    i = torch.arange(offset, offset + T, device=device)[:, None]
    j = torch.arange(T_k, device=device)[None, :]
    return (j <= i) & (j > i - window)


def prefix_mask(T: int, prefix_len: int | torch.Tensor, device=None) -> torch.Tensor:
    """Prefix-LM mask (Survey §4.2.1, as in U-PaLM/GLM): bidirectional inside the prefix, causal after it.

    prefix_len: an int (same prefix for the batch) -> (T, T); or a (B,) tensor -> (B, 1, T, T).
    """
    causal = causal_mask(T, device=device)
    j = torch.arange(T, device=device)
    if isinstance(prefix_len, int):
        return causal | (j[None, :] < prefix_len)
    p = prefix_len.to(device).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    return causal | (j.view(1, 1, 1, T) < p)  # (B, 1, T, T)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, Hkv, T, D) -> (B, Hkv * n_rep, T, D): each key/value head serves n_rep query heads (GQA/MQA)."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


# ---------------------------------------------------------------------------------------------------------
# KV cache.


class KVCache:
    """Preallocated keys and values of every layer, so generation computes each token's k, v once.

    Without it, step t recomputes attention inputs for all t previous tokens: O(T^2) work for T tokens.
    """

    def __init__(self, n_layer: int, batch_size: int, n_kv_head: int, max_len: int, head_dim: int,
                 device=None, dtype=torch.float32):
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.max_len = max_len
        self.pos = 0  # tokens already stored; advanced by the model after the last layer

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, Hkv, T, D) at positions pos..pos+T-1; return all keys/values so far."""
        T = k.size(2)
        if self.pos + T > self.max_len:
            raise RuntimeError(f"KV cache is full: {self.pos} + {T} tokens > max_len={self.max_len}; "
                               "allocate a longer cache or crop the context")
        self.k[layer][:, :, self.pos:self.pos + T] = k
        self.v[layer][:, :, self.pos:self.pos + T] = v
        return self.k[layer][:, :, :self.pos + T], self.v[layer][:, :, :self.pos + T]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the cached rows `index` (N,), in that order: row i becomes old row index[i].

        Beam search (Survey §4.2.4) calls this after each step so every surviving beam carries its parent's
        keys and values; repeating an index copies a row, so N may differ from the current batch size."""
        self.k = [k.index_select(0, index) for k in self.k]  # (N, Hkv, max_len, D)
        self.v = [v.index_select(0, index) for v in self.v]


# A custom attention core: fn(q, k, v, mask) -> out with q, k, v (B, H, T|Tk, D) (K/V already repeated for GQA) and a
# bool mask (T, Tk) or (B, 1, T, Tk), True = may attend. It may also take the keywords of CUSTOM_FN_KEYWORDS.
AttentionFn = Callable[..., torch.Tensor]

# What the built-in path applies besides the mask, passed to a custom fn that names it (or takes **kwargs):
#   bias       (H, T, Tk) float added to q k^T * scale before the mask (ALiBi's distance penalty), or None
#   dropout_p  float, the probability of dropping an attention weight (ModelConfig.dropout while training), else 0.0
# A fn that lacks one of them is refused, with an error, when the model needs it: never a silently different model.
CUSTOM_FN_KEYWORDS = ("bias", "dropout_p")


def custom_fn_keywords(fn: Callable) -> frozenset[str]:
    """The names in CUSTOM_FN_KEYWORDS that fn accepts as keyword arguments (all of them if it takes **kwargs).

    An nn.Module is read through its forward (its __call__ takes *args, **kwargs). A callable whose signature
    cannot be read (a C builtin such as torch's F.scaled_dot_product_attention) counts as taking none of them."""
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return frozenset(CUSTOM_FN_KEYWORDS)
    named = {p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    return frozenset(CUSTOM_FN_KEYWORDS) & named


def check_custom_fn(fn: Callable, cfg: ModelConfig, layer: int | None = None) -> None:
    """Raise if fn cannot be a custom attention core of a model with config cfg: not callable, or the model
    uses ALiBi and fn takes no `bias` (dropout is checked per call: it depends on train/eval mode)."""
    where = "" if layer is None else f" for layer {layer}"
    if not callable(fn):
        raise TypeError(f"the attention function{where} must be callable as fn(q, k, v, mask), got {type(fn).__name__}")
    if cfg.position == "alibi" and "bias" not in custom_fn_keywords(fn):
        raise ValueError(
            f"position='alibi' adds a per-head distance bias to the attention scores, but the custom attention "
            f"function{where} takes no `bias` keyword, so ALiBi would be dropped silently: define it as "
            "fn(q, k, v, mask, *, bias=None) and add bias (H, T, Tk) to q k^T * scale before masking "
            "(minillm.scaled_dot_product_attention(q, k, v, mask, bias) does), or build the model with another position")


# ---------------------------------------------------------------------------------------------------------
# The attention layer.


class Attention(nn.Module):
    """Multi-head self-attention with n_kv_head key/value heads (MHA when equal to n_head, MQA when 1)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        C, kv_dim = cfg.n_embd, cfg.n_kv_head * cfg.head_dim
        self.wq = nn.Linear(C, C, bias=cfg.bias)
        self.wk = nn.Linear(C, kv_dim, bias=cfg.bias)
        self.wv = nn.Linear(C, kv_dim, bias=cfg.bias)
        self.wo = nn.Linear(C, C, bias=cfg.bias)
        self.wo.is_residual_proj = True
        self.resid_dropout = nn.Dropout(cfg.dropout)
        if cfg.position == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(cfg.n_head), persistent=False)
        # QK-norm (Dehghani et al. 2023, OLMo 2): normalising q and k per head caps the attention logits q·k/√d,
        # whose growth is a known cause of loss spikes; one weight vector per head dimension, shared by heads.
        triton = cfg.kernels == "triton"
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps, triton) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps, triton) if cfg.qk_norm else None
        self.triton_rope = triton
        self.attn_fn: AttentionFn | None = None  # a custom (q, k, v, mask, **CUSTOM_FN_KEYWORDS) -> out; see set_attn_fn

    def set_attn_fn(self, fn: AttentionFn | None) -> None:
        """Use fn as this layer's attention core (see AttentionFn, CUSTOM_FN_KEYWORDS); None restores the built-in.

        An nn.Module fn becomes a submodule: its parameters train with the model (set it before building the
        optimizer), move with .to() and are saved in the state_dict (as `...attn.attn_fn.<name>`)."""
        if fn is not None:
            check_custom_fn(fn, self.cfg)
        # nn.Module keeps a module attribute in _modules and a plain one in __dict__: clear both, so a function can
        # replace a module (assigning one over a registered submodule would raise) and the other way round.
        self._modules.pop("attn_fn", None)
        self.__dict__.pop("attn_fn", None)
        self.attn_fn = fn

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                prefix_len: int | torch.Tensor | None = None, cache: KVCache | None = None,
                layer: int = 0, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C). pad_mask (B, offset + T) bool, True = real token: keys at False
        positions are hidden from every query (left-padded batched decoding); None = no padding."""
        B, T, C = x.shape
        q = self.wq(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.wk(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.wv(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None and self.triton_rope:  # one fused kernel rotates q and k (strided: no copies)
            q, k = kernels.ops.rope(q, k, *rope)
        elif rope is not None:  # rotate before caching: cached keys already carry their positions
            q, k = apply_rope_cached(q, *rope), apply_rope_cached(k, *rope)
        offset = cache.pos if cache is not None else 0
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, Hkv, offset + T, D)
        if pad_mask is None:  # the usual call: subclasses overriding _attend (prefix tuning) keep working
            y = self._attend(q, k, v, offset, prefix_len)  # (B, H, T, D)
        else:
            y = self._attend(q, k, v, offset, prefix_len, pad_mask=pad_mask)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, -1)  # (B, T, C): heads side by side (C / tp under tensor parallel)
        return self.resid_dropout(self.wo(y))

    def _mask(self, T: int, T_k: int, offset: int, prefix_len, device,
              pad_mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """The boolean mask for this call, or None when plain causal attention needs none."""
        mask = self._base_mask(T, T_k, offset, prefix_len, device)
        if pad_mask is None:
            return mask
        if pad_mask.shape != (pad_mask.size(0), T_k):
            raise ValueError(f"pad_mask has shape {tuple(pad_mask.shape)} but there are {T_k} keys: give one "
                             "True/False per token of the whole sequence so far (cached ones included)")
        if mask is None:
            mask = causal_mask(T, T_k, offset, device=device)
        # A pad query still sees itself: a softmax row with no key at all is NaN, and NaN values would leak
        # through the (zero) attention weights of later queries. Pads' own outputs are never read.
        own = torch.arange(T_k, device=device)[None, :] == torch.arange(offset, offset + T, device=device)[:, None]
        return mask & (pad_mask[:, None, None, :] | own)  # (B, 1, T, Tk)

    def _base_mask(self, T: int, T_k: int, offset: int, prefix_len, device) -> torch.Tensor | None:
        """The causal / prefix / sliding-window / sparse mask shared by every row, or None when none is needed."""
        cfg = self.cfg
        if cfg.attention_mask == "prefix" and prefix_len is not None:
            if offset or T != T_k:
                raise ValueError("prefix-LM attention with a KV cache: prefill the whole prefix in one call")
            return prefix_mask(T, prefix_len, device=device)
        if cfg.sliding_window is not None:
            return sliding_window_mask(T, cfg.sliding_window, T_k, offset, device=device)
        if cfg.sparse_attention is not None:  # Sparse Transformer's strided / fixed pattern (model/sparse.py)
            return sparse_mask(cfg.sparse_attention, T, cfg.sparse_block, T_k, offset, device=device)
        if T == 1:
            return None  # one new query may see every cached key
        return causal_mask(T, T_k, offset, device=device)

    def _attend(self, q, k, v, offset: int, prefix_len, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """q (B, H, T, D), k and v (B, Hkv, Tk, D) -> (B, H, T, D)."""
        T, T_k = q.size(2), k.size(2)
        mask = self._mask(T, T_k, offset, prefix_len, q.device, pad_mask)
        n_rep = self.n_head // self.n_kv_head
        # GQA/MQA: SDPA reads each shared K/V head for its group of query heads (enable_gqa), so the smaller
        # cache is never copied up to full size; the teaching paths repeat K/V explicitly instead.
        gqa = n_rep > 1
        if self.attn_fn is not None or self.cfg.attn_impl == "math":
            k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, H, Tk, D)
            gqa = False
        bias = None
        if self.cfg.position == "alibi":
            i = torch.arange(offset, offset + T, device=q.device)[:, None]
            dist = (i - torch.arange(T_k, device=q.device)[None, :]).abs().to(q.dtype)
            bias = -self.alibi_slopes.to(q.dtype)[:, None, None] * dist  # (H, T, Tk)
        dropout = self.cfg.dropout if self.training else 0.0
        if self.attn_fn is not None:
            full = mask if mask is not None else torch.ones(T, T_k, dtype=torch.bool, device=q.device)
            return self._custom_attend(q, k, v, full, bias, dropout)
        if self.cfg.attn_impl == "math":
            if dropout:
                raise ValueError("attn_impl='math' has no attention dropout; use attn_impl='sdpa' or dropout=0")
            return scaled_dot_product_attention(q, k, v, mask=mask, bias=bias)
        if self.cfg.attn_impl == "flash":
            return self._flash(q, k, v, offset, pad_mask, dropout)
        if bias is None and mask is not None and mask.dim() == 2 and offset == 0 and T == T_k \
                and self.cfg.attention_mask == "causal" and self.cfg.sliding_window is None \
                and self.cfg.sparse_attention is None:
            # the plain causal case: let SDPA pick its fused causal kernel (FlashAttention on CUDA)
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, enable_gqa=gqa)
        # Any other mask (window, sparse pattern, padding, cache) goes to SDPA as given: correct, though its fused
        # kernels then compute every tile, masked or not (a block-sparse kernel would skip the empty ones).
        if bias is not None:  # fold the boolean mask into the additive bias
            attn_mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        else:
            attn_mask = mask
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout, enable_gqa=gqa)

    def _flash(self, q, k, v, offset: int, pad_mask: torch.Tensor | None, dropout: float) -> torch.Tensor:
        """minillm's FlashAttention-2 kernel (kernels/flash_attention.py): q (B, H, T, D), k/v (B, Hkv, Tk, D) ->
        (B, H, T, D). Its causal mask aligns the queries to the end of the keys, which is where a KV cache puts
        them (offset = Tk - T); the config already refused every option that changes the scores."""
        if pad_mask is not None:
            raise ValueError("attn_impl='flash' has no padding mask (left-padded batches): use attn_impl='sdpa' for "
                             "generate_batch")
        if dropout:
            raise ValueError("attn_impl='flash' has no attention dropout: set dropout=0, call model.eval(), or use "
                             "attn_impl='sdpa'")
        if offset != k.size(2) - q.size(2):
            raise ValueError(f"attn_impl='flash' needs the queries at the end of the keys (offset {offset}, "
                             f"{q.size(2)} queries, {k.size(2)} keys)")
        return kernels.ops.flash_attention(q, k, v, causal=True)

    def _custom_attend(self, q, k, v, mask: torch.Tensor, bias: torch.Tensor | None, dropout: float) -> torch.Tensor:
        """Call the custom fn with the mask and whichever of bias / dropout_p it takes; refuse if it lacks one
        this call needs (the attribute may have been set directly, bypassing set_attn_fn's check)."""
        fn = self.attn_fn
        takes = custom_fn_keywords(fn)
        if bias is not None and "bias" not in takes:
            check_custom_fn(fn, self.cfg)  # raises: names the missing `bias` keyword and the fix
        if dropout and "dropout_p" not in takes:
            raise ValueError(
                f"ModelConfig.dropout={self.cfg.dropout} drops attention weights while training, but the custom "
                "attention function takes no `dropout_p` keyword, so that dropout would be skipped silently: define "
                "it as fn(q, k, v, mask, *, dropout_p=0.0) and apply F.dropout(weights, dropout_p) to the softmax "
                "output, or use dropout=0, or call model.eval() when not training")
        extra = {"bias": bias, "dropout_p": dropout}
        return fn(q, k, v, mask, **{name: extra[name] for name in takes})  # (B, H, T, D)
