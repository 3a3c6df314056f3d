"""Activation checkpointing (ModelConfig.activation_checkpointing) and the saved-activation measure."""
import pytest
import torch

from minillm import GPT, ModelConfig
from minillm.train.memory import checkpointing_tradeoff, saved_activation_bytes

CFG = ModelConfig(vocab_size=32, block_size=32, n_layer=4, n_head=2, n_embd=32)


def test_checkpointing_gives_the_same_loss_and_gradients():
    torch.manual_seed(0)
    plain = GPT(CFG)
    ckpt = GPT(CFG.replace(activation_checkpointing=True))
    ckpt.load_state_dict(plain.state_dict())
    seq = torch.randint(0, 32, (4, 33))
    losses = []
    for m in (plain, ckpt):
        _, loss = m(seq[:, :-1], seq[:, 1:])
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == losses[1]
    for (n, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=n)


def test_checkpointing_saves_less():
    rows = {r["activation_checkpointing"]: r for r in checkpointing_tradeoff(CFG, batch_size=4, repeats=1)}
    assert rows[True]["saved_bytes"] < rows[False]["saved_bytes"] / 2  # 4 layers: only block inputs are kept
    x = torch.randint(0, 32, (2, 32))
    small = saved_activation_bytes(GPT(CFG), x, x)
    big = saved_activation_bytes(GPT(CFG), torch.cat([x, x]), torch.cat([x, x]))
    assert 1.8 < big / small < 2.2  # activations grow with the batch


def _one_adamw_step(cfg: ModelConfig):
    """Model + AdamW after one step on CUDA (the activations are freed again by the time it returns)."""
    from minillm.train.optim import AdamW

    model = GPT(cfg).cuda()
    opt = AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, cfg.vocab_size, (2, cfg.block_size), device="cuda")
    model(x, x)[1].backward()
    opt.step()
    torch.cuda.synchronize()
    return model, opt


@pytest.mark.gpu
def test_model_state_bytes_match_cuda_allocations():
    # fp32 weights + fp32 grads + Adam's two fp32 moments = 16 bytes/param (precision.memory_estimate("fp32")),
    # checked against what CUDA actually allocates for them (activations freed before measuring).
    from minillm.train.precision import memory_estimate

    cfg = ModelConfig(vocab_size=256, block_size=64, n_layer=4, n_head=4, n_embd=256)
    # Warm up first: the first matmuls of a process allocate cuBLAS(Lt) workspaces through the caching allocator
    # (MiBs that stay allocated, so they would count as model state when this test runs first in its process).
    _one_adamw_step(cfg)  # returned model and optimizer dropped: their memory goes back to the cache
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    model, opt = _one_adamw_step(cfg)
    used = torch.cuda.memory_allocated() - base  # weights + grads + moments stay; activations were freed
    est = memory_estimate(model.num_params(non_embedding=False), "fp32")
    expected = est["weights"] + est["grads"] + est["optimizer"]
    assert abs(used - expected) / expected < 0.05, f"allocated {used:,} B vs accounted {expected:,} B"
