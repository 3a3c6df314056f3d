"""minillm.finetune.reward: Bradley-Terry loss and accuracy on hand values, the hidden states, padding, and
accuracy above chance after a short training on a toy preference (more 'a' characters is better)."""
import math

import pytest
import torch

from minillm import GPT, ModelConfig, TrainConfig
from minillm.finetune.chat import ChatTemplate, chat_tokenizer
from minillm.finetune.reward import (RewardModel, bradley_terry_loss, pair_rewards, reward_accuracy,
                                     train_reward_model)

TEMPLATE = ChatTemplate(chat_tokenizer())


def _gpt(**kw):
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=TEMPLATE.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32, **kw))


def test_bradley_terry_hand_values():
    assert bradley_terry_loss(torch.tensor([0.3]), torch.tensor([0.3])).item() == pytest.approx(math.log(2))
    loss = bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))
    assert loss.item() == pytest.approx((math.log1p(math.exp(-1)) + math.log1p(math.exp(2))) / 2, rel=1e-6)
    with_margin = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]), margin=1.0)
    assert with_margin.item() == pytest.approx(math.log(2))
    rc = torch.tensor([0.0], requires_grad=True)
    bradley_terry_loss(rc, torch.tensor([0.0])).backward()
    assert rc.grad.item() == pytest.approx(-0.5)  # descent raises the chosen reward
    with pytest.raises(ValueError, match="must match"):
        bradley_terry_loss(torch.zeros(2), torch.zeros(3))


def test_reward_accuracy_counts_ties_half():
    assert reward_accuracy(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])) == pytest.approx(0.5)
    assert reward_accuracy(torch.tensor([2.0]), torch.tensor([1.0])) == 1.0


def test_hidden_states_are_the_final_norm_output():
    gpt = _gpt(tie_embeddings=False)
    rm = RewardModel(gpt).eval()
    ids = torch.randint(0, TEMPLATE.vocab_size, (2, 7))
    h = rm.hidden_states(ids)
    assert h.shape == (2, 7, 32)
    assert torch.allclose(gpt.lm_head(h), gpt(ids)[0], atol=1e-5)  # lm_head(h) is exactly the model's logits
    r = rm(ids, torch.tensor([3, 7]))
    assert r.shape == (2,) and r.dtype == torch.float32
    assert r[0].item() == pytest.approx(rm.head(h[0, 2]).item(), abs=1e-6)


def test_right_padding_does_not_change_the_reward():
    rm = RewardModel(_gpt()).eval()
    ids = torch.randint(4, TEMPLATE.vocab_size, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    assert rm(padded, torch.tensor([6])).item() == pytest.approx(rm(ids).item(), abs=1e-5)
    with pytest.raises(ValueError, match="lengths"):
        rm(ids, torch.tensor([9]))
    with pytest.raises(ValueError, match="GPT backbone"):
        RewardModel(torch.nn.Linear(2, 2))


def _a_pairs(n, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < n:
        x, y = ("".join("ab"[i] for i in torch.randint(0, 2, (6,), generator=g).tolist()) for _ in range(2))
        if x.count("a") != y.count("a"):
            chosen, rejected = (x, y) if x.count("a") > y.count("a") else (y, x)
            out.append({"prompt": "Write:", "chosen": chosen, "rejected": rejected})
    return out


def test_short_training_ranks_toy_preference_above_chance():
    rm = RewardModel.from_lm(_gpt())
    train, test = _a_pairs(128, seed=1), _a_pairs(100, seed=2)
    before = reward_accuracy(*pair_rewards(rm, TEMPLATE, test))
    cfg = TrainConfig(batch_size=16, max_steps=60, lr=3e-3, warmup_steps=5, device="cpu", log_interval=20,
                      progress=False)
    hist = train_reward_model(rm, TEMPLATE, train, cfg)
    after = reward_accuracy(*pair_rewards(rm, TEMPLATE, test))
    assert after > 0.8 and after > before + 0.2, (before, after)
    assert hist[-1]["loss"] < math.log(2) and [h["step"] for h in hist] == [20, 40, 60]
