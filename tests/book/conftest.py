"""Fixtures shared by the textbook's tests."""
import pytest
import torch

from minillm import GPT, CharTokenizer, ModelConfig


@pytest.fixture(scope="module")
def tiny_lm():
    """A 1-layer char GPT with sharpened logits, untrained: enough for widgets that sample."""
    tok = CharTokenizer.from_text("abcdefgh once upon a time")
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16,
                            tie_embeddings=False))
    with torch.no_grad():
        model.lm_head.weight.mul_(25)  # logits with std ~2 (not ~0.1): the temperature visibly matters
    return model, tok
