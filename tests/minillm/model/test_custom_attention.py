"""GPT.set_attention_fn: a custom attention core gets what the built-in one applies (issue #22, item 5).

Survey §4.2.2. The custom fn sees the mask (causal, prefix, sliding window, padding) and, when it names them,
ALiBi's bias and the dropout probability; a fn that lacks one the model needs is refused instead of silently
computing a different model. A factory gives each layer its own fn.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm import GPT, ModelConfig, scaled_dot_product_attention
from minillm.model.attention import Attention, custom_fn_keywords

V, T = 29, 12


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=16)
    return ModelConfig(**{**base, **kw})


def sdpa_fn(q, k, v, mask, *, bias=None, dropout_p=0.0):
    """A student's fn written against the documented interface, computed by PyTorch's SDPA."""
    attn_mask = mask if bias is None else bias.masked_fill(~mask, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)


def model_and_input(**kw):
    torch.manual_seed(0)
    return GPT(tiny(**kw)).eval(), torch.randint(0, V, (2, T))


@pytest.mark.parametrize("position", ["rope", "alibi", "learned"])
def test_custom_sdpa_fn_gives_the_builtin_logits(position):
    model, x = model_and_input(position=position)
    ref, _ = model(x)
    model.set_attention_fn(sdpa_fn)
    out, _ = model(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", ["rope", "alibi"])
def test_custom_fn_with_prefix_mask_gives_the_builtin_logits(position):
    model, x = model_and_input(position=position, attention_mask="prefix")
    ref, _ = model(x, prefix_len=torch.tensor([3, 7]))
    model.set_attention_fn(sdpa_fn)
    out, _ = model(x, prefix_len=torch.tensor([3, 7]))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    plain, _ = model(x)  # the prefix changes the logits, so the test above could fail
    assert not torch.allclose(plain, out, atol=1e-3)


def test_minillm_functional_attention_is_a_valid_fn_under_alibi():
    # minillm.scaled_dot_product_attention(q, k, v, mask, bias) names `bias`: it gets ALiBi and matches.
    model, x = model_and_input(position="alibi", n_kv_head=1)  # GQA/MQA: the fn sees repeated K/V heads
    ref, _ = model(x)
    model.set_attention_fn(scaled_dot_product_attention)
    torch.testing.assert_close(model(x)[0], ref, atol=1e-5, rtol=1e-5)
    model.set_attention_fn(None)
    torch.testing.assert_close(model(x)[0], ref)


def test_a_fn_without_bias_is_refused_under_alibi():
    # Before the fix, this fn ran and silently dropped ALiBi: its logits differed from the model's own.
    model, x = model_and_input(position="alibi")
    ref, _ = model(x)
    no_bias = lambda q, k, v, mask: scaled_dot_product_attention(q, k, v, mask)  # noqa: E731
    with pytest.raises(ValueError, match="position='alibi'.*no `bias` keyword"):
        model.set_attention_fn(no_bias)
    torch.testing.assert_close(model(x)[0], ref)  # the refused call changed nothing
    for block in model.blocks:  # set directly, bypassing the check: refused at the forward
        block.attn.attn_fn = no_bias
    with pytest.raises(ValueError, match="no `bias` keyword"):
        model(x)


def test_the_old_four_argument_signature_still_works_without_alibi():
    model, x = model_and_input(position="rope")
    ref, _ = model(x)
    model.set_attention_fn(lambda q, k, v, mask: scaled_dot_product_attention(q, k, v, mask))
    torch.testing.assert_close(model(x)[0], ref, atol=1e-5, rtol=1e-5)


def test_dropout_reaches_the_fn_or_is_refused():
    model, x = model_and_input(dropout=0.5)
    seen = []

    def spy(q, k, v, mask, dropout_p):
        seen.append(dropout_p)
        return scaled_dot_product_attention(q, k, v, mask)

    model.set_attention_fn(spy)
    model.train()
    model(x)
    model.eval()
    model(x)
    assert seen == [0.5, 0.5, 0.0, 0.0]  # two layers; 0 in eval mode, as the built-in path
    model.set_attention_fn(lambda q, k, v, mask: scaled_dot_product_attention(q, k, v, mask))
    model(x)  # eval mode: no dropout to drop, so the four-argument fn is fine
    model.train()
    with pytest.raises(ValueError, match="no `dropout_p` keyword"):
        model(x)


def test_factory_gives_each_layer_its_own_fn():
    model, x = model_and_input(n_layer=3)
    ref, _ = model(x)
    asked, called = [], []

    def factory(layer_idx):
        asked.append(layer_idx)

        def fn(q, k, v, mask):
            called.append(layer_idx)
            return scaled_dot_product_attention(q, k, v, mask)
        return fn

    model.set_attention_fn(factory=factory)
    torch.testing.assert_close(model(x)[0], ref, atol=1e-5, rtol=1e-5)
    assert asked == [0, 1, 2] and called == [0, 1, 2]
    model.set_attention_fn()  # no arguments: the built-in core everywhere
    assert all(b.attn.attn_fn is None for b in model.blocks)


class Temperature(nn.Module):
    """A per-layer learnable temperature on the scores: a parameterised attention core."""

    def __init__(self, value: float):
        super().__init__()
        self.log_t = nn.Parameter(torch.tensor(value).log())

    def forward(self, q, k, v, mask, bias=None):
        return scaled_dot_product_attention(q, k, v, mask, bias, scale=q.size(-1) ** -0.5 / self.log_t.exp())


def test_factory_modules_are_trained_and_saved_with_the_model():
    model, x = model_and_input(position="alibi")
    before = sum(p.numel() for p in model.parameters())
    model.set_attention_fn(factory=lambda i: Temperature(1.0 + i))
    assert sum(p.numel() for p in model.parameters()) == before + 2
    assert model.state_dict()["blocks.1.attn.attn_fn.log_t"].item() == pytest.approx(torch.tensor(2.0).log().item())
    _, loss = model(x, x)
    loss.backward()
    assert all(b.attn.attn_fn.log_t.grad is not None for b in model.blocks)
    # temperature 1 at layer 0 equals the built-in attention; a function can replace a module and vice versa
    model.set_attention_fn(factory=lambda i: Temperature(1.0))
    ref_model, _ = model_and_input(position="alibi")
    torch.testing.assert_close(model(x)[0], ref_model(x)[0], atol=1e-5, rtol=1e-5)
    model.set_attention_fn(sdpa_fn)
    assert sum(p.numel() for p in model.parameters()) == before
    model.set_attention_fn(factory=lambda i: Temperature(1.0))


def test_set_attention_fn_errors_name_the_fix():
    model, _ = model_and_input()
    with pytest.raises(TypeError, match="not both"):
        model.set_attention_fn(sdpa_fn, factory=lambda i: sdpa_fn)
    with pytest.raises(TypeError, match=r"factory\(1\) returned None"):
        model.set_attention_fn(factory=lambda i: sdpa_fn if i == 0 else None)
    assert all(b.attn.attn_fn is None for b in model.blocks)  # nothing was half set
    with pytest.raises(TypeError, match="must be callable"):
        model.set_attention_fn(42)
    with pytest.raises(TypeError, match="factory must be callable"):
        model.set_attention_fn(factory=3)


def test_custom_fn_keywords_reads_signatures():
    assert custom_fn_keywords(sdpa_fn) == {"bias", "dropout_p"}
    assert custom_fn_keywords(lambda q, k, v, mask: q) == set()
    assert custom_fn_keywords(lambda q, k, v, mask, **kw: q) == {"bias", "dropout_p"}
    assert custom_fn_keywords(Temperature(1.0)) == {"bias"}  # a module is read through forward
    assert custom_fn_keywords(F.scaled_dot_product_attention) == set()  # a builtin without a readable signature


def test_attention_layer_set_attn_fn_passes_the_bias():
    cfg = tiny(position="alibi")
    attn = Attention(cfg).eval()
    x = torch.randn(2, 5, 16)
    ref = attn(x)
    seen = {}

    def fn(q, k, v, mask, bias=None):
        seen["bias"] = bias
        return scaled_dot_product_attention(q, k, v, mask, bias)

    attn.set_attn_fn(fn)
    torch.testing.assert_close(attn(x), ref, atol=1e-6, rtol=1e-5)
    # ALiBi (Press et al.): head h's penalty is slope_h * |i - j|; n_head=2 gives slopes 2^-4, 2^-8
    assert seen["bias"].shape == (2, 5, 5)
    torch.testing.assert_close(seen["bias"][0, 4, 1], torch.tensor(-3 * 2.0 ** -4))
    torch.testing.assert_close(seen["bias"][1, 2, 0], torch.tensor(-2 * 2.0 ** -8))
