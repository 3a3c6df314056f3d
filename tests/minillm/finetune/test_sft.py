"""minillm.finetune.sft: the response-only loss mask, packing boundaries, synthetic instruction data, JSONL loaders
and a short SFT run."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minillm import GPT, ModelConfig, TrainConfig
from minillm.finetune.chat import END, ChatTemplate, chat_tokenizer
from minillm.finetune.sft import (IGNORE, Conversation, instruction_data, load_jsonl, pack, response_accuracy,
                                  sft_batches, sft_loss, task_templates, train_sft)

TEMPLATE = ChatTemplate(chat_tokenizer())


# ---- the mask -------------------------------------------------------------------------------------------------

def test_loss_only_on_response_tokens_hand_value_and_huge_prompt_logits():
    torch.manual_seed(0)
    V = 5
    logits = torch.randn(1, 4, V)
    targets = torch.tensor([[IGNORE, 2, IGNORE, 4]])
    want = -(F.log_softmax(logits[0, 1], -1)[2] + F.log_softmax(logits[0, 3], -1)[4]) / 2
    assert sft_loss(logits, targets).item() == pytest.approx(want.item(), rel=1e-6)
    spiked = logits.clone()
    spiked[0, 0] = torch.tensor([1e4, -1e4, -1e4, -1e4, -1e4])  # a prompt position: any target there would cost ~2e4
    spiked[0, 2] = -1e4
    assert sft_loss(spiked, targets).item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(ValueError, match="no response token"):
        sft_loss(logits, torch.full((1, 4), IGNORE))


def test_gpt_loss_on_packed_rows_ignores_prompt_positions():
    torch.manual_seed(0)
    convs = instruction_data(6, seed=0)
    x, y = pack(convs, 64, TEMPLATE)
    model = GPT(ModelConfig(vocab_size=TEMPLATE.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16))
    logits, loss = model(x, y)
    assert loss.item() == pytest.approx(sft_loss(logits, y).item(), rel=1e-5)
    # every kept target is a response token: decoding them gives exactly the answers and their END tags
    kept = TEMPLATE.tokenizer.decode(y[y != IGNORE].tolist())
    assert kept == "".join(c.answer + END for c in convs)


# ---- packing --------------------------------------------------------------------------------------------------

def test_pack_boundaries_by_hand():
    a = ([1, 2, 3, 4], [0, 0, 1, 1])   # 4 tokens, response = 3, 4
    b = ([5, 6, 7], [0, 1, 1])         # 3 tokens, response = 6, 7
    c = ([8, 9], [1, 1])               # a plain-LM-like document: its first token must still not be a target
    x, y = pack([a, b, c], block_size=6, pad_id=0)  # rows of 7 tokens: [a b] and [c + padding]
    assert x.tolist() == [[1, 2, 3, 4, 5, 6], [8, 9, 0, 0, 0, 0]]
    I = IGNORE
    assert y.tolist() == [[I, 3, 4, I, 6, 7], [9, I, I, I, I, I]]


def test_pack_document_start_is_never_a_target_and_overflow():
    x, y = pack([([1, 2], [1, 1]), ([3, 4], [1, 1])], block_size=3, pad_id=0)
    assert x.tolist() == [[1, 2, 3]] and y.tolist() == [[2, IGNORE, 4]]  # 2 -> 3 crosses a boundary
    long = ([1] * 10, [1] * 10)
    with pytest.raises(ValueError, match="more than block_size"):
        pack([long], block_size=4)
    x, _ = pack([long, ([1, 2], [0, 1])], block_size=4, overflow="drop")
    assert x.shape == (1, 4)
    with pytest.raises(ValueError, match="no response token"):
        pack([([1, 2, 3], [1, 0, 0])], block_size=4)
    with pytest.raises(ValueError, match="template"):
        pack([[{"role": "user", "content": "a"}]], block_size=4)


def test_pack_text_documents_train_on_every_token():
    x, y = pack(["abc"], block_size=4, template=TEMPLATE)
    tok = TEMPLATE.tokenizer
    assert tok.decode(y[0, :2].tolist()) == "bc" and (y[0, 2:] == IGNORE).all()


def test_sft_batches_cover_every_row_once_per_epoch():
    x = torch.arange(10).repeat_interleave(3).view(10, 3)
    it = sft_batches(x, x.clone(), 5, seed=1)
    seen = torch.cat([next(it)[0][:, 0] for _ in range(2)])
    assert sorted(seen.tolist()) == list(range(10))
    with pytest.raises(ValueError, match="batch_size"):
        next(sft_batches(x, x, 11))


# ---- synthetic instruction data -------------------------------------------------------------------------------

def test_instruction_data_mix_templates_heldout_and_exclude():
    convs = instruction_data(40, seed=3, mix={"instructions": 2, "addition": 1, "kv_map": 1})
    tasks = [c.meta["task"] for c in convs]
    assert (tasks.count("instructions"), tasks.count("addition"), tasks.count("kv_map")) == (20, 10, 10)
    assert instruction_data(40, seed=3, mix={"instructions": 2, "addition": 1, "kv_map": 1}) == convs
    held = instruction_data(30, seed=4, mix=["instructions", "addition"], split="heldout")
    for c in held:
        fam = c.meta.get("family")
        assert c.meta["template"] in task_templates(c.meta["task"], fam, "heldout")
        assert c.meta["template"] not in task_templates(c.meta["task"], fam, "train")
    few = instruction_data(50, seed=5, n_templates=1)
    assert all(c.meta["template"] == task_templates("instructions", c.meta["family"])[0] for c in few)
    evals = instruction_data(20, seed=6, mix="addition", knobs={"addition": {"digits": 1}})
    train = instruction_data(60, seed=7, mix="addition", knobs={"addition": {"digits": 1}}, exclude=evals)
    assert not {c.meta["key"] for c in evals} & {c.meta["key"] for c in train}
    cot = instruction_data(3, seed=0, mix="addition", knobs={"addition": {"cot": True}})
    assert all(c.answer.startswith("[") and c.answer.endswith("]" + c.meta["answer"]) for c in cot)
    with pytest.raises(ValueError, match="unknown task"):
        instruction_data(5, seed=0, mix={"poetry": 1})
    with pytest.raises(ValueError, match="non-negative"):
        instruction_data(5, seed=0, mix={"addition": -1})


# ---- JSONL loaders --------------------------------------------------------------------------------------------

def test_load_jsonl_both_shapes_and_errors(tmp_path):
    p = tmp_path / "d.jsonl"
    rows = [{"instruction": "Sum", "input": "1+2", "output": "3"}, {"instruction": "Hi", "output": "Hello"},
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]
    p.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n", encoding="utf-8")
    convs = load_jsonl(p)
    assert [c.messages for c in convs] == [
        [{"role": "user", "content": "Sum\n\n1+2"}, {"role": "assistant", "content": "3"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], rows[2]["messages"]]
    assert convs[2].meta["line"] == 4
    with pytest.raises(FileNotFoundError, match="no JSONL file"):
        load_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: invalid JSON"):
        load_jsonl(bad)
    bad.write_bytes(json.dumps(rows[0]).encode() + b"\n" + b'{"instruction": "caf\xe9", "output": "x"}\n')
    with pytest.raises(ValueError, match=r"(?i)bad.jsonl:2: not valid utf-8"):
        load_jsonl(bad)
    bad.write_text(json.dumps({"instruction": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing key\(s\) \['output'\]"):
        load_jsonl(bad)
    bad.write_text(json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: .*role 'robot'"):
        load_jsonl(bad)
    bad.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no conversations"):
        load_jsonl(bad)


# ---- a short run ----------------------------------------------------------------------------------------------

def test_short_sft_run_lowers_response_loss_and_scores():
    torch.manual_seed(0)
    convs = instruction_data(64, seed=0, mix="instructions", knobs={"instructions": {"families": ("first",)}})
    x, y = pack(convs, 48, TEMPLATE)
    model = GPT(ModelConfig(vocab_size=TEMPLATE.vocab_size, block_size=48, n_layer=1, n_head=2, n_embd=32))
    before = model(x, y)[1].item()
    hist = train_sft(model, x, y, TrainConfig(batch_size=4, max_steps=40, lr=3e-3, warmup_steps=4, device="cpu",
                                              log_interval=10, progress=False))
    after = model(x, y)[1].item()
    assert [h["step"] for h in hist] == [10, 20, 30, 40] and all(math.isfinite(h["loss"]) for h in hist)
    assert after < before - 1.0, (before, after)
    acc = response_accuracy(model, TEMPLATE, convs[:8])
    assert acc.shape == (8,) and set(np.unique(acc)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="block_size"):
        train_sft(model, torch.zeros(2, 64, dtype=torch.long), torch.zeros(2, 64, dtype=torch.long),
                  TrainConfig(max_steps=1, device="cpu"))
    assert isinstance(convs[0], Conversation) and convs[0].prompt == convs[0].messages[:-1]
