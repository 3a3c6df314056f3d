"""The shared optimizer step (minillm/train/step.py) and fine-tuning's driver around it (finetune.sft.optimize):
accumulation, the NaN guard, the two ways to feed optimize, errors, logged extras, and a custom loss_fn."""
from __future__ import annotations

import pytest
import torch

from minillm.config import ModelConfig, TrainConfig
from minillm.finetune.sft import optimize, sft_batches
from minillm.model.transformer import GPT
from minillm.train.optim import AdamW
from minillm.train.step import StepResult, lm_loss, train_step

V, T = 40, 12


def tiny_gpt(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(**{**dict(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=16), **overrides}))


def batch(seed: int, B: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, V, (B, T + 1), generator=g)
    return seq[:, :-1], seq[:, 1:]  # (B, T) each


class Recorder(torch.optim.Optimizer):
    """An optimizer that only records the gradients it is asked to step on (the weights never move)."""

    def __init__(self, params):
        super().__init__(params, {"lr": 0.0})
        self.seen: list[list[torch.Tensor]] = []

    def step(self, closure=None):
        self.seen.append([p.grad.clone() for g in self.param_groups for p in g["params"]])


def clone_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_step_accumulating_two_batches_equals_their_concatenation():
    b1, b2, b3 = batch(1), batch(2), batch(3)
    big = tuple(torch.cat([u, v]) for u, v in zip(b1, b2))  # (8, T): one batch of both
    results, grads = [], []
    for batches, accum in (([big], 1), (iter([b1, b2, b3]), 2)):
        model = tiny_gpt()
        opt = Recorder(model.parameters())
        results.append(train_step(model, opt, batches, accum_steps=accum, lr=0.5, grad_clip=None))
        assert [g["lr"] for g in opt.param_groups] == [0.5]  # lr= is set on every group before the step
        assert len(opt.seen) == 1 and all(p.grad is None for p in model.parameters())  # stepped once, zeroed
        grads.append(opt.seen[0])
    assert next(batches) is b3  # an iterator is advanced exactly accum_steps times
    for g_big, g_acc in zip(*grads):
        torch.testing.assert_close(g_acc, g_big, rtol=0, atol=1e-6)  # the mean loss's gradients, not the sum's
    one, two = results
    assert isinstance(two, StepResult) and one.ok and two.ok
    assert two.loss.item() == pytest.approx(one.loss.item(), abs=1e-6)
    assert two.grad_norm.item() == pytest.approx(one.grad_norm.item(), abs=1e-6)


@pytest.mark.parametrize("poison", ["loss", "gradient"])
def test_step_non_finite_drops_the_update(poison):
    model = tiny_gpt()
    opt = AdamW(model.parameters(), lr=1e-2)
    before = clone_weights(model)
    w = next(model.parameters())

    def bad_loss(m, b):
        loss = lm_loss(m, b)
        if poison == "loss":
            return loss * float("nan")
        return loss + 0 * torch.sqrt(w - w).sum()  # a finite loss whose gradient is NaN (0 * d sqrt(0))

    res = train_step(model, opt, [batch(0)], loss_fn=bad_loss, lr=1e-2)
    assert res.ok is False and not torch.isfinite(res.grad_norm)
    assert torch.isfinite(res.loss) == (poison == "gradient")
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # no weight moved
    assert all(p.grad is None for p in model.parameters())  # the bad gradients are gone
    assert not opt.state  # AdamW never stepped, so its moments hold no NaN either
    ok = train_step(model, opt, [batch(0)], lr=1e-2)  # the next good step trains normally
    assert ok.ok and not all(torch.equal(a, p) for a, p in zip(before, model.parameters()))


def with_extras(model, b):
    x, y = b
    return model(x, y)[1], {"targets": (y != -100).sum()}  # (loss, {name: scalar}) as DPO returns


@pytest.mark.parametrize("extras", [False, True])
def test_optimize_closure_equals_batches_form(extras):
    x = torch.randint(0, V, (24, T), generator=torch.Generator().manual_seed(0))
    y = torch.roll(x, -1, dims=1)
    y[:, : T // 2] = -100  # SFT-style: the first half carries no loss
    cfg = TrainConfig(max_steps=6, batch_size=4, grad_accum_steps=2, lr=1e-2, warmup_steps=2, log_interval=2,
                      device="cpu", progress=False)
    closure_model, batches_model = tiny_gpt(), tiny_gpt()
    stream = sft_batches(x, y, 4, seed=0)
    if extras:
        h_closure = optimize(closure_model, cfg, lambda: with_extras(closure_model, next(stream)))
        h_batches = optimize(batches_model, cfg, batches=sft_batches(x, y, 4, seed=0), loss_fn=with_extras)
        assert [r["targets"] for r in h_batches] == [4 * (T - T // 2)] * 3  # logged, as a float
    else:
        h_closure = optimize(closure_model, cfg, lambda: closure_model(*next(stream))[1])  # the labs' form
        h_batches = optimize(batches_model, cfg, batches=sft_batches(x, y, 4, seed=0))  # default lm_loss
    assert [r["step"] for r in h_closure] == [2, 4, 6]
    assert h_closure == h_batches
    assert all(torch.equal(a, b) for a, b in zip(closure_model.parameters(), batches_model.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(closure_model.parameters(), tiny_gpt().parameters()))
    with pytest.raises(ValueError, match="either batch_loss"):
        optimize(tiny_gpt(), cfg)
    with pytest.raises(ValueError, match="either batch_loss"):
        optimize(tiny_gpt(), cfg, lambda: None, batches=sft_batches(x, y, 4))


def test_step_errors_are_clear_and_leave_no_gradients():
    model = tiny_gpt()
    opt = AdamW(model.parameters(), lr=1e-2)
    before = clone_weights(model)
    with pytest.raises(ValueError, match=r"batches ran out after 1 of accum_steps=2"):
        train_step(model, opt, [batch(0)], accum_steps=2)
    assert all(p.grad is None for p in model.parameters())  # the half-accumulated gradients were dropped
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    cfg = TrainConfig(max_steps=3, batch_size=4, lr=1e-2, device="cpu", progress=False)
    with pytest.raises(ValueError, match="batches ran out after 0 of"):
        optimize(model, cfg, batches=[batch(0)])  # one stream across steps: a 1-item list lasts one step
    with pytest.raises(ValueError, match="accum_steps"):
        train_step(model, opt, [batch(0)], accum_steps=0)
    with pytest.raises(ValueError, match="0-d loss tensor"):
        train_step(model, opt, [batch(0)], loss_fn=lambda m, b: m(*b)[0].mean(-1))  # (B, T) not reduced


def test_step_extras_come_detached_from_the_last_micro_batch():
    model = tiny_gpt()
    micro = [(*batch(s), f"micro{s}") for s in (0, 1)]  # (x, y, tag)
    with torch.no_grad():
        want = [model(x, y)[1].item() for x, y, _ in micro]
    assert want[0] != want[1]

    def loss_with_extras(m, b):
        x, y, tag = b
        loss = m(x, y)[1]
        return loss, {"lm": loss * 1.0, "tag": tag}  # a tensor still in the graph, and a plain value

    res = train_step(model, Recorder(model.parameters()), micro, loss_fn=loss_with_extras, accum_steps=2)
    assert set(res.extras) == {"lm", "tag"} and res.extras["tag"] == "micro1"
    assert not res.extras["lm"].requires_grad and res.extras["lm"].grad_fn is None
    assert res.extras["lm"].item() == pytest.approx(want[1], abs=1e-6)
    assert res.loss.item() == pytest.approx(sum(want) / 2, abs=1e-6)  # the step's loss is the mean of both


def test_step_custom_loss_fn_trains_a_prefix_lm():
    P = 5  # the first P tokens are a bidirectional prefix; the loss is on the targets from P - 1 on
    model = tiny_gpt(attention_mask="prefix")
    x, y = batch(0)
    tgt = y.clone()
    tgt[:, : P - 1] = -100

    def prefix_loss(m, b):
        bx, bt = b
        return m(bx, bt, prefix_len=P)[1]

    with torch.no_grad():
        want = prefix_loss(model, (x, tgt)).item()
        causal = lm_loss(model, (x, tgt)).item()  # same targets, no prefix_len: the prefix mask is not applied
    assert want != pytest.approx(causal, abs=1e-6), "the prefix mask does not change this loss: test is moot"
    before = clone_weights(model)
    res = train_step(model, AdamW(model.parameters(), lr=1e-2), [(x, tgt)], loss_fn=prefix_loss, lr=1e-2)
    assert res.ok and res.loss.item() == pytest.approx(want, abs=1e-6)
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    with torch.no_grad():
        assert prefix_loss(model, (x, tgt)).item() < want  # one step on this batch lowers its loss
