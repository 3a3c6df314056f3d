"""Supervised fine-tuning without a Trainer: one micro-step, a packed (prompt, response) dataset and a plain loop
(Survey §5.1, instruction tuning).

    data = PackedSFTDataset([("2+2=", "4"), ("3+5=", "8")] * 50, tokenizer, block_size=32, response_only=True)
    history = train_sft_loop(model, data, torch.optim.AdamW(model.parameters(), lr=1e-3), steps=100, batch_size=8)

The micro-step (the convention of Stanford CS336's SFT assignment, written out once here):

    loss = -(1/B) sum_b [ sum_t mask[b, t] * logp[b, t] ] / normalize_constant / grad_accum_steps

The inner sum runs over response tokens and is divided by a *constant*, not by the number of response tokens, so a
long answer weighs more than a short one and, above all, the loss of a batch is a plain sum over its examples: two
micro-batches of B/2 rows each divided by grad_accum_steps=2 give exactly the gradient of one batch of B rows.
(Dividing each micro-batch by its own token count would weight tokens differently depending on how the batch was
split.) Pass normalize_constant = typical response length to keep the loss on a per-token scale.

Packing (as in pretraining, Survey §4.1.2): each document is prompt ids + response ids + EOS, all documents are laid
end to end, and the stream is cut into windows of block_size + 1 tokens that overlap by one token (window i starts at
i * block_size), so every token after the first is a target exactly once; x = w[:-1], y = w[1:]. Tokens after the
last full window are dropped (`n_dropped_tokens`). Attention crosses documents inside a window; the EOS is what
tells the model one ended. `labels` is always the next token; `loss_mask` says which targets count: all of them by
default (plain packed LM training on the SFT text), or with response_only=True only response tokens and the EOS that
ends each response (the model learns to answer and to stop, never to predict the prompt); windows with no response
target are then dropped, since they carry no loss. `one_per_row=True` gives each document a window of its own
instead (right-padded, padding never a target): better for a few short examples (see the class). For chat-formatted
data (role tags, per-conversation rows) use `minillm.finetune.sft.pack`; its (x, y) batches also feed
`train_sft_loop`.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from minillm.data.special_tokens import EOS_TOKEN  # the special token looked up when eos_id is not given
from minillm.data.tokenizer import Tokenizer
from minillm.device import resolve_device
from minillm.finetune.logprobs import logprobs_from_logits, model_logits
from minillm.finetune.policy_gradient import masked_normalize
from minillm.finetune.sft import IGNORE
from minillm.train.optim import clip_grad_norm_

__all__ = ["EOS_TOKEN", "sft_microbatch_step", "PackedSFTDataset", "train_sft_loop"]



def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name}={v!r} must be a positive int")
    return v


# ---- the micro-step -------------------------------------------------------------------------------------------

def sft_microbatch_step(logp: torch.Tensor, response_mask: torch.Tensor, grad_accum_steps: int,
                        normalize_constant: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Response-token NLL of one micro-batch, scaled for gradient accumulation; calls `loss.backward()`.

    logp: (B, T) per-token log-probs of the targets (e.g. `logprobs_from_logits`); response_mask: (B, T), nonzero
    where the target is trained on. loss = -mean_b(sum_t mask * logp / normalize_constant) / grad_accum_steps.
    Returns (loss, meta) with meta (detached 0-d tensors): n_response_tokens, loss_unscaled (before the division
    by grad_accum_steps), nll_per_token (mean NLL over response tokens, for logging; not what is differentiated).
    Raises ValueError when the mask has no response token: nothing to learn, almost always a data bug.
    """
    if not isinstance(logp, torch.Tensor) or not logp.is_floating_point() or logp.dim() != 2:
        raise ValueError(f"logp must be a (B, T) float tensor of log-probs, got "
                         f"{getattr(logp, 'shape', type(logp).__name__)} {getattr(logp, 'dtype', '')}")
    if not isinstance(response_mask, torch.Tensor) or response_mask.shape != logp.shape:
        raise ValueError(f"response_mask must be a tensor of logp's shape {tuple(logp.shape)}, got "
                         f"{getattr(response_mask, 'shape', type(response_mask).__name__)}")
    _positive_int("grad_accum_steps", grad_accum_steps)
    if isinstance(normalize_constant, bool) or not isinstance(normalize_constant, (int, float)) \
            or not math.isfinite(normalize_constant) or normalize_constant <= 0:
        raise ValueError(f"normalize_constant={normalize_constant!r} must be a positive finite number")
    mask = response_mask.to(logp.device) != 0  # (B, T) bool: nonzero = a trained target
    n_tokens = mask.sum()
    if not bool(n_tokens > 0):
        raise ValueError("response_mask is all zeros: this micro-batch has no response token to learn from; "
                         "check that responses are not cut off and that the mask is aligned to the targets")
    per_example = masked_normalize(logp, mask, normalize_constant, dim=-1)  # (B,) sum over response tokens / c
    loss_unscaled = -per_example.mean()  # mean over the batch
    loss = loss_unscaled / grad_accum_steps  # so grad_accum_steps micro-steps add up to one batch's gradient
    loss.backward()
    with torch.no_grad():
        nll = -torch.where(mask, logp, 0.0).sum() / n_tokens  # where, not *: -inf * 0 off the response is NaN
    return loss.detach(), {"n_response_tokens": n_tokens.detach(), "loss_unscaled": loss_unscaled.detach(),
                           "nll_per_token": nll}


# ---- the packed dataset ---------------------------------------------------------------------------------------

def _prompt_response(example: Any, i: int) -> tuple[str, str]:
    if isinstance(example, Mapping):
        missing = [k for k in ("prompt", "response") if k not in example]
        if missing:
            raise ValueError(f"example {i} lacks key(s) {missing}; keys present: {sorted(example)}. Give "
                             "{'prompt': ..., 'response': ...} dicts or (prompt, response) pairs")
        pair = (example["prompt"], example["response"])
    elif isinstance(example, (tuple, list)) and len(example) == 2:
        pair = (example[0], example[1])
    else:
        raise TypeError(f"example {i} is a {type(example).__name__}; give (prompt, response) pairs of strings or "
                        "{'prompt': ..., 'response': ...} dicts")
    for name, s in zip(("prompt", "response"), pair):
        if not isinstance(s, str):
            raise TypeError(f"example {i}: {name} must be a str, got {type(s).__name__}")
    return pair


class PackedSFTDataset:
    """(prompt, response) examples packed into fixed windows for a causal LM (see the module docstring).

    examples: (prompt, response) string pairs or {"prompt", "response"} dicts, packed in the order given.
    eos_id: the id appended after each document; by default the tokenizer's "<|endoftext|>" special token.
    one_per_row=True: one document per window instead (right-padded with eos_id; padding is never a target), so
    no example attends to another. Use it for few, short examples (issue #22: training exact match 34% packed vs
    97% one per row on 32 pairs); keep packing (the default) for large corpora of long responses (throughput).
    Item i -> {"input_ids": (T,), "labels": (T,), "loss_mask": (T,) bool} with T = block_size; labels[t] is
    input_ids[t+1] of the token stream. For `model(x, targets)` use labels.masked_fill(~loss_mask, IGNORE).
    """

    def __init__(self, examples: Sequence[Any], tokenizer: Tokenizer, block_size: int, *, eos_id: int | None = None,
                 seed: int = 0, response_only: bool = False, one_per_row: bool = False):
        T = _positive_int("block_size", block_size)
        if not examples:
            raise ValueError("examples is empty: give at least one (prompt, response) pair")
        if eos_id is None:
            if EOS_TOKEN not in tokenizer.special_tokens:
                raise ValueError(f"the tokenizer has no {EOS_TOKEN!r} special token (its specials: "
                                 f"{tokenizer.special_tokens}); pass eos_id= or build it with "
                                 f"special_tokens=({EOS_TOKEN!r},)")
            eos_id = tokenizer.token_to_id(EOS_TOKEN)
        if isinstance(eos_id, bool) or not isinstance(eos_id, int) or not 0 <= eos_id < tokenizer.vocab_size:
            raise ValueError(f"eos_id={eos_id!r} must be an int id in [0, {tokenizer.vocab_size})")
        docs: list[tuple[list[int], list[bool]]] = []  # per document: ids, and per token "a response token or its EOS"
        for i, ex in enumerate(examples):  # a loop over documents, not tokens
            prompt, response = _prompt_response(ex, i)
            p, r = tokenizer.encode(prompt), tokenizer.encode(response)  # separately, so the mask is exact
            docs.append(([*p, *r, eos_id], [False] * len(p) + [True] * (len(r) + 1)))
        self.block_size, self.eos_id, self.seed = T, eos_id, seed
        self.response_only, self.one_per_row = response_only, one_per_row
        if one_per_row:
            windows, flags, in_doc = self._one_per_row(docs, T, eos_id)
            self.tokens = torch.tensor([t for ids, _ in docs for t in ids], dtype=torch.long)  # (N,) all documents
            self.n_dropped_tokens = 0
        else:
            ids = [t for d, _ in docs for t in d]
            if len(ids) < T + 1:
                raise ValueError(f"the examples give {len(ids)} tokens (EOS included) but one window needs "
                                 f"block_size + 1 = {T + 1}: add examples, lower block_size or pass one_per_row=True")
            self.tokens = torch.tensor(ids, dtype=torch.long)  # (N,) the whole packed stream
            n = (len(ids) - 1) // T
            self.n_dropped_tokens = len(ids) - (n * T + 1)
            # Window i = stream[i*T : i*T + T + 1]: neighbours share one token, so no target falls between windows.
            windows = self.tokens[: n * T + 1].unfold(0, T + 1, T)  # (n, T+1)
            is_resp = torch.tensor([f for _, fl in docs for f in fl])
            flags = is_resp[: n * T + 1].unfold(0, T + 1, T)[:, 1:]  # (n, T) per target
            in_doc = torch.ones_like(flags)  # every target of the stream is a real token
        n = len(windows)
        keep = flags.any(1) if response_only else torch.ones(n, dtype=torch.bool)  # (n,)
        if not bool(keep.any()):
            raise ValueError("no window holds a response token; raise block_size or check the responses")
        self.n_dropped_windows = int((~keep).sum())
        self._windows = windows[keep].contiguous()  # (n_kept, T+1)
        self._mask = (flags[keep] if response_only else in_doc[keep]).contiguous()  # (n_kept, T)

    @staticmethod
    def _one_per_row(docs: list[tuple[list[int], list[bool]]], T: int,
                     pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each document alone in a window of T + 1 tokens, right-padded with `pad_id` -> windows (n, T+1), response
        flags (n, T) and in-document flags (n, T) per target; a padding position is never a target."""
        long = [i for i, (ids, _) in enumerate(docs) if len(ids) > T + 1]
        if long:
            raise ValueError(f"example {long[0]} has {len(docs[long[0]][0])} tokens (EOS included), more than "
                             f"block_size + 1 = {T + 1}: with one_per_row=True each example must fit one window; "
                             f"raise block_size, shorten it, or pack across examples (one_per_row=False)")
        windows = torch.full((len(docs), T + 1), pad_id, dtype=torch.long)  # (n, T+1)
        resp = torch.zeros(len(docs), T + 1, dtype=torch.bool)                # (n, T+1) per token
        for i, (ids, fl) in enumerate(docs):  # a loop over documents; each is one slice assignment
            windows[i, : len(ids)] = torch.tensor(ids)
            resp[i, : len(ids)] = torch.tensor(fl)
        lengths = torch.tensor([len(ids) for ids, _ in docs])  # (n,)
        in_doc = torch.arange(1, T + 1)[None, :] < lengths[:, None]  # (n, T): target t+1 lies inside the document
        return windows, resp[:, 1:], in_doc

    def __len__(self) -> int:
        return len(self._windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        w = self._windows[i]  # (T+1,)
        return {"input_ids": w[:-1], "labels": w[1:], "loss_mask": self._mask[i]}

    def batches(self, batch_size: int, *, shuffle: bool = True, seed: int | None = None, drop_last: bool = True,
                epochs: int | None = None, device: str | torch.device = "cpu") -> Iterator[dict[str, torch.Tensor]]:
        """Batches {"input_ids", "labels", "loss_mask"} of (B, T) tensors; endless unless `epochs` is given.

        Each epoch visits every window once, in a fresh permutation drawn from one generator seeded with `seed`
        (default: the dataset's), so a seed repeats the whole sequence. drop_last=False also yields each epoch's
        short final batch.
        """
        B = _positive_int("batch_size", batch_size)
        if drop_last and B > len(self):
            raise ValueError(f"batch_size={B} is more than the {len(self)} windows: lower it or pass drop_last=False")
        if epochs is not None:
            _positive_int("epochs", epochs)
        g = torch.Generator().manual_seed(self.seed if seed is None else seed)
        epoch = 0
        while epochs is None or epoch < epochs:
            order = torch.randperm(len(self), generator=g) if shuffle else torch.arange(len(self))
            stop = len(self) - B + 1 if drop_last else len(self)
            for s in range(0, stop, B):
                idx = order[s:s + B]
                w = self._windows[idx].to(device)  # (B, T+1)
                yield {"input_ids": w[:, :-1], "labels": w[:, 1:], "loss_mask": self._mask[idx].to(device)}
            epoch += 1


# ---- the loop -------------------------------------------------------------------------------------------------

def _unpack(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch as (x, labels, mask): a dict from `PackedSFTDataset.batches` (loss_mask optional: all targets) or an
    (x, y) pair from `sft.sft_batches`, whose y holds -100 where there is no target."""
    if isinstance(batch, Mapping):
        x, y = batch["input_ids"], batch["labels"]
        mask = batch.get("loss_mask", torch.ones_like(y, dtype=torch.bool))
    elif isinstance(batch, (tuple, list)) and len(batch) == 2:
        x, y = batch
        mask = y != IGNORE
        y = y.masked_fill(~mask, 0)  # any valid id: masked targets are gathered, then multiplied by 0
    else:
        raise TypeError(f"a batch must be a dict with input_ids, labels (and loss_mask) or an (x, y) pair, got "
                        f"{type(batch).__name__}")
    return x.to(device), y.to(device), mask.to(device)


def train_sft_loop(model: nn.Module, data: PackedSFTDataset | Iterable[Any], optimizer: torch.optim.Optimizer, *,
                   steps: int, batch_size: int | None = None, grad_accum_steps: int = 1,
                   normalize_constant: float = 1.0, grad_clip: float | None = 1.0, device: str | torch.device = "cpu",
                   log_every: int = 1) -> list[dict]:
    """Fine-tune `model` for `steps` optimizer steps; returns history rows {step, loss, nll_per_token, tokens,
    grad_norm} every `log_every` steps and at the last.

    data: a PackedSFTDataset (then batch_size = rows per micro-batch, drawn from `data.batches`) or an iterator of
    micro-batches (dicts as `batches` yields, or (x, y) pairs from `sft_batches`; then leave batch_size None).
    Each step: grad_accum_steps micro-batches, each forward -> per-token log-probs -> `sft_microbatch_step`
    (backward), then clip the global gradient norm to grad_clip (None: no clipping), optimizer.step(), zero_grad.
    `loss` is the objective of the step (the sum of its micro-losses); `tokens` its response-token count. The model
    must already be on `device` (move it before building the optimizer). An MoE model's auxiliary losses are not
    added here: this loop trains the response NLL only.
    """
    _positive_int("steps", steps)
    _positive_int("grad_accum_steps", grad_accum_steps)
    _positive_int("log_every", log_every)
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip={grad_clip!r} must be positive, or None for no clipping")
    device = resolve_device(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if any(p.device.type != device.type for p in params):
        raise ValueError(f"the model's parameters are not on {device}: call model.to({str(device)!r}) before "
                         "building the optimizer")
    if isinstance(data, PackedSFTDataset):
        if batch_size is None:
            raise ValueError("with a PackedSFTDataset pass batch_size (rows per micro-batch)")
        batches: Iterator[Any] = data.batches(batch_size, device=device)
    else:
        if batch_size is not None:
            raise ValueError("batch_size applies to a PackedSFTDataset only; an iterator of batches sets its own size")
        batches = iter(data)
    model_block = getattr(getattr(model, "config", None), "block_size", None)

    history: list[dict] = []
    model.train()
    optimizer.zero_grad(set_to_none=True)
    for step in range(1, steps + 1):
        loss = torch.zeros((), device=device)
        nll_sum = torch.zeros((), device=device)  # token-weighted, for the per-token NLL of the whole step
        tokens = torch.zeros((), device=device)
        for _ in range(grad_accum_steps):
            try:
                x, y, mask = _unpack(next(batches), device)  # (B, T) each
            except StopIteration:
                raise ValueError(f"the batch iterator ran out at step {step}: it must yield steps * grad_accum_steps"
                                 f" = {steps * grad_accum_steps} micro-batches (or be endless)") from None
            if model_block is not None and x.size(1) > model_block:
                raise ValueError(f"batches have {x.size(1)} tokens per row, more than the model's block_size "
                                 f"{model_block}; pack with a block_size no larger than the model's")
            logp = logprobs_from_logits(model_logits(model, x), y)  # (B, T) float32
            micro_loss, meta = sft_microbatch_step(logp, mask, grad_accum_steps, normalize_constant)
            loss += micro_loss
            nll_sum += meta["nll_per_token"] * meta["n_response_tokens"]
            tokens += meta["n_response_tokens"]
        grad_norm = clip_grad_norm_(params, grad_clip)  # None only measures the norm
        if not bool(torch.isfinite(loss)):  # the only host sync per step; a NaN update would poison every weight
            raise RuntimeError(f"non-finite loss at step {step} ({loss.item()}): lower the learning rate or keep "
                               "grad_clip on")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % log_every == 0 or step == steps:
            history.append({"step": step, "loss": float(loss), "nll_per_token": float(nll_sum / tokens),
                            "tokens": int(tokens), "grad_norm": float(grad_norm)})
    model.eval()
    return history
