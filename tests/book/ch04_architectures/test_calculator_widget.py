"""The architecture calculator: counts equal the real model's, memory formulas, the slider widget. (chapter code)."""

import pytest

from book.ch04_architectures.plots_calculator import ArchCalculator, divisors
from minillm.config import ModelConfig
from minillm.model.calculator import arch_stats
from minillm.model.transformer import GPT


def tiny(**kw):
    base = dict(vocab_size=29, block_size=16, n_layer=2, n_head=4, n_embd=32)
    return ModelConfig(**{**base, **kw})


def test_divisors():
    assert divisors(12) == [1, 2, 3, 4, 6, 12]


def test_widget_update_matches_arch_stats_and_refreshes_kv_heads():
    w = ArchCalculator.from_preset("llama-tiny", batch_size=2)
    assert w.config().n_kv_head == 2 and list(w.controls["n_kv_head"].options) == [1, 2, 4]
    res = w.update(n_layer=6, n_embd=192, n_head=6, vocab_size=50257, block_size=1024)
    cfg = w.config()
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.block_size) == (6, 192, 6, 50257, 1024)
    assert cfg.activation == "swiglu" and cfg.position == "rope" and not cfg.tie_embeddings  # from the preset
    assert list(w.controls["n_kv_head"].options) == [1, 2, 3, 6] and cfg.n_kv_head == 2  # 2 still divides 6
    assert res == arch_stats(cfg, batch_size=2, seq_len=1024) == w.result
    assert res["params_total"] == GPT(cfg).num_params(non_embedding=False)
    assert cfg.ffn_hidden == 512  # the GLU default width re-derived for n_embd=192, not the preset's 344
    assert w.figure is not None and "non-embedding" in w.summary.value
    w.update(n_head=4)  # n_kv_head=2 divides 4 and is kept
    assert list(w.controls["n_kv_head"].options) == [1, 2, 4] and w.config().n_kv_head == 2
    w.update(n_head=3, n_embd=192)  # 2 does not divide 3: the largest divisor below it, 1 (MQA)
    assert w.config().n_kv_head == 1
    res = w.update(n_head=6, n_kv_head=3)
    assert w.config().n_kv_head == 3 and res["kv_cache_bytes"] == 2 * 6 * 2 * 1024 * 3 * 32 * 2


def test_widget_slider_moves_redraw_and_invalid_moves_explain():
    w = ArchCalculator(tiny(n_embd=128, block_size=64))
    w.controls["n_head"].value = 8  # a reader drags the slider: options follow, n_kv_head kept (4 divides 8)
    assert list(w.controls["n_kv_head"].options) == [1, 2, 4, 8] and w.result["params_total"] > 0
    w.controls["n_kv_head"].value = 1
    assert w.result["kv_cache_bytes"] == arch_stats(w.config())["kv_cache_bytes"]
    w.controls["n_head"].value = 3  # 128 is not divisible by 3: the summary says so instead of raising
    assert "divisible by n_head=3" in w.summary.value


def test_widget_moe():
    w = ArchCalculator.from_preset("tiny")
    res = w.update(n_expert=8, expert_top_k=2)
    assert res["params_active"] < res["params_total"] and "active per token" in w.summary.value
    assert res == arch_stats(w.config())
    with pytest.raises(ValueError, match="expert_top_k"):
        w.update(n_expert=2, expert_top_k=4)


def test_widget_bad_inputs_raise_before_anything_moves():
    w = ArchCalculator.from_preset("small")
    before = w._values()
    for bad, match in ((dict(n_embd=100), "multiple of 64"), (dict(block_size=1000), "power of two"),
                       (dict(n_layer=0), r"range \[1, 128\]"), (dict(vocab_size=5), "range"),
                       (dict(n_kv_head=3), r"divisor of n_head=4: one of \[1, 2, 4\]"),
                       (dict(n_head=5), "divisible by n_head=5"), (dict(n_layer=2.5), "must be an integer"),
                       (dict(dropout=0.1), "unknown control")):
        with pytest.raises(ValueError, match=match):
            w.update(**bad)
    assert w._values() == before
    with pytest.raises(ValueError, match="unknown model preset"):
        ArchCalculator.from_preset("gpt5")
    with pytest.raises(ValueError, match=r"n_embd=32 is outside the calculator's range \[64, 16384\]"):
        ArchCalculator(tiny())  # n_embd=32 is off the slider's grid
