"""Running on GPU hosts without a GPU here (issue #20): process-group set-up, FSDP2 mixed precision and compile order.

No line of this runs on CUDA. A CUDA host is simulated by monkeypatching torch.cuda's queries, and
init_process_group is replaced by a recorder, so the tests check which backend, device and timeout a process
would ask for (and that it would never touch a GPU it does not own), not NCCL itself.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

from minillm.config import ModelConfig
from minillm.model.transformer import GPT
from minillm.train import distributed as distributed_mod
from minillm.train.distributed import Parallelism
from minillm.train.parallel import fsdp as fsdp_mod
from minillm.train.parallel import group as group_mod
from minillm.train.parallel.fsdp import mixed_precision_kwargs, shard_fsdp2
from minillm.train.parallel.group import init_distributed

TINY = dict(vocab_size=32, block_size=8, n_layer=2, n_head=2, n_embd=16)


class _Initialised(Exception):
    """Raised by the fake init_process_group to stop the CLI right after it chose its backend."""


@pytest.fixture
def gpu_host(monkeypatch):
    """A torchrun rank on a host with `n` GPUs: returns (setup(n, local_rank), calls) where calls records every
    torch.cuda.set_device and dist.init_process_group call."""
    calls: dict[str, list] = {"set_device": [], "init": []}

    def setup(n_gpus: int, local_rank: int, world: int = 2, stop: bool = False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n_gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n_gpus)
        monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls["set_device"].append(d))

        def fake_init(backend=None, timeout=None, **kw):
            calls["init"].append({"backend": backend, "timeout": timeout, **kw})
            if stop:
                raise _Initialised

        monkeypatch.setattr(dist, "init_process_group", fake_init)
        monkeypatch.setattr(dist, "is_initialized", lambda: False)
        monkeypatch.setattr(dist, "get_rank", lambda: local_rank)
        monkeypatch.setattr(dist, "get_world_size", lambda: world)
        monkeypatch.setattr(dist, "destroy_process_group", lambda: None)
        for k, v in dict(RANK=local_rank, WORLD_SIZE=world, LOCAL_RANK=local_rank, MASTER_ADDR="127.0.0.1",
                         MASTER_PORT=29500).items():
            monkeypatch.setenv(k, str(v))

    return setup, calls


# ----------------------------------------------------------------------------- init_distributed


def test_cpu_training_on_a_one_gpu_host_uses_gloo_and_touches_no_gpu(gpu_host):
    setup, calls = gpu_host
    setup(n_gpus=1, local_rank=1)
    assert init_distributed(device="cpu") == (1, 2)
    assert calls["set_device"] == []  # rank 1 would ask for GPU 1, which this host does not have
    assert [c["backend"] for c in calls["init"]] == ["gloo"]
    assert "device_id" not in calls["init"][0]
    assert calls["init"][0]["timeout"] == timedelta(seconds=group_mod.GLOO_TIMEOUT_S)


def test_cli_ddp_on_cpu_picks_gloo_on_a_gpu_host(gpu_host, tmp_path, capsys):
    """`torchrun --nproc_per_node=2 -m minillm train --device cpu --parallel ddp` on a one-GPU host, rank 1:
    before the fix the CLI asked for nccl and GPU 1 ('invalid device ordinal')."""
    from minillm.__main__ import main

    assert main(["prepare", "--source", "arithmetic", "--n_docs", "50", "--out", str(tmp_path / "data")]) == 0
    setup, calls = gpu_host
    setup(n_gpus=1, local_rank=1, stop=True)
    with pytest.raises(_Initialised):
        main(["train", "--data", str(tmp_path / "data"), "--preset", "tiny", "--size", "ci", "--out",
              str(tmp_path / "run"), "--max_steps", "1", "--parallel", "ddp", "--device", "cpu"])
    assert calls["set_device"] == []
    assert [c["backend"] for c in calls["init"]] == ["gloo"]


def test_nccl_takes_gpu_local_rank_with_a_long_timeout_and_device_id(gpu_host):
    setup, calls = gpu_host
    setup(n_gpus=2, local_rank=1)
    init_distributed(device="cuda")
    assert calls["set_device"] == [torch.device("cuda", 1)]
    (call,) = calls["init"]
    assert call["backend"] == "nccl" and call["timeout"] >= timedelta(seconds=600)
    assert call["device_id"] == torch.device("cuda", 1)
    calls["init"].clear()
    init_distributed(device="auto")  # auto = cuda on a GPU host, as the Trainer resolves it
    assert calls["init"][0]["backend"] == "nccl"
    calls["init"].clear()
    init_distributed(device="cuda", timeout_s=30)  # an explicit timeout is kept
    assert calls["init"][0]["timeout"] == timedelta(seconds=30)


def test_a_rank_without_its_gpu_is_a_clear_error(gpu_host):
    setup, calls = gpu_host
    setup(n_gpus=1, local_rank=1)
    with pytest.raises(RuntimeError, match=r"rank 1 asked for GPU 1 but this host has 1 .*"
                                           r"--nproc_per_node<=1 or --device cpu"):
        init_distributed(device="cuda")
    assert calls["set_device"] == [] and calls["init"] == []
    with pytest.raises(ValueError, match="this process owns cuda:1.*device='cuda'"):
        setup(n_gpus=2, local_rank=1)
        init_distributed(device="cuda:0")  # every rank on GPU 0 would put two processes on one GPU
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        setup(n_gpus=0, local_rank=0)
        init_distributed(device="cuda")


def test_parallelism_refuses_an_nccl_group_for_cpu_training(monkeypatch):
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda: "nccl")
    with pytest.raises(RuntimeError, match="cannot reduce the CPU tensors.*init_distributed\\(device='cpu'\\)"):
        Parallelism("ddp", "cpu")


# ----------------------------------------------------------------------------- FSDP2: mixed precision, compile


def test_bf16_training_gathers_bf16_and_reduces_fp32():
    policy = mixed_precision_kwargs(torch.bfloat16)["mp_policy"]
    assert policy.param_dtype == torch.bfloat16 and policy.reduce_dtype == torch.float32
    assert mixed_precision_kwargs(None) == {} and mixed_precision_kwargs(torch.float16) == {}
    with pytest.raises(ValueError, match="no FSDP2 policy"):
        mixed_precision_kwargs(torch.int8)


def _fake_fsdp_group(monkeypatch, calls: list) -> None:
    """An initialised 2-rank gloo group as far as Parallelism can tell; fully_shard records its calls instead."""
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)

    def record(module, mesh=None, **kw):
        calls.append((module, getattr(module, "_compiled_call_impl", None) is not None, kw))

    monkeypatch.setattr(fsdp_mod, "fully_shard", record)
    monkeypatch.setattr(fsdp_mod, "init_device_mesh", lambda device_type, shape: ("mesh", device_type, shape))


def test_fsdp_wrap_passes_the_bf16_policy_and_compiles_blocks_before_sharding(monkeypatch):
    calls: list = []
    _fake_fsdp_group(monkeypatch, calls)
    model = GPT(ModelConfig(**TINY))
    keys = list(model.state_dict())
    wrapped, forward = Parallelism("fsdp", "cpu").wrap(model, compile=True, dtype=torch.bfloat16)
    assert wrapped is model and forward is model  # not torch.compile of the sharded model: its blocks are compiled
    assert [m for m, _, _ in calls] == [*model.blocks, model]  # every Block, then the root
    assert all(compiled for m, compiled, _ in calls if m is not model)  # compiled BEFORE fully_shard saw it
    assert all(kw["mp_policy"].param_dtype == torch.bfloat16 for _, _, kw in calls)
    assert list(model.state_dict()) == keys  # compiled in place: checkpoint keys unchanged (no _orig_mod.)

    calls.clear()
    model = GPT(ModelConfig(**TINY))
    wrapped, forward = Parallelism("fsdp", "cpu").wrap(model, dtype=None)
    assert not any(compiled for _, compiled, _ in calls) and all(kw == {} for _, _, kw in calls)


def test_ddp_and_single_process_compile_the_wrapper(monkeypatch):
    model = GPT(ModelConfig(**TINY))
    wrapped, forward = Parallelism("none", "cpu").wrap(model, compile=True)
    assert wrapped is model and getattr(forward, "_orig_mod", None) is model
    assert Parallelism("none", "cpu").wrap(model) == (model, model)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(distributed_mod, "wrap_ddp", lambda m: ("ddp", m))
    monkeypatch.setattr(torch, "compile", lambda m: ("compiled", m))
    assert Parallelism("ddp", "cpu").wrap(model, compile=True) == (("ddp", model), ("compiled", ("ddp", model)))


def test_shard_fsdp2_without_compile_leaves_blocks_eager(monkeypatch):
    calls: list = []
    _fake_fsdp_group(monkeypatch, calls)
    model = GPT(ModelConfig(**TINY))
    assert shard_fsdp2(model) is model
    assert [compiled for _, compiled, _ in calls] == [False] * (TINY["n_layer"] + 1)
