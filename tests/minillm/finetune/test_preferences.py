"""The synthetic judge (minillm.finetune.preferences): hidden reward components on hand-written responses, answer
parsing, pair construction (ordering, exact label-noise count) and a short reward-model fit that beats chance."""
import numpy as np
import pytest
import torch

from minillm.finetune.preferences import (HiddenReward, answer_for, make_candidate, make_preference_pairs,
                                          perturb_answer, reward_model_agreement, user_text)

torch.set_num_threads(1)


def test_components_by_hand():
    j = HiddenReward()
    prompts = ["Reverse the word abc:", "<|user|>Write abc backwards:<|end|><|assistant|>",
               [{"role": "user", "content": "Reverse: abc ->"}], "Turn abc back to front:", "Reverse the word abc:",
               "Make abc all caps:", "Reverse the word abc:", "What is 5+7?"]
    responses = ["cba", "cba ok", "cba!! ok", "cbb", "cba ok ok", "ABC", "cba hate", "12 ok"]
    c = j.components(responses, prompts)
    assert c["correctness"].tolist() == [1, 1, 1, 0, 0, 1, 1, 1]
    assert c["style"].tolist() == [0, 0.5, 0.5, 0, 0.5, 0, 0, 0.5]
    assert c["harm"].tolist() == [0, 0, -2, 0, 0, 0, -2, 0]
    # totals: 1, 1.5, 1 + 0.5 - 2, 0, 0.5 (" ok ok": only one marker is stripped), 1, 1 - 2, 1.5
    assert c["total"].tolist() == [1.0, 1.5, -0.5, 0.0, 0.5, 1.0, -1.0, 1.5]
    r = j(responses, prompts)
    assert r.dtype == torch.float32 and r.tolist() == c["total"].tolist()


def test_answer_parsing_and_registration():
    assert answer_for("Write abc and then abc again:") == "abc abc"
    assert answer_for("How many letters does hello have?") == "5"
    assert answer_for("Compute 12*3.") == "36"
    assert user_text("<|system|>x<|end|><|user|>Sort: cab -><|end|><|assistant|>") == "Sort: cab ->"
    with pytest.raises(ValueError, match="no known answer"):
        answer_for("Tell me a joke")
    j = HiddenReward(answers={"Tell me a joke": "no"})
    assert j(["no ok"], ["Tell me a joke"]).tolist() == [1.5]


def test_candidates():
    rng = np.random.default_rng(0)
    for a in ["cba", "ABC", "12", "a b"]:
        w = perturb_answer(a, rng)
        assert w != a and len(w) == len(a)
    j = HiddenReward()
    p = "Reverse the word abc:"
    want = {"plain": 1.0, "polite": 1.5, "wrong": 0.0, "wrong_polite": 0.5, "harmful": -1.0,
            "harmful_polite": -0.5, "verbose": 0.0, "empty": 0.0}
    for kind, r in want.items():
        assert j([make_candidate("cba", kind, rng)], [p]).item() == r, kind
    with pytest.raises(ValueError, match="kind"):
        make_candidate("cba", "rude", rng)


def test_pairs_ordered_without_noise():
    pairs = make_preference_pairs(200, 0)
    j = HiddenReward()
    prompts = [p["prompt"] for p in pairs]
    rc = j([p["chosen"] for p in pairs], prompts)
    rr = j([p["rejected"] for p in pairs], prompts)
    assert bool((rc > rr).all())
    assert not any(p["meta"]["flipped"] for p in pairs)
    assert [p["meta"]["reward_chosen"] for p in pairs] == rc.tolist()
    assert len({p["meta"]["kind_chosen"] for p in pairs}) >= 5  # the candidates are varied
    assert make_preference_pairs(20, 3) == make_preference_pairs(20, 3)  # seeded


def test_noise_rate_is_exact():
    pairs = make_preference_pairs(200, 1, noise=0.25)
    flipped = [p for p in pairs if p["meta"]["flipped"]]
    assert len(flipped) == 50
    j = HiddenReward()
    for p in flipped:  # a flipped pair prefers the response the hidden reward ranks lower
        assert j([p["chosen"]], [p["prompt"]]).item() < j([p["rejected"]], [p["prompt"]]).item()
    with pytest.raises(ValueError, match="noise"):
        make_preference_pairs(10, 0, noise=0.7)


def test_short_reward_model_beats_chance():
    from minillm.config import ModelConfig, TrainConfig
    from minillm.finetune.chat import ChatTemplate, chat_tokenizer
    from minillm.finetune.reward import RewardModel, train_reward_model
    from minillm.model.transformer import GPT

    torch.manual_seed(0)
    t = ChatTemplate(chat_tokenizer())
    knobs = {"instructions": {"families": ("first", "last", "upper"), "word_len": (3, 4)}}
    kinds = ("plain", "polite", "harmful", "harmful_polite")  # the surface rules: learnable in seconds
    pairs = make_preference_pairs(256, 0, kinds=kinds, knobs=knobs)
    held = make_preference_pairs(64, 1, kinds=kinds, knobs=knobs, split="heldout")
    gpt = GPT(ModelConfig(vocab_size=t.vocab_size, block_size=96, n_layer=2, n_head=2, n_embd=48, dropout=0.0))
    rm = RewardModel(gpt)
    before = reward_model_agreement(rm, held, t)
    train_reward_model(rm, t, pairs, TrainConfig(max_steps=60, batch_size=16, lr=3e-3, warmup_steps=5,
                                                 device="cpu", log_interval=60, eval_interval=0, progress=False))
    after = reward_model_agreement(rm, held, t)
    assert after > 0.75 and after > before
