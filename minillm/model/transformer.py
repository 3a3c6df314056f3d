"""The decoder-only transformer language model (causal decoder and prefix decoder).

Survey §4.2.1 (mainstream architectures: the causal decoder of the GPT series, the prefix decoder of
U-PaLM/GLM) and §4.2.2 (configuration). One class, switched by `ModelConfig`: GPT-2 is
`norm=layernorm, activation=gelu, position=learned`; a Llama-style model is
`norm=rmsnorm, activation=swiglu, position=rope, bias=False, n_kv_head<n_head`. With `n_expert > 0`
every MLP becomes a mixture of experts (Survey §4.2.1, `moe.py`) and the router losses join the LM loss.

The model knows nothing of devices, precision or distribution: the Trainer and `minillm.train.parallel`
apply those from outside (as torchtitan keeps model and parallelism apart).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from minillm import kernels
from minillm.config import ModelConfig
from minillm.model.attention import Attention, AttentionFn, KVCache, check_custom_fn
from minillm.model.layers import MLP, make_norm
from minillm.model.moe import MoE
from minillm.model.position import rope_angles, sinusoidal_embedding


# The logit of a padding id (ModelConfig.pad_vocab_multiple) in the loss: exp(MASKED_LOGIT - lse) is exactly 0 in fp32
# whenever the row's log-sum-exp exceeds -9,800, so the loss and gradients equal the unpadded model's. Finite, not
# -inf: a kernel that sums the row (label smoothing's mean logit) would compute 0 * -inf = nan even at smoothing 0.
MASKED_LOGIT = -1e4


class Block(nn.Module):
    """One transformer layer: attention then MLP, each wrapped in a residual connection and norms.

    pre (GPT-2, Llama):   x = x + f(norm(x))            stable: the residual path is an identity
    post (Vaswani 2017):  x = norm(x + f(x))            needs warmup; diverges easily when deep
    sandwich (CogView):   x = x + norm2(f(norm1(x)))    extra norm on the branch output
    deepnorm (DeepNet):   x = norm(alpha * x + f(x))    post-LN made stable by up-weighting the residual
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.position = "post" if cfg.norm == "deepnorm" else cfg.norm_position
        # DeepNet (Wang et al. 2022), decoder-only: alpha = (2N)^(1/4) on the residual branch.
        self.alpha = (2 * cfg.n_layer) ** 0.25 if cfg.norm == "deepnorm" else 1.0
        self.norm1, self.norm2 = make_norm(cfg), make_norm(cfg)
        if self.position == "sandwich":
            self.norm1_out, self.norm2_out = make_norm(cfg), make_norm(cfg)
        self.attn = Attention(cfg)
        self.mlp = MoE(cfg) if cfg.n_expert > 0 else MLP(cfg)  # same interface: (B, T, C) -> (B, T, C)

    def forward(self, x: torch.Tensor, **attn_kwargs) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        if self.position == "pre":
            x = x + self.attn(self.norm1(x), **attn_kwargs)
            return x + self.mlp(self.norm2(x))
        if self.position == "sandwich":
            x = x + self.norm1_out(self.attn(self.norm1(x), **attn_kwargs))
            return x + self.norm2_out(self.mlp(self.norm2(x)))
        x = self.norm1(self.alpha * x + self.attn(x, **attn_kwargs))  # post (and deepnorm)
        return self.norm2(self.alpha * x + self.mlp(x))


class GPT(nn.Module):
    """Decoder-only LM: token ids (B, T) -> next-token logits (B, T, vocab_size) and the mean loss."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.kernels == "triton" or cfg.attn_impl == "flash":
            kernels.require_triton()  # a clear error now, not at the first forward
        self.config = cfg
        # kernels="triton": with targets, the loss comes from the fused lm_head + cross-entropy kernel and the
        # (B, T, V) logits are never built, so forward returns logits=None. Set False to get logits (and pay for them).
        self.fuse_loss = True
        # cfg.padded_vocab_size >= vocab_size rows (ModelConfig.pad_vocab_multiple): ids past vocab_size never occur
        # in the input and are never predicted (see `_vocab_logits`), so the extra rows only align memory.
        self.tok_emb = nn.Embedding(cfg.padded_vocab_size, cfg.n_embd)
        if cfg.position == "learned":
            self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        elif cfg.position == "sinusoidal":
            # A sinusoid has RMS 1/sqrt(2), ~35x the token embeddings' init_std: unscaled, the fixed table drowns
            # the tokens and a small model never learns (measured: stuck at the unigram loss). Scale it to the
            # embeddings' size instead; Vaswani et al. scaled the embeddings up by sqrt(d_model) for the same reason.
            table = sinusoidal_embedding(cfg.block_size, cfg.n_embd) * (cfg.init_std * math.sqrt(2))
            self.register_buffer("pos_table", table, persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        # post-LN blocks already end in a norm; pre-LN (and sandwich) need one before the output layer
        self.norm_f = make_norm(cfg) if self.blocks[0].position != "post" else nn.Identity()
        self.lm_head = nn.Linear(cfg.n_embd, cfg.padded_vocab_size, bias=False)
        if cfg.tie_embeddings:
            # weight tying (Press & Wolf 2017): input and output embeddings share one (V, C) matrix
            self.lm_head.weight = self.tok_emb.weight
        self.loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        self._aux_term: torch.Tensor | None = None  # weighted MoE router losses of the last forward
        self.apply(self._init_weights)
        self._init_residual_projections()
        with torch.no_grad():  # padding rows start (and, unused, stay) at zero: they cannot matter anywhere
            self.tok_emb.weight[cfg.vocab_size:].zero_()
            self.lm_head.weight[cfg.vocab_size:].zero_()

    # --- initialisation -------------------------------------------------------------------------------
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def _init_residual_projections(self) -> None:
        """GPT-2: scale projections into the residual stream by 1/sqrt(2 n_layer), since 2 n_layer branches
        add up there and the stream's variance should not grow with depth. DeepNorm instead scales the value,
        output and MLP weights by beta = (8N)^(-1/4) (Xavier init times beta in the paper)."""
        cfg = self.config
        deepnorm_beta = (8 * cfg.n_layer) ** -0.25 if cfg.norm == "deepnorm" else None
        for block in self.blocks:
            mlps = list(block.mlp.experts) if isinstance(block.mlp, MoE) else [block.mlp]  # each expert is an MLP
            for lin in (block.attn.wo, *(m.w2 for m in mlps)):
                nn.init.normal_(lin.weight, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layer))
            if deepnorm_beta is not None:
                for lin in (block.attn.wv, block.attn.wo, *(w for m in mlps for w in (m.w1, m.w2, m.w3))):
                    if lin is not None:
                        nn.init.xavier_normal_(lin.weight, gain=deepnorm_beta)

    # --- customisation hooks (used by labs) -------------------------------------------------------------
    def set_attention_fn(self, fn: AttentionFn | None = None, *,
                         factory: Callable[[int], AttentionFn] | None = None) -> None:
        """Replace the attention core of every layer by fn(q, k, v, mask) -> out (B, H, T, D); q, k, v (B, H, T, D)
        (K/V heads already repeated under GQA), mask a bool (T, Tk) or (B, 1, T, Tk), True = may attend: it
        carries the causal, prefix, sliding-window and padding structure. With no fn and no factory, restore the
        built-in core in every layer.

        fn gets two more keywords when it names them (or takes **kwargs): `bias` (H, T, Tk) to add to
        q k^T * scale before masking (ALiBi's penalty; None for other positions) and `dropout_p` (ModelConfig.dropout
        while training, else 0.0). A model that needs one fn lacks is refused with an error rather than run
        differently: position='alibi' here, dropout > 0 at the first training forward.
        `minillm.scaled_dot_product_attention` takes (q, k, v, mask, bias) and so is a valid fn.

        factory(layer_idx) -> fn gives each layer 0..n_layer-1 its own function instead, e.g. one with its own
        parameters: an nn.Module fn becomes a submodule of its layer, so its parameters train with the model (set
        it before building the optimizer) and are saved in the state_dict. Give fn or factory, not both."""
        if fn is not None and factory is not None:
            raise TypeError("set_attention_fn takes fn or factory=, not both: pass factory=lambda layer_idx: ... "
                            "to give each layer its own function, or fn to share one")
        if factory is not None and not callable(factory):
            raise TypeError(f"factory must be callable as factory(layer_idx) -> fn, got {type(factory).__name__}")
        fns = [factory(i) if factory is not None else fn for i in range(len(self.blocks))]
        for i, f in enumerate(fns):  # check every layer's fn before changing any layer
            if f is None and factory is not None:
                raise TypeError(f"factory({i}) returned None: it must return an attention function for every layer "
                                "(call set_attention_fn() with no arguments to restore the built-in attention)")
            if f is not None:
                check_custom_fn(f, self.config, layer=i)
        for block, f in zip(self.blocks, fns):
            block.attn.set_attn_fn(f)

    def set_loss_fn(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None) -> None:
        """Replace the loss by fn(logits (B, T, V), targets (B, T)) -> scalar. None restores cross-entropy."""
        self.loss_fn = fn

    # --- forward ------------------------------------------------------------------------------------------
    def hidden_states(self, idx: torch.Tensor, *, prefix_len: int | torch.Tensor | None = None,
                      cache: KVCache | None = None, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """idx (B, T) -> the final-norm hidden states (B, T, C): what the output layer reads. Reward and value
        heads (Survey §5.2) put their own projection on these instead of the vocabulary logits.

        pad_mask (B, offset + T) bool, True = real token, for left-padded batches (Survey §4.2.4, batched
        decoding): covers the cached tokens too; pads are hidden from attention and each real token gets the
        position it would have without padding (count of real tokens before it)."""
        cfg = self.config
        B, T = idx.shape
        offset = cache.pos if cache is not None else 0
        if offset + T > cfg.block_size and cfg.position in ("learned", "sinusoidal"):
            raise ValueError(f"sequence of {offset + T} tokens is longer than block_size={cfg.block_size}; "
                             "crop the input or build the model with a larger block_size")
        # checked on CPU only: on CUDA the .item() would stall the GPU every step (the Trainer checks data up front)
        if not idx.is_cuda and idx.numel() and int(idx.max()) >= cfg.vocab_size:
            raise ValueError(f"token id {int(idx.max())} is out of range for vocab_size={cfg.vocab_size}: "
                             "the tokenizer's vocabulary does not fit this model; set ModelConfig.vocab_size "
                             "to at least the tokenizer's vocab_size")
        x = self.tok_emb(idx)  # (B, T, C)
        if pad_mask is None:
            positions = torch.arange(offset, offset + T, device=idx.device)  # (T,)
        else:
            positions = self._pad_positions(pad_mask, B, offset, T)  # (B, T)
        if cfg.position == "learned":
            x = x + self.pos_emb(positions)
        elif cfg.position == "sinusoidal":
            x = x + self.pos_table[positions]
        rope = rope_angles(positions.flatten(), cfg.head_dim, cfg.rope_theta) if cfg.position == "rope" else None
        if rope is not None and positions.dim() == 2:  # per-row angles broadcast over heads: (B, 1, T, hd/2)
            rope = tuple(a.view(B, 1, T, -1) for a in rope)
        x = self.drop(x)
        kw = {} if pad_mask is None else {"pad_mask": pad_mask}  # only padded calls pass it on
        for i, block in enumerate(self.blocks):
            if cfg.activation_checkpointing and self.training and torch.is_grad_enabled() and cache is None:
                # Save only the block's input; backward reruns the block to rebuild what it needs (Chen et al.
                # 2016): activation memory ~1/L of the usual for about one extra forward pass of compute.
                x = checkpoint(block, x, use_reentrant=False, rope=rope, prefix_len=prefix_len, layer=i, **kw)
            else:
                x = block(x, rope=rope, prefix_len=prefix_len, cache=cache, layer=i, **kw)
        if cache is not None:
            cache.pos += T
        return self.norm_f(x)  # (B, T, C)

    def _pad_positions(self, pad_mask: torch.Tensor, B: int, offset: int, T: int) -> torch.Tensor:
        """Per-row positions (B, T) of the new tokens: real tokens count 0, 1, ... as if unpadded."""
        if pad_mask.dtype != torch.bool or tuple(pad_mask.shape) != (B, offset + T):
            raise ValueError(f"pad_mask must be a bool tensor of shape (B, cached + new tokens) = {(B, offset + T)}, "
                             f"got {pad_mask.dtype} {tuple(pad_mask.shape)}; True marks real tokens")
        if self.config.kernels == "triton" and self.config.position == "rope":
            raise ValueError("pad_mask needs per-row RoPE positions, which the fused Triton RoPE kernel does not "
                             "take; use kernels='torch' for padded batches")
        positions = pad_mask.long().cumsum(dim=-1) - 1  # (B, offset + T): pads before the first real token get -1
        return positions[:, offset:].clamp(min=0)  # pads' positions do not matter: nothing attends to them

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *,
                prefix_len: int | torch.Tensor | None = None, cache: KVCache | None = None,
                pad_mask: torch.Tensor | None = None):
        """idx (B, T) token ids -> (logits (B, T, V), loss or None).

        With kernels='triton' and targets, logits is None: the fused loss never builds them (see `fuse_loss`).

        targets (B, T): next-token ids, -100 where no loss is wanted. prefix_len: length of the
        bidirectional prefix (attention_mask='prefix'). cache: a KVCache for incremental decoding.
        pad_mask: (B, cached + T) bool, True = real token, for left-padded batches (see `hidden_states`).
        With MoE layers the loss includes moe_aux_weight * aux + moe_z_weight * z summed over layers
        (`last_aux_loss`); subtract it for the pure LM loss.
        """
        cfg = self.config
        V = cfg.vocab_size
        h = self.hidden_states(idx, prefix_len=prefix_len, cache=cache, pad_mask=pad_mask)  # (B, T, C)
        logits = loss = None
        if targets is not None and self._loss_is_fused():
            # lm_head and cross-entropy in token chunks: only a chunk's logits exist at a time (Survey §4.3).
            # A padded table: its first V rows (a contiguous view), so padding ids are never scored.
            w = self.lm_head.weight if cfg.padded_vocab_size == V else self.lm_head.weight[:V]
            loss = kernels.ops.fused_linear_cross_entropy(h.reshape(-1, h.size(-1)), w, targets.reshape(-1))
        else:
            padded, logits = self._vocab_logits(self.lm_head(h))  # (B, T, V_padded) for the loss, (B, T, V)
        if targets is not None and loss is None:
            if self.loss_fn is not None:
                loss = self.loss_fn(logits, targets)
            elif cfg.kernels == "triton":
                # the padded rows: a row length divisible by 64 lets the kernel use vector loads
                loss = kernels.ops.cross_entropy(padded.view(-1, padded.size(-1)), targets.reshape(-1))
            else:
                loss = F.cross_entropy(padded.float().view(-1, padded.size(-1)), targets.reshape(-1), ignore_index=-100)
            if cfg.z_loss > 0:  # PaLM: pull log Z toward 0 so the softmax normaliser cannot drift (output stability)
                log_z = torch.logsumexp(logits.float(), dim=-1)[targets != -100]  # (N,) scored positions
                loss = loss + cfg.z_loss * log_z.pow(2).mean()
        if cfg.n_expert > 0:
            aux = sum(cfg.moe_aux_weight * b.mlp.aux_loss + cfg.moe_z_weight * b.mlp.z_loss for b in self.blocks)
            self._aux_term = aux.detach()
            if loss is not None:
                loss = loss + aux  # the router learns balance (and small logits) from these terms only
        return logits, loss

    def _vocab_logits(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """lm_head's output (..., V_padded) -> (the same with padding columns at MASKED_LOGIT, for the loss: rows of
        a multiple of 64 load fast; the (..., V) real-vocabulary view, returned to callers: no copy, no padding id).

        The fill is in place: a matmul's backward does not need its output, and the fill zeroes those columns'
        gradient. An unpadded model, or an lm_head replaced by something that is not the vocabulary layer (PPO's
        critic swaps in nn.Identity to read hidden states), gets `out` back twice, untouched."""
        V, V_padded = self.config.vocab_size, self.config.padded_vocab_size
        if V_padded == V or out.size(-1) != V_padded or isinstance(self.lm_head, nn.Identity):
            return out, out
        out[..., V:] = MASKED_LOGIT
        return out, out[..., :V]

    def _loss_is_fused(self) -> bool:
        """True when forward computes the loss with the fused linear cross-entropy kernel (and returns no logits)."""
        cfg = self.config
        return cfg.kernels == "triton" and self.fuse_loss and self.loss_fn is None and cfg.z_loss == 0

    def kernel_summary(self) -> str:
        """Which ops run as minillm's fused Triton kernels and which stay in PyTorch, for this config."""
        cfg = self.config
        if cfg.kernels != "triton":
            return "kernels='torch': every op runs in PyTorch (attention through SDPA)"
        fused, torch_ops = [], ["attention (SDPA / FlashAttention)", "matmuls (cuBLAS)"]
        (fused if cfg.norm == "rmsnorm" else torch_ops).append("RMSNorm" if cfg.norm == "rmsnorm" else cfg.norm)
        if cfg.qk_norm:
            fused.append("QK-norm (RMSNorm)")
        (fused if cfg.activation == "swiglu" else torch_ops).append(cfg.activation if cfg.activation != "swiglu"
                                                                    else "SwiGLU")
        if cfg.position == "rope":
            fused.append("RoPE")
        fused.append("linear + cross-entropy (chunked, no logits)" if self._loss_is_fused() else "cross-entropy")
        return (f"kernels='triton' (Triton on CUDA tensors; CPU tensors only under TRITON_INTERPRET=1): "
                f"fused {', '.join(fused)}; PyTorch: {', '.join(torch_ops)}")

    # --- mixture of experts ---------------------------------------------------------------------------------
    @property
    def last_aux_loss(self) -> float:
        """The weighted router losses the last forward added to the loss (0.0 for a dense model)."""
        return 0.0 if self._aux_term is None else float(self._aux_term)

    def moe_stats(self) -> list[dict]:
        """One dict per MoE layer from the last forward: "load" (E,), "dropped", "aux_loss", "z_loss"
        (see `MoE.stats`); [] for a dense model."""
        return [b.mlp.stats() for b in self.blocks if isinstance(b.mlp, MoE)]

    # --- accounting ---------------------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count. non_embedding=True leaves out the token and position embedding tables, as
        Kaplan et al. define N for scaling laws (an untied output layer is a real matmul and is counted)."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied matrix once
        if non_embedding:
            n -= self.tok_emb.weight.numel()
            if self.config.position == "learned":
                n -= self.pos_emb.weight.numel()
        return n

    def num_active_params(self, non_embedding: bool = True) -> int:
        """Parameters one token actually uses: as num_params, but each MoE layer counts its router and
        only top_k of its experts (Mixtral 8x7B: 47B parameters, 13B active). Equals num_params if dense."""
        n = self.num_params(non_embedding)
        for block in self.blocks:
            if isinstance(block.mlp, MoE):
                n -= (block.mlp.n_expert - block.mlp.top_k) * block.mlp.expert_params()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (forward + backward = 3x forward), as in PaLM's appendix / nanoGPT:
        6 N_matmul + 12 L H Q T, with N_matmul the weights used in matmuls (non-embedding + output layer;
        for MoE only the active ones: router and top_k experts), L layers, H heads, Q head dim and T the
        context (the attention score and value products)."""
        cfg = self.config
        T = cfg.block_size if seq_len is None else seq_len
        n_matmul = self.num_active_params(non_embedding=True)
        if cfg.tie_embeddings:  # the output projection reuses the embedding matrix but is still a matmul
            n_matmul += self.lm_head.weight.numel()
        return 6 * n_matmul + 12 * cfg.n_layer * cfg.n_head * cfg.head_dim * T

    def make_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache sized for this model (dtype and device of its weights)."""
        cfg, w = self.config, self.tok_emb.weight
        return KVCache(cfg.n_layer, batch_size, cfg.n_kv_head, max_len or cfg.block_size, cfg.head_dim,
                       device=w.device, dtype=w.dtype)


def logits_of(out) -> torch.Tensor:
    """The logits in a model's output: minillm's (logits, loss) pair (`GPT.forward`, `EncoderDecoder.forward`),
    bare logits, or anything with .logits (a Hugging Face ModelOutput). Takes the output, not the model, so a
    caller can pass cache= or other keyword arguments. Raises when there are none: a fused-loss forward
    (kernels='triton') given targets returns logits=None."""
    logits = out[0] if isinstance(out, tuple) else getattr(out, "logits", out)
    if logits is None:
        raise RuntimeError("model returned no logits; call it without targets (or set model.fuse_loss = False)")
    return logits
