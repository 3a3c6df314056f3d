"""ModelConfig.pad_vocab_multiple: the padded model computes exactly what the unpadded one does over the real
vocabulary (logits, loss, gradients), never returns or samples a padding id, and is off by default."""
from __future__ import annotations

import pytest
import torch

from minillm.config import ModelConfig
from minillm.generate import generate
from minillm.model.transformer import GPT

V = 37  # odd, as a BPE vocabulary plus special tokens usually is
BASE = dict(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=32)


def twins(seed: int = 0, **overrides) -> tuple[GPT, GPT]:
    """An unpadded model and a padded (to 64) copy with the same real weights; the padding rows are made large,
    so a padding id that leaked into the softmax or the sampler would dominate it."""
    torch.manual_seed(seed)
    plain = GPT(ModelConfig(**{**BASE, **overrides}))
    padded = GPT(ModelConfig(**{**BASE, **overrides}, pad_vocab_multiple=64))
    state = plain.state_dict()
    with torch.no_grad():
        for name, p in padded.state_dict().items():
            src = state[name]
            if p.shape == src.shape:
                p.copy_(src)
            else:  # tok_emb / lm_head: (64, C) vs (37, C)
                p[:V].copy_(src)
                p[V:].fill_(5.0)
    return plain, padded


def batch(seed: int = 1, B: int = 3, T: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (B, T), generator=g)
    y = torch.randint(0, V, (B, T), generator=g)
    y[0, :4] = -100
    return x, y


def test_padding_is_off_by_default_and_rounds_up():
    assert ModelConfig().pad_vocab_multiple is None
    assert ModelConfig(vocab_size=V).padded_vocab_size == V
    assert ModelConfig(vocab_size=V, pad_vocab_multiple=64).padded_vocab_size == 64
    assert ModelConfig(vocab_size=128, pad_vocab_multiple=64).padded_vocab_size == 128
    assert ModelConfig(vocab_size=50257, pad_vocab_multiple=64).padded_vocab_size == 50304  # GPT-2, as nanoGPT
    assert GPT(ModelConfig(**BASE)).tok_emb.weight.shape == (V, 32)  # unpadded: today's shapes


@pytest.mark.parametrize("bad", [0, -64, 64.0, True, "64"])
def test_bad_pad_vocab_multiple_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"ModelConfig.pad_vocab_multiple=.* must be None .* or a positive integer"):
        ModelConfig(**BASE, pad_vocab_multiple=bad)


@pytest.mark.parametrize("overrides", [{}, dict(tie_embeddings=False), dict(z_loss=1e-3)])
def test_padded_model_matches_the_unpadded_one_over_the_real_vocabulary(overrides):
    plain, padded = twins(**overrides)
    assert padded.tok_emb.weight.shape == (64, 32) and padded.lm_head.weight.shape == (64, 32)
    x, y = batch()
    (lp, loss_p), (lq, loss_q) = plain(x, y), padded(x, y)
    assert lq.shape == (3, 16, V)  # callers see the real vocabulary only
    torch.testing.assert_close(lq, lp, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(loss_q, loss_p, atol=1e-6, rtol=1e-6)
    loss_p.backward()
    loss_q.backward()
    grads = dict(padded.named_parameters())
    for name, p in plain.named_parameters():
        g = grads[name].grad
        if g.shape != p.grad.shape:  # the tables: real rows equal, padding rows get no gradient at all
            torch.testing.assert_close(g[:V], p.grad, atol=1e-6, rtol=1e-5, msg=name)
            assert not g[V:].any(), name
        else:
            torch.testing.assert_close(g, p.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_padding_rows_of_a_fresh_model_are_zero():
    torch.manual_seed(0)
    m = GPT(ModelConfig(**BASE, pad_vocab_multiple=64, tie_embeddings=False))
    assert not m.tok_emb.weight[V:].any() and not m.lm_head.weight[V:].any()
    assert m.tok_emb.weight[:V].std() > 0.01


def test_a_custom_loss_sees_the_real_vocabulary():
    plain, padded = twins()
    seen = []
    padded.set_loss_fn(lambda logits, targets: seen.append(logits.shape) or logits.float().logsumexp(-1).mean())
    plain.set_loss_fn(lambda logits, targets: logits.float().logsumexp(-1).mean())
    x, y = batch()
    torch.testing.assert_close(padded(x, y)[1], plain(x, y)[1], atol=1e-6, rtol=1e-6)
    assert seen == [(3, 16, V)]


def test_a_padded_model_never_samples_a_padding_id():
    _, padded = twins()  # padding rows of lm_head at 5.0: unmasked, their logits would win nearly every draw
    prompt = torch.randint(0, V, (8, 4), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    for use_cache in (True, False):
        out = generate(padded.eval(), prompt, max_new_tokens=12, temperature=2.0, use_cache=use_cache, generator=g)
        assert int(out.max()) < V


def test_an_id_in_the_padding_is_out_of_range():
    _, padded = twins()
    with pytest.raises(ValueError, match=f"token id {V} is out of range for vocab_size={V}"):
        padded(torch.tensor([[1, V]]))


def test_a_replaced_lm_head_passes_through_untouched():
    # PPO's critic swaps lm_head for nn.Identity to read the hidden states (N, T, C) through forward
    torch.manual_seed(0)
    m = GPT(ModelConfig(**{**BASE, "n_embd": 64}, pad_vocab_multiple=64))  # C == padded V: must still pass through
    m.lm_head = torch.nn.Identity()
    x, _ = batch()
    torch.testing.assert_close(m(x)[0], m.hidden_states(x))


@pytest.mark.parametrize("fuse_loss", [True, False])
def test_padded_triton_loss_matches_the_unpadded_one(fuse_loss, device):
    # kernels='triton': the fused linear+CE kernel scores the first V rows; the CE kernel the masked padded rows
    plain, padded = twins(kernels="triton", norm="rmsnorm", activation="swiglu", position="rope")
    plain, padded = plain.to(device), padded.to(device)
    plain.fuse_loss = padded.fuse_loss = fuse_loss
    x, y = (t.to(device) for t in batch())
    loss_p, loss_q = plain(x, y)[1], padded(x, y)[1]
    torch.testing.assert_close(loss_q, loss_p, atol=1e-5, rtol=1e-5)
    loss_p.backward()
    loss_q.backward()
    torch.testing.assert_close(padded.lm_head.weight.grad[:V], plain.lm_head.weight.grad, atol=1e-5, rtol=1e-4)
    assert not padded.lm_head.weight.grad[V:].any()


@pytest.mark.gpu
def test_padded_model_under_bf16_autocast_matches_on_cuda():
    plain, padded = (m.cuda() for m in twins())
    x, y = (t.cuda() for t in batch())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        (lp, loss_p), (lq, loss_q) = plain(x, y), padded(x, y)
    torch.testing.assert_close(lq, lp)
    torch.testing.assert_close(loss_q, loss_p)
