"""FSDP checkpoints (issue #22, item 11): a sharded run saves and resumes, in the single-process format.

One pair of CPU processes (gloo, started once by `parallel.spawn`) trains a tiny GPT under TrainConfig.parallel=
'fsdp' three ways: 6 steps straight, and 3 steps (fit(stop_at=3)) then a NEW Trainer with resume=True to 6.
On save the shards are gathered into full tensors on rank 0, which writes what a single process writes; on
resume every rank reads the file and keeps its slice. Resuming must reproduce the straight run bit for bit
(CPU: the same arithmetic in the same order). The checkpoint must load into a plain single-process GPT and
optimizer with exactly the FSDP model's full weights and Adam moments.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from minillm.config import ModelConfig, TrainConfig
from minillm.model.transformer import GPT
from minillm.train.checkpoint import WEIGHTS, latest_checkpoint, load_checkpoint, save_checkpoint
from minillm.train.optim import build_optimizer
from minillm.train.parallel import spawn
from minillm.train.rundir import load_run
from minillm.train.trainer import Trainer

# Tied embeddings (the default): the tied matrix must be stored once with an alias, as a single process does.
TINY = dict(vocab_size=32, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.1)
WORLD, STEPS, STOP, SPAWN_TIMEOUT_S = 2, 6, 3, 120


def tokens() -> np.ndarray:
    return np.random.default_rng(0).integers(0, TINY["vocab_size"], size=1200).astype(np.int64)


def config(**kw) -> TrainConfig:
    base = dict(parallel="fsdp", batch_size=2, grad_accum_steps=2, max_steps=STEPS, lr=3e-3, warmup_steps=2,
                eval_interval=STOP, eval_batches=2, log_interval=1, progress=False, device="cpu", seed=7)
    return TrainConfig(**{**base, **kw})


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(**TINY))


def full_params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {n: p.full_tensor().detach().clone() for n, p in trainer.model.named_parameters()}  # a collective


def full_moments(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Adam's first moment of every parameter, gathered (a collective)."""
    return {n: trainer.optimizer.state[p]["exp_avg"].full_tensor().clone() for n, p in trainer.model.named_parameters()}


def _ranks(rank: int, world: int, tmp: str) -> dict:
    tmp = Path(tmp)
    straight = Trainer(tiny_gpt(), config(out_dir=str(tmp / "straight")), tokens())
    straight.fit()
    first = Trainer(tiny_gpt(), config(out_dir=str(tmp / "resumed")), tokens())
    first.fit(stop_at=STOP)
    torch.manual_seed(123)  # the resumed run may depend on nothing but the checkpoint
    resumed = Trainer(GPT(ModelConfig(**TINY)), config(out_dir=str(tmp / "resumed"), resume=True), tokens())
    resumed_at = resumed.step
    resumed.fit()
    Trainer(tiny_gpt(), config(out_dir=str(tmp / "fresh")), tokens()).save()  # before any step: no Adam state yet
    try:  # a sharded model handed to save_checkpoint without its gathered state: a clear error, not garbage
        save_checkpoint(tmp / f"bad{rank}", straight.model, None, 0)
        bad = ""
    except ValueError as e:
        bad = str(e)
    return {"straight": full_params(straight), "resumed": full_params(resumed), "moments": full_moments(straight),
            "straight_history": straight.history, "resumed_history": resumed.history, "resumed_at": resumed_at,
            "bad": bad}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp_ckpt")
    return tmp, spawn(_ranks, WORLD, str(tmp), timeout_s=SPAWN_TIMEOUT_S)


def _clean(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("elapsed_s", "tok_per_s")} for row in history]


def test_fsdp_resume_is_exact(runs):
    _, results = runs
    for r, res in enumerate(results):
        assert res["resumed_at"] == STOP
        diffs = [k for k in res["straight"] if not torch.equal(res["straight"][k], res["resumed"][k])]
        assert not diffs, f"rank {r}: {STOP} steps + resume + {STEPS - STOP} differs from {STEPS} steps in {diffs}"
        assert _clean(res["resumed_history"]) == _clean(res["straight_history"])  # losses bit for bit
        assert [row["step"] for row in res["resumed_history"]] == list(range(1, STEPS + 1))
    assert results[0]["straight_history"][-1]["loss"] == results[1]["straight_history"][-1]["loss"]


def test_fsdp_checkpoint_loads_into_one_process(runs):
    tmp, results = runs
    ckpt = latest_checkpoint(tmp / "straight")
    assert ckpt.name == f"step_{STEPS:08d}"
    plain = tiny_gpt(seed=99)
    optimizer = build_optimizer(plain, config(parallel="none"), torch.device("cpu"))
    assert load_checkpoint(ckpt, plain, optimizer) == STEPS
    want = results[0]["straight"]
    for name, p in plain.named_parameters():
        assert torch.equal(p.detach(), want[name]), name
        assert torch.equal(optimizer.state[p]["exp_avg"], results[0]["moments"][name]), name
        assert optimizer.state[p]["step"].item() == STEPS
    # The run folder opens like any other (config.json from rank 0, the newest checkpoint's weights).
    model, _ = load_run(tmp / "straight")
    assert all(torch.equal(p.detach(), want[n]) for n, p in model.named_parameters())
    assert json.loads((tmp / "straight" / "config.json").read_text())["train"]["parallel"] == "fsdp"


def test_an_fsdp_checkpoint_saved_before_training_holds_the_initial_weights(runs):
    tmp, _ = runs
    plain = tiny_gpt(seed=99)
    optimizer = build_optimizer(plain, config(parallel="none"), torch.device("cpu"))
    assert load_checkpoint(latest_checkpoint(tmp / "fresh"), plain, optimizer) == 0
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), tiny_gpt().state_dict().values()))
    assert not optimizer.state  # nothing was gathered or invented (torch would have taken a zero-lr step)


def test_fsdp_checkpoint_has_the_single_process_format(runs, tmp_path):
    tmp, _ = runs
    single = save_checkpoint(tmp_path / "single", tiny_gpt(), None, 0)

    def layout(ckpt: Path) -> tuple:
        with safe_open(str(ckpt / WEIGHTS), framework="pt") as f:
            return sorted((k, tuple(f.get_slice(k).get_shape())) for k in f.keys()), f.metadata()["minillm_aliases"]

    fsdp_layout = layout(latest_checkpoint(tmp / "straight"))
    assert fsdp_layout == layout(single)
    assert json.loads(fsdp_layout[1]) == {"lm_head.weight": "tok_emb.weight"}  # the tied matrix stored once


def test_saving_a_sharded_model_directly_is_a_clear_error(runs):
    _, results = runs
    for res in results:
        assert "sharded" in res["bad"] and "full_state_dicts" in res["bad"]


# ----------------------------------------------------------------------------- on a GPU host

_NCCL_SCRIPT = """
import json, sys
import numpy as np, torch, torch.distributed as dist
from minillm.config import ModelConfig, TrainConfig
from minillm.model.transformer import GPT
from minillm.train.parallel import init_distributed
from minillm.train.trainer import Trainer

out = sys.argv[1]
rank, world = init_distributed(device="cuda")
tokens = np.random.default_rng(0).integers(0, 32, size=4000).astype(np.int64)
def cfg(**kw):
    base = dict(parallel="fsdp", precision="bf16", batch_size=4, max_steps=4, lr=3e-3, warmup_steps=1,
                eval_interval=2, eval_batches=2, log_interval=1, progress=False, device="cuda", seed=7)
    return TrainConfig(**{**base, **kw})
def model():
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=32))
a = Trainer(model(), cfg(out_dir=out + "/straight"), tokens)
a.fit()
b = Trainer(model(), cfg(out_dir=out + "/resumed"), tokens)
b.fit(stop_at=2)
b = Trainer(model(), cfg(out_dir=out + "/resumed", resume=True), tokens)
b.fit()
full = {n: p.full_tensor().cpu() for n, p in a.model.named_parameters()}
if rank == 0:
    torch.save(full, out + "/full.pt")
    res = {"straight": [r["loss"] for r in a.history], "resumed": [r["loss"] for r in b.history]}
    open(out + "/result.json", "w").write(json.dumps(res))
dist.destroy_process_group()
"""


@pytest.mark.gpu
def test_nccl_fsdp_bf16_checkpoint_resumes_and_loads_on_cpu(tmp_path):
    """One process per GPU under NCCL, FSDP2 with bf16 compute: the CUDA shards are gathered to rank 0's CPU on
    save and scattered back on resume; the run folder then opens in one CPU process with the trained weights."""
    from minillm.train.launch import torchrun

    script = tmp_path / "fsdp_ckpt.py"
    script.write_text(_NCCL_SCRIPT)
    torchrun([str(script), str(tmp_path)], nproc=torch.cuda.device_count(), timeout_s=400, cwd=tmp_path)
    res = json.loads((tmp_path / "result.json").read_text())
    # Equal up to CUDA's nondeterministic atomics (embedding backward), as the DDP resume on the GPU.
    assert np.allclose(res["resumed"], res["straight"], atol=1e-4, rtol=0), res
    model, _ = load_run(tmp_path / "straight")
    full = torch.load(tmp_path / "full.pt")
    assert all(torch.equal(p.detach(), full[n]) for n, p in model.named_parameters())
