"""Parameter-efficient adaptation: LoRA, adapters, prefix tuning, prompt tuning, applied to a GPT from outside.

Survey §5.3 (parameter-efficient model adaptation): fine-tuning every weight of an LLM needs gradients and
optimizer state for all of them (AdamW: two extra copies). The four methods of §5.3.1 freeze the base model
and train a small number of new parameters instead:
- LoRA (Hu et al. 2021): each target Linear becomes W x + (alpha/r) B A x with A (r, in), B (out, r), r << in;
  B starts at zero, so the adapted model starts equal to the base; after training B A merges into W
  (`merge`), so inference costs nothing extra.
- Adapter tuning (Houlsby et al. 2019): a bottleneck MLP h + up(act(down(h))) after the attention and/or MLP
  output of every block; `up` starts at zero (identity at init).
- Prefix tuning (Li & Liang 2021): n learned key/value vectors per layer that every query attends to, as if a
  "virtual" prompt of n tokens preceded the input.
- Prompt tuning (Lester et al. 2021): n learned embeddings prepended to the input embeddings only.

The model knows nothing of PEFT: LoRA replaces Linear modules, adapters hang on forward hooks, prefix tuning
switches each attention module to a subclass that prepends its prefix, prompt tuning wraps the model. Every
`apply_*` freezes all non-PEFT parameters (so methods compose) and returns a `PEFTReport`.
`trainable_parameters` and `peft_report` give the counts and the training-memory argument of §5.3.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm.config import _Config
from minillm.model.attention import Attention
from minillm.finetune.quant import QuantLinear, _set_module

__all__ = ["LoRAConfig", "LoRALinear", "apply_lora", "merge_lora", "lora_state_dict", "Adapter", "apply_adapters",
           "PrefixAttention", "apply_prefix_tuning", "PromptTuning", "PEFTReport", "trainable_parameters",
           "peft_report"]


@dataclass
class PEFTReport:
    """What an `apply_*` call changed: the method, the modules it touched and the parameter counts after it."""

    method: str
    modules: list[str]  # names of the modules wrapped / extended
    trainable: int  # parameters with requires_grad after the call
    total: int  # all parameters (shared tensors once)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        pct = 100 * self.trainable / max(self.total, 1)
        extra = "".join(f"\n  note: {n}" for n in self.notes)
        return (f"{self.method}: {len(self.modules)} module(s), {self.trainable:,} trainable of {self.total:,} "
                f"parameters ({pct:.3f}%){extra}")


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; a tied tensor is counted once."""
    params = list(model.parameters())  # parameters() yields each shared tensor once
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def peft_report(model: nn.Module, optimizer_states: int = 2) -> dict:
    """Counts and bytes: why PEFT saves memory (Survey §5.3). optimizer_states: tensors the optimizer keeps per
    trainable parameter (AdamW: 2, the first and second moments; SGD with momentum: 1).

    Training memory without activations = weights + gradients + optimizer state; full fine-tuning pays the last
    two for every parameter, PEFT only for the trainable ones (the frozen weights are still held).
    """
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    t_bytes = sum(p.numel() * p.element_size() for p in trainable)
    n_train, n_total = trainable_parameters(model)
    return {
        "trainable": n_train, "total": n_total, "trainable_fraction": n_train / max(n_total, 1),
        "trainable_bytes": t_bytes, "weight_bytes": weight_bytes,
        "grad_bytes": t_bytes, "optimizer_bytes": optimizer_states * t_bytes,
        "train_bytes": weight_bytes + (1 + optimizer_states) * t_bytes,  # this model, as configured
        "full_ft_train_bytes": (2 + optimizer_states) * weight_bytes,  # every weight trained
    }


def _peft_param_ids(model: nn.Module) -> set[int]:
    ids: set[int] = set()
    for m in model.modules():
        if isinstance(m, LoRALinear):
            ids |= {id(m.lora_A), id(m.lora_B)}
        elif isinstance(m, Adapter):
            ids |= {id(p) for p in m.parameters()}
        elif isinstance(m, PrefixAttention):
            ids |= {id(m.prefix_k), id(m.prefix_v)}
        elif isinstance(m, PromptTuning):
            ids.add(id(m.prompt))
    return ids


def _freeze_base(model: nn.Module) -> None:
    """requires_grad only on PEFT parameters: the base is frozen, and earlier PEFT modules stay trainable."""
    keep = _peft_param_ids(model)
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def _report(model: nn.Module, method: str, modules: list[str], notes: list[str] | None = None) -> PEFTReport:
    return PEFTReport(method, modules, *trainable_parameters(model), notes or [])


# ---------------------------------------------------------------------------------------------------------
# LoRA.


@dataclass
class LoRAConfig(_Config):
    """LoRA hyperparameters (Hu et al. 2021). The update is (alpha / rank) B A; dividing by rank keeps the
    update's size (and a good learning rate) roughly unchanged when rank changes."""

    rank: int = 8  # r: inner dimension of B A; the update has rank <= r
    alpha: float = 16.0  # scale numerator: the update is multiplied by alpha / rank
    dropout: float = 0.0  # dropout on the LoRA branch's input only (the frozen path sees x unchanged)
    target_modules: tuple[str, ...] = ("wq", "wv")  # Linear names, matched as the full name or its last parts

    def __post_init__(self) -> None:
        n = "LoRAConfig"
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank <= 0:
            raise ValueError(f"{n}.rank={self.rank!r} must be a positive integer (typical: 4 to 64)")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise ValueError(f"{n}.alpha={self.alpha!r} must be a positive number (often 2 * rank)")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"{n}.dropout={self.dropout!r} must be in [0, 1)")
        if isinstance(self.target_modules, str):
            raise ValueError(f"{n}.target_modules={self.target_modules!r} is one string; give a tuple of module "
                             f"names, e.g. ({self.target_modules!r},)")
        self.target_modules = tuple(self.target_modules)
        if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
            raise ValueError(f"{n}.target_modules={self.target_modules!r} must be a non-empty tuple of module "
                             "names such as ('wq', 'wv') or ('blocks.0.attn.wq',)")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoRALinear(nn.Module):
    """y = base(x) + (alpha/r) * dropout(x) @ A.T @ B.T around a frozen Linear (or a QuantLinear: QLoRA)."""

    def __init__(self, base: nn.Module, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base = base
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.scale = rank, alpha / rank
        w = base.qweight.scales if isinstance(base, QuantLinear) else base.weight  # (QLoRA: no dequantize)
        dtype = base.qweight.dtype if isinstance(base, QuantLinear) else w.dtype
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=w.device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=w.device, dtype=dtype))
        # A random, B zero (as Hu et al.): B A = 0 at init, yet gradients reach B at once (dL/dB = g (A x)^T)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's default init, as the reference code
        self.dropout = nn.Dropout(dropout)
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scale  # (out, in)

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight (out, in), so code reading `.weight` (e.g. a fused loss on lm_head) sees LoRA."""
        return self.base.weight if self.merged else self.base.weight + self.delta_weight()

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        y = self.base(x)
        if self.merged:
            return y  # B A already sits in base.weight (inference; A and B get no gradient this way)
        # x -> r -> out: 2 r (in + out) FLOPs per token instead of forming the (out, in) update
        return y + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scale

    @torch.no_grad()
    def merge(self) -> None:
        """W += (alpha/r) B A. Merging twice is an error: it would add the update again."""
        if self.merged:
            raise RuntimeError("LoRALinear.merge(): already merged; call unmerge() first")
        if isinstance(self.base, QuantLinear):
            raise RuntimeError("cannot merge LoRA into a quantized weight (QLoRA): keep it unmerged, or merge "
                               "into the full-precision model and quantize afterwards")
        self.base.weight += self.delta_weight().to(self.base.weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W -= (alpha/r) B A: back to the base weight up to float round-off (~1 ulp). Error if not merged."""
        if not self.merged:
            raise RuntimeError("LoRALinear.unmerge(): not merged")
        self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scale={self.scale:g}, merged={self.merged}"


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, QuantLinear))]


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> PEFTReport:
    """Wrap every Linear matching cfg.target_modules in a LoRALinear, in place; freeze everything else.

    A target whose weight is tied to another module (GPT's lm_head and tok_emb) gets its own frozen copy first,
    so that a later `merge` changes the head only, not the input embeddings.
    """
    if not isinstance(cfg, LoRAConfig):
        raise ValueError(f"cfg must be a LoRAConfig, got {type(cfg).__name__}")
    modules = dict(model.named_modules())
    linear = _linear_names(model)
    chosen, notes = [], []
    for t in cfg.target_modules:
        hits = [n for n in modules if n == t or n.endswith("." + t)]  # a full name, or its last parts
        if any(isinstance(modules[n], LoRALinear) for n in hits):
            raise ValueError(f"LoRA target {t!r} already carries LoRA; call apply_lora once per model")
        bad = [n for n in hits if n not in linear]
        if bad:
            raise ValueError(f"LoRA target {t!r} matches {bad[0]!r} (type {type(modules[bad[0]]).__name__}), not a "
                             f"Linear; LoRA wraps Linear layers: {_describe(linear)}")
        if not hits:
            raise ValueError(f"LoRA target {t!r} matches no module; Linear layers of this model: {_describe(linear)}")
        chosen += [n for n in hits if n not in chosen]
    other_params = {id(p) for n, m in modules.items() if n not in chosen for p in m.parameters(recurse=False)}
    for name in chosen:
        base = modules[name]
        if isinstance(base, nn.Linear) and id(base.weight) in other_params:
            base.weight = nn.Parameter(base.weight.detach().clone())  # untie (see docstring)
            notes.append(f"{name}: weight was tied to another module; LoRA got an untied frozen copy")
        _set_module(model, name, LoRALinear(base, cfg.rank, cfg.alpha, cfg.dropout))
    _freeze_base(model)
    return _report(model, "lora", chosen, notes)


def _describe(names: list[str]) -> str:
    short = sorted({n.rsplit(".", 1)[-1] for n in names})
    return f"{', '.join(short)} (full names like {names[0]!r})" if names else "none"


def merge_lora(model: nn.Module) -> list[str]:
    """Replace every LoRALinear by a plain Linear holding W + (alpha/r) B A: export-ready, no LoRA code needed
    to run it. Returns the names replaced."""
    names = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name in names:
        lora = model.get_submodule(name)
        if isinstance(lora.base, QuantLinear):
            raise RuntimeError(f"{name}: cannot merge LoRA into a quantized weight (QLoRA); merge before quantizing")
        with torch.no_grad():
            w = lora.base.weight if lora.merged else lora.base.weight + lora.delta_weight().to(lora.base.weight.dtype)
            plain = nn.Linear(lora.in_features, lora.out_features, bias=lora.base.bias is not None,
                              device=w.device, dtype=w.dtype)
            plain.weight.copy_(w)
            if lora.base.bias is not None:
                plain.bias.copy_(lora.base.bias)
        plain.requires_grad_(False)
        _set_module(model, name, plain)
    return names


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the LoRA tensors (A and B of every layer): the small file to ship next to the unchanged base.
    Load with `model.load_state_dict(sd, strict=False)` after `apply_lora` with the same config."""
    return {k: v for k, v in model.state_dict().items() if k.endswith((".lora_A", ".lora_B"))}


# ---------------------------------------------------------------------------------------------------------
# Adapter tuning.


class Adapter(nn.Module):
    """Houlsby bottleneck: h + up(act(down(h))), (..., C) -> (..., C); up is zero, so it starts as identity."""

    def __init__(self, dim: int, bottleneck: int, device=None, dtype=None):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck, device=device, dtype=dtype)
        self.up = nn.Linear(bottleneck, dim, device=device, dtype=dtype)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(F.gelu(self.down(h)))

    def hook(self, module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        """Forward hook: replaces the hooked sublayer's output by adapter(output)."""
        return self(output)


def apply_adapters(model: nn.Module, bottleneck: int = 16, where: tuple[str, ...] = ("attn", "mlp")) -> PEFTReport:
    """Insert an Adapter after the attention and/or MLP output of each block (before the residual add), as
    Houlsby et al.; the adapters live in block.adapter_attn / block.adapter_mlp and run as forward hooks, so
    the blocks' code and attributes stay as they are. Freezes everything else."""
    if not isinstance(bottleneck, int) or isinstance(bottleneck, bool) or bottleneck <= 0:
        raise ValueError(f"bottleneck={bottleneck!r} must be a positive integer (the adapter's hidden width)")
    if isinstance(where, str) or not where or any(w not in ("attn", "mlp") for w in where):
        raise ValueError(f"where={where!r} must be a non-empty tuple drawn from ('attn', 'mlp')")
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ValueError(f"apply_adapters needs a model with .blocks (like minillm.GPT); got {type(model).__name__}")
    dim = model.config.n_embd
    w = next(model.parameters())
    names = []
    for i, block in enumerate(blocks):
        for part in where:
            if hasattr(block, f"adapter_{part}"):
                raise ValueError(f"blocks.{i} already has adapter_{part}; apply_adapters once per model")
            adapter = Adapter(dim, bottleneck, device=w.device, dtype=w.dtype)
            block.add_module(f"adapter_{part}", adapter)
            getattr(block, part).register_forward_hook(adapter.hook)
            names.append(f"blocks.{i}.adapter_{part}")
    _freeze_base(model)
    return _report(model, "adapters", names)


# ---------------------------------------------------------------------------------------------------------
# Prefix tuning.


class PrefixAttention(Attention):
    """Attention whose keys and values start with n learned vectors per kv-head (Li & Liang 2021).

    Only `_attend` changes: the prefix is concatenated in front of k and v (after RoPE, so the prefix carries
    no rotation: it is learned directly in rotated space), and the query offset moves by n, so the causal mask
    lets every query see the whole prefix (and ALiBi sees it just before the input, as a real prompt). The
    KV cache holds the real tokens only. With a sliding window the prefix ages out like a real prompt would.
    """

    prefix_k: nn.Parameter  # (Hkv, n, D)
    prefix_v: nn.Parameter  # (Hkv, n, D)

    def _attend(self, q, k, v, offset: int, prefix_len, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, n = q.size(0), self.prefix_k.size(1)
        pk = self.prefix_k.to(k.dtype).unsqueeze(0).expand(B, -1, -1, -1)  # (B, Hkv, n, D)
        pv = self.prefix_v.to(v.dtype).unsqueeze(0).expand(B, -1, -1, -1)
        if pad_mask is not None:  # left-padded batches: the learned prefix is never padding, every row sees it
            pad_mask = torch.cat([pad_mask.new_ones(B, n), pad_mask], dim=1)  # (B, n + Tk)
        return super()._attend(q, torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2), offset + n, prefix_len,
                               pad_mask)


@torch.no_grad()
def _real_prompt_kv(model: nn.Module, ids: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer, the keys and values (Hkv, n, D) the model computes for the token ids (n,)."""
    cache = model.make_cache(1, ids.numel())
    was_training = model.training
    model.eval()
    model(ids.view(1, -1).to(cache.k[0].device), cache=cache)
    model.train(was_training)
    return [k[0].clone() for k in cache.k], [v[0].clone() for v in cache.v]


def apply_prefix_tuning(model: nn.Module, n_prefix: int, init_ids: torch.Tensor | None = None,
                        seed: int = 0) -> PEFTReport:
    """Give every attention layer n_prefix learned key/value vectors; freeze everything else.

    Initialised with the keys/values that the tokens init_ids (n_prefix,) produce (default: random token ids
    drawn with `seed`): Li & Liang found real-word activations train far better than random vectors; it also
    makes the prefix-tuned model equal the base model run on that prompt (without absolute positions).
    n_prefix=0 leaves outputs unchanged.
    """
    if not isinstance(n_prefix, int) or isinstance(n_prefix, bool) or n_prefix < 0:
        raise ValueError(f"n_prefix={n_prefix!r} must be a non-negative integer (virtual tokens per layer)")
    cfg = model.config
    if cfg.attention_mask != "causal":
        raise ValueError(f"prefix tuning supports attention_mask='causal', not {cfg.attention_mask!r}")
    if n_prefix > cfg.block_size:
        raise ValueError(f"n_prefix={n_prefix} exceeds block_size={cfg.block_size}: the prefix is initialised "
                         "from a real prompt of that length")
    attns = [(f"blocks.{i}.attn", b.attn) for i, b in enumerate(model.blocks)]
    for name, attn in attns:
        if type(attn) is not Attention:
            raise ValueError(f"{name} is a {type(attn).__name__}; prefix tuning expects a plain Attention "
                             "(apply it once, and before other changes to attention)")
    if init_ids is None:
        g = torch.Generator().manual_seed(seed)
        init_ids = torch.randint(cfg.vocab_size, (n_prefix,), generator=g)
    if init_ids.shape != (n_prefix,):
        raise ValueError(f"init_ids must have shape ({n_prefix},), got {tuple(init_ids.shape)}")
    ks, vs = _real_prompt_kv(model, init_ids) if n_prefix else ([None] * len(attns), [None] * len(attns))
    for (name, attn), k, v in zip(attns, ks, vs):
        if k is None:  # an empty prefix: (Hkv, 0, D)
            w = attn.wk.weight
            k = v = torch.zeros(attn.n_kv_head, 0, attn.head_dim, device=w.device, dtype=w.dtype)
        # switch the class (not a wrapper module): isinstance(Attention), set_attention_fn, the KV cache and the
        # state_dict names of the base all keep working; the only difference is `_attend` above
        attn.__class__ = PrefixAttention
        attn.prefix_k, attn.prefix_v = nn.Parameter(k), nn.Parameter(v.clone())
    _freeze_base(model)
    return _report(model, "prefix", [n for n, _ in attns])


# ---------------------------------------------------------------------------------------------------------
# Prompt tuning.


class PromptTuning(nn.Module):
    """A GPT with n learned input embeddings in front of every sequence (Lester et al. 2021); base frozen.

    forward(idx (B, T), targets) runs the base on n placeholder ids + idx, replacing the placeholders'
    embeddings by the soft prompt (a forward hook on tok_emb), so the prompt takes positions 0..n-1 as a real
    prompt would. Targets at those positions are -100: the loss is over the real tokens only. Returns logits
    (B, T, V) for the real tokens. `config.block_size` is the base's minus n (room left for real tokens).
    Initialised from the embeddings of random vocabulary tokens, which Lester et al. found beats random vectors.
    """

    def __init__(self, model: nn.Module, n_prompt: int, seed: int = 0):
        super().__init__()
        base_cfg = model.config
        if not isinstance(n_prompt, int) or isinstance(n_prompt, bool) or not 0 < n_prompt < base_cfg.block_size:
            raise ValueError(f"n_prompt={n_prompt!r} must be an integer in [1, block_size={base_cfg.block_size})")
        self.model, self.n_prompt = model, n_prompt
        self.config = base_cfg.replace(block_size=base_cfg.block_size - n_prompt)
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(base_cfg.vocab_size, (n_prompt,), generator=g).to(model.tok_emb.weight.device)
        self.prompt = nn.Parameter(model.tok_emb.weight.detach()[ids].clone())  # (n, C)
        _freeze_base(self)

    def _prepend(self, module, args, out: torch.Tensor) -> torch.Tensor:  # (B, n + T, C) -> same
        B = out.size(0)
        return torch.cat([self.prompt.to(out.dtype).expand(B, -1, -1), out[:, self.n_prompt:]], dim=1)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache=None):
        if cache is not None and cache.pos > 0:  # decoding step: the prompt is already in the cache
            return self.model(idx, targets, cache=cache)
        B, n = idx.size(0), self.n_prompt
        pad = torch.zeros(B, n, dtype=idx.dtype, device=idx.device)  # placeholders; their embeddings get replaced
        full_targets = None
        if targets is not None:
            full_targets = torch.cat([torch.full_like(pad, -100), targets], dim=1)  # (B, n + T)
        handle = self.model.tok_emb.register_forward_hook(self._prepend)
        try:
            logits, loss = self.model(torch.cat([pad, idx], dim=1), full_targets, cache=cache)
        finally:
            handle.remove()
        return (None if logits is None else logits[:, n:]), loss  # (B, T, V)

    def make_cache(self, batch_size: int, max_len: int | None = None):
        return self.model.make_cache(batch_size, max_len)
