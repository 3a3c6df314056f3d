"""Decoding: cached == uncached, greedy, top-k/top-p filtering, stop tokens."""
import pytest
import torch

from minillm.config import ModelConfig
from minillm.generate import filter_logits, generate, sample_next
from minillm.model.transformer import GPT


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=32, position="rope"))


def test_cached_equals_uncached_even_past_block_size(model):
    prompt = torch.randint(0, 23, (3, 4), generator=torch.Generator().manual_seed(1))
    a = generate(model, prompt, 20, temperature=0.8, generator=torch.Generator().manual_seed(5))
    b = generate(model, prompt, 20, temperature=0.8, use_cache=False, generator=torch.Generator().manual_seed(5))
    assert a.shape == (3, 24)
    assert torch.equal(a, b)
    assert torch.equal(a[:, :4], prompt)


def test_greedy_is_argmax(model):
    prompt = torch.tensor([[1, 2, 3]])
    out = generate(model, prompt, 1, temperature=0)
    logits, _ = model(prompt)
    assert out[0, -1].item() == logits[0, -1].argmax().item()


def test_top_k_and_top_p_filter():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.81)).tolist() == [[False, False, False, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.1)).tolist() == [[False, True, True, True]]
    draws = torch.stack([sample_next(logits, 1.0, top_k=2, generator=torch.Generator().manual_seed(s)) for s in range(50)])
    assert set(draws.flatten().tolist()) == {0, 1}


def test_stop_tokens_end_generation(model):
    prompt = torch.tensor([[1, 2]])
    first = generate(model, prompt, 1, temperature=0)[0, -1].item()
    out = generate(model, prompt, 10, temperature=0, stop_tokens=[first])
    assert out.shape == (1, 3)


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="temperature"):
        generate(model, torch.tensor([[1]]), 2, temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        generate(model, torch.tensor([[1]]), 2, top_p=1.5)
    with pytest.raises(ValueError, match="empty"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 2)
