"""The Trainer under data parallelism (TrainConfig.parallel; minillm/train/distributed.py). Survey §4.3.2.

Every distributed case runs in one pair of CPU processes (gloo, started once by `parallel.spawn`). The loader
makes the data order identical by construction: at every step each rank draws the same 2B window starts and
keeps its own B, so 2 ranks with batch B see exactly the global batch that 1 process with batch 2B sees. A
2-process run must therefore match the single-process run up to float rounding (two half-batch gradients
averaged instead of one full-batch mean).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from minillm.config import ModelConfig, TrainConfig
from minillm.model.transformer import GPT
from minillm.train.parallel import spawn
from minillm.train.trainer import Trainer

TINY = dict(vocab_size=32, block_size=8, n_layer=1, n_head=2, n_embd=16)
B, WORLD, STEPS, TOL = 2, 2, 6, 1e-5
SPAWN_TIMEOUT_S = 90


def tokens() -> np.ndarray:
    return np.random.default_rng(0).integers(0, TINY["vocab_size"], size=1200).astype(np.int64)


def config(**kw) -> TrainConfig:
    base = dict(batch_size=B, grad_accum_steps=2, max_steps=STEPS, lr=3e-3, warmup_steps=2, eval_interval=3,
                eval_batches=2, log_interval=1, progress=False, device="cpu", seed=7)
    return TrainConfig(**{**base, **kw})


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**TINY))


def params(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in trainer.model.named_parameters():
        full = p.full_tensor() if hasattr(p, "full_tensor") else p  # FSDP: gather the shards
        out[name] = full.detach().clone()
    return out


def max_diff(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _ranks(rank: int, world: int, tmp: str) -> dict:
    """Runs on each rank: a DDP run, an FSDP run, and a DDP run interrupted and resumed vs one straight through."""
    tmp = Path(tmp)
    ddp = Trainer(tiny_gpt(), config(parallel="ddp", out_dir=str(tmp / "ddp")), tokens())
    ddp_history = ddp.fit()
    fsdp = Trainer(tiny_gpt(), config(parallel="fsdp", max_steps=3, eval_interval=0), tokens())
    fsdp_history = fsdp.fit()

    kw = dict(parallel="ddp", max_steps=8, checkpoint_interval=0, eval_interval=4)
    straight = Trainer(tiny_gpt(), config(**kw, out_dir=str(tmp / "straight")), tokens())
    straight.fit()
    first = Trainer(tiny_gpt(), config(**kw, out_dir=str(tmp / "resumed")), tokens())
    first.fit(stop_at=4)
    torch.manual_seed(123)  # the resumed run must not depend on anything but the checkpoint
    resumed = Trainer(GPT(ModelConfig(**TINY)), config(**kw, out_dir=str(tmp / "resumed"), resume=True), tokens())
    resumed.fit()

    # FSDP under bf16: each Block computes on bf16 weights gathered by FSDP2 (reduce in fp32; issue #20).
    bf16 = Trainer(tiny_gpt(), config(parallel="fsdp", precision="bf16", max_steps=2, eval_interval=0), tokens())
    linear = next(m for m in bf16.model.blocks[0].modules() if isinstance(m, torch.nn.Linear))
    bf16_dtypes: list[torch.dtype] = []
    linear.register_forward_pre_hook(lambda m, args: bf16_dtypes.append(m.weight.dtype))
    bf16_history = bf16.fit()

    # Every rank's RNG survives a checkpoint (issue #20): on GPUs each rank's generator is its own, simulated
    # here by seeding the ranks differently just before the save. A resumed run must draw what this one would.
    kw = dict(parallel="ddp", max_steps=2, eval_interval=0, checkpoint_interval=0)
    before = Trainer(tiny_gpt(), config(**kw, out_dir=str(tmp / "rng")), tokens())
    before.fit()
    torch.manual_seed(1000 + rank)
    before.save()
    drawn = torch.rand(4)
    Trainer(tiny_gpt(), config(**kw, out_dir=str(tmp / "rng"), resume=True), tokens())
    redrawn = torch.rand(4)
    return {"ddp_history": ddp_history, "ddp_params": params(ddp), "fsdp_history": fsdp_history,
            "fsdp_params": params(fsdp), "straight": params(straight), "resumed": params(resumed),
            "straight_history": straight.history, "resumed_history": resumed.history,
            "bf16_dtypes": bf16_dtypes, "bf16_losses": [row["loss"] for row in bf16_history],
            "rng_drawn": drawn, "rng_redrawn": redrawn}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    return tmp, spawn(_ranks, WORLD, str(tmp), timeout_s=SPAWN_TIMEOUT_S)


def test_ddp_equals_one_process_on_the_same_global_batch(runs):
    tmp, results = runs
    ref = Trainer(tiny_gpt(), config(batch_size=B * WORLD), tokens())
    ref_history = ref.fit()
    ref_params = params(ref)
    for r, res in enumerate(results):
        d = max_diff(res["ddp_params"], ref_params)
        assert d < TOL, f"rank {r}: parameters differ from the 1-process batch-{B * WORLD} run by {d:.2e}"
        for row, want in zip(res["ddp_history"], ref_history, strict=True):
            assert row["step"] == want["step"] and row["tokens"] == want["tokens"]  # tokens count all ranks
            assert abs(row["loss"] - want["loss"]) < TOL, (r, row["step"], row["loss"], want["loss"])
            if "val_loss" in want:
                assert abs(row["val_loss"] - want["val_loss"]) < TOL, (r, row["step"])
    # The replicas are bit-identical and every rank logged the very same (all-reduced) numbers.
    a, b = results
    assert all(torch.equal(a["ddp_params"][k], b["ddp_params"][k]) for k in a["ddp_params"])
    keys = ("step", "loss", "val_loss", "grad_norm", "lr")
    assert [[row.get(k) for k in keys] for row in a["ddp_history"]] == \
           [[row.get(k) for k in keys] for row in b["ddp_history"]]


def test_history_and_checkpoint_are_written_once(runs):
    tmp, results = runs
    lines = (tmp / "ddp" / "history.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # one writer: no duplicated or torn rows
    assert [r["loss"] for r in rows] == [r["loss"] for r in results[0]["ddp_history"]]
    assert [p.name for p in (tmp / "ddp" / "ckpt").iterdir()] == [f"step_{STEPS:08d}"]


def test_fsdp_equals_one_process_on_the_same_global_batch(runs):
    _, results = runs
    ref = Trainer(tiny_gpt(), config(batch_size=B * WORLD, max_steps=3, eval_interval=0), tokens())
    ref_history = ref.fit()
    for r, res in enumerate(results):
        d = max_diff(res["fsdp_params"], params(ref))
        assert d < TOL, f"rank {r}: FSDP parameters differ from the 1-process run by {d:.2e}"
        losses = [row["loss"] for row in res["fsdp_history"]]
        assert np.allclose(losses, [row["loss"] for row in ref_history], atol=TOL, rtol=0), (r, losses)


def test_resume_under_two_processes_is_exact(runs):
    _, results = runs
    for r, res in enumerate(results):
        diffs = [k for k in res["straight"] if not torch.equal(res["straight"][k], res["resumed"][k])]
        assert not diffs, f"rank {r}: 4 steps + resume + 4 steps differs from 8 steps in {diffs}, " \
                          f"max abs diff {max_diff(res['straight'], res['resumed']):.2e}"
        drop = ("elapsed_s", "tok_per_s")
        clean = [[{k: v for k, v in row.items() if k not in drop} for row in res[h]]
                 for h in ("straight_history", "resumed_history")]
        assert clean[0] == clean[1]


def test_fsdp_bf16_computes_on_bf16_weights(runs):
    _, results = runs
    for r, res in enumerate(results):
        assert res["bf16_dtypes"] and set(res["bf16_dtypes"]) == {torch.bfloat16}, (r, res["bf16_dtypes"])
        assert all(np.isfinite(res["bf16_losses"])), (r, res["bf16_losses"])
    assert results[0]["bf16_losses"] == results[1]["bf16_losses"]  # the step's loss is averaged over ranks


def test_each_rank_resumes_its_own_rng(runs):
    _, results = runs
    for r, res in enumerate(results):
        assert torch.equal(res["rng_drawn"], res["rng_redrawn"]), \
            f"rank {r}: after resume the RNG draws {res['rng_redrawn']} instead of {res['rng_drawn']}"
    assert not torch.equal(results[0]["rng_drawn"], results[1]["rng_drawn"])  # the ranks' states did differ


def test_parallel_without_a_process_group_is_a_clear_error():
    with pytest.raises(RuntimeError, match="needs a process group"):
        Trainer(tiny_gpt(), config(parallel="ddp"), tokens())
    with pytest.raises(ValueError, match="parallel"):
        TrainConfig(parallel="tp")


def test_cli_under_torchrun(tmp_path):
    from minillm.__main__ import main

    assert main(["prepare", "--source", "arithmetic", "--n_docs", "200", "--out", str(tmp_path / "data")]) == 0
    from minillm.train.launch import torchrun

    argv = ["-m", "minillm", "train", "--data", str(tmp_path / "data"), "--preset", "tiny", "--size", "ci",
            "--out", str(tmp_path / "run"), "--max_steps", "4", "--n_layer", "1", "--n_embd", "16",
            "--block_size", "16", "--batch_size", "2", "--log_interval", "2", "--parallel", "ddp", "--device", "cpu"]
    res = torchrun(argv, nproc=2, timeout_s=90, cwd=tmp_path, check=False)
    stdout, stderr = res.stdout, res.stderr
    if res.returncode != 0 and "minillm Trainer" not in stdout and "TCPStore" in stderr:  # no worker ran
        pytest.skip(f"torchrun cannot open its TCP rendezvous store in this sandbox: {stderr[-300:]}")
    assert res.returncode == 0, stderr[-3000:]
    assert stdout.count("done: step 4") == 1, stdout  # rank 0 alone reports
    assert [p.name for p in tmp_path.joinpath("run").glob("history*.jsonl")] == ["history.jsonl"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert rows[-1]["tokens"] == 4 * 2 * 2 * 16  # steps x per-rank batch x ranks x block_size


# ----------------------------------------------------------------------------- on a GPU host (issue #20)
# test_cli_under_torchrun above is also the GPU host's CPU case: on a one-GPU machine its 2 CPU ranks must use
# gloo and leave the GPU alone (before issue #20, rank 1 died with 'invalid device ordinal').

_NCCL_SCRIPT = """
import json, sys
import numpy as np, torch, torch.distributed as dist
from minillm.config import ModelConfig, TrainConfig
from minillm.model.transformer import GPT
from minillm.train.parallel import init_distributed
from minillm.train.trainer import Trainer

device, out = sys.argv[1], sys.argv[2]
rank, world = init_distributed(device=device)
tokens = np.random.default_rng(0).integers(0, 32, size=4000).astype(np.int64)
def cfg(**kw):
    base = dict(batch_size=4, grad_accum_steps=2, max_steps=4, lr=3e-3, warmup_steps=1, eval_interval=2,
                eval_batches=2, log_interval=1, progress=False, device=device, seed=7)
    return TrainConfig(**{**base, **kw})
def model():
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.1))
res = {"backend": dist.get_backend(), "rank": rank}
a = Trainer(model(), cfg(parallel="ddp", out_dir=out + "/straight"), tokens)
a.fit()
b = Trainer(model(), cfg(parallel="ddp", out_dir=out + "/resumed"), tokens)
b.fit(stop_at=2)
b = Trainer(model(), cfg(parallel="ddp", out_dir=out + "/resumed", resume=True), tokens)
b.fit()
res["ddp_losses"] = [r["loss"] for r in a.history]
res["resumed_losses"] = [r["loss"] for r in b.history]
res["device"] = str(next(a.model.parameters()).device)
f = Trainer(model(), cfg(parallel="fsdp", precision="bf16", compile=True, eval_interval=0), tokens)
res["fsdp_bf16_compiled_losses"] = [r["loss"] for r in f.fit()]
if rank == 0:
    open(out + "/result.json", "w").write(json.dumps(res))
dist.destroy_process_group()
"""


@pytest.mark.gpu
def test_nccl_ddp_resume_and_fsdp_bf16_compile_on_the_gpu(tmp_path):
    """One process per GPU under NCCL (as many as this host has): DDP trains and resumes exactly (dropout on, so
    each rank's CUDA RNG matters), FSDP2 trains under bf16 with per-Block compile."""
    from minillm.train.launch import torchrun

    script = tmp_path / "nccl_rehearsal.py"
    script.write_text(_NCCL_SCRIPT)
    n = torch.cuda.device_count()
    torchrun([str(script), "cuda", str(tmp_path)], nproc=n, timeout_s=400, cwd=tmp_path)
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["backend"] == "nccl" and res["device"] == "cuda:0"
    assert np.isfinite(res["ddp_losses"]).all() and np.isfinite(res["fsdp_bf16_compiled_losses"]).all()
    # Equal up to CUDA's nondeterministic atomics (embedding backward); a rank resumed with another's dropout
    # stream would differ by far more.
    assert np.allclose(res["resumed_losses"], res["ddp_losses"], atol=1e-4, rtol=0)
