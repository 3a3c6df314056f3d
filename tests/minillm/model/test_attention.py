"""Attention: math path == torch SDPA, masks, GQA, custom attention hook."""
import pytest
import torch
import torch.nn.functional as F

from minillm.config import ModelConfig
from minillm.model.attention import (Attention, causal_mask, prefix_mask, repeat_kv, scaled_dot_product_attention,
                                     sliding_window_mask)


def test_functional_sdpa_matches_torch():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g) for _ in range(3))
    mask = causal_mask(7)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))
    bias = torch.randn(3, 7, 7, generator=g)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, bias=bias),
                               F.scaled_dot_product_attention(q, k, v, attn_mask=bias))


def test_masks():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(1, 4, offset=3).tolist() == [[True, True, True, True]]
    assert sliding_window_mask(4, 2).tolist() == [[True, False, False, False], [True, True, False, False],
                                                  [False, True, True, False], [False, False, True, True]]
    m = prefix_mask(4, 2)
    assert m[0].tolist() == [True, True, False, False]  # prefix token sees the whole prefix
    assert m[2].tolist() == [True, True, True, False]  # after the prefix: causal
    mb = prefix_mask(4, torch.tensor([1, 3]))
    assert mb.shape == (2, 1, 4, 4) and mb[1, 0, 0].tolist() == [True, True, True, False]


def test_repeat_kv():
    x = torch.arange(6.0).view(1, 2, 3, 1)
    y = repeat_kv(x, 2)
    assert y.shape == (1, 4, 3, 1)
    torch.testing.assert_close(y[0, 1], x[0, 0])
    torch.testing.assert_close(y[0, 2], x[0, 1])


@pytest.mark.parametrize("kw", [dict(), dict(n_kv_head=1), dict(n_kv_head=2, position="rope"),
                                dict(position="alibi"), dict(attention_mask="prefix"), dict(sliding_window=3)])
def test_math_path_equals_sdpa_path(kw):
    cfg = ModelConfig(n_embd=32, n_head=4, block_size=16, **kw)
    torch.manual_seed(0)
    attn = Attention(cfg)
    math_attn = Attention(cfg.replace(attn_impl="math"))
    math_attn.load_state_dict(attn.state_dict())
    x = torch.randn(2, 9, 32)
    from minillm.model.position import rope_angles
    rope = rope_angles(torch.arange(9), cfg.head_dim) if cfg.position == "rope" else None
    prefix = 4 if cfg.attention_mask == "prefix" else None
    torch.testing.assert_close(attn(x, rope=rope, prefix_len=prefix), math_attn(x, rope=rope, prefix_len=prefix),
                               atol=1e-5, rtol=1e-5)


def test_causality_future_tokens_do_not_leak():
    cfg = ModelConfig(n_embd=16, n_head=2)
    attn = Attention(cfg)
    x = torch.randn(1, 6, 16)
    y1 = attn(x)
    x2 = x.clone()
    x2[0, 4:] = torch.randn(2, 16)
    y2 = attn(x2)
    torch.testing.assert_close(y1[0, :4], y2[0, :4])
    assert not torch.allclose(y1[0, 4:], y2[0, 4:])


def test_custom_attention_fn_receives_mask():
    cfg = ModelConfig(n_embd=16, n_head=2)
    attn = Attention(cfg)
    seen = {}

    def fn(q, k, v, mask):
        seen["mask"] = mask
        return scaled_dot_product_attention(q, k, v, mask)

    x = torch.randn(2, 5, 16)
    ref = attn(x)
    attn.attn_fn = fn
    torch.testing.assert_close(attn(x), ref, atol=1e-6, rtol=1e-5)
    assert seen["mask"].tolist() == causal_mask(5).tolist()
