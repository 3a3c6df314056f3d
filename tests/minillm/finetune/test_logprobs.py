"""minillm.finetune.logprobs: per-token and per-sequence log-probabilities, checked on a model whose
next-token distribution is known by hand, and against a real GPT's cross-entropy."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm import GPT, ModelConfig
from minillm.finetune.logprobs import (align_mask, logprobs_from_logits, masked_sum, sequence_logprob,
                                       token_logprobs)


class TableLM(nn.Module):
    """Logits depend only on the current token: row `table[ids[t]]` (a bigram model we can compute by hand)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def forward(self, idx, targets=None):
        return self.table[idx], None  # (B, T, V)


def _bigram():
    # V = 3; from token 0 the next token is 1 with prob 1/2, 2 with 1/4, 0 with 1/4 (log-probs exact below)
    p = torch.tensor([[0.25, 0.5, 0.25], [0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    return TableLM(p.log())


def test_token_logprobs_hand_values():
    model = _bigram()
    ids = torch.tensor([[0, 1, 0, 2]])
    lp = token_logprobs(model, ids)
    assert lp.shape == (1, 3) and lp.dtype == torch.float32
    expected = [math.log(0.5), math.log(0.5), math.log(0.25)]  # p(1|0), p(0|1), p(2|0)
    assert lp[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_sequence_logprob_mask_alignment_both_shapes():
    model = _bigram()
    ids = torch.tensor([[0, 1, 0, 2], [2, 2, 1, 1]])
    # per-token mask over ids: the response is the last two tokens of each row
    per_token = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])
    per_target = per_token[:, 1:]  # the same flags aligned to targets ids[:, 1:]
    want = torch.tensor([math.log(0.5) + math.log(0.25), math.log(1 / 3) + math.log(0.25)])
    for mask in (per_token, per_target):
        assert torch.allclose(sequence_logprob(model, ids, mask), want, atol=1e-6)
    mean = sequence_logprob(model, ids, per_token, average=True)
    assert torch.allclose(mean, want / 2, atol=1e-6)
    with pytest.raises(ValueError, match="must be"):
        sequence_logprob(model, ids, per_token[:, :2])


def test_gradient_flows_and_only_through_masked_tokens():
    model = _bigram()
    ids = torch.tensor([[0, 1, 2]])
    sequence_logprob(model, ids, torch.tensor([[0, 0, 1]])).backward()  # scores only p(2 | 1)
    g = model.table.grad
    assert g[1].abs().sum() > 0 and g[0].abs().sum() == 0 and g[2].abs().sum() == 0


def test_matches_gpt_cross_entropy_and_right_padding_is_harmless():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 11, (2, 9))
    _, loss = model(ids[:, :-1], ids[:, 1:])
    lp = token_logprobs(model, ids)
    assert lp.mean().item() == pytest.approx(-loss.item(), rel=1e-5)
    # right padding after the response does not change the score (causal: earlier logits ignore later tokens)
    mask = torch.zeros(2, 9)
    mask[:, 4:7] = 1
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    pmask = torch.cat([mask, torch.zeros(2, 3)], dim=1)
    assert torch.allclose(sequence_logprob(model, ids, mask), sequence_logprob(model, padded, pmask), atol=1e-5)


def test_logprobs_from_logits_is_fp32_log_softmax():
    logits = torch.randn(2, 5, 7, dtype=torch.bfloat16)
    tgt = torch.randint(0, 7, (2, 5))
    want = F.log_softmax(logits.float(), -1).gather(-1, tgt[..., None])[..., 0]
    got = logprobs_from_logits(logits, tgt)
    assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="disagree"):
        logprobs_from_logits(logits, tgt[:, :3])


def test_errors_and_helpers():
    model = _bigram()
    with pytest.raises(ValueError, match="at least 2 tokens"):
        token_logprobs(model, torch.tensor([[1]]))
    with pytest.raises(ValueError, match="integer"):
        token_logprobs(model, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="all zeros"):
        masked_sum(torch.ones(2, 3), torch.tensor([[1.0, 0, 0], [0, 0, 0]]), average=True)
    assert masked_sum(torch.ones(2, 3), torch.tensor([[1.0, 0, 1], [0, 0, 0]])).tolist() == [2.0, 0.0]
    assert align_mask(torch.tensor([[1, 0, 1]]), torch.zeros(1, 3, dtype=torch.long)).tolist() == [[0.0, 1.0]]


def test_package_exports_every_public_name_of_its_modules():
    import importlib

    import minillm.finetune as ft

    modules = ("chat", "sft", "loop", "sft_loop", "logprobs", "dpo", "reward", "rollout", "policy_gradient", "ppo", "grpo",
               "verifiable", "peft", "quant", "preferences", "recipe")
    exported = set(ft.__all__)
    assert len(exported) == len(ft.__all__), "a name is exported twice"
    for module in modules:
        mod = importlib.import_module(f"minillm.finetune.{module}")
        assert set(mod.__all__) <= exported, (module, sorted(set(mod.__all__) - exported))
        for name in mod.__all__:
            assert getattr(ft, name) is getattr(mod, name), (module, name)
    assert exported == {n for m in modules for n in importlib.import_module(f"minillm.finetune.{m}").__all__}
