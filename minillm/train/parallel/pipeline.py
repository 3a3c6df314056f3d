"""Pipeline parallelism: the layers split into stages on different ranks, a GPipe schedule written out.

Survey §4.3.2 (scalable training techniques: pipeline parallelism, GPipe and PipeDream). Each rank holds a
contiguous slice of the layers (a *stage*) and passes activations to the next rank. Done naively, only one
rank works at a time. GPipe (Huang et al. 2019) cuts the batch into m micro-batches: while stage 1 runs
micro-batch 0, stage 0 already runs micro-batch 1, and so on. All forwards go first, then all backwards in
reverse order; gradients accumulate over the micro-batches and the optimizer steps once, so the result is the
same as one step on the whole batch. What is left idle is the "bubble" at the start and end of the schedule:

    bubble fraction = (p - 1) / (m + p - 1)      p stages, m micro-batches    (`bubble_fraction`)

so m >> p makes it small (at the cost of storing m micro-batches of activations; 1F1B schedules cut that).

This module is a teaching version, simpler and more transparent than `torch.distributed.pipelining`: blocking
point-to-point `send`/`recv` of whole activations (gloo on CPU), one stage per rank, rank i = stage i.

- `split_stages(model, n)`: n `PipelineStage`s sharing the model's modules (embeddings on the first, final
  norm and lm_head on the last); every rank builds the full model and keeps its own stage.
- `gpipe_step(stage, rank, world_size, micro_batches, targets)`: forward and backward for all micro-batches.
- `bubble_fraction`, `schedule_table`: the schedule's idle time, and who runs what when (for a plot).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from minillm.model.position import rope_angles

IGNORE_INDEX = -100  # targets that carry no loss, as in GPT.forward


class PipelineStage(nn.Module):
    """Blocks [start, stop) of a GPT, plus the embeddings if first and final norm + lm_head if last.

    first stage: ids (B, T) -> activations (B, T, C); middle: (B, T, C) -> (B, T, C); last: -> logits (B, T, V).
    The modules are the model's own (shared, not copied), so the optimizer can be built on `stage.parameters()`.
    """

    def __init__(self, model: nn.Module, index: int, n_stages: int, start: int, stop: int):
        super().__init__()
        self.config, self.index, self.n_stages = model.config, index, n_stages
        self.is_first, self.is_last = index == 0, index == n_stages - 1
        if self.is_first:
            self.tok_emb, self.drop = model.tok_emb, model.drop
            if self.config.position == "learned":
                self.pos_emb = model.pos_emb
            elif self.config.position == "sinusoidal":
                self.register_buffer("pos_table", model.pos_table, persistent=False)
        self.blocks = nn.ModuleList(model.blocks[start:stop])
        if self.is_last:
            self.norm_f, self.lm_head = model.norm_f, model.lm_head
        # weight tying across stages: the first stage's tok_emb and the last stage's lm_head are one matrix, but on
        # two ranks they are two copies, so their gradients must be summed between those ranks (`gpipe_step`)
        self.tied_across_ranks = self.config.tie_embeddings and n_stages > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if self.is_first:  # the same embedding as GPT.forward (no KV cache, no offset)
            positions = torch.arange(x.size(1), device=x.device)
            x = self.tok_emb(x)  # (B, T) -> (B, T, C)
            if cfg.position == "learned":
                x = x + self.pos_emb(positions)
            elif cfg.position == "sinusoidal":
                x = x + self.pos_table[positions]
            x = self.drop(x)
        T = x.size(1)
        rope = rope_angles(torch.arange(T, device=x.device), cfg.head_dim, cfg.rope_theta) \
            if cfg.position == "rope" else None
        for block in self.blocks:
            x = block(x, rope=rope)
        return self.lm_head(self.norm_f(x)) if self.is_last else x


def split_stages(model: nn.Module, n_stages: int) -> list[PipelineStage]:
    """Partition a GPT's Blocks into n_stages contiguous, near-equal stages (earlier stages get the extra ones)."""
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(model, "blocks"):
        raise TypeError(f"split_stages: expected a minillm GPT, got {type(model).__name__}")
    n_layer = len(model.blocks)
    if isinstance(n_stages, bool) or not isinstance(n_stages, int) or not 1 <= n_stages <= n_layer:
        raise ValueError(f"split_stages: n_stages={n_stages!r} must be an integer in [1, n_layer={n_layer}] "
                         "(every stage holds at least one Block)")
    if cfg.n_expert > 0:
        raise ValueError("split_stages: mixture-of-experts models are not supported (their router losses are "
                         "added across all layers); use n_expert=0")
    if getattr(model, "loss_fn", None) is not None:
        raise ValueError("split_stages: a custom loss_fn is not supported; gpipe_step uses cross-entropy")
    per, extra = divmod(n_layer, n_stages)
    stages, start = [], 0
    for i in range(n_stages):
        stop = start + per + (1 if i < extra else 0)
        stages.append(PipelineStage(model, i, n_stages, start, stop))
        start = stop
    return stages


def gpipe_step(stage_module: PipelineStage, rank: int, world_size: int, micro_batches: list[torch.Tensor],
               targets: list[torch.Tensor]) -> torch.Tensor | None:
    """Forward then backward of all micro-batches through the pipeline; gradients accumulate into .grad.

    Every rank passes the same micro_batches (ids (b, T): the first stage embeds them, the others read their
    shapes) and targets (b, T) (read by the last stage). The loss is the mean over every target token of the
    whole batch, as one forward of the full batch would compute, so the accumulated gradients equal the
    full-batch ones. Returns that loss (detached) on the last rank, None on the others. Does not zero .grad
    and does not step: call `opt.zero_grad()` before and `opt.step()` after, on every rank.
    """
    if not isinstance(stage_module, PipelineStage):
        raise TypeError(f"gpipe_step: expected a PipelineStage from split_stages, got {type(stage_module).__name__}")
    if stage_module.n_stages != world_size or stage_module.index != rank:
        raise ValueError(f"gpipe_step: rank {rank} of {world_size} must run stage {rank} of {world_size}, got stage "
                         f"{stage_module.index} of {stage_module.n_stages}")
    if not micro_batches or len(micro_batches) != len(targets):
        raise ValueError(f"gpipe_step: need one target per micro-batch and at least one, got {len(micro_batches)} "
                         f"micro-batches and {len(targets)} targets")
    st = stage_module
    prev, nxt = rank - 1, rank + 1
    dtype = next(st.parameters()).dtype
    n_tokens = sum(int((t != IGNORE_INDEX).sum()) for t in targets)  # the full batch's loss denominator
    inputs, outputs = [], []  # per micro-batch: this stage's input and output, kept for the backward pass

    # Forward: stage s runs micro-batch i as soon as stage s-1 has sent it (the "staircase" of the schedule).
    loss = torch.zeros(())
    for i, ids in enumerate(micro_batches):
        if st.is_first:
            x = ids
        else:
            x = torch.empty(*ids.shape, st.config.n_embd, dtype=dtype)  # (b, T, C)
            dist.recv(x, src=prev)
            x.requires_grad_(True)  # we need d loss / d x to send back to the previous stage
        out = st(x)
        if st.is_last:
            V = out.size(-1)
            out = F.cross_entropy(out.float().view(-1, V), targets[i].reshape(-1), ignore_index=IGNORE_INDEX,
                                  reduction="sum") / max(n_tokens, 1)  # this micro-batch's share of the mean
            loss = loss + out.detach()
        else:
            dist.send(out.detach().contiguous(), dst=nxt)
        inputs.append(x)
        outputs.append(out)

    # Backward, last micro-batch first: receive d loss / d output, backprop through the stage, send d loss / d input.
    for i in reversed(range(len(micro_batches))):
        out = outputs[i]
        if st.is_last:
            out.backward()
        else:
            grad = torch.empty_like(out)
            dist.recv(grad, src=nxt)
            out.backward(grad)
        if not st.is_first:
            dist.send(inputs[i].grad.contiguous(), dst=prev)
        inputs[i] = outputs[i] = None  # free the activations of this micro-batch

    if st.tied_across_ranks:
        _sync_tied_grad(st)
    return loss if st.is_last else None


def _sync_tied_grad(st: PipelineStage) -> None:
    """Sum the tied embedding's two gradients (input use on the first stage, output use on the last).

    A collective, so every rank joins; middle stages contribute zeros. Afterwards both copies hold the full
    gradient and identical optimizer steps keep them equal (Megatron-LM does the same between its two stages).
    """
    cfg = st.config
    if st.is_first or st.is_last:
        w = st.tok_emb.weight if st.is_first else st.lm_head.weight
        if w.grad is None:
            w.grad = torch.zeros_like(w)
        buf = w.grad
    else:
        buf = torch.zeros(cfg.padded_vocab_size, cfg.n_embd)  # the tied tables have the padded rows (gpu profile)
    dist.all_reduce(buf)  # (V, C), in place


def bubble_fraction(n_stages: int, n_micro: int) -> float:
    """Idle fraction of a GPipe schedule: (p - 1) / (m + p - 1) for p stages and m micro-batches.

    Each stage is busy for m slots (forward) out of the m + p - 1 it takes the last micro-batch to leave the
    last stage (and the same again for the backward).
    """
    for name, v in (("n_stages", n_stages), ("n_micro", n_micro)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"bubble_fraction: {name}={v!r} must be a positive integer")
    return (n_stages - 1) / (n_micro + n_stages - 1)


def schedule_table(n_stages: int, n_micro: int) -> torch.Tensor:
    """Who runs what when in GPipe: a (n_stages, 2 (m + p - 1)) long tensor of micro-batch indices, -1 = idle.

    Columns are time slots, assuming a forward and a backward take one slot each: the first m + p - 1 are the
    forward staircase (stage s runs micro-batch t - s), the rest the backward one, last stage and last
    micro-batch first. The fraction of -1 entries is `bubble_fraction`. Plot with `imshow`.
    """
    bubble_fraction(n_stages, n_micro)  # validates the arguments
    p, m = n_stages, n_micro
    span = m + p - 1
    table = torch.full((p, 2 * span), -1, dtype=torch.long)
    for s in range(p):
        for i in range(m):
            table[s, s + i] = i  # forward of micro-batch i reaches stage s at slot s + i
            table[s, span + (p - 1 - s) + (m - 1 - i)] = i  # backward runs in reverse, from the last stage
    return table
