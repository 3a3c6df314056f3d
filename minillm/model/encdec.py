"""The encoder-decoder transformer (T5, BART) and its pre-training objective, span corruption.

Survey §4.2.1 (mainstream architectures): besides the causal decoder (GPT) and the prefix decoder (U-PaLM,
GLM), the original transformer's encoder-decoder is the third family. The encoder reads the source with
bidirectional self-attention; the decoder predicts the target with causal self-attention plus
cross-attention, whose queries come from the decoder and whose keys/values come from the encoder output.
A prefix decoder is the same computation with one set of weights for both halves, which is why
`split_prefix_batch` can feed both architectures exactly the same prediction problem.

Everything except cross-attention is the decoder-only model's code: the encoder is a stack of `Block`s whose
`Attention` runs with a prefix mask covering the whole source (a prefix LM whose prefix is everything is a
bidirectional encoder), the decoder reuses `Attention`, `MLP`, `make_norm` and the position helpers.
Positions: learned (a table per stack, as BART), sinusoidal or RoPE inside each stack, both starting at 0;
cross-attention gets none, since a decoder position and an encoder position are not comparable (T5 and BART
also add no position signal there). ALiBi is not supported. cfg.sliding_window limits the decoder's
self-attention only; the encoder always sees the whole source.

`span_corruption` is T5's objective (Raffel et al. 2020): random spans of the input are replaced by sentinel
ids; the decoder emits each sentinel followed by the tokens it hid.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm.config import ModelConfig
from minillm.model.attention import AttentionFn, repeat_kv, scaled_dot_product_attention
from minillm.model.layers import make_norm
from minillm.model.position import rope_angles, sinusoidal_embedding
from minillm.model.transformer import Block


def _residual(position: str, alpha: float, x: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor],
              norm: nn.Module, norm_out: nn.Module | None) -> torch.Tensor:
    """One residual sub-layer placed as `Block` places its two (pre / sandwich / post and deepnorm)."""
    if position == "pre":
        return x + f(norm(x))
    if position == "sandwich":
        return x + norm_out(f(norm(x)))
    return norm(alpha * x + f(x))


class CrossAttention(nn.Module):
    """Multi-head attention of decoder queries (B, T, C) over encoder memory (B, S, C); n_kv_head as Attention.

    No mask: every target position may read every source position (batches here carry no padding).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        C, kv_dim = cfg.n_embd, cfg.n_kv_head * cfg.head_dim
        self.wq = nn.Linear(C, C, bias=cfg.bias)
        self.wk = nn.Linear(C, kv_dim, bias=cfg.bias)  # applied to the S memory tokens, not the T queries
        self.wv = nn.Linear(C, kv_dim, bias=cfg.bias)
        self.wo = nn.Linear(C, C, bias=cfg.bias)
        self.wo.is_residual_proj = True
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.attn_fn: AttentionFn | None = None

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:  # (B, T, C), (B, S, C) -> (B, T, C)
        B, T, C = x.shape
        S = memory.size(1)
        q = self.wq(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = self.wk(memory).view(B, S, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, S, D)
        v = self.wv(memory).view(B, S, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, Hkv, S, D)
        n_rep = self.n_head // self.n_kv_head
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, H, S, D)
        dropout = self.cfg.dropout if self.training else 0.0
        if self.attn_fn is not None:
            y = self.attn_fn(q, k, v, torch.ones(T, S, dtype=torch.bool, device=x.device))
        elif self.cfg.attn_impl == "math":
            if dropout:
                raise ValueError("attn_impl='math' has no attention dropout; use attn_impl='sdpa' or dropout=0")
            y = scaled_dot_product_attention(q, k, v)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.wo(y))


class DecoderBlock(Block):
    """A `Block` with a cross-attention sub-layer between causal self-attention and the MLP."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.norm_x = make_norm(cfg)
        if self.position == "sandwich":
            self.norm_x_out = make_norm(cfg)
        self.cross_attn = CrossAttention(cfg)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, **attn_kwargs) -> torch.Tensor:  # (B, T, C)
        pos, a = self.position, self.alpha
        sandwich = pos == "sandwich"
        x = _residual(pos, a, x, lambda h: self.attn(h, **attn_kwargs), self.norm1,
                      self.norm1_out if sandwich else None)
        x = _residual(pos, a, x, lambda h: self.cross_attn(h, memory), self.norm_x,
                      self.norm_x_out if sandwich else None)
        return _residual(pos, a, x, self.mlp, self.norm2, self.norm2_out if sandwich else None)


class EncoderDecoder(nn.Module):
    """Source ids (B, S) and decoder input ids (B, T) -> logits (B, T, vocab_size) and the mean loss.

    cfg.n_layer counts all blocks: n_encoder_layer (default n_layer // 2) encoder blocks and
    n_layer - n_encoder_layer decoder blocks. One token embedding serves encoder, decoder and (with
    cfg.tie_embeddings) the output layer.
    """

    def __init__(self, cfg: ModelConfig, n_encoder_layer: int | None = None):
        super().__init__()
        if cfg.kernels == "triton":
            raise ValueError("kernels='triton' is wired into the decoder-only GPT only; build the encoder-decoder "
                             "with kernels='torch'")
        n_enc = cfg.n_layer // 2 if n_encoder_layer is None else n_encoder_layer
        if not isinstance(n_enc, int) or isinstance(n_enc, bool) or not 1 <= n_enc < cfg.n_layer:
            raise ValueError(f"n_encoder_layer={n_enc!r} must be an integer in [1, n_layer - 1] = "
                             f"[1, {cfg.n_layer - 1}]: encoder and decoder need at least one block each "
                             "(cfg.n_layer counts both)")
        if cfg.position == "alibi":
            raise ValueError("position='alibi' is not supported for encoder-decoder; "
                             "use learned, sinusoidal, rope or none")
        if cfg.attention_mask != "causal":
            raise ValueError(f"attention_mask={cfg.attention_mask!r}: an encoder-decoder's encoder already reads the "
                             "source bidirectionally; use attention_mask='causal' (the decoder's mask)")
        if getattr(cfg, "n_expert", 0):
            raise ValueError("EncoderDecoder has dense MLPs only; set n_expert=0")
        self.config = cfg
        self.n_encoder_layer, self.n_decoder_layer = n_enc, cfg.n_layer - n_enc
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        if cfg.position == "learned":
            self.enc_pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
            self.dec_pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        elif cfg.position == "sinusoidal":
            # scaled to the token embeddings' size, as GPT does (see transformer.py: unscaled, it drowns them)
            table = sinusoidal_embedding(cfg.block_size, cfg.n_embd) * (cfg.init_std * math.sqrt(2))
            self.register_buffer("pos_table", table, persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        enc_cfg = cfg.replace(attention_mask="prefix")  # called with prefix_len = S: fully bidirectional
        self.encoder = nn.ModuleList(Block(enc_cfg) for _ in range(self.n_encoder_layer))
        self.decoder = nn.ModuleList(DecoderBlock(cfg) for _ in range(self.n_decoder_layer))
        post = self.decoder[0].position == "post"  # post-LN blocks already end in a norm
        self.enc_norm_f = nn.Identity() if post else make_norm(cfg)
        self.dec_norm_f = nn.Identity() if post else make_norm(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        self._init_residual_projections()

    # --- initialisation -------------------------------------------------------------------------------
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def _init_residual_projections(self) -> None:
        """As GPT: projections into the residual stream get std init_std / sqrt(2 n_layer). DeepNorm uses
        DeepNet's encoder-decoder constants (Wang et al. 2022, N encoder and M decoder layers): encoder
        alpha = 0.81 (N^4 M)^(1/16), beta = 0.87 (N^4 M)^(-1/16); decoder alpha = (3M)^(1/4), beta = (12M)^(-1/4)."""
        cfg = self.config
        for m in self.modules():
            if getattr(m, "is_residual_proj", False):
                nn.init.normal_(m.weight, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layer))
        if cfg.norm != "deepnorm":
            return
        N, M = self.n_encoder_layer, self.n_decoder_layer
        stacks = ((self.encoder, 0.81 * (N ** 4 * M) ** (1 / 16), 0.87 * (N ** 4 * M) ** (-1 / 16)),
                  (self.decoder, (3 * M) ** 0.25, (12 * M) ** -0.25))
        for blocks, alpha, beta in stacks:
            for block in blocks:
                block.alpha = alpha
                attns = [block.attn] + ([block.cross_attn] if isinstance(block, DecoderBlock) else [])
                lins = [lin for a in attns for lin in (a.wv, a.wo)] + [block.mlp.w1, block.mlp.w2, block.mlp.w3]
                for lin in lins:
                    if lin is not None:
                        nn.init.xavier_normal_(lin.weight, gain=beta)

    def set_attention_fn(self, fn: AttentionFn | None) -> None:
        """Use fn(q, k, v, mask) -> out in every self- and cross-attention (see GPT.set_attention_fn)."""
        for block in self.encoder:
            block.attn.attn_fn = fn
        for block in self.decoder:
            block.attn.attn_fn = fn
            block.cross_attn.attn_fn = fn

    # --- forward ------------------------------------------------------------------------------------------
    def _embed(self, ids: torch.Tensor, pos_emb: nn.Embedding | None):
        """Token (+ absolute position) embedding of ids (B, T), positions 0..T-1; also the RoPE angles."""
        cfg = self.config
        T = ids.size(1)
        if T > cfg.block_size and cfg.position in ("learned", "sinusoidal"):
            raise ValueError(f"sequence of {T} tokens is longer than block_size={cfg.block_size}; "
                             "crop the input or build the model with a larger block_size")
        if not ids.is_cuda and ids.numel() and int(ids.max()) >= cfg.vocab_size:
            raise ValueError(f"token id {int(ids.max())} is out of range for vocab_size={cfg.vocab_size}; "
                             "set ModelConfig.vocab_size to cover every id (sentinels included)")
        x = self.tok_emb(ids)  # (B, T, C)
        positions = torch.arange(T, device=ids.device)
        if pos_emb is not None:
            x = x + pos_emb(positions)
        elif cfg.position == "sinusoidal":
            x = x + self.pos_table[:T]
        rope = rope_angles(positions, cfg.head_dim, cfg.rope_theta) if cfg.position == "rope" else None
        return self.drop(x), rope

    def encode(self, src: torch.Tensor) -> torch.Tensor:
        """src (B, S) -> encoder output (B, S, C), the memory every decoder layer attends to."""
        x, rope = self._embed(src, getattr(self, "enc_pos_emb", None))
        for block in self.encoder:
            x = block(x, rope=rope, prefix_len=src.size(1))  # the whole source is the "prefix"
        return self.enc_norm_f(x)

    def decode(self, dec_in: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """dec_in (B, T) and memory (B, S, C) -> next-token logits (B, T, V)."""
        x, rope = self._embed(dec_in, getattr(self, "dec_pos_emb", None))
        for block in self.decoder:
            x = block(x, memory, rope=rope)  # no prefix_len: causal self-attention
        return self.lm_head(self.dec_norm_f(x))

    def forward(self, src: torch.Tensor, dec_in: torch.Tensor, targets: torch.Tensor | None = None):
        """(logits (B, T, V), loss or None); targets (B, T) next-token ids for dec_in, -100 = no loss."""
        if src.dim() != 2 or dec_in.dim() != 2 or src.size(0) != dec_in.size(0):
            raise ValueError(f"src {tuple(src.shape)} and dec_in {tuple(dec_in.shape)} must be (B, S) and (B, T) "
                             "token ids with the same batch size B")
        if targets is not None and targets.shape != dec_in.shape:
            raise ValueError(f"targets {tuple(targets.shape)} must have dec_in's shape {tuple(dec_in.shape)}")
        logits = self.decode(dec_in, self.encode(src))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    # --- accounting ---------------------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; non_embedding=True leaves out the token and position tables (as GPT.num_params)."""
        n = sum(p.numel() for p in self.parameters())  # a tied matrix is yielded once
        if non_embedding:
            n -= self.tok_emb.weight.numel()
            if self.config.position == "learned":
                n -= self.enc_pos_emb.weight.numel() + self.dec_pos_emb.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None, prefix_len: int | None = None) -> int:
        """Training FLOPs (3x forward) per token of a seq_len window split as `split_prefix_batch` splits it.

        Source S = prefix_len (default seq_len // 2) tokens, decoder input T = seq_len - S + 1 tokens. Each
        weight costs 6 FLOPs per token it touches: encoder weights S tokens, decoder weights T tokens except
        cross-attention keys/values (S memory tokens), the output layer T. Attention products, as GPT counts
        them (12 H Q per query-key pair, causal not halved): 12 H Q (L_enc S^2 + L_dec T^2 + L_dec T S).
        The total is divided by seq_len, so both architectures are charged per token of the same data.
        """
        cfg = self.config
        L = cfg.block_size if seq_len is None else seq_len
        S = L // 2 if prefix_len is None else prefix_len
        if not 1 <= S <= L:
            raise ValueError(f"prefix_len={S} must be in [1, seq_len={L}]")
        T = L - S + 1
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        n_enc = sum(count(b) for b in self.encoder) + count(self.enc_norm_f)
        n_cross_kv = sum(count(b.cross_attn.wk) + count(b.cross_attn.wv) for b in self.decoder)
        n_dec = sum(count(b) for b in self.decoder) + count(self.dec_norm_f) - n_cross_kv
        matmul = (n_enc + n_cross_kv) * S + (n_dec + self.lm_head.weight.numel()) * T
        hq = cfg.n_head * cfg.head_dim
        attn = 12 * hq * (self.n_encoder_layer * S * S + self.n_decoder_layer * (T * T + T * S))
        return round((6 * matmul + attn) / L)


def split_prefix_batch(x: torch.Tensor, y: torch.Tensor, prefix_len: int):
    """A next-token batch (x, y = x shifted by one), both (B, L) -> (src, dec_in, dec_targets).

    src = x[:, :P] goes to the encoder; the decoder starts from the last prefix token, dec_in = x[:, P-1:],
    and predicts dec_targets = y[:, P-1:]: exactly the targets a prefix/causal decoder-only model predicts
    at positions P-1..L-1, so the two architectures can be compared on the same prediction problem.
    """
    if x.dim() != 2 or x.shape != y.shape:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must both be (B, L)")
    L = x.size(1)
    if not isinstance(prefix_len, int) or isinstance(prefix_len, bool) or not 1 <= prefix_len <= L:
        raise ValueError(f"prefix_len={prefix_len!r} must be an integer in [1, L={L}]")
    return x[:, :prefix_len], x[:, prefix_len - 1:], y[:, prefix_len - 1:]


def _random_segments(B: int, n: int, k: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """(B, k) positive integer lengths summing to n per row, uniformly over compositions (T5's segmentation)."""
    cuts = torch.rand(B, n - 1, generator=generator).argsort(dim=1)[:, :k - 1] + 1  # k-1 distinct cuts in 1..n-1
    cuts = cuts.sort(dim=1).values.to(device)
    edges = torch.cat([torch.zeros(B, 1, dtype=torch.long, device=device), cuts,
                       torch.full((B, 1), n, dtype=torch.long, device=device)], dim=1)  # (B, k+1)
    return edges.diff(dim=1)


def span_corruption(ids: torch.Tensor, noise_density: float = 0.15, mean_span: float = 3.0, *,
                    sentinel_start: int, generator: torch.Generator | None = None):
    """T5 span corruption of ids (B, L) -> (src (B, L - n_noise + n_spans), dec_in, targets (B, n_noise + n_spans - 1)).

    Every row hides n_noise = round(L * noise_density) tokens (at least 1, at most L - 1) in
    n_spans = round(n_noise / mean_span) spans; span and gap lengths are random compositions, gaps and spans
    alternate starting with a gap (as T5's random_spans_noise_mask, so the last token is always hidden).
    src keeps the unhidden tokens in order and replaces span i by the single id sentinel_start + i. The
    decoder sequence is, for each span, its sentinel then the hidden tokens. It always begins with
    sentinel_start, known in advance, which therefore serves as the start token: dec_in = seq[:, :-1],
    targets = seq[:, 1:] (the loader's next-token shift). Sentinels must lie above every id in `ids`.
    Vectorized over the whole batch: equal counts per row give fixed-shape outputs, no padding, no loops.
    """
    if ids.dim() != 2 or ids.size(1) < 2:
        raise ValueError(f"ids {tuple(ids.shape)} must be (B, L) token ids with L >= 2")
    if not 0.0 < noise_density < 1.0:
        raise ValueError(f"noise_density={noise_density!r} must be in (0, 1)")
    if not mean_span >= 1:
        raise ValueError(f"mean_span={mean_span!r} must be at least 1 token")
    if ids.numel() and sentinel_start <= int(ids.max()):
        raise ValueError(f"sentinel_start={sentinel_start} collides with token id {int(ids.max())} in ids: "
                         "sentinels must be ids above every real token (e.g. the tokenizer's vocab_size)")
    B, L = ids.shape
    n_noise = min(max(round(L * noise_density), 1), L - 1)
    n_spans = min(max(round(n_noise / mean_span), 1), n_noise, L - n_noise)
    gaps = _random_segments(B, L - n_noise, n_spans, generator, ids.device)  # (B, k)
    spans = _random_segments(B, n_noise, n_spans, generator, ids.device)  # (B, k)
    lengths = torch.stack([gaps, spans], dim=2).flatten(1)  # (B, 2k): gap, span, gap, span, ...
    starts = lengths.cumsum(dim=1) - lengths  # (B, 2k) first position of each segment
    marker = torch.zeros(B, L, dtype=torch.long, device=ids.device)
    marker.scatter_(1, starts[:, 1:], 1)  # segment 0 starts at 0; every segment is non-empty, starts distinct
    segment = marker.cumsum(dim=1)  # (B, L) segment index of each position
    noise = segment % 2 == 1  # odd segments are spans
    span_start = noise & (marker == 1)  # (B, L) first token of each span
    sentinel = sentinel_start + torch.div(segment - 1, 2, rounding_mode="floor")  # (B, L) valid where noise
    src_vals = torch.where(span_start, sentinel, ids)
    src = src_vals[~noise | span_start].view(B, L - n_noise + n_spans)
    pair = torch.stack([sentinel, ids], dim=2)  # (B, L, 2): (sentinel before a span start, the token)
    keep = torch.stack([span_start, noise], dim=2)
    seq = pair[keep].view(B, n_noise + n_spans)  # row-major selection keeps each row's order
    return src, seq[:, :-1], seq[:, 1:]
