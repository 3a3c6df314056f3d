"""Checkpoints (minillm/train/checkpoint.py): round trip, tied weights, RNG, atomicity, clear errors."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from safetensors import safe_open

from minillm.config import ModelConfig, TrainConfig
from minillm.data.loader import RandomLoader
from minillm.device import rng_state
from minillm.model.transformer import GPT
from minillm.train import checkpoint as ckpt_mod
from minillm.train.checkpoint import (checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint,
                                      load_checkpoint_state, load_weights, save_checkpoint)
from minillm.train.optim import AdamW, param_groups

TINY = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)


def tiny_gpt(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(**{**TINY, **overrides}))


def trained(seed: int = 0):
    """A model and optimizer after two steps, so the optimizer has state worth saving."""
    model = tiny_gpt(seed)
    opt = AdamW(param_groups(model, 0.1), lr=1e-2, weight_decay=0.1)
    x = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(seed))
    for _ in range(2):
        opt.zero_grad()
        model(x, x)[1].backward()
        opt.step()
    return model, opt


def test_round_trip_restores_weights_optimizer_and_configs(tmp_path):
    model, opt = trained()
    loader = RandomLoader(np.arange(500) % 50, 2, 16, seed=3)
    next(loader)
    path = save_checkpoint(tmp_path / "c", model, opt, 2, loader_state=loader.state_dict(),
                           config=TrainConfig(lr=5e-4), extra={"note": "hello", "losses": [1.5, 1.25]})
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "model.safetensors", "state.pt"]

    fresh = tiny_gpt(seed=9)
    fresh_opt = AdamW(param_groups(fresh, 0.1), lr=1e-2, weight_decay=0.1)
    assert load_checkpoint(path, fresh, fresh_opt) == 2
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    s1, s2 = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg_sq"], s2[k]["exp_avg_sq"]) for k in s1)

    state = load_checkpoint_state(path)
    assert state["train_config"]["lr"] == 5e-4 and state["model_config"]["n_embd"] == 32
    assert state["extra"] == {"note": "hello", "losses": [1.5, 1.25]}
    other = RandomLoader(np.arange(500) % 50, 2, 16, seed=3)
    other.load_state_dict(state["loader_state"])
    assert torch.equal(next(other)[0], next(loader)[0])


def test_tied_weights_are_stored_once_and_stay_tied(tmp_path):
    model, opt = trained()
    path = save_checkpoint(tmp_path / "c", model, opt, 2)
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
    assert "tok_emb.weight" in names and "lm_head.weight" not in names
    assert torch.equal(load_weights(path)["lm_head.weight"], model.lm_head.weight.detach())
    fresh = tiny_gpt(seed=5)
    load_checkpoint(path, fresh)
    assert fresh.lm_head.weight is fresh.tok_emb.weight  # loading copies into the shared tensor
    assert torch.equal(fresh.lm_head.weight, model.lm_head.weight)


def test_restore_rng_replays_the_same_random_numbers(tmp_path):
    model, opt = trained()
    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    path = save_checkpoint(tmp_path / "c", model, opt, 2)
    draws = (torch.rand(3), np.random.rand(3), random.random())
    load_checkpoint(path, model, restore_rng=True)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]


def _draws_after(seed: int) -> tuple[dict, tuple]:
    """(this process's RNG states after seeding everything with `seed`, the draws that follow them)."""
    torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)
    state = rng_state()
    return state, (torch.rand(3), np.random.rand(3), random.random())


def test_each_rank_restores_its_own_rng_state(tmp_path):
    """A data-parallel checkpoint holds every rank's RNG (each GPU draws its own dropout masks); rank r restores
    entry r, not rank 0's. (Before issue #20 only the saving rank's state was written and every rank got it.)"""
    model, opt = trained()
    states, draws = zip(*(_draws_after(100 + r) for r in range(3)))
    path = save_checkpoint(tmp_path / "c", model, opt, 2, rng_states=list(states))
    for r in (2, 0, 1):
        torch.manual_seed(7), np.random.seed(7), random.seed(7)
        load_checkpoint(path, model, restore_rng=True, rank=r)
        again = (torch.rand(3), np.random.rand(3), random.random())
        assert torch.equal(draws[r][0], again[0]) and np.array_equal(draws[r][1], again[1]), r
        assert draws[r][2] == again[2], r
    with pytest.raises(ValueError, match=r"RNG states of 3 process\(es\), none for rank 3.*--nproc_per_node=3"):
        load_checkpoint(path, model, restore_rng=True, rank=3)
    load_checkpoint(path, model, rank=3)  # weights only: the RNG entries are not needed
    # A single process saves its own state as rank 0's; a second rank finds none of its own.
    single = save_checkpoint(tmp_path / "s", model, opt, 2)
    assert len(load_checkpoint_state(single)["rng_per_rank"]) == 1
    with pytest.raises(ValueError, match="none for rank 1"):
        load_checkpoint(single, model, restore_rng=True, rank=1)
    with pytest.raises(ValueError, match="rng_states must be a non-empty list"):
        save_checkpoint(tmp_path / "x", model, opt, 2, rng_states=[])


def test_a_checkpoint_from_before_per_rank_rng_restores_rank_0(tmp_path):
    model, opt = trained()
    torch.manual_seed(5)
    path = save_checkpoint(tmp_path / "c", model, opt, 2)
    draws = torch.rand(3)
    old = load_checkpoint_state(path)
    old["rng"] = old.pop("rng_per_rank")[0]  # the format written before issue #20: one "rng" entry
    torch.save(old, path / "state.pt")
    torch.manual_seed(7)
    load_checkpoint(path, model, restore_rng=True)
    assert torch.equal(torch.rand(3), draws)
    with pytest.raises(ValueError, match="RNG states of 1 process"):
        load_checkpoint(path, model, restore_rng=True, rank=1)


def test_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, opt = trained()
    path = tmp_path / "c"
    save_checkpoint(path, model, opt, 1)
    model2, opt2 = trained(seed=1)

    def crash(obj, file):  # the weights are already written when the state file fails
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt_mod, "_save_torch", crash)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, model2, opt2, 2)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path / "new", model2, opt2, 2)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temp dirs, no half-written "new"
    fresh = tiny_gpt(seed=3)
    assert load_checkpoint(path, fresh) == 1
    assert torch.equal(fresh.tok_emb.weight, model.tok_emb.weight)
    # And a successful save replaces it.
    save_checkpoint(path, model2, opt2, 2)
    assert load_checkpoint(path, fresh) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_architecture_mismatch_lists_keys_shapes_and_config(tmp_path):
    model, opt = trained()
    path = save_checkpoint(tmp_path / "c", model, opt, 2)
    with pytest.raises(RuntimeError, match=r"(?s)shape mismatches \(37\):.*attn.wq.weight: checkpoint \(32, 32\) "
                                           r"vs model \(64, 64\).*n_embd: checkpoint 32 vs model 64"):
        load_checkpoint(path, tiny_gpt(n_embd=64))
    with pytest.raises(RuntimeError, match=r"(?s)missing in checkpoint \(\d+\): blocks\.2\..*n_layer: checkpoint 2"):
        load_checkpoint(path, tiny_gpt(n_layer=3))


def test_clear_errors_for_wrong_paths_and_missing_optimizer_state(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope", tiny_gpt())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a minillm checkpoint: model.safetensors, state.pt missing"):
        load_checkpoint(tmp_path / "empty", tiny_gpt())
    model, opt = trained()
    path = save_checkpoint(tmp_path / "w", model, None, 0)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        load_checkpoint(path, tiny_gpt(), opt)
    with pytest.raises(ValueError, match="step=-1"):
        save_checkpoint(tmp_path / "x", model, opt, -1)


def test_latest_checkpoint_picks_the_newest_complete_one(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    model, opt = trained()
    for step in (5, 20, 10):
        save_checkpoint(checkpoint_path(tmp_path, step), model, opt, step)
    (tmp_path / "ckpt" / "step_00000099").mkdir()  # incomplete (e.g. copied by hand): ignored
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000005", "step_00000010", "step_00000020"]
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 20)
    with pytest.raises(ValueError, match="use latest_checkpoint"):
        load_checkpoint(tmp_path, tiny_gpt())
