"""Tests of minillm.scaling.sweep: IsoFLOP planning, stable run ids, a tiny real sweep that resumes, clear errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from minillm.__main__ import main
from minillm.config import ModelConfig
from minillm.data.synthetic import corpus
from minillm.data.tokenizer import CharTokenizer
from minillm.model.transformer import GPT
from minillm.scaling.sweep import ROW_FIELDS, SweepConfig, default_sweep, load_sweep, model_ladder, plan, run_sweep

SHAPES = [(1, 32, 1), (1, 64, 2), (2, 64, 2), (2, 128, 4), (4, 128, 4)]


def small_cfg(**kw) -> SweepConfig:
    base = dict(n_docs=200, block_size=32, batch_size=4, shapes=SHAPES, budgets=[1e9, 1e10], min_steps=10,
                max_steps=200, eval_batches=2, curve_points=4)
    return SweepConfig(**{**base, **kw})


def flops_per_token(shape, vocab, block_size):
    n_layer, n_embd, n_head = shape
    return GPT(ModelConfig(vocab_size=vocab, block_size=block_size, n_layer=n_layer, n_embd=n_embd,
                           n_head=n_head)).flops_per_token()


def test_isoflop_plan_spends_each_budget_and_skips_sizes_outside_step_bounds():
    cfg = small_cfg()
    specs = plan(cfg)
    vocab = CharTokenizer.from_text(corpus("story", 200, 0).text()).vocab_size
    tps = cfg.batch_size * cfg.block_size
    expected = set()
    for budget in cfg.budgets:
        for shape in SHAPES:
            steps = budget / (flops_per_token(shape, vocab, cfg.block_size) * tps)
            if cfg.min_steps <= round(steps) <= cfg.max_steps:
                expected.add((budget, shape))
    got = {(s.budget, (s.n_layer, s.n_embd, s.n_head)) for s in specs}
    assert got == expected
    # Both bounds bite in this configuration: the smallest model is too long for 1e10, the largest too short for 1e9.
    assert (1e10, SHAPES[0]) not in got and (1e9, SHAPES[-1]) not in got
    assert len(got) >= 5
    for s in specs:
        assert s.flops == s.flops_per_token * s.tokens and s.tokens == s.steps * tps
        assert abs(s.flops / s.budget - 1) < 0.05, s
        assert s.flops_per_token == flops_per_token((s.n_layer, s.n_embd, s.n_head), vocab, cfg.block_size)
    # execution order: by budget, then by N
    assert [(s.budget, s.n_params) for s in specs] == sorted((s.budget, s.n_params) for s in specs)


def test_run_ids_are_stable_unique_and_change_with_settings():
    a, b = plan(small_cfg()), plan(small_cfg())
    ids = [s.run_id for s in a]
    assert ids == [s.run_id for s in b]
    assert len(set(ids)) == len(ids)
    assert ids[0].startswith("C1e+09-L1-E32-H1-S")
    changed = {s.run_id for s in plan(small_cfg(lr=1e-3))}
    assert not changed & set(ids)  # a different lr must never resume into an old row
    assert not {s.run_id for s in plan(small_cfg(train_seed=1))} & set(ids)


def test_grid_plan_is_every_size_times_every_token_budget():
    cfg = small_cfg(mode="grid", token_budgets=[1000, 5000])
    specs = plan(cfg)
    assert len(specs) == 2 * len(SHAPES)
    assert all(s.budget is None and s.tokens >= 1000 for s in specs)
    assert {s.steps for s in specs} == {math.ceil(1000 / 128), math.ceil(5000 / 128)}


def test_model_ladder_spans_range_with_sane_shapes():
    shapes = model_ladder(1e4, 3e6, 14)
    assert len(set(shapes)) == 14
    ns = [12 * l * e**2 for l, e, _ in shapes]
    assert ns == sorted(ns)
    assert 0.5e4 < ns[0] < 2e4 and 1.5e6 < ns[-1] < 6e6
    for n_layer, n_embd, n_head in shapes:
        assert n_embd % n_head == 0 and 32 <= n_embd // n_head <= 64
        assert 16 <= n_embd / n_layer <= 128


def test_tiny_sweep_writes_full_rows_and_resumes_without_duplicates(tmp_path):
    cfg = default_sweep("ci")
    out = tmp_path / "sweep.jsonl"
    first = run_sweep(cfg, out, progress=False, max_runs=2)
    assert len(first) == 2 and len(load_sweep(out)) == 2
    rows = run_sweep(cfg, out, progress=False)  # resumes: trains only the third run
    on_disk = load_sweep(out)
    assert len(on_disk) == len(plan(cfg)) == 3
    assert len({r["run_id"] for r in on_disk}) == 3
    assert [r["run_id"] for r in rows] == [s.run_id for s in plan(cfg)]
    assert on_disk[:2] == first  # the first rows were not rewritten
    c = corpus(cfg.corpus, cfg.n_docs, cfg.data_seed)
    floor = c.entropy_per_token(CharTokenizer.from_text(c.text()))
    for r in on_disk:
        assert set(ROW_FIELDS) <= set(r)
        assert r["flops"] == r["flops_per_token"] * r["tokens"]
        assert r["tokens"] == r["steps"] * cfg.batch_size * cfg.block_size
        assert math.isfinite(r["val_loss"]) and r["val_loss"] > r["floor"]
        assert r["floor"] == pytest.approx(floor)
        assert r["curve"][-1][0] == r["tokens"] and r["curve"][-1][1] == pytest.approx(r["loss"], abs=1e-4)
        assert {"command", "date", "host", "versions"} <= set(r["provenance"])
    assert run_sweep(cfg, out, progress=False) == rows  # nothing left to train: same rows, file unchanged
    assert len(load_sweep(out)) == 3


def test_same_settings_give_the_same_losses(tmp_path):
    cfg = default_sweep("ci")
    a = run_sweep(cfg, tmp_path / "a.jsonl", progress=False, max_runs=1)
    b = run_sweep(cfg, tmp_path / "b.jsonl", progress=False, max_runs=1)
    assert a[0]["val_loss"] == b[0]["val_loss"] and a[0]["curve"] == b[0]["curve"]


@pytest.mark.parametrize("kw, match", [
    (dict(budgets=[0.0]), "budgets"),
    (dict(budgets=[-1e9]), "budgets"),
    (dict(shapes=[]), "shapes is empty"),
    (dict(shapes=[(2, 60, 8)]), "divisible"),
    (dict(corpus="shakespeare"), "corpus='shakespeare' is unknown"),
    (dict(min_steps=500, max_steps=100), "min_steps"),
    (dict(mode="grid"), "token_budgets"),
    (dict(mode="chinchilla"), "mode"),
    (dict(tokenizer="bpe"), "tokenizer"),
])
def test_bad_config_is_one_clear_error(kw, match):
    with pytest.raises(ValueError, match=match):
        small_cfg(**kw)


def test_plan_with_no_run_inside_the_step_bounds_says_what_to_change():
    with pytest.raises(ValueError, match="plans no runs"):
        plan(small_cfg(budgets=[1e3]))


def test_load_sweep_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no sweep results"):
        load_sweep(tmp_path / "absent.jsonl")
    good = {k: 1 for k in ROW_FIELDS}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + '{"run_id": "x", "n_la\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2 is not valid JSON"):
        load_sweep(path)
    path.write_text(json.dumps({"run_id": "x"}) + "\n")
    with pytest.raises(ValueError, match=r":1 lacks field\(s\) mode"):
        load_sweep(path)
    with pytest.raises(ValueError, match="size='huge'"):
        default_sweep("huge")


def test_cli_dry_run_and_errors(tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    assert main(["sweep", "--size", "ci", "--out", str(out), "--dry_run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("C4e+08-L1-E32") and not out.exists()
    assert main(["sweep", "--size", "ci", "--out", str(out), "--budgets", "-1"]) == 2
    assert "budgets" in capsys.readouterr().err
    assert main(["sweep", "--size", "ci", "--out", str(out), "--mode", "grid"]) == 2
    assert "--tokens" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", "--size", "ci", "--out", str(out), "--budgets", "lots"])


def test_shipped_laptop_sweep_matches_the_laptop_profile():
    """The shipped file is the output of `python -m minillm sweep --size laptop`: a changed default would
    silently make the chapter plot a sweep that the code no longer reproduces."""
    shipped = Path(__file__).resolve().parents[3] / "bench" / "results" / "sweeps" / "laptop_isoflop.jsonl"
    rows = load_sweep(shipped)
    assert sorted(r["run_id"] for r in rows) == sorted(s.run_id for s in plan(default_sweep("laptop")))
    assert len({r["budget"] for r in rows}) >= 4 and len(rows) >= 30


def test_live_sweep_is_small_and_a_subset_of_the_shipped_design():
    from minillm.scaling.sweep import default_sweep, live_sweep, plan
    shipped_ids = {s.run_id for s in plan(default_sweep("laptop"))}
    live = plan(live_sweep("laptop"))
    assert 0 < len(live) < len(shipped_ids) / 2
    assert {s.run_id for s in live} <= shipped_ids  # the reader's runs repeat shipped ones
    assert len(plan(live_sweep("ci"))) == len(plan(default_sweep("ci")))
