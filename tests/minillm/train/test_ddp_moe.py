"""DDP with a mixture-of-experts GPT equals one process on the whole batch, even when experts get no tokens.

Issue #20, item 3: an expert that received no tokens used to be skipped, so its parameters took no part in
the backward; DDP (find_unused_parameters=False, the default and the fast path) then raised at the second
step ("Expected to have finished reduction in the prior iteration ..."). Here every rank sees 2 tokens per
step and 8 top-1 experts, so at least 6 experts per layer are empty on each rank at every step.

Two settings make the full-batch single process the exact reference: capacity_factor=None (capacity is
ceil(factor · N · k / E), so with dropping a rank's half-batch drops different tokens than the full batch)
and moe_aux_weight=0 (the load-balancing loss is E · Σ f_e · P_e, a product of batch means, so the mean of
two half-batch losses is not the full-batch loss). The z-loss is a mean over tokens and stays on. bias=False:
the key bias has an exactly zero true gradient (softmax ignores a shift shared by all of a query's scores),
so Adam turns its rounding noise into lr-sized steps that differ between the two runs (2e-5 seen here).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from minillm.config import ModelConfig
from minillm.model.transformer import GPT
from minillm.train.optim import AdamW, param_groups
from minillm.train.parallel import spawn, wrap_ddp

TINY = dict(vocab_size=48, block_size=8, n_layer=2, n_head=2, n_embd=16, n_expert=8, expert_top_k=1,
            capacity_factor=None, moe_aux_weight=0.0, bias=False)
GLOBAL_BATCH, T, WORLD, STEPS, TOL = 2, 2, 2, 3, 1e-5  # 4 tokens per step, 2 per rank
OPT = dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-8)
SPAWN_TIMEOUT_S = 60


def tiny_moe_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**TINY))


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same global batches (2, 2) on every rank: a fixed generator, independent of rank."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(STEPS):
        seq = torch.randint(0, TINY["vocab_size"], (GLOBAL_BATCH, T + 1), generator=g)
        out.append((seq[:, :-1], seq[:, 1:]))
    return out


def reference():
    """One process, full batch: (losses, {name: param})."""
    model = tiny_moe_gpt()
    opt = AdamW(param_groups(model, 0.1), **OPT)
    losses = []
    for x, y in batches():
        opt.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, {n: p.detach().clone() for n, p in model.named_parameters()}


def _ddp_moe_worker(rank: int, world: int):
    """(global losses, {name: param}, fewest empty experts seen in one layer at one step) on this rank."""
    torch.set_num_threads(1)
    model = tiny_moe_gpt()
    ddp = wrap_ddp(model)  # default find_unused_parameters=False: every parameter must get a gradient
    opt = AdamW(param_groups(model, 0.1), **OPT)
    n = GLOBAL_BATCH // world
    losses, fewest_empty = [], TINY["n_expert"]
    for x, y in batches():
        x, y = x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]
        opt.zero_grad()
        _, loss = ddp(x, y)
        loss.backward()
        opt.step()
        fewest_empty = min(fewest_empty, *(int((s["load"] == 0).sum()) for s in model.moe_stats()))
        loss = loss.detach().clone()
        dist.all_reduce(loss)
        losses.append(loss.item() / world)  # equal shares: the mean of the ranks' means is the full-batch loss
    return losses, {n: p.detach().clone() for n, p in model.named_parameters()}, fewest_empty


def test_ddp_moe_with_empty_experts_equals_one_process_on_the_full_batch():
    ref_losses, ref_params = reference()
    results = spawn(_ddp_moe_worker, WORLD, timeout_s=SPAWN_TIMEOUT_S)
    for rank, (losses, params, fewest_empty) in enumerate(results):
        assert fewest_empty >= 6, f"rank {rank}: the batch must leave experts empty, fewest empty = {fewest_empty}"
        dl = max(abs(a - b) for a, b in zip(losses, ref_losses, strict=True))
        assert params.keys() == ref_params.keys()
        dp = max((params[k] - ref_params[k]).abs().max().item() for k in ref_params)
        assert dl <= TOL and dp <= TOL, f"rank {rank}: max |Δloss| = {dl:.3g}, max |Δparam| = {dp:.3g} (tol {TOL})"
