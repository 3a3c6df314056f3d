"""A whole model with kernels='triton' trains like kernels='torch': same loss and gradients, and clear errors."""
from __future__ import annotations

import pytest
import torch

from minillm import GPT, ModelConfig
from minillm.kernels import KernelUnavailableError

LLAMA = dict(vocab_size=97, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, norm="rmsnorm",
             activation="swiglu", position="rope", bias=False, tie_embeddings=False, qk_norm=True)


def _pair(device, **overrides):
    torch.manual_seed(0)
    ref = GPT(ModelConfig(**{**LLAMA, **overrides}, kernels="torch")).to(device)
    fused = GPT(ModelConfig(**{**LLAMA, **overrides}, kernels="triton")).to(device)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


def _batch(device, B=2, T=16, V=97):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, V, (B, T), generator=g)
    y = torch.randint(0, V, (B, T), generator=g)
    y[0, :5] = -100  # prompt positions without loss, as in SFT
    return x.to(device), y.to(device)


@pytest.mark.parametrize("overrides", [{}, {"tie_embeddings": True, "n_kv_head": 1}, {"z_loss": 1e-3}],
                         ids=["llama", "tied-mqa", "z-loss"])
def test_same_loss_and_gradients_as_torch(device, overrides):
    ref, fused = _pair(device, **overrides)
    x, y = _batch(device)
    _, loss_ref = ref(x, y)
    logits, loss = fused(x, y)
    if overrides.get("z_loss"):
        assert logits is not None  # the z-loss needs log Z of every row: plain CE kernel on real logits
    else:
        assert logits is None  # fused lm_head + cross-entropy: the (B, T, V) logits never existed
    torch.testing.assert_close(loss, loss_ref, atol=1e-5, rtol=1e-5)
    loss_ref.backward()
    loss.backward()
    ref_grads = dict(ref.named_parameters())
    for name, p in fused.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name].grad, atol=2e-5, rtol=1e-4, msg=name)


def test_logits_without_targets_and_with_fuse_loss_off(device):
    ref, fused = _pair(device)
    x, y = _batch(device)
    torch.testing.assert_close(fused(x)[0], ref(x)[0], atol=1e-5, rtol=1e-5)
    fused.fuse_loss = False
    logits, loss = fused(x, y)
    torch.testing.assert_close(logits, ref(x)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, ref(x, y)[1], atol=1e-5, rtol=1e-5)


def test_a_few_training_steps_follow_the_torch_model(device):
    ref, fused = _pair(device)
    x, y = _batch(device)
    losses = {}
    for name, model in (("torch", ref), ("triton", fused)):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        losses[name] = []
        for _ in range(3):
            _, loss = model(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[name].append(loss.item())
    assert losses["triton"][-1] < losses["triton"][0]  # it learns
    assert losses["triton"] == pytest.approx(losses["torch"], rel=1e-4)


def test_summary_names_the_fused_ops():
    model = GPT(ModelConfig(**LLAMA, kernels="triton"))
    text = model.kernel_summary()
    for op in ("RMSNorm", "SwiGLU", "RoPE", "linear + cross-entropy"):
        assert op in text
    gpt2 = GPT(ModelConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=16, kernels="triton"))
    assert "PyTorch: attention" in gpt2.kernel_summary() and "layernorm" in gpt2.kernel_summary()


def test_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    from minillm.kernels import rmsnorm
    monkeypatch.setattr(rmsnorm, "JIT_MODE", "compiled")  # as if imported without TRITON_INTERPRET
    model = GPT(ModelConfig(**LLAMA, kernels="triton"))
    with pytest.raises(KernelUnavailableError, match="kernels='torch'"):
        model(*_batch("cpu"))


def test_missing_triton_is_a_clear_error_at_construction(monkeypatch):
    from minillm.kernels import runtime
    monkeypatch.setattr(runtime, "triton_installed", lambda: False)
    with pytest.raises(KernelUnavailableError, match="not installed"):
        GPT(ModelConfig(**LLAMA, kernels="triton"))


def test_encoder_decoder_refuses_triton():
    from minillm.model.encdec import EncoderDecoder
    with pytest.raises(ValueError, match="decoder-only"):
        EncoderDecoder(ModelConfig(**LLAMA, kernels="triton"))
