"""FSDP2 for any nn.Module (minillm/train/parallel/fsdp.py; issue #21, bug 4): the unit plan, and 2 ranks = 1 process.

`fsdp_units` is checked against units worked out by hand from parameter counts. The distributed runs share one
pair of CPU processes (gloo, started once by `parallel.spawn`): a toy MLP and a tiny GPT, each trained 3 AdamW
steps with no mixed precision, with bf16 and with fp16 (`mp=`: 16-bit gathered weights and compute, gradients
reduced in fp32, fp32 shards), every rank on its half of fixed global batches. The reference is ONE process:

- fp32: the whole batch. Weights and losses agree to 1e-6 (only float rounding differs).
- 16 bits, the whole batch, the policy emulated (fp32 master weights, 16-bit copies for forward/backward, the
  16-bit gradient cast to fp32 for AdamW). A rank's gradient is rounded to 16 bits from its half batch, the
  reference's from the whole batch: they differ by about one rounding, u = 2^-8 (bf16) or 2^-11 (fp16) relative.
  Allowed: 2u on the first step's gradient (norm-wise) and on every loss. Measured (torch 2.13, CPU): gradients
  0.6u-0.85u, losses < 0.12u. The weights after 3 steps are not bounded this way: AdamW's step g/sqrt(v) does not
  scale with g, so an element whose gradient is smaller than the rounding of its half-batch parts moves by up
  to lr in a different direction in the two runs (measured 1-4% of the weights' movement, as large as the
  effect of 16 bits itself). So the weights are compared with
- 16 bits, the same batch as 2 micro-batches whose 16-bit gradients are averaged in fp32: FSDP's arithmetic
  done in one process. Measured equal to the last bit (losses within 1.2e-7); allowed 1e-6, like fp32.

References run on one thread, like the ranks: 2 threads sum 16-bit matmuls in another order (measured: GPT bf16
weights 2e-3 apart).
"""
from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy
from torch.func import functional_call

from minillm.config import ModelConfig
from minillm.model.transformer import GPT, Block
from minillm.train.parallel import fsdp as fsdp_mod
from minillm.train.parallel import spawn
from minillm.train.parallel.fsdp import fsdp_units, mp_policy, shard_fsdp2

WORLD, STEPS, SPAWN_TIMEOUT_S = 2, 3, 120
# bias=False: a key bias adds the same q.b to every score of a row, which softmax cancels, so its true gradient
# is 0 and what autograd returns is rounding noise, which AdamW's g/sqrt(v) turns into steps of size lr (it gave
# 7e-6 differences in fp32 with biases on).
TINY_GPT = dict(vocab_size=48, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=False)
OPT = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
TOL_FP32 = 1e-6
UNIT_ROUNDOFF = {"bf16": 2.0 ** -8, "fp16": 2.0 ** -11}


# ----------------------------------------------------------------------------- models and data


def toy_mlp() -> nn.Sequential:
    """8 -> 32 -> 32 -> 32 -> 4: 288, 1056, 1056, 132 parameters."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 4))


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**TINY_GPT))


MODELS = {"mlp": toy_mlp, "gpt": tiny_gpt}


class Net(nn.Module):
    """The rule steps into `body` (2112 of 2752 parameters, a Sequential) and wraps its two Linears."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 32)  # 320
        self.body = nn.Sequential(nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32))  # 2112
        self.out = nn.Linear(32, 10)  # 330


class Tied(nn.Module):
    """emb and out share one (10, 64) matrix: neither may be a unit on its own."""

    def __init__(self):
        super().__init__()
        self.emb, self.mid, self.out = nn.Embedding(10, 64), nn.Linear(64, 64), nn.Linear(64, 10, bias=False)
        self.out.weight = self.emb.weight


def batches(kind: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same global batches on every rank (a fixed generator): MLP (8, 8) -> (8, 4), GPT ids (4, 8)."""
    g = torch.Generator().manual_seed(1)
    if kind == "mlp":
        return [(torch.randn(8, 8, generator=g), torch.randn(8, 4, generator=g)) for _ in range(STEPS)]
    out = []
    for _ in range(STEPS):
        seq = torch.randint(0, TINY_GPT["vocab_size"], (4, TINY_GPT["block_size"] + 1), generator=g)
        out.append((seq[:, :-1], seq[:, 1:]))
    return out


def loss_of(kind: str, model, x: torch.Tensor, y: torch.Tensor, params=None) -> torch.Tensor:
    """The mean loss over the batch, in fp32 whatever the compute dtype (params: a functional_call override)."""
    if kind == "mlp":
        out = model(x) if params is None else functional_call(model, params, (x,))
        return F.mse_loss(out.float(), y)
    return (model(x, y) if params is None else functional_call(model, params, (x, y)))[1]


@contextlib.contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def reference(kind: str, dtype_name: str, micro: int = 1):
    """One process, the whole batch in `micro` equal micro-batches, the policy emulated:
    (losses, final {name: weight}, initial weights, first step's gradients)."""
    dtype = DTYPES[dtype_name] or torch.float32
    model = MODELS[kind]()
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), **OPT)
    losses, first_grads = [], None
    with one_thread():
        for x, y in batches(kind):
            opt.zero_grad()
            n, total = len(x) // micro, 0.0
            for i in range(micro):
                xi, yi = x[i * n:(i + 1) * n], y[i * n:(i + 1) * n]
                # 16-bit copies of the weights and of float inputs (FSDP casts a unit's float inputs)
                low = {k: p.detach().to(dtype).requires_grad_() for k, p in model.named_parameters()}
                loss = loss_of(kind, model, xi.to(dtype) if xi.is_floating_point() else xi, yi, low)
                loss.backward()
                total += loss.item() / micro
                for k, p in model.named_parameters():  # the fp32 reduce: the mean of the micro-batch gradients
                    g = low[k].grad.float() / micro
                    p.grad = g if p.grad is None else p.grad + g
            if first_grads is None:
                first_grads = {k: p.grad.clone() for k, p in model.named_parameters()}
            opt.step()
            losses.append(total)
    return losses, {n: p.detach().clone() for n, p in model.named_parameters()}, init, first_grads


def rel_error(a: dict, b: dict, origin: dict | None = None) -> float:
    """‖a − b‖ / ‖b − origin‖ over all tensors together (origin None: ‖b‖)."""
    assert a.keys() == b.keys()
    num = math.sqrt(sum((a[n] - b[n]).pow(2).sum().item() for n in b))
    den = math.sqrt(sum((b[n] - (0 if origin is None else origin[n])).pow(2).sum().item() for n in b))
    return num / den


def max_diff(params: dict, ref: dict) -> float:
    assert params.keys() == ref.keys()
    return max((params[n] - ref[n]).abs().max().item() for n in ref)


# ----------------------------------------------------------------------------- worker (runs in child processes)


def _train(rank: int, world: int, kind: str, dtype_name: str) -> dict:
    model = shard_fsdp2(MODELS[kind](), mp=DTYPES[dtype_name])
    units = [n for n, m in model.named_modules() if isinstance(m, FSDPModule)]
    local_numel = sum(p.to_local().numel() for p in model.parameters())
    seen: list[torch.dtype] = []  # the weight dtype a unit computes with, recorded inside its forward
    unit = model.get_submodule(units[1])  # units[0] is the root
    hook = unit.register_forward_pre_hook(lambda m, args: seen.append(next(m.parameters()).dtype))
    opt = torch.optim.AdamW(model.parameters(), **OPT)
    losses, first_grads = [], None
    for x, y in batches(kind):
        n = len(x) // world
        opt.zero_grad()
        loss = loss_of(kind, model, x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n])
        loss.backward()
        if first_grads is None:  # reduce-scattered: each rank's shard of the mean gradient
            first_grads = {k: p.grad.full_tensor().clone() for k, p in model.named_parameters()}
        opt.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)  # equal halves: the whole batch's loss is the mean of the ranks' means
        losses.append(mean.item() / world)
    hook.remove()
    return {"losses": losses, "first_grads": first_grads, "units": units, "local_numel": local_numel,
            "compute_dtype": seen[0], "shard_dtypes": {p.dtype for p in model.parameters()},
            "params": {n: p.full_tensor().detach().clone() for n, p in model.named_parameters()}}


def _worker(rank: int, world: int) -> dict:
    """Every model x policy in one pair of processes: starting processes costs more than these tiny runs."""
    torch.set_num_threads(1)
    return {(kind, d): _train(rank, world, kind, d) for kind in MODELS for d in DTYPES}


@pytest.fixture(scope="module")
def distributed() -> list[dict]:
    return spawn(_worker, WORLD, timeout_s=SPAWN_TIMEOUT_S)


# ----------------------------------------------------------------------------- 2 ranks = 1 process


@pytest.mark.parametrize("kind", MODELS)
def test_fp32_fsdp_equals_one_process_on_the_whole_batch_to_1e_6(distributed, kind):
    ref_losses, ref_params, init, _ = reference(kind, "fp32")
    n_params = sum(p.numel() for p in ref_params.values())
    for rank, res in enumerate(r[(kind, "fp32")] for r in distributed):
        dl = max(abs(a - b) for a, b in zip(res["losses"], ref_losses, strict=True))
        dp = max_diff(res["params"], ref_params)
        assert dl <= TOL_FP32 and dp <= TOL_FP32, f"{kind} rank {rank}: max |Δloss| {dl:.3g}, |Δw| {dp:.3g}"
        assert max_diff(res["params"], init) > 1e-3  # it trained
        assert res["units"] == ["", *fsdp_units(MODELS[kind]())]  # the root and the planned units, sharded
        assert res["local_numel"] < 0.6 * n_params, f"rank {rank} holds {res['local_numel']} of {n_params}"
        assert res["compute_dtype"] == torch.float32


@pytest.mark.parametrize("dtype_name", ["bf16", "fp16"])
@pytest.mark.parametrize("kind", MODELS)
def test_16_bit_fsdp_equals_one_process_within_its_rounding(distributed, kind, dtype_name):
    u = UNIT_ROUNDOFF[dtype_name]
    whole_losses, _, _, whole_grads = reference(kind, dtype_name)
    micro_losses, micro_params, init, _ = reference(kind, dtype_name, micro=WORLD)
    _, fp32_params, _, _ = reference(kind, "fp32")
    # the policy moves the weights by far more than TOL_FP32, so the 1e-6 comparison below can tell it was applied
    assert max_diff(fp32_params, micro_params) > 100 * TOL_FP32
    for rank, res in enumerate(r[(kind, dtype_name)] for r in distributed):
        what = f"{kind} {dtype_name} rank {rank}"
        assert res["compute_dtype"] == DTYPES[dtype_name], what  # gathered and computed in 16 bits
        assert res["shard_dtypes"] == {torch.float32}, what  # the optimizer's shards stay fp32
        # against the whole batch: one 16-bit rounding apart
        dg = rel_error(res["first_grads"], whole_grads)
        dl = max(abs(a - b) / b for a, b in zip(res["losses"], whole_losses, strict=True))
        assert dg <= 2 * u and dl <= 2 * u, f"{what}: gradient {dg / u:.2f}u, loss {dl / u:.2f}u (allowed 2u)"
        # against the same arithmetic in one process: fp32 rounding only
        dp = max_diff(res["params"], micro_params)
        dl = max(abs(a - b) for a, b in zip(res["losses"], micro_losses, strict=True))
        assert dp <= TOL_FP32 and dl <= TOL_FP32, f"{what}: max |Δw| {dp:.3g}, |Δloss| {dl:.3g} vs micro-batches"


# ----------------------------------------------------------------------------- the unit plan


def test_default_units_of_an_mlp_follow_parameter_counts():
    lin = nn.Linear
    equal = nn.Sequential(lin(64, 64), nn.ReLU(), lin(64, 64), nn.ReLU(), lin(64, 64), nn.ReLU(), lin(64, 64))
    assert fsdp_units(equal) == ["0", "2", "4", "6"]  # four equal shares
    # 576, 4160, 4160, 260 params: threshold 9156 / (2 * 4) = 1144.5, so the ends stay with the root
    narrow = nn.Sequential(lin(8, 64), nn.ReLU(), lin(64, 64), nn.ReLU(), lin(64, 64), nn.ReLU(), lin(64, 4))
    assert fsdp_units(narrow) == ["2", "4"]
    assert fsdp_units(toy_mlp()) == ["2", "4"]  # 288, 1056, 1056, 132: threshold 316.5


def test_default_units_of_a_gpt_are_its_blocks_and_the_rule_finds_them_inside_a_wrapper():
    gpt = tiny_gpt()
    assert fsdp_units(gpt) == ["blocks.0", "blocks.1"]

    class Classifier(nn.Module):  # not a GPT: the generic rule descends lm -> lm.blocks
        def __init__(self):
            super().__init__()
            self.lm, self.head = gpt, nn.Linear(16, 3)

    assert fsdp_units(Classifier()) == ["lm.blocks.0", "lm.blocks.1"]


def test_default_rule_descends_into_the_largest_container_and_keeps_tied_weights_in_the_root():
    assert fsdp_units(Net()) == ["body.0", "body.2"]
    assert fsdp_units(Tied()) == ["mid"]


def test_default_rule_gives_the_layers_of_a_sizeable_module_list():
    class Stack(nn.Module):  # 3200 + 4 * 1056 + 3300 = 10724: no child holds most, threshold 10724 / 6 = 1787
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(100, 32)
            self.layers = nn.ModuleList(nn.Linear(32, 32) for _ in range(4))  # no forward: its layers instead
            self.head = nn.Linear(32, 100)

    assert fsdp_units(Stack()) == ["emb", "layers.0", "layers.1", "layers.2", "layers.3", "head"]


def test_units_policies_names_classes_and_callables():
    gpt = tiny_gpt()
    assert fsdp_units(gpt, ["blocks.1", "blocks.0"]) == ["blocks.1", "blocks.0"]  # a list keeps its order
    assert fsdp_units(gpt, [Block]) == ["blocks.0", "blocks.1"]
    # a class stands for all its instances, in model order; an outer unit listed after them
    assert fsdp_units(Net(), [nn.Linear, "body"]) == ["body.0", "body.2", "out", "body"]
    picked = fsdp_units(gpt, lambda name, m: isinstance(m, Block) or name.endswith(".attn"))
    assert picked == ["blocks.0.attn", "blocks.0", "blocks.1.attn", "blocks.1"]  # children before parents
    assert fsdp_units(gpt, []) == []  # only the root


def test_units_mistakes_are_clear_errors():
    gpt = tiny_gpt()
    with pytest.raises(ValueError, match=r"'blocks\.7' is not a submodule of GPT"):
        fsdp_units(gpt, ["blocks.7"])
    with pytest.raises(ValueError, match=r"'blocks\.0' is listed before \['blocks\.0\.mlp'\].*inner units first"):
        fsdp_units(gpt, ["blocks.0", "blocks.0.mlp"])
    with pytest.raises(ValueError, match=r"'body' is listed before \['body\.0', 'body\.2'\]"):
        fsdp_units(Net(), ["body", nn.Linear])
    with pytest.raises(ValueError, match="more than once"):
        fsdp_units(gpt, ["blocks.0", "blocks.0"])
    with pytest.raises(ValueError, match="ModuleList, which has no forward"):
        fsdp_units(gpt, ["blocks"])
    with pytest.raises(ValueError, match="the root"):
        fsdp_units(gpt, [""])
    with pytest.raises(ValueError, match=r"'lm_head' shares a parameter with 'tok_emb'.*untie"):
        fsdp_units(gpt, ["lm_head"])  # tie_embeddings: one matrix, two modules
    with pytest.raises(ValueError, match="holds no parameters"):
        fsdp_units(gpt, ["drop"])
    with pytest.raises(ValueError, match="no submodule of GPT is a Conv1d"):
        fsdp_units(gpt, [nn.Conv1d])
    with pytest.raises(ValueError, match="has no parameters"):
        fsdp_units(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match=r"pass a list \(units=\['blocks\.0'\]\)"):
        fsdp_units(gpt, "blocks.0")
    with pytest.raises(TypeError, match="neither a submodule name"):
        fsdp_units(gpt, [3])


# ----------------------------------------------------------------------------- shard_fsdp2 without processes


def _record(monkeypatch) -> list:
    """fully_shard records (module, mesh, kwargs, compiled already?) instead of sharding."""
    calls: list = []

    def record(m, mesh=None, **kw):
        calls.append((m, mesh, kw, getattr(m, "_compiled_call_impl", None) is not None))

    monkeypatch.setattr(fsdp_mod, "fully_shard", record)
    return calls


def test_shard_fsdp2_accepts_a_plain_mlp_and_wraps_units_then_the_root(monkeypatch):
    calls = _record(monkeypatch)
    model = toy_mlp()
    assert shard_fsdp2(model, mesh="a mesh") is model
    assert [m for m, *_ in calls] == [model[2], model[4], model]
    assert all(mesh == "a mesh" and kw == {} and not compiled for _, mesh, kw, compiled in calls)
    calls.clear()
    shard_fsdp2(model := toy_mlp(), mesh="a mesh", units=lambda name, m: name == "0")  # a policy of one's own
    assert [m for m, *_ in calls] == [model[0], model]


def test_shard_fsdp2_mixed_precision_argument(monkeypatch):
    calls = _record(monkeypatch)
    shard_fsdp2(toy_mlp(), mesh="m", mp=torch.bfloat16, reshard_after_forward=False)
    for _, _, kw, _ in calls:
        assert kw["mp_policy"] == MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        assert kw["reshard_after_forward"] is False
    assert mp_policy(torch.float16) == MixedPrecisionPolicy(param_dtype=torch.float16, reduce_dtype=torch.float32)
    assert mp_policy(torch.float32) is None and mp_policy(None) is None
    mine = MixedPrecisionPolicy(param_dtype=torch.bfloat16, output_dtype=torch.float32)
    assert mp_policy(mine) is mine
    with pytest.raises(ValueError, match="both mp= and mp_policy="):
        shard_fsdp2(toy_mlp(), mesh="m", mp=torch.bfloat16, mp_policy=mine)
    with pytest.raises(ValueError, match="no FSDP2 mixed-precision policy"):
        mp_policy(torch.float64)
    with pytest.raises(TypeError, match="must be None, a torch dtype"):
        mp_policy("bf16")


def test_shard_fsdp2_compiles_each_unit_before_sharding_it_and_refuses_nested_ones(monkeypatch):
    calls = _record(monkeypatch)
    model = toy_mlp()
    keys = list(model.state_dict())
    shard_fsdp2(model, mesh="m", compile=True)
    assert [(m, compiled) for m, _, _, compiled in calls] == [(model[2], True), (model[4], True), (model, False)]
    assert list(model.state_dict()) == keys  # compiled in place: no _orig_mod. in checkpoint keys
    with pytest.raises(ValueError, match=r"unit 'blocks\.0' contains unit 'blocks\.0\.mlp'"):
        shard_fsdp2(tiny_gpt(), mesh="m", units=["blocks.0.mlp", "blocks.0"], compile=True)
