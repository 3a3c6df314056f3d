"""Typed configuration for models and training runs.

Survey §4.2.2 (detailed configuration) lists the knobs a decoder-only LLM is built from: normalization
method and position, activation, position embedding, attention and bias. `ModelConfig` exposes exactly
those as fields, so one class covers GPT-2, Llama-style and the ablations of chapter 04. `TrainConfig`
holds the optimization setting of Survey §4.3.1 (batch size, learning-rate schedule, optimizer,
stabilization). Both validate themselves in `__post_init__`: a wrong value fails at construction time with a
message that names the field and the allowed values, not deep inside a forward pass.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

NORMS = ("layernorm", "rmsnorm", "deepnorm")
NORM_POSITIONS = ("pre", "post", "sandwich")
ACTIVATIONS = ("relu", "gelu", "swiglu", "geglu")
POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")
ATTENTION_MASKS = ("causal", "prefix")
ATTENTION_IMPLS = ("sdpa", "math", "flash")
SPARSE_PATTERNS = ("strided", "fixed")
KERNELS = ("torch", "triton")

SCHEDULES = ("cosine", "wsd", "linear", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
OPTIMIZERS = ("adamw", "torch_adamw", "muon", "sgd", "adam", "adafactor", "lion")
ON_NAN = ("raise", "skip")
PARALLEL = ("none", "ddp", "fsdp")


def _choice(cls_name: str, name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{cls_name}.{name}={value!r} is not valid; choose one of {', '.join(allowed)}")


def _positive(cls_name: str, name: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{cls_name}.{name}={value!r} must be a {kind} number")


class _Config:
    """Shared helpers: dict round trip and `replace` that re-validates."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}; valid fields: {', '.join(sorted(names))}")
        return cls(**d)

    def replace(self, **changes):
        """A copy with some fields changed (validated again, so derived defaults are recomputed)."""
        return self.from_dict({**self.to_dict(), **changes})


@dataclass
class ModelConfig(_Config):
    """Architecture of a decoder-only (or encoder-decoder) transformer LM. Survey §4.2."""

    vocab_size: int = 256  # number of token ids; must cover every id the tokenizer emits
    block_size: int = 128  # maximum context length T the model is trained/evaluated on
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # query heads
    n_kv_head: int | None = None  # key/value heads: None = n_head (MHA), 1 = MQA, in between = GQA
    n_embd: int = 128  # residual stream width C; head dim = n_embd // n_head
    ffn_hidden: int | None = None  # MLP hidden width; None = 4*C (relu/gelu) or 8/3*C rounded to 8 (GLU variants)
    norm: str = "layernorm"  # layernorm | rmsnorm | deepnorm (post-LN with up-weighted residual)
    norm_position: str = "pre"  # pre (GPT-2, Llama) | post (original transformer) | sandwich
    activation: str = "gelu"  # relu | gelu | swiglu | geglu
    position: str = "learned"  # learned | sinusoidal | rope | alibi | none
    attention_mask: str = "causal"  # causal (decoder-only) | prefix (prefix LM: bidirectional over a prefix)
    bias: bool = True  # biases in Linear layers and norms (GPT-2: True; Llama/PaLM: False)
    dropout: float = 0.0  # dropout on attention weights and residual branches; 0 for pretraining
    norm_eps: float = 1e-5  # epsilon inside the norms
    rope_theta: float = 10000.0  # RoPE base; larger = longer wavelengths (context extension)
    tie_embeddings: bool = True  # share token embedding and output projection weights
    attn_impl: str = "sdpa"  # sdpa (torch fused) | math (explicit, for teaching) | flash (minillm Triton FlashAttention-2)
    sliding_window: int | None = None  # if set, each query sees at most this many previous tokens
    sparse_attention: str | None = None  # None (dense) | strided | fixed: Sparse Transformer masks (model/sparse.py)
    sparse_block: int = 16  # sparse_attention's stride (strided) or block length (fixed); ~sqrt(block_size) is typical
    init_std: float = 0.02  # std of the normal init; residual projections are scaled by 1/sqrt(2*n_layer)
    kernels: str = "torch"  # torch | triton (fused Triton kernels: CUDA, or the CPU interpreter; see minillm.kernels)
    n_expert: int = 0  # mixture-of-experts: experts per MLP layer; 0 = dense MLP (Survey §4.2.1)
    expert_top_k: int = 2  # experts each token is routed to (Switch: 1, GShard/Mixtral: 2)
    capacity_factor: float | None = 1.25  # slots per expert = ceil(factor * tokens * k / E); None = never drop
    moe_aux_weight: float = 0.01  # weight of the Switch/GShard load-balancing loss added to the LM loss
    moe_z_weight: float = 0.001  # weight of the ST-MoE router z-loss (keeps router logits small)
    qk_norm: bool = False  # RMSNorm on each head's queries and keys before attention (bounds attention logits)
    activation_checkpointing: bool = False  # keep only each block's input in training; recompute the rest in backward
    z_loss: float = 0.0  # weight of PaLM's output z-loss, mean(log Z)^2, added to the loss (keeps logits small)
    # Why pad: with an odd V every (B*T, V) logits row is misaligned and GPU kernels fall back to scalar loads. The
    # padding ids are never predicted: masked in the loss and cut from the logits forward returns.
    pad_vocab_multiple: int | None = None  # round the embedding/output rows up to a multiple of this (gpu: 64); None = V

    def __post_init__(self) -> None:
        n = "ModelConfig"
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{n}.{name}={v!r} must be a positive integer")
        _choice(n, "norm", self.norm, NORMS)
        _choice(n, "norm_position", self.norm_position, NORM_POSITIONS)
        _choice(n, "activation", self.activation, ACTIVATIONS)
        _choice(n, "position", self.position, POSITIONS)
        _choice(n, "attention_mask", self.attention_mask, ATTENTION_MASKS)
        _choice(n, "attn_impl", self.attn_impl, ATTENTION_IMPLS)
        _choice(n, "kernels", self.kernels, KERNELS)
        if self.n_embd % self.n_head:
            raise ValueError(f"{n}.n_embd={self.n_embd} must be divisible by n_head={self.n_head} "
                             f"(head dim = n_embd // n_head)")
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if not isinstance(self.n_kv_head, int) or self.n_kv_head <= 0 or self.n_head % self.n_kv_head:
            raise ValueError(f"{n}.n_kv_head={self.n_kv_head!r} must be a positive divisor of n_head={self.n_head} "
                             f"(n_head for MHA, 1 for MQA, a divisor in between for GQA)")
        if self.position == "rope" and self.head_dim % 2:
            raise ValueError(f"{n}: position='rope' rotates pairs of dimensions, so the head dim "
                             f"n_embd // n_head = {self.head_dim} must be even")
        if self.ffn_hidden is None:
            if self.activation in ("swiglu", "geglu"):
                # GLU variants have three matrices: 8/3*C keeps parameters equal to a 4*C two-matrix MLP.
                self.ffn_hidden = max(8, (int(8 * self.n_embd / 3) + 7) // 8 * 8)
            else:
                self.ffn_hidden = 4 * self.n_embd
        _positive(n, "ffn_hidden", self.ffn_hidden)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{n}.dropout={self.dropout!r} must be in [0, 1)")
        _positive(n, "norm_eps", self.norm_eps)
        _positive(n, "rope_theta", self.rope_theta)
        _positive(n, "init_std", self.init_std)
        if self.sliding_window is not None and (not isinstance(self.sliding_window, int) or self.sliding_window <= 0):
            raise ValueError(f"{n}.sliding_window={self.sliding_window!r} must be None or a positive integer")
        self._check_sparse()
        for flag in ("qk_norm", "activation_checkpointing"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{n}.{flag}={getattr(self, flag)!r} must be True or False")
        if isinstance(self.z_loss, bool) or not isinstance(self.z_loss, (int, float)) or not 0 <= self.z_loss < 1:
            raise ValueError(f"{n}.z_loss={self.z_loss!r} must be a number in [0, 1) (PaLM used 1e-4)")
        pad = self.pad_vocab_multiple
        if pad is not None and (not isinstance(pad, int) or isinstance(pad, bool) or pad <= 0):
            raise ValueError(f"{n}.pad_vocab_multiple={pad!r} must be None (no padding) or a positive integer "
                             f"(64 suits GPUs)")
        self._check_moe()
        self._check_flash()

    def _check_sparse(self) -> None:
        n = "ModelConfig"
        if self.sparse_attention is not None and self.sparse_attention not in SPARSE_PATTERNS:
            raise ValueError(f"{n}.sparse_attention={self.sparse_attention!r} is not valid; choose None (dense "
                             f"attention) or one of {', '.join(SPARSE_PATTERNS)}")
        b = self.sparse_block
        if not isinstance(b, int) or isinstance(b, bool) or b <= 0:
            raise ValueError(f"{n}.sparse_block={b!r} must be a positive integer (the stride or block length)")
        if self.sparse_attention is None:
            return
        # A sparse pattern is one causal mask; with another mask there is no single meaning, so refuse rather than
        # let one silently win.
        if self.sliding_window is not None:
            raise ValueError(f"{n}: sparse_attention={self.sparse_attention!r} and sliding_window="
                             f"{self.sliding_window} both restrict attention; set one of them (the strided "
                             "pattern already contains a local window of sparse_block tokens)")
        if self.attention_mask != "causal":
            raise ValueError(f"{n}: sparse_attention={self.sparse_attention!r} is a causal pattern, but "
                             f"attention_mask={self.attention_mask!r}; use attention_mask='causal' (an "
                             "encoder-decoder's bidirectional encoder cannot use a sparse pattern either)")

    def _check_flash(self) -> None:
        """attn_impl='flash' runs minillm's FlashAttention-2 kernel: plain causal attention (with GQA and a KV cache)
        and nothing else, so every option that changes the scores is refused here, not ignored at run time."""
        if self.attn_impl != "flash":
            return
        n = "ModelConfig"
        other = [f"{k}={v!r}" for k, v in (("position", self.position), ("attention_mask", self.attention_mask),
                                            ("sliding_window", self.sliding_window),
                                            ("sparse_attention", self.sparse_attention))
                 if (k, v) in (("position", "alibi"), ("attention_mask", "prefix"))
                 or (k in ("sliding_window", "sparse_attention") and v is not None)]
        if other:
            raise ValueError(f"{n}: attn_impl='flash' computes plain causal attention, but {', '.join(other)} changes "
                             "the scores; use attn_impl='sdpa' (or 'math') for that")
        if self.head_dim > 128:
            raise ValueError(f"{n}: attn_impl='flash' supports head dims up to 128, got n_embd // n_head = "
                             f"{self.head_dim}; use more heads or attn_impl='sdpa'")

    def _check_moe(self) -> None:
        n = "ModelConfig"
        if not isinstance(self.n_expert, int) or isinstance(self.n_expert, bool) or self.n_expert < 0:
            raise ValueError(f"{n}.n_expert={self.n_expert!r} must be a non-negative integer (0 = dense MLP)")
        k = self.expert_top_k
        if not isinstance(k, int) or isinstance(k, bool) or k < 1 or (self.n_expert > 0 and k > self.n_expert):
            upper = f"n_expert={self.n_expert}" if self.n_expert > 0 else "n_expert"
            raise ValueError(f"{n}.expert_top_k={k!r} must be an integer in [1, {upper}]: "
                             f"each token is routed to that many distinct experts")
        if self.capacity_factor is not None:
            _positive(n, "capacity_factor", self.capacity_factor)
        _positive(n, "moe_aux_weight", self.moe_aux_weight, allow_zero=True)
        _positive(n, "moe_z_weight", self.moe_z_weight, allow_zero=True)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and output tables: vocab_size rounded up to pad_vocab_multiple (if set)."""
        m = self.pad_vocab_multiple or 1
        return -(-self.vocab_size // m) * m


@dataclass
class TrainConfig(_Config):
    """Optimization and bookkeeping of one training run. Survey §4.3.1."""

    batch_size: int = 16  # sequences per micro-batch (per process)
    grad_accum_steps: int = 1  # micro-batches per optimizer step: effective batch = batch_size * grad_accum_steps
    max_steps: int = 200  # optimizer steps
    lr: float = 1e-3  # peak learning rate
    min_lr: float | None = None  # floor of the decay; None = lr / 10
    warmup_steps: int = 20  # linear warmup from 0 to lr
    schedule: str = "cosine"  # cosine | wsd (warmup-stable-decay) | linear | constant (after warmup)
    decay_frac: float = 0.2  # wsd: fraction of max_steps spent in the final decay
    weight_decay: float = 0.1  # decoupled weight decay on matrices (not on norms, biases, embeddings)
    beta1: float = 0.9  # Adam momentum: decay rate of the running mean of gradients
    beta2: float = 0.95  # 0.95 as GPT-3/Llama: reacts faster to gradient-scale changes than 0.999
    eps: float = 1e-8  # Adam denominator epsilon: keeps updates finite when the second moment is ~0
    grad_clip: float | None = 1.0  # max global grad norm; None disables clipping (the norm is still recorded)
    # The optimizer (train.optim.build_optimizer): sgd is Nesterov momentum 0.9 with decoupled decay; adam puts L2
    # decay in the gradient; adafactor is torch's (factored 2nd moment, lr = the relative step cap); lion and muon
    # are train/lion.py and train/muon.py (muon: hidden matrices, AdamW for the rest).
    optimizer: str = "adamw"  # adamw (minillm's, readable) | torch_adamw (fused on CUDA) | muon | sgd | adam | adafactor | lion
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16 (with GradScaler)
    device: str = "auto"  # auto | cpu | cuda | mps; asking for an absent device is an error
    seed: int = 1337  # seeds torch, numpy, python and the data sampler
    eval_interval: int = 50  # evaluate on the held-out split every N steps (0 = only at the end)
    eval_batches: int = 10  # batches averaged per evaluation
    log_interval: int = 10  # record a history row every N steps (the last step is always recorded)
    out_dir: str | None = None  # where history.jsonl and checkpoints go; None = keep in memory only
    checkpoint_interval: int | None = None  # save every N steps; None = at each eval_interval (nanoGPT), 0 = at the end
    resume: bool = False  # continue from out_dir's latest checkpoint, reproducing the uninterrupted run
    on_nan: str = "raise"  # raise (stop with an error naming the step) | skip (drop the step: spike guard)
    compile: bool = False  # torch.compile the model (pays on GPU; slow to compile and no faster on CPU)
    tf32: bool = True  # on CUDA, fp32 matmuls use TF32 tensor cores (10-bit mantissa, ~8x faster); False = exact fp32
    progress: bool = True  # show a tqdm progress bar (only on a terminal or in a notebook, on rank 0)
    parallel: str = "none"  # none | ddp (replicas, gradient all-reduce) | fsdp (sharded, ZeRO-3); needs torchrun

    def __post_init__(self) -> None:
        n = "TrainConfig"
        for name in ("batch_size", "grad_accum_steps", "max_steps", "eval_batches", "log_interval"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{n}.{name}={v!r} must be a positive integer")
        for name in ("warmup_steps", "eval_interval", "checkpoint_interval"):
            v = getattr(self, name)
            if name == "checkpoint_interval" and v is None:
                continue  # follows eval_interval (checkpoint_every)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{n}.{name}={v!r} must be a non-negative integer"
                                 + (" or None (= eval_interval)" if name == "checkpoint_interval" else ""))
        _positive(n, "lr", self.lr)
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        _positive(n, "min_lr", self.min_lr, allow_zero=True)
        if self.min_lr > self.lr:
            raise ValueError(f"{n}.min_lr={self.min_lr} must not exceed lr={self.lr}")
        _choice(n, "schedule", self.schedule, SCHEDULES)
        _choice(n, "precision", self.precision, PRECISIONS)
        _choice(n, "device", self.device, DEVICES)
        _choice(n, "optimizer", self.optimizer, OPTIMIZERS)
        _choice(n, "on_nan", self.on_nan, ON_NAN)
        _choice(n, "parallel", self.parallel, PARALLEL)
        if not 0.0 < self.decay_frac <= 1.0:
            raise ValueError(f"{n}.decay_frac={self.decay_frac!r} must be in (0, 1]")
        _positive(n, "weight_decay", self.weight_decay, allow_zero=True)
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{n}.{name}={v!r} must be in [0, 1)")
        _positive(n, "eps", self.eps)
        if self.grad_clip is not None:
            _positive(n, "grad_clip", self.grad_clip)
        if not isinstance(self.tf32, bool):
            raise ValueError(f"{n}.tf32={self.tf32!r} must be True or False")
        if self.optimizer == "muon" and self.parallel == "fsdp":
            raise ValueError(f"{n}.optimizer='muon' needs whole weight matrices, but parallel='fsdp' shards them; "
                             "use parallel='ddp' (or none) with muon, or an AdamW optimizer with fsdp")
        if self.resume and not self.out_dir:
            raise ValueError(f"{n}.resume=True needs out_dir: the checkpoint to resume from lives there")

    @property
    def checkpoint_every(self) -> int:
        """Steps between checkpoints: checkpoint_interval, or eval_interval when that is None (0 = only at the end).

        The None stays in the field rather than being filled in by __post_init__, so a saved config still says
        "follow eval_interval" and `replace(eval_interval=...)` moves the checkpoints along with the evaluations.
        """
        return self.eval_interval if self.checkpoint_interval is None else self.checkpoint_interval
