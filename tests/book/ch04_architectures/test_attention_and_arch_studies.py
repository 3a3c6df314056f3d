"""Tests of the attention and architecture studies (book.ch04_architectures.studies_attention, studies_arch) and their
figures (plots_attention): exact formulas against masks and allocated tensors, row shapes on tiny runs."""
import json
import math

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from minillm.config import ModelConfig
from book.ch04_architectures import plots_attention as plots
from minillm.model.attention import causal_mask, sliding_window_mask
from minillm.model.encdec import EncoderDecoder
from book.ch04_architectures.studies_arch import (architecture_comparison, fit_lm, matched_encdec_ffn, moe_study, prefix_continuation)
from book.ch04_architectures.studies_attention import (attention_flops, attention_kind, attention_pairs, attention_study, kv_cache_bytes, kv_heads_study, median_times)
from book.runs import ArchRun, study_data, train_config
from minillm.evaluation.loss import heldout_loss
from minillm.model.transformer import GPT

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def run():
    return ArchRun.for_size("ci", n_embd=16, n_head=2, block_size=16, batch_size=4, steps=6, warmup=1,
                            eval_windows=4)


def _json_ok(rows):
    assert json.loads(json.dumps(rows)) == rows


# ------------------------------------------------------------------------------------------- formulas


@pytest.mark.parametrize("T", [1, 5, 32])
@pytest.mark.parametrize("w", [None, 1, 3, 8, 40])
def test_attention_pairs_count_the_mask(T, w):
    mask = causal_mask(T) if w is None else sliding_window_mask(T, w)
    assert attention_pairs(T, w) == int(mask.sum())


def test_attention_flops_formula():
    assert attention_pairs(32) == 32 * 33 // 2 == 528
    assert attention_pairs(32, 8) == 8 * 32 - 8 * 7 // 2 == 228
    assert attention_flops(32, 2, 16, 8) == 4 * 228 * 16 * 2
    # per token: a window's cost is flat (~w), full attention's grows with T (~T/2)
    assert attention_pairs(100_000, 64) / 100_000 == pytest.approx(64, rel=1e-3)
    assert attention_pairs(100_000) / 100_000 ** 2 == pytest.approx(0.5, rel=1e-4)
    with pytest.raises(ValueError, match="window"):
        attention_pairs(8, 0)


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
@pytest.mark.parametrize("dtype, size", [(torch.float32, 4), (torch.bfloat16, 2)])
def test_kv_cache_bytes_formula(n_kv_head, dtype, size):
    cfg = ModelConfig(vocab_size=11, block_size=8, n_layer=3, n_head=4, n_kv_head=n_kv_head, n_embd=16)
    model = GPT(cfg).to(dtype)
    B, T = 3, 17
    assert kv_cache_bytes(model, B, T) == 2 * cfg.n_layer * B * T * n_kv_head * cfg.head_dim * size
    assert attention_kind(4, n_kv_head) == {4: "MHA", 2: "GQA", 1: "MQA"}[n_kv_head]


def test_median_times_interleaves_and_takes_the_median():
    calls = []
    times = median_times([lambda: calls.append("a"), lambda: calls.append("b")], repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4 and len(times) == 2 and all(t >= 0 for t in times)


# ------------------------------------------------------------------------------------------- attention studies


def test_attention_study_rows(run):
    rows = attention_study((None, 8, 4), run=run, repeats=1)
    assert [r["window"] for r in rows] == [None, 8, 4] and [r["label"] for r in rows][0] == "full"
    for r in rows:
        assert r["attn_pairs"] == attention_pairs(16, r["window"])
        assert r["attn_flops"] == attention_flops(16, run.n_layer, run.n_embd, r["window"])
        assert r["fwd_us_per_token"] > 0 and math.isfinite(r["val_loss"]) and not r["diverged"]
        assert len(r["history"]) == run.steps
    assert rows[0]["attn_flops_ratio"] == 1.0
    assert rows[2]["attn_flops_ratio"] == pytest.approx(attention_pairs(16, 4) / attention_pairs(16))
    _json_ok(rows)
    with pytest.raises(ValueError, match="repeated"):
        attention_study((8, 8), run=run)


def test_kv_heads_study_rows(run):
    rows = kv_heads_study(4, (4, 2, 1), (12, 8), run=run, batch_size=2, decode_tokens=4, repeats=1)
    assert [(r["seq_len"], r["n_kv_head"]) for r in rows] == [(8, 4), (8, 2), (8, 1), (12, 4), (12, 2), (12, 1)]
    for r in rows:
        assert r["kv_cache_bytes"] == 2 * run.n_layer * 2 * r["seq_len"] * r["n_kv_head"] * 4 * 4
        assert r["kv_cache_ratio"] == r["n_kv_head"] / 4
        assert r["decode_tok_per_s"] > 0 and r["kind"] == attention_kind(4, r["n_kv_head"])
    by_k = {k: {r["val_loss"] for r in rows if r["n_kv_head"] == k} for k in (4, 2, 1)}
    assert all(len(v) == 1 for v in by_k.values())  # one trained model per arm, scored once
    assert rows[0]["params"] > rows[1]["params"] > rows[2]["params"]  # fewer k/v projections
    _json_ok(rows)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kv_heads=(3,)), "does not divide"),
    (dict(kv_heads=(4, 2), seq_lens=(4,), decode_tokens=4), "exceed decode_tokens"),
    (dict(n_head=3), "divisible"),
])
def test_kv_heads_study_bad_input(run, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kv_heads_study(**{"n_head": 4, **kwargs}, run=run)


# ------------------------------------------------------------------------------------------- architectures


def test_fit_lm_is_train_configs_recipe(run):
    # the architecture studies' own loop must train exactly as the shared Trainer-based recipe does
    splits, vocab, _, _ = study_data(run)
    cfg = run.model_config(vocab)
    ref = train_config(cfg, run)
    torch.manual_seed(run.seed)
    model = GPT(cfg)
    hist = fit_lm(model, run, run.steps, eval_every=1)
    assert [h["loss"] for h in hist] == pytest.approx([r["loss"] for r in ref["history"]], rel=1e-6)
    assert heldout_loss(model, splits.val, max_windows=run.eval_windows) == pytest.approx(ref["val_loss"], rel=1e-6)


def test_fit_lm_refuses_a_loss_on_a_prefix_decoders_prefix(run):
    _, vocab, _, _ = study_data(run)
    model = GPT(run.model_config(vocab, attention_mask="prefix"))
    for kwargs in (dict(prefix_len=None), dict(prefix_len=4, suffix_only=False)):
        with pytest.raises(ValueError, match="prefix decoder needs prefix_len"):
            fit_lm(model, run, 1, **kwargs)


def test_prefix_continuation_rows(run):
    rows = prefix_continuation(run, prefix_len=6, continue_steps=2)
    assert [r["arm"] for r in rows] == ["causal", "causal+causal", "causal->prefix", "prefix scratch"]
    tok = run.batch_size * run.block_size
    assert rows[0]["tokens"] == run.steps * tok
    assert {r["tokens"] for r in rows[1:]} == {(run.steps + 2) * tok}  # same total tokens
    assert [r["history"][-1]["step"] for r in rows] == [6, 8, 8, 8]
    assert all(math.isfinite(r["suffix_val_loss"]) and r["prefix_len"] == 6 for r in rows)
    assert [r["mask"] for r in rows] == ["causal", "causal", "prefix", "prefix"]
    _json_ok(rows)
    with pytest.raises(ValueError, match="prefix_len"):
        prefix_continuation(run, prefix_len=16)


def test_matched_encdec_ffn_matches_params():
    cfg = ModelConfig(vocab_size=20, block_size=16, n_layer=4, n_head=2, n_embd=32)
    ffn = matched_encdec_ffn(cfg, 2)
    assert ffn < cfg.ffn_hidden  # cross-attention's parameters are paid for by narrower MLPs
    enc = EncoderDecoder(cfg.replace(ffn_hidden=ffn), 2).num_params()
    assert enc == pytest.approx(GPT(cfg).num_params(), rel=0.01)
    assert EncoderDecoder(cfg, 2).num_params() > 1.1 * GPT(cfg).num_params()  # unmatched: > 10% more


def test_architecture_comparison_rows(run):
    rows = architecture_comparison(run, prefix_len=8, n_layer=2)
    assert [r["arch"] for r in rows] == ["causal decoder", "prefix decoder", "encoder-decoder"]
    params = [r["params"] for r in rows]
    assert max(params) <= 1.1 * min(params)
    assert rows[2]["ffn_hidden"] < rows[0]["ffn_hidden"]
    for r in rows:
        assert math.isfinite(r["suffix_val_loss"]) and r["history"][-1]["step"] == run.steps
        assert r["history"][-1]["val_loss"] == pytest.approx(r["suffix_val_loss"])
    _json_ok(rows)
    with pytest.raises(ValueError, match="n_layer"):
        architecture_comparison(run, n_layer=1)


def test_moe_study_rows(run):
    rows = moe_study((1, 4), 1, run=run, load_every=2)
    assert [(r["n_expert"], r["balance"]) for r in rows] == [(0, None), (1, True), (1, False), (4, True), (4, False)]
    dense = rows[0]
    assert dense["params_active"] == dense["params_total"] and dense["load_history"] is None
    assert rows[1]["val_loss"] == pytest.approx(rows[2]["val_loss"])  # E=1: the balancing loss has no gradient
    mlp = 2 * run.n_embd * 4 * run.n_embd + 4 * run.n_embd + run.n_embd  # w1, w2 and their biases
    for r in rows[1:]:
        E = r["n_expert"]
        # top-1 at expert width = dense width: active = dense + the routers (C × E each, no bias)
        assert r["params_active"] == dense["params_total"] + run.n_layer * run.n_embd * E
        assert r["params_total"] - r["params_active"] == run.n_layer * (E - 1) * mlp
        assert r["load_steps"] == [2, 4, 6] and len(r["load_history"]) == 3
        for load in r["load_history"]:
            assert len(load) == E and sum(load) == pytest.approx(1.0)
        assert 1 / E - 1e-9 <= r["max_share"] <= 1.0 and 0.0 <= r["dropped"] <= 1.0
    assert rows[3]["aux_weight"] == 0.01 and rows[4]["aux_weight"] == 0.0
    _json_ok(rows)
    with pytest.raises(ValueError, match="top_k"):
        moe_study((1, 4), 2, run=run)


# ------------------------------------------------------------------------------------------- figures


def _hist(n=3):
    return [{"step": s, "loss": 3.0 - 0.1 * s, "val_loss": 3.1 - 0.1 * s} for s in range(1, n + 1)]


def test_plots_return_figures():
    att = [{"window": w, "label": lab, "val_loss": v, "fwd_us_per_token": 2.0, "n_layer": 2, "n_embd": 16,
            "block_size": 32} for w, lab, v in ((None, "full", 2.0), (8, "window 8", 2.1))]
    kv = [{"n_kv_head": k, "kind": attention_kind(4, k), "seq_len": L, "kv_cache_bytes": 100 * k * L,
           "decode_tok_per_s": 1000.0, "val_loss": 2.0, "batch_size": 2} for k in (4, 1) for L in (8, 16)]
    pre = [{"arm": a, "suffix_val_loss": 2.0, "history": _hist(), "steps": s, "prefix_len": 8}
           for a, s in (("causal", 3), ("causal->prefix", 4))]
    arch = [{"arch": a, "params": 1000, "history": _hist(), "suffix_val_loss": 2.8, "floor": 0.3}
            for a in ("causal decoder", "encoder-decoder")]
    moe = [{"n_expert": 0, "balance": None, "val_loss": 2.0, "max_share": None, "top_k": None}]
    moe += [{"n_expert": E, "balance": b, "val_loss": 2.0, "max_share": 0.5, "top_k": 1}
            for E in (2, 4) for b in (True, False)]
    figs = [plots.plot_attention(att), plots.plot_kv_heads(kv), plots.plot_prefix(pre),
            plots.plot_architectures(arch), plots.plot_moe(moe),
            plots.plot_expert_load([[0.5, 0.5], [0.9, 0.1]], steps=[2, 4])]
    assert all(isinstance(f, Figure) for f in figs)
    import matplotlib.pyplot as plt
    for f in figs:
        plt.close(f)


@pytest.mark.parametrize("call, match", [
    (lambda: plots.plot_attention([]), "attention_study"),
    (lambda: plots.plot_moe([{"n_expert": 2}]), "rows lack"),
    (lambda: plots.plot_expert_load([]), "load_history"),
    (lambda: plots.plot_expert_load([[0.5, 0.5]], steps=[1, 2]), "steps has 2"),
])
def test_plots_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
