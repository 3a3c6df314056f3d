"""Decoding strategies (Survey §4.2.4): sampling filters, repetition penalty, stop sequences, beam search, (chapter code)."""
import pytest
import torch

from book.ch07_utilization_eval.plots import plot_kv_speed
from minillm.config import ModelConfig
from minillm.generate import kv_cache_speed
from minillm.model.transformer import GPT

V = 23


def _gpt(position: str, block_size: int = 16, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=V, block_size=block_size, n_layer=2, n_head=2, n_embd=32, position=position))


def test_kv_cache_speed_and_plot():
    m = _gpt("learned", block_size=64)
    cached, uncached = kv_cache_speed(m, 4, 40, True), kv_cache_speed(m, 4, 40, False)
    assert cached > 0 and uncached > 0
    with pytest.raises(ValueError, match="block_size"):
        kv_cache_speed(m, 40, 40, True)
    import matplotlib
    matplotlib.use("Agg")
    fig = plot_kv_speed([{"seq_len": 44, "cached_tps": cached, "uncached_tps": uncached, "speedup": cached / uncached}])
    assert len(fig.axes) == 2
