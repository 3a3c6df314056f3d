"""Sharing trained sweep models between processes: atomic save/load and the claim-or-wait lock."""
from __future__ import annotations

import pytest
import torch

from minillm import GPT, ModelConfig
from book.ch02_emergence.studies import RECIPE, EmergenceRun, ModelZoo
from minillm.data.tasks.pretraining import emergence_tokenizer
from book.ch02_emergence import studies_zoo as zoo_cache


def test_save_and_load_give_the_same_model(tmp_path):
    tok = emergence_tokenizer()
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=16, position="rope"))
    path = tmp_path / "m.pt"
    zoo_cache.save(path, model, tok, 1.25)
    loaded, tok2, val = zoo_cache.load(path)
    x = torch.randint(0, tok.vocab_size, (2, 16))
    torch.testing.assert_close(loaded(x)[0], model.eval()(x)[0])
    assert val == 1.25 and tok2.vocab_size == tok.vocab_size and not list(tmp_path.glob("*.tmp*"))


def test_claim_then_wait_then_timeout(tmp_path):
    path = tmp_path / "m.pt"
    assert zoo_cache.load_or_claim(path, wait_s=0) is None  # nobody has it: this process trains it
    assert path.with_suffix(".lock").is_file()
    with pytest.raises(TimeoutError, match="delete the lock"):  # a second claimant waits, then says what to do
        zoo_cache.load_or_claim(path, wait_s=0.05, poll_s=0.01)


def test_paths_differ_by_run_arm_and_size(tmp_path):
    a, b = EmergenceRun.for_size("ci"), EmergenceRun.for_size("laptop")
    paths = {zoo_cache.path_for(tmp_path, r, arm, i) for r in (a, b) for arm in ("base", "no_cot") for i in (0, 1)}
    assert len(paths) == 8


def test_two_zoos_share_a_trained_model(tmp_path):
    run = EmergenceRun(sizes=((1, 16),), run=RECIPE.replace(steps=3, batch_size=2), n_chars=20_000, n_eval=2,
                       ablation_sizes=(), digits=(2,), shots=(0,))
    first = ModelZoo(run, cache_dir=str(tmp_path)).get(0)
    second = ModelZoo(run, cache_dir=str(tmp_path)).get(0)  # loaded, not retrained
    x = torch.randint(0, 96, (1, 8))
    torch.testing.assert_close(first[0](x)[0], second[0](x)[0])
    assert first[2] == pytest.approx(second[2])
