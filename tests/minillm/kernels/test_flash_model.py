"""ModelConfig(attn_impl="flash") routes a GPT's attention through minillm's FlashAttention-2 kernel: the same loss,
gradients and cached generation as attn_impl="sdpa", and clear errors for what the kernel does not compute."""
from __future__ import annotations

import pytest
import torch

from minillm import GPT, ModelConfig, generate

CFG = dict(vocab_size=53, block_size=24, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, norm="rmsnorm",
           activation="swiglu", position="rope", bias=False)


def _pair(device, **overrides):
    torch.manual_seed(0)
    ref = GPT(ModelConfig(**{**CFG, **overrides}, attn_impl="sdpa")).to(device)
    flash = GPT(ModelConfig(**{**CFG, **overrides}, attn_impl="flash")).to(device)
    flash.load_state_dict(ref.state_dict())
    return ref, flash


@pytest.mark.parametrize("overrides", [{}, {"n_kv_head": 1, "position": "learned"}], ids=["gqa-rope", "mqa-learned"])
def test_same_loss_and_gradients_as_sdpa(device, overrides):
    ref, flash = _pair(device, **overrides)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 53, (2, 21), generator=g).to(device)  # T = 21: not a multiple of any tile
    y = torch.randint(0, 53, (2, 21), generator=g).to(device)
    _, loss_ref = ref(x, y)
    _, loss = flash(x, y)
    torch.testing.assert_close(loss, loss_ref, atol=1e-5, rtol=1e-5)
    loss_ref.backward()
    loss.backward()
    ref_grads = dict(ref.named_parameters())
    for name, p in flash.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name].grad, atol=2e-5, rtol=1e-4, msg=name)


def test_cached_generation_matches_sdpa(device):
    ref, flash = _pair(device)
    prompt = torch.tensor([[3, 14, 15, 9, 2, 6]], device=device)
    # with the cache each new query sits at the end of the keys: the kernel's causal alignment
    out_ref = generate(ref.eval(), prompt, 8, temperature=0)
    out = generate(flash.eval(), prompt, 8, temperature=0)
    assert out.tolist() == out_ref.tolist()
    no_cache = generate(flash, prompt, 8, temperature=0, use_cache=False)
    assert no_cache.tolist() == out_ref.tolist()


@pytest.mark.parametrize("bad", [dict(position="alibi"), dict(sliding_window=8), dict(sparse_attention="strided"),
                                 dict(attention_mask="prefix"), dict(n_head=1, n_kv_head=1, n_embd=256)],
                         ids=["alibi", "window", "sparse", "prefix", "head-dim-256"])
def test_config_refuses_what_the_kernel_does_not_compute(bad):
    with pytest.raises(ValueError, match="attn_impl='flash'"):
        ModelConfig(**{**CFG, **bad}, attn_impl="flash")


def test_dropout_and_padding_are_refused(device):
    _, flash = _pair(device, dropout=0.1)
    x = torch.randint(0, 53, (1, 8), device=device)
    with pytest.raises(ValueError, match="no attention dropout"):
        flash.train()(x)
    _, flash = _pair(device)
    from minillm.generate import generate_batch
    with pytest.raises(ValueError, match="no padding mask"):
        generate_batch(flash.eval(), [[1, 2, 3], [4, 5]], 2, pad_id=0, temperature=0)


def test_cpu_without_the_interpreter_is_a_clear_error(monkeypatch):
    pytest.importorskip("triton")
    from minillm.kernels import KernelUnavailableError, flash_attention, runtime
    monkeypatch.setattr(flash_attention, "JIT_MODE", "compiled")  # as if imported without TRITON_INTERPRET
    model = GPT(ModelConfig(**CFG, attn_impl="flash"))
    with pytest.raises(KernelUnavailableError):
        model(torch.randint(0, 53, (1, 8)))
    monkeypatch.setattr(runtime, "triton_installed", lambda: False)
    with pytest.raises(KernelUnavailableError, match="not installed"):  # at construction, not the first forward
        GPT(ModelConfig(**CFG, attn_impl="flash"))
