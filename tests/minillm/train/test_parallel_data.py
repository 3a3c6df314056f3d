"""DDP, ZeRO-1 and FSDP2 equal one process on the whole batch (minillm/train/parallel: ddp, zero, fsdp, dist).

The distributed runs share one pair of CPU processes (gloo, started once by `parallel.spawn`). Each rank builds
the same tiny GPT (same seed), trains on its half of the same global batches, and its losses and parameters
are compared with a single process trained on the full batches. Differences come only from float rounding
(two half-batch gradients averaged instead of one full-batch mean, amplified a little by Adam's division by
√v), so they must be tiny.
"""
from __future__ import annotations

import time

import pytest
import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from minillm.config import ModelConfig
from minillm.model.transformer import GPT
from minillm.train.optim import AdamW, param_groups
from minillm.train.parallel import ZeroOneAdamW, accumulate, init_distributed, shard_fsdp2, spawn, wrap_ddp

TINY = dict(vocab_size=48, block_size=8, n_layer=2, n_head=2, n_embd=16)
GLOBAL_BATCH, WORLD, TOL = 4, 2, 1e-5
OPT = dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-8)
SPAWN_TIMEOUT_S = 60


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**TINY))


def batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same global batches (4, 8) everywhere: a fixed generator, independent of rank."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):
        seq = torch.randint(0, TINY["vocab_size"], (GLOBAL_BATCH, TINY["block_size"] + 1), generator=g)
        out.append((seq[:, :-1], seq[:, 1:]))
    return out


def my_half(batch, rank: int, world: int):
    n = GLOBAL_BATCH // world
    return tuple(t[rank * n:(rank + 1) * n] for t in batch)


def global_mean(loss: torch.Tensor, world: int) -> float:
    """The full-batch loss: the mean of the ranks' means (equal shares of the batch)."""
    loss = loss.detach().clone()
    dist.all_reduce(loss)
    return loss.item() / world


def reference(steps: int):
    """One process, full batch, minillm AdamW: (losses, {name: param}, optimizer state bytes)."""
    model = tiny_gpt()
    opt = AdamW(param_groups(model, 0.1), **OPT)
    losses = []
    for x, y in batches(steps):
        opt.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    state = sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values())
    return losses, {n: p.detach().clone() for n, p in model.named_parameters()}, state


def max_diff(params: dict, ref: dict) -> float:
    assert params.keys() == ref.keys()
    return max((params[n] - ref[n]).abs().max().item() for n in ref)


def assert_matches(losses, params, ref_losses, ref_params, what: str) -> None:
    dl = max(abs(a - b) for a, b in zip(losses, ref_losses, strict=True))
    dp = max_diff(params, ref_params)
    assert dl <= TOL and dp <= TOL, f"{what}: max |Δloss| = {dl:.3g}, max |Δparam| = {dp:.3g} (tolerance {TOL})"


# ----------------------------------------------------------------------------- workers (run in child processes)


def _counting_allreduce(calls: list, bucket):
    calls.append(1)
    return default_hooks.allreduce_hook(None, bucket)


def _ddp_worker(rank: int, world: int, steps: int) -> dict:
    torch.set_num_threads(1)
    out = {}
    # (a) one backward per step on this rank's half of the batch
    # (b) the same half split into 2 micro-batches of 1 example, accumulated with `accumulate`
    for mode in ("plain", "accumulate"):
        model = tiny_gpt()
        ddp = wrap_ddp(model)
        calls: list = []
        ddp.register_comm_hook(calls, _counting_allreduce)
        opt = AdamW(param_groups(model, 0.1), **OPT)
        losses = []
        for batch in batches(steps):
            x, y = my_half(batch, rank, world)
            opt.zero_grad()
            if mode == "plain":
                _, loss = ddp(x, y)
                loss.backward()
            else:
                micro = [(x[i:i + 1], y[i:i + 1]) for i in range(len(x))]
                loss = accumulate(ddp, micro, lambda m, mb: m(*mb)[1])
            opt.step()
            losses.append(global_mean(loss, world))
        params = {n: p.detach().clone() for n, p in model.named_parameters()}
        out[mode] = (losses, params, len(calls))
    return out


def _fit(model: GPT, opt, steps: int, rank: int, world: int) -> tuple[list[float], dict]:
    """Train on this rank's half of each global batch: (full-batch losses, {name: param})."""
    losses = []
    for batch in batches(steps):
        x, y = my_half(batch, rank, world)
        opt.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        losses.append(global_mean(loss, world) if world > 1 else loss.item())
    return losses, {n: p.detach().clone() for n, p in model.named_parameters()}


def _zero_worker(rank: int, world: int, steps: int):
    torch.set_num_threads(1)
    model = tiny_gpt()
    opt = ZeroOneAdamW(param_groups(model, 0.1), world, rank, **OPT)
    return *_fit(model, opt, steps, rank, world), opt.state_bytes()


def _fsdp_worker(rank: int, world: int, steps: int):
    torch.set_num_threads(1)
    model = shard_fsdp2(tiny_gpt())
    local_numel = sum(p.to_local().numel() for p in model.parameters())
    opt = AdamW(param_groups(model, 0.1), **OPT)
    losses = []
    for batch in batches(steps):
        x, y = my_half(batch, rank, world)
        opt.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        losses.append(global_mean(loss, world))
    params = {n: p.full_tensor().detach().clone() for n, p in model.named_parameters()}
    return losses, params, local_numel


def _all_worker(rank: int, world: int) -> dict:
    """DDP, ZeRO-1 and FSDP2 in one pair of processes: starting processes costs more than the tiny runs."""
    return {"ddp": _ddp_worker(rank, world, 3), "zero": _zero_worker(rank, world, 3),
            "fsdp": _fsdp_worker(rank, world, 2)}


def _failing_worker(rank: int, world: int):
    if rank == 1:
        raise ValueError("rank one breaks on purpose")
    dist.barrier()  # rank 0 waits for a rank that will never come: spawn must not wait with it


def _sleeping_worker(rank: int, world: int):
    time.sleep(120)


# ----------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def distributed() -> list[dict]:
    return spawn(_all_worker, WORLD, timeout_s=SPAWN_TIMEOUT_S)


def test_ddp_and_accumulate_equal_one_process_on_the_full_batch(distributed):
    ref_losses, ref_params, _ = reference(3)
    for rank, out in enumerate(r["ddp"] for r in distributed):
        for mode in ("plain", "accumulate"):
            losses, params, _ = out[mode]
            assert_matches(losses, params, ref_losses, ref_params, f"DDP {mode}, rank {rank}")
        # no_sync: accumulating 2 micro-batches all-reduces as often as one plain backward, not twice as often
        plain_calls, acc_calls = out["plain"][2], out["accumulate"][2]
        assert plain_calls > 0 and acc_calls == plain_calls, (plain_calls, acc_calls)


def test_zero1_equals_unsharded_adamw_with_half_the_state(distributed):
    ref_losses, ref_params, ref_state = reference(3)
    for rank, (losses, params, state_bytes) in enumerate(r["zero"] for r in distributed):
        assert_matches(losses, params, ref_losses, ref_params, f"ZeRO-1 rank {rank}")
        # each rank keeps m and v for half of the parameters (+ padding of at most 1 number per group)
        assert abs(state_bytes - ref_state / WORLD) <= 0.01 * ref_state, (state_bytes, ref_state)


def test_fsdp2_equals_one_process_on_the_full_batch(distributed):
    ref_losses, ref_params, _ = reference(2)
    n_params = sum(p.numel() for p in ref_params.values())
    for rank, (losses, params, local_numel) in enumerate(r["fsdp"] for r in distributed):
        assert_matches(losses, params, ref_losses, ref_params, f"FSDP2 rank {rank}")
        assert local_numel < 0.6 * n_params, f"rank {rank} stores {local_numel} of {n_params} parameters"


def test_zero1_on_one_rank_is_adamw():
    ref_losses, ref_params, _ = reference(2)
    model = tiny_gpt()
    opt = ZeroOneAdamW(param_groups(model, 0.1), 1, 0, **OPT)
    losses = []
    for x, y in batches(2):
        opt.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert_matches(losses, dict(model.named_parameters()), ref_losses, ref_params, "ZeRO-1 world_size=1")


def test_zero1_rejects_bad_ranks_and_a_missing_process_group():
    params = list(tiny_gpt().parameters())
    with pytest.raises(ValueError, match="rank"):
        ZeroOneAdamW(params, 2, 2)
    with pytest.raises(RuntimeError, match="process group"):
        ZeroOneAdamW(params, 2, 0)


def test_spawn_names_the_failing_rank_instead_of_hanging():
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"rank 1 failed: ValueError: rank one breaks on purpose"):
        spawn(_failing_worker, WORLD, timeout_s=30)
    assert time.monotonic() - start < 30


def test_spawn_times_out_with_the_unfinished_ranks():
    with pytest.raises(RuntimeError, match=r"ranks \[0, 1\] did not finish within timeout_s=3"):
        spawn(_sleeping_worker, WORLD, timeout_s=3)


def test_spawn_validates_its_arguments():
    with pytest.raises(ValueError, match="world_size"):
        spawn(_sleeping_worker, 0)
    with pytest.raises(ValueError, match="timeout_s"):
        spawn(_sleeping_worker, 2, timeout_s=0)
    with pytest.raises(TypeError, match="picklable"):
        spawn(lambda rank, world: rank, 2)


def test_init_distributed_outside_torchrun_says_how_to_start(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        init_distributed()


# ---- frozen parameters (#21, bug 2): a LoRA-style model whose base weights do not train ----------------------------

def _freeze_half(model: GPT) -> GPT:
    """Freeze every attention weight and the embeddings, as a LoRA base is frozen: only MLP and norms train."""
    for n, p in model.named_parameters():
        if ".attn." in n or n.startswith("tok_emb") or "wte" in n:
            p.requires_grad_(False)
    assert any(not p.requires_grad for p in model.parameters()) and any(p.requires_grad for p in model.parameters())
    return model


def _train_frozen(opt_cls, world: int = 1, rank: int = 0, steps: int = 3):
    model = _freeze_half(tiny_gpt())
    opt = opt_cls(model.parameters(), world, rank, **OPT) if opt_cls is ZeroOneAdamW \
        else opt_cls(model.parameters(), **OPT)
    return *_fit(model, opt, steps, rank, world), opt


def _zero_frozen_worker(rank: int, world: int):
    torch.set_num_threads(1)
    losses, params, _ = _train_frozen(ZeroOneAdamW, world, rank)
    return losses, params


def test_zero1_skips_frozen_parameters_as_adamw_does():
    """ZeroOneAdamW(model.parameters()) with frozen parameters: step() used to raise 'no gradient'. Now the frozen
    ones stay exactly as they were and the rest equal torch.optim.AdamW on one process."""
    ref_losses, ref_params, _ = _train_frozen(torch.optim.AdamW)
    losses, params, opt = _train_frozen(ZeroOneAdamW)
    assert_matches(losses, params, ref_losses, ref_params, "ZeRO-1 with frozen parameters, world_size=1")
    init = dict(tiny_gpt().named_parameters())
    frozen = [n for n, p in _freeze_half(tiny_gpt()).named_parameters() if not p.requires_grad]
    for n in frozen:
        assert torch.equal(params[n], init[n]), f"frozen {n} changed"
    trainable_numel = sum(p.numel() for p in opt.param_groups[0]["params"] if p.requires_grad)
    assert opt.state_bytes() == 2 * 4 * trainable_numel + 4 * 1, "moments only for the trainable parameters"


def test_zero1_with_frozen_parameters_on_two_ranks_equals_adamw():
    ref_losses, ref_params, _ = _train_frozen(torch.optim.AdamW)
    for rank, (losses, params) in enumerate(spawn(_zero_frozen_worker, WORLD, timeout_s=SPAWN_TIMEOUT_S)):
        assert_matches(losses, params, ref_losses, ref_params, f"ZeRO-1 frozen, rank {rank}")


def test_zero1_refuses_a_parameter_unfrozen_after_construction():
    model = _freeze_half(tiny_gpt())
    opt = ZeroOneAdamW(model.parameters(), 1, 0, **OPT)
    for p in model.parameters():
        p.requires_grad_(True)
    _, loss = model(*batches(1)[0])
    loss.backward()
    with pytest.raises(RuntimeError, match="frozen when the optimizer was built"):
        opt.step()
