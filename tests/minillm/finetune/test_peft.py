"""PEFT (minillm.finetune.peft): LoRA exactness and merging, adapters, prefix and prompt tuning, accounting."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm.config import ModelConfig, TrainConfig
from minillm.data.loader import DataSplits
from minillm.finetune.peft import (Adapter, LoRAConfig, LoRALinear, PrefixAttention, PromptTuning, apply_adapters,
                                   apply_lora, apply_prefix_tuning, lora_state_dict, merge_lora, peft_report,
                                   trainable_parameters)
from minillm.finetune.quant import QuantLinear, quantize_model
from minillm.generate import generate
from minillm.model.transformer import GPT
from minillm.train.trainer import Trainer

V = 12  # vocabulary of the copy task: 0 unused, 1..10 symbols, 11 separator


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**{**dict(vocab_size=V, block_size=16, n_layer=2, n_head=2, n_embd=32), **kw}))


def ids(B=3, T=10, seed=0):
    return torch.randint(V, (B, T), generator=torch.Generator().manual_seed(seed))


def copy_batch(seed: int, B: int = 32, k: int = 5):
    """a1..ak SEP a1..ak; loss only on the copied half (where the task is)."""
    a = torch.randint(1, V - 1, (B, k), generator=torch.Generator().manual_seed(seed))
    seq = torch.cat([a, torch.full((B, 1), V - 1), a], 1)
    x, y = seq[:, :-1], seq[:, 1:].clone()
    y[:, :k] = -100
    return x, y


def randomize_lora(model, std=0.02):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, LoRALinear):
            with torch.no_grad():
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=g) * std)


# ----------------------------------------------------------------------------------------------- LoRA

def test_lora_linear_hand_case():
    base = nn.Linear(2, 2)
    with torch.no_grad():
        base.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        base.bias.copy_(torch.tensor([0.5, -0.5]))
    lora = LoRALinear(base, rank=1, alpha=2.0)  # scale = alpha / rank = 2
    with torch.no_grad():
        lora.lora_A.copy_(torch.tensor([[1.0, -1.0]]))
        lora.lora_B.copy_(torch.tensor([[0.5], [1.0]]))
    x = torch.tensor([[2.0, 1.0]])
    # base: [1*2+2*1+0.5, 3*2+4*1-0.5] = [4.5, 9.5]; A x = 1; B (A x) * 2 = [1, 2]
    torch.testing.assert_close(lora(x), torch.tensor([[5.5, 11.5]]))
    torch.testing.assert_close(lora.weight, torch.tensor([[2.0, 1.0], [5.0, 2.0]]))  # W + 2 B A
    lora.merge()
    torch.testing.assert_close(base.weight, torch.tensor([[2.0, 1.0], [5.0, 2.0]]))
    torch.testing.assert_close(lora(x), torch.tensor([[5.5, 11.5]]))
    with pytest.raises(RuntimeError, match="already merged"):
        lora.merge()  # merging twice is an error (it would add B A again)
    lora.unmerge()
    torch.testing.assert_close(base.weight, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    with pytest.raises(RuntimeError, match="not merged"):
        lora.unmerge()


def test_lora_starts_equal_to_base_and_merge_is_exact():
    model, x = tiny(), ids()
    base_logits = model(x)[0]
    report = apply_lora(model, LoRAConfig(rank=4, alpha=8))
    assert report.modules == ["blocks.0.attn.wq", "blocks.1.attn.wq", "blocks.0.attn.wv", "blocks.1.attn.wv"]
    assert torch.equal(model(x)[0], base_logits)  # B = 0 at init
    randomize_lora(model)
    unmerged = model(x)[0]
    assert (unmerged - base_logits).abs().max() > 1e-4  # the update is real
    w0 = {n: m.base.weight.clone() for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    for m in model.modules():
        if isinstance(m, LoRALinear):
            m.merge()
    torch.testing.assert_close(model(x)[0], unmerged, atol=1e-6, rtol=0)
    for n, m in model.named_modules():
        if isinstance(m, LoRALinear):
            m.unmerge()
            torch.testing.assert_close(m.base.weight, w0[n], atol=1e-6, rtol=0)
    torch.testing.assert_close(model(x)[0], unmerged, atol=1e-6, rtol=0)


def test_merge_lora_exports_plain_linears_and_state_dict_round_trip():
    model, x = tiny(), ids()
    apply_lora(model, LoRAConfig(rank=2, target_modules=("wq", "wv", "w1")))
    randomize_lora(model)
    want = model(x)[0]
    sd = lora_state_dict(model)
    assert len(sd) == 2 * 6 and all(k.endswith((".lora_A", ".lora_B")) for k in sd)
    fresh = tiny()
    apply_lora(fresh, LoRAConfig(rank=2, target_modules=("wq", "wv", "w1")))
    fresh.load_state_dict(sd, strict=False)
    torch.testing.assert_close(fresh(x)[0], want)
    names = merge_lora(model)
    assert len(names) == 6 and not any(isinstance(m, LoRALinear) for m in model.modules())
    assert type(model.blocks[0].attn.wq) is nn.Linear
    torch.testing.assert_close(model(x)[0], want, atol=1e-6, rtol=0)
    assert set(model.state_dict()) == set(tiny().state_dict())  # the base model's own layout: export-ready


def test_only_lora_parameters_train():
    model = tiny()
    apply_lora(model, LoRAConfig(rank=2))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {f"blocks.{i}.attn.{w}.lora_{ab}" for i in (0, 1) for w in ("wq", "wv") for ab in "AB"}
    x, y = copy_batch(0, B=4)
    model(x, y)[1].backward()
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)


def test_lora_counts_hand_computed():
    model = tiny()  # L=2 layers, C=32: wq and wv each (32, 32)
    report = apply_lora(model, LoRAConfig(rank=4))
    assert report.trainable == 2 * 2 * 4 * (32 + 32)  # layers * targets * r * (in + out)
    assert trainable_parameters(model) == (report.trainable, report.total)
    info = peft_report(model)
    assert info["trainable_bytes"] == 4 * report.trainable and info["optimizer_bytes"] == 8 * report.trainable
    assert info["full_ft_train_bytes"] == 16 * report.total  # fp32 weights + grads + 2 Adam moments
    assert info["train_bytes"] == 4 * report.total + 12 * report.trainable


@pytest.mark.parametrize("kw, msg", [
    (dict(rank=0), "rank"), (dict(rank=2.5), "rank"), (dict(rank=True), "rank"), (dict(alpha=0), "alpha"),
    (dict(dropout=1.0), "dropout"), (dict(dropout=-0.1), "dropout"), (dict(target_modules="wq"), "one string"),
    (dict(target_modules=()), "non-empty"), (dict(target_modules=("wq", "")), "non-empty")])
def test_lora_config_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        LoRAConfig(**kw)


def test_lora_target_errors():
    with pytest.raises(ValueError, match=r"'wz' matches no module.*lm_head, w1, w2, wk, wo, wq, wv"):
        apply_lora(tiny(), LoRAConfig(target_modules=("wq", "wz")))
    with pytest.raises(ValueError, match=r"'blocks.0.attn' \(type Attention\), not a Linear"):
        apply_lora(tiny(), LoRAConfig(target_modules=("attn",)))
    model = tiny()
    apply_lora(model, LoRAConfig(target_modules=("blocks.1.attn.wq",)))  # a full name picks one layer
    assert isinstance(model.blocks[1].attn.wq, LoRALinear) and type(model.blocks[0].attn.wq) is nn.Linear
    with pytest.raises(ValueError, match="already carries LoRA"):
        apply_lora(model, LoRAConfig(target_modules=("wq",)))


def test_lora_on_tied_head_merges_head_only():
    model, x = tiny(), ids()
    emb = model.tok_emb.weight.detach().clone()
    report = apply_lora(model, LoRAConfig(rank=2, target_modules=("lm_head",)))
    assert any("tied" in n for n in report.notes)
    randomize_lora(model)
    want = model(x)[0]
    merge_lora(model)
    assert torch.equal(model.tok_emb.weight, emb)  # the input embeddings did not move
    torch.testing.assert_close(model(x)[0], want, atol=1e-6, rtol=0)


def test_lora_dropout_only_in_training():
    model, x = tiny(), ids()
    apply_lora(model, LoRAConfig(rank=2, dropout=0.5))
    randomize_lora(model, std=0.5)
    model.eval()
    a = model(x)[0]
    model.train()
    assert not torch.allclose(model(x)[0], a)  # dropout on the LoRA branch
    model.eval()
    torch.testing.assert_close(model(x)[0], a)


def test_qlora_lora_over_a_quantized_base():
    model, x = tiny(), ids()
    quantize_model(model, bits=8)
    want = model(x)[0]
    apply_lora(model, LoRAConfig(rank=2))
    assert isinstance(model.blocks[0].attn.wq.base, QuantLinear)
    torch.testing.assert_close(model(x)[0], want)
    assert trainable_parameters(model)[0] == 2 * 2 * 2 * 64
    with pytest.raises(RuntimeError, match="quantized"):
        model.blocks[0].attn.wq.merge()


# ----------------------------------------------------------------------------------------------- adapters

def test_adapters_start_as_identity_and_only_they_train():
    model, x = tiny(), ids()
    want = model(x)[0]
    report = apply_adapters(model, bottleneck=4)
    assert len(report.modules) == 4 and report.trainable == 4 * (32 * 4 + 4 + 4 * 32 + 32)
    assert torch.equal(model(x)[0], want)
    assert all(("adapter_" in n) == p.requires_grad for n, p in model.named_parameters())
    xs, ys = copy_batch(0, B=4)
    model(xs, ys)[1].backward()
    assert all(p.grad is None for n, p in model.named_parameters() if "adapter_" not in n)
    assert model.blocks[0].adapter_mlp.up.weight.grad.abs().sum() > 0
    with torch.no_grad():
        model.blocks[1].adapter_attn.up.bias.fill_(0.1)
    changed = model(x)[0]
    assert not torch.allclose(changed, want)  # the hook really runs
    torch.testing.assert_close(copy.deepcopy(model)(x)[0], changed)  # hooks survive a deep copy


def test_adapter_validation():
    assert torch.equal(Adapter(8, 2)(torch.ones(3, 8)), torch.ones(3, 8))
    with pytest.raises(ValueError, match="bottleneck"):
        apply_adapters(tiny(), 0)
    with pytest.raises(ValueError, match="where"):
        apply_adapters(tiny(), 4, where=("ffn",))
    model = tiny()
    apply_adapters(model, 4, where=("mlp",))
    with pytest.raises(ValueError, match="already has adapter_mlp"):
        apply_adapters(model, 4)


# ----------------------------------------------------------------------------------------------- prefix tuning

def test_prefix_of_length_zero_is_the_base_and_a_prefix_changes_outputs():
    x = ids()
    want = tiny()(x)[0]
    model = tiny()
    apply_prefix_tuning(model, 0)
    assert torch.equal(model(x)[0], want)
    model = tiny()
    report = apply_prefix_tuning(model, 3)
    assert isinstance(model.blocks[0].attn, PrefixAttention)
    assert report.trainable == 2 * 2 * 2 * 3 * 16  # layers * (k, v) * kv-heads * n_prefix * head_dim
    out = model(x)[0]
    assert out.shape == want.shape and not torch.allclose(out, want)


def test_prefix_gradients_reach_only_the_prefix():
    model = tiny()
    apply_prefix_tuning(model, 2)
    x, y = copy_batch(0, B=4)
    model(x, y)[1].backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is None for n, g in grads.items() if "prefix_" not in n)
    assert all(grads[f"blocks.{i}.attn.prefix_{kv}"].abs().sum() > 0 for i in (0, 1) for kv in "kv")


@pytest.mark.parametrize("position", ["none", "alibi"])
def test_prefix_from_a_real_prompt_equals_running_that_prompt(position):
    """No absolute positions: a prefix holding the K/V a prompt produces is that prompt, token for token."""
    prompt, x = torch.tensor([3, 1, 4, 1]), ids(2, 7)
    base = tiny(position=position)
    full = base(torch.cat([prompt.expand(2, -1), x], 1))[0][:, 4:]  # (B, T, V): logits of the x positions
    apply_prefix_tuning(base, 4, init_ids=prompt)
    torch.testing.assert_close(base(x)[0], full, atol=1e-5, rtol=1e-5)


def test_prefix_with_kv_cache_matches_no_cache():
    model = tiny(position="rope")
    apply_prefix_tuning(model, 3)
    x = ids(2, 4)
    torch.testing.assert_close(generate(model, x, 6, temperature=0, use_cache=True),
                               generate(model, x, 6, temperature=0, use_cache=False))


@pytest.mark.parametrize("use_cache", [True, False])
def test_prefix_tuned_left_padded_batch_equals_each_prompt_alone(use_cache):
    """The learned prefix is never padding: a left-padded batch through a prefix-tuned model gives every row the
    tokens it gets alone."""
    from minillm.generate import generate_batch

    model = tiny(position="rope")
    apply_prefix_tuning(model, 3)
    prompts = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10]]
    batch = generate_batch(model, prompts, 5, pad_id=0, temperature=0, use_cache=use_cache)
    alone = [generate(model, torch.tensor([p]), 5, temperature=0, use_cache=use_cache)[0, len(p):].tolist()
             for p in prompts]
    assert batch == alone


def test_prefix_validation():
    with pytest.raises(ValueError, match="n_prefix"):
        apply_prefix_tuning(tiny(), -1)
    with pytest.raises(ValueError, match="attention_mask='causal'"):
        apply_prefix_tuning(tiny(attention_mask="prefix"), 2)
    with pytest.raises(ValueError, match="init_ids"):
        apply_prefix_tuning(tiny(), 2, init_ids=torch.tensor([1, 2, 3]))
    model = tiny()
    apply_prefix_tuning(model, 2)
    with pytest.raises(ValueError, match="PrefixAttention"):
        apply_prefix_tuning(model, 2)


# ----------------------------------------------------------------------------------------------- prompt tuning

def test_prompt_tuning_shapes_loss_and_gradients():
    base = tiny()
    model = PromptTuning(base, n_prompt=4)
    assert model.config.block_size == 12 and trainable_parameters(model) == (4 * 32, trainable_parameters(base)[1]
                                                                                   + 4 * 32)
    x, y = copy_batch(0, B=4)  # (4, 10)
    logits, loss = model(x, y)
    assert logits.shape == (4, 10, V)
    # the loss is over the real tokens only: cross-entropy of the returned logits, soft-prompt positions ignored
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), ignore_index=-100))
    loss.backward()
    assert model.prompt.grad.abs().sum() > 0
    assert all(p.grad is None for p in base.parameters())
    assert not base.tok_emb._forward_hooks  # the embedding hook is removed after each call
    torch.testing.assert_close(base(x)[0], tiny()(x)[0])  # the base alone is unchanged


def test_prompt_tuning_generates_with_and_without_cache():
    model = PromptTuning(tiny(), 3)
    x = ids(2, 4)
    out = generate(model, x, 5, temperature=0, use_cache=True)
    assert out.shape == (2, 9)
    torch.testing.assert_close(out, generate(model, x, 5, temperature=0, use_cache=False))
    with pytest.raises(ValueError, match="n_prompt"):
        PromptTuning(tiny(), 16)


# ----------------------------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def pretrained() -> GPT:
    """A base that half-learned the copy task (60 full steps, < 1 s): PEFT then has something to adapt."""
    model = tiny()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(60):
        loss = model(*copy_batch(100 + step))[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.parametrize("method", ["lora", "adapters", "prefix", "prompt"])
def test_thirty_steps_of_each_method_lower_the_loss(pretrained, method):
    model = copy.deepcopy(pretrained)
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    if method == "lora":
        apply_lora(model, LoRAConfig(rank=4, alpha=8))
    elif method == "adapters":
        apply_adapters(model, 8)
    elif method == "prefix":
        apply_prefix_tuning(model, 4)
    else:
        model = PromptTuning(model, 4)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    x, y = copy_batch(1)
    losses = []
    for _ in range(30):
        loss = model(x, y)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.97 * losses[0], losses
    base = model.model if method == "prompt" else model
    sd = base.state_dict()
    for k, v in frozen.items():  # the base weights never moved (LoRA moved them under .base)
        assert torch.equal(sd.get(k, sd.get(k.replace(".weight", ".base.weight").replace(".bias", ".base.bias"))), v)


def test_lora_through_the_trainer_moves_only_lora():
    model = tiny()
    apply_lora(model, LoRAConfig(rank=2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tokens = torch.cat([torch.cat([copy_batch(s, B=1)[0][0], torch.tensor([0])]) for s in range(60)])
    cfg = TrainConfig(batch_size=4, max_steps=3, warmup_steps=0, eval_interval=0, eval_batches=1, progress=False,
                      device="cpu", lr=1e-2)
    Trainer(model, cfg, DataSplits.from_tokens(tokens, vocab_size=V)).fit()
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) != ("lora_" in n), n  # LoRA moved, everything else did not
