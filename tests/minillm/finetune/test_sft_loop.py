"""minillm.finetune.sft_loop: the SFT micro-step (hand values, a PyTorch reference, gradient accumulation), the packed
(prompt, response) dataset (exact windows, EOS, masks, seeded shuffles) and the Trainer-free loop."""

import pytest
import torch
import torch.nn.functional as F

from minillm import GPT, CharTokenizer, ModelConfig
from minillm.finetune.sft import IGNORE, pack, sft_batches
from minillm.finetune.sft_loop import PackedSFTDataset, sft_microbatch_step, train_sft_loop

EOS = "<|endoftext|>"
TOK = CharTokenizer.from_text("ab=+0123456789", special_tokens=(EOS,))  # EOS is id 0


def ids(s: str) -> list[int]:
    return TOK.encode(s)


# ---- the micro-step -------------------------------------------------------------------------------------------

def test_microstep_hand_value_and_gradient():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.5, -2.5]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    loss, meta = sft_microbatch_step(logp, mask, grad_accum_steps=2, normalize_constant=4.0)
    # rows: -(1+2)/4 = -0.75 and -(1.5+2.5)/4 = -1.0 -> mean -0.875 -> loss_unscaled 0.875, / 2 steps = 0.4375
    assert loss.item() == pytest.approx(0.4375)
    assert meta["loss_unscaled"].item() == pytest.approx(0.875)
    assert meta["n_response_tokens"].item() == 4
    assert meta["nll_per_token"].item() == pytest.approx((1 + 2 + 1.5 + 2.5) / 4)
    # d loss / d logp = -mask / (constant * B * grad_accum_steps) = -mask / 16, 0 off the response
    assert torch.equal(logp.grad, -mask.float() / 16)
    assert not loss.requires_grad
    # a prompt target the model finds impossible (log-prob -inf) changes nothing: it is never summed
    spiked = torch.tensor([[-1.0, -2.0, -float("inf")], [-float("inf"), -1.5, -2.5]], requires_grad=True)
    loss2, meta2 = sft_microbatch_step(spiked, mask.bool(), grad_accum_steps=2, normalize_constant=4.0)
    assert loss2.item() == loss.item() and meta2["nll_per_token"].item() == meta["nll_per_token"].item()
    assert torch.equal(spiked.grad, logp.grad)


def test_microstep_grad_matches_pytorch_cross_entropy_reference():
    torch.manual_seed(0)
    B, T, V, c, accum = 3, 5, 7, 3.0, 4
    logits = torch.randn(B, T, V, requires_grad=True)
    targets = torch.randint(0, V, (B, T))
    mask = torch.rand(B, T) < 0.6
    mask[0, 0] = True
    sft_microbatch_step(F.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0], mask, accum, c)
    ours = logits.grad.clone()
    logits.grad = None
    # the written-out formula through PyTorch's own summed cross-entropy (ignore_index drops the prompt targets)
    ref = F.cross_entropy(logits.reshape(-1, V), targets.masked_fill(~mask, IGNORE).reshape(-1), ignore_index=IGNORE,
                          reduction="sum") / c / B / accum
    ref.backward()
    torch.testing.assert_close(ours, logits.grad, rtol=1e-6, atol=1e-7)


def test_microstep_with_token_count_constant_is_the_mean_response_cross_entropy():
    torch.manual_seed(1)
    logits, targets = torch.randn(2, 4, 5, requires_grad=True), torch.randint(0, 5, (2, 4))
    mask = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    logp = F.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    loss, meta = sft_microbatch_step(logp, mask, 1, normalize_constant=5 / 2)  # 5 tokens over 2 rows
    want = F.cross_entropy(logits.reshape(-1, 5), targets.masked_fill(~mask, IGNORE).reshape(-1), ignore_index=IGNORE)
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    assert meta["nll_per_token"].item() == pytest.approx(want.item(), rel=1e-6)


def test_two_accumulated_micro_steps_equal_one_full_batch():
    torch.manual_seed(2)
    z = torch.randn(4, 6, 5)
    targets = torch.randint(0, 5, (4, 6))
    mask = torch.rand(4, 6) < 0.5
    mask[:, 0] = True

    def grad(chunks: int) -> torch.Tensor:
        leaf = z.clone().requires_grad_(True)
        for part in range(chunks):
            rows = slice(part * 4 // chunks, (part + 1) * 4 // chunks)
            logp = F.log_softmax(leaf[rows], -1).gather(-1, targets[rows, :, None])[..., 0]
            sft_microbatch_step(logp, mask[rows], grad_accum_steps=chunks, normalize_constant=2.0)
        return leaf.grad

    torch.testing.assert_close(grad(2), grad(1), rtol=1e-6, atol=1e-8)


def test_microstep_errors():
    logp = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="no response token"):
        sft_microbatch_step(logp, torch.zeros(2, 3), 1)
    with pytest.raises(ValueError, match="shape"):
        sft_microbatch_step(logp, torch.ones(2, 4), 1)
    with pytest.raises(ValueError, match="normalize_constant"):
        sft_microbatch_step(logp, torch.ones(2, 3), 1, normalize_constant=0.0)
    with pytest.raises(ValueError, match="grad_accum_steps"):
        sft_microbatch_step(logp, torch.ones(2, 3), 0)
    with pytest.raises(ValueError, match="float"):
        sft_microbatch_step(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), 1)


# ---- the packed dataset ---------------------------------------------------------------------------------------

def test_exact_windows_one_eos_per_document_and_masks():
    data = PackedSFTDataset([("ab", "1"), {"prompt": "a", "response": "22"}], TOK, block_size=3)
    E = 0
    a, b, one, two = ids("a")[0], ids("b")[0], ids("1")[0], ids("2")[0]
    assert data.tokens.tolist() == [a, b, one, E, a, two, two, E]  # one EOS after each document's response
    # windows of 4 tokens starting at 0 and 3 (neighbours share a token); the final EOS is left over
    assert len(data) == 2 and data.n_dropped_tokens == 1
    assert data[0]["input_ids"].tolist() == [a, b, one] and data[0]["labels"].tolist() == [b, one, E]
    assert data[1]["input_ids"].tolist() == [E, a, two] and data[1]["labels"].tolist() == [a, two, two]
    assert data[0]["loss_mask"].all() and data[1]["loss_mask"].all()  # every target by default

    resp = PackedSFTDataset([("ab", "1"), ("a", "22")], TOK, block_size=3, response_only=True)
    # targets b 1 E | a 2 2: only response tokens and the EOS closing a response count
    assert resp[0]["loss_mask"].tolist() == [False, True, True]
    assert resp[1]["loss_mask"].tolist() == [False, True, True]
    assert resp[0]["labels"].tolist() == data[0]["labels"].tolist()  # labels are the next token either way


def test_response_only_drops_windows_without_a_response_target():
    data = PackedSFTDataset([("aaaaa", "1")], TOK, block_size=3, response_only=True)
    # stream a a a a a 1 E (7 tokens) -> windows at 0 and 3; the first predicts only prompt tokens
    assert len(data) == 1 and data.n_dropped_windows == 1
    assert data[0]["labels"].tolist() == [ids("a")[0], ids("1")[0], 0]
    assert data[0]["loss_mask"].tolist() == [False, True, True]
    with pytest.raises(ValueError, match="no window holds a response token"):
        PackedSFTDataset([("aaaaaaa", "1")], TOK, block_size=3, response_only=True)  # the answer falls past the end


def test_dataset_errors():
    with pytest.raises(ValueError, match="empty"):
        PackedSFTDataset([], TOK, 4)
    with pytest.raises(ValueError, match="eos_id"):
        PackedSFTDataset([("a", "1")], CharTokenizer.from_text("a1"), 1)
    assert PackedSFTDataset([("a", "1")], CharTokenizer.from_text("a1"), 1, eos_id=0).tokens.tolist() == [1, 0, 0]
    with pytest.raises(ValueError, match=r"3 tokens.*needs block_size \+ 1 = 6"):
        PackedSFTDataset([("a", "1")], TOK, 5)
    with pytest.raises(ValueError, match="eos_id"):
        PackedSFTDataset([("a", "1")], TOK, 1, eos_id=TOK.vocab_size)
    with pytest.raises(TypeError, match="example 1"):
        PackedSFTDataset([("a", "1"), "a1"], TOK, 1)
    with pytest.raises(ValueError, match="lacks"):
        PackedSFTDataset([{"prompt": "a"}], TOK, 1)
    with pytest.raises(ValueError, match="block_size"):
        PackedSFTDataset([("a", "1")], TOK, 0)


def _many() -> PackedSFTDataset:
    return PackedSFTDataset([(f"{i}+{i}=", str(2 * i)) for i in range(8)], TOK, block_size=4)  # 51 tokens, 12 windows


def _epoch(data: PackedSFTDataset, B: int, **kw) -> list[list[list[int]]]:
    return [b["input_ids"].tolist() for b in data.batches(B, epochs=1, **kw)]


def test_batches_seeded_every_window_once_per_epoch_and_fresh_order():
    data = _many()
    assert len(data) == 12
    windows = sorted(data[i]["input_ids"].tolist() for i in range(len(data)))
    first = _epoch(data, 4, seed=7)
    assert len(first) == 3 and all(len(b) == 4 for b in first)
    assert sorted(r for b in first for r in b) == windows  # every window exactly once
    assert first == _epoch(data, 4, seed=7)  # a seed repeats
    assert first != _epoch(data, 4, seed=8)  # another seed shuffles differently
    two = [b["input_ids"].tolist() for b in data.batches(4, seed=7, epochs=2)]
    assert two[:3] == first and two[3:] != first  # a fresh permutation each epoch
    assert sorted(r for b in two[3:] for r in b) == windows
    batch = next(data.batches(4))
    assert set(batch) == {"input_ids", "labels", "loss_mask"} and batch["labels"].shape == (4, 4)
    assert torch.equal(batch["input_ids"][:, 1:], batch["labels"][:, :-1])


def test_batches_order_tail_and_errors():
    data = _many()
    ordered = _epoch(data, 5, shuffle=False, drop_last=False)
    assert [len(b) for b in ordered] == [5, 5, 2]
    assert [r for b in ordered for r in b] == [data[i]["input_ids"].tolist() for i in range(12)]
    assert [len(b) for b in _epoch(data, 5, shuffle=False)] == [5, 5]  # drop_last drops the 2-row tail
    endless = data.batches(5)
    assert len([next(endless) for _ in range(7)]) == 7
    with pytest.raises(ValueError, match="13 is more than the 12 windows"):
        next(data.batches(13))


# ---- the loop -------------------------------------------------------------------------------------------------

def _model(seed: int = 0, block_size: int = 8) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=TOK.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32))


def test_loss_falls_on_a_memorisable_dataset():
    data = PackedSFTDataset([("1+2=", "3"), ("2+2=", "4"), ("3+4=", "7")] * 8, TOK, block_size=8, response_only=True)
    model = _model()
    hist = train_sft_loop(model, data, torch.optim.AdamW(model.parameters(), lr=3e-3), steps=30, batch_size=4,
                          normalize_constant=2.0, log_every=5)
    assert [h["step"] for h in hist] == [5, 10, 15, 20, 25, 30]
    assert all(h["tokens"] > 0 for h in hist)
    assert hist[-1]["nll_per_token"] < 0.5 * hist[0]["nll_per_token"]
    assert not model.training


def test_accumulation_of_two_half_batches_equals_one_full_batch_update():
    data = _many()
    models = [_model(seed=3, block_size=4) for _ in range(2)]
    rows = [train_sft_loop(m, data, torch.optim.SGD(m.parameters(), lr=0.5), steps=1, batch_size=B,
                           grad_accum_steps=accum, normalize_constant=4.0, grad_clip=1.0)[0]
            for m, (B, accum) in zip(models, [(4, 1), (2, 2)])]
    assert rows[0]["loss"] == pytest.approx(rows[1]["loss"], rel=1e-6)
    assert rows[0]["tokens"] == rows[1]["tokens"] == 16
    before = _model(seed=3, block_size=4).state_dict()
    after = [m.state_dict() for m in models]
    assert any(not torch.equal(before[k], after[0][k]) for k in before)  # the step did move the weights
    for k in before:
        torch.testing.assert_close(after[0][k], after[1][k], rtol=0, atol=1e-6)


def test_loop_takes_sft_pack_batches_and_checks_its_inputs():
    docs = [(ids("1+2=3"), [0, 0, 0, 0, 1]), (ids("2+5=7"), [0, 0, 0, 0, 1])] * 4
    x, y = pack(docs, block_size=8)  # y = -100 off the answers
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    hist = train_sft_loop(model, sft_batches(x, y, 2), opt, steps=2, grad_accum_steps=2)
    assert len(x) == 8 and int((y != IGNORE).sum()) == 8  # one 5-token document per 9-token row, one answer each
    assert [h["tokens"] for h in hist] == [4, 4]  # 2 micro-batches of 2 rows a step
    with pytest.raises(ValueError, match="batch_size applies"):
        train_sft_loop(model, sft_batches(x, y, 2), opt, steps=1, batch_size=2)
    with pytest.raises(ValueError, match="ran out at step 2"):
        train_sft_loop(model, [(x, y)], opt, steps=2)
    with pytest.raises(ValueError, match="pass batch_size"):
        train_sft_loop(model, _many(), opt, steps=1)
    with pytest.raises(ValueError, match="block_size 4"):
        train_sft_loop(_model(block_size=4), sft_batches(x, y, 2), opt, steps=1)
