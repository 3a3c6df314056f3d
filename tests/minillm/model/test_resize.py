"""Growing a model's vocabulary (minillm/model/resize.py): old logits unchanged, new rows at the mean, ties kept."""
from __future__ import annotations

import pytest
import torch

from minillm.data.tokenizer import CharTokenizer
from minillm.data.vocab import add_special_tokens
from minillm.finetune.chat import CHAT_TOKENS
from minillm.finetune.peft import LoRAConfig, apply_lora
from minillm.model.resize import resize_token_embeddings, train_new_token_rows
from minillm.model.transformer import GPT
from minillm.presets import model_preset
from minillm.train.rundir import load_run, save_run

V = 20


def _gpt(preset: str = "tiny", seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(model_preset(preset, vocab_size=V, n_layer=1, block_size=16, **kw)).eval()


def _old_ids() -> torch.Tensor:
    return torch.randint(0, V, (3, 16), generator=torch.Generator().manual_seed(1))  # (B, T) old ids only


@pytest.mark.parametrize("preset", ["tiny", "llama-tiny"])  # tied and untied output layers
def test_old_logits_unchanged_and_new_rows_are_the_mean(preset):
    model = _gpt(preset)
    cfg_before, ids = model.config, _old_ids()
    with torch.no_grad():
        before = model(ids)[0]  # (B, T, V)
        emb_mean = model.tok_emb.weight[:V].mean(0)  # (C,)
        head_mean = model.lm_head.weight[:V].mean(0)
    assert resize_token_embeddings(model, V + 4) is model
    assert model.config.vocab_size == V + 4 and cfg_before.vocab_size == V  # a new config; the old one untouched
    assert model.tok_emb.weight.shape == (V + 4, model.config.n_embd)
    tied = preset == "tiny"
    assert (model.lm_head.weight is model.tok_emb.weight) == tied
    assert model.lm_head.weight.shape == (V + 4, model.config.n_embd)
    with torch.no_grad():
        after = model(ids)[0]  # (B, T, V + 4)
    assert torch.equal(after[..., :V], before)  # bit-identical for the old ids
    assert torch.allclose(model.tok_emb.weight[V:], emb_mean.expand(4, -1), atol=1e-7, rtol=0)
    assert torch.allclose(model.lm_head.weight[V:], head_mean.expand(4, -1), atol=1e-7, rtol=0)
    # Hewitt 2021: a row at the mean scores every context at the mean of the old logits (logits are linear in it)
    assert torch.allclose(after[..., V:], before.mean(-1, keepdim=True).expand(-1, -1, 4), atol=1e-5)


def test_new_ids_embed_and_train():
    model = _gpt()
    resize_token_embeddings(model, V + 2)
    ids = torch.tensor([[V, V + 1, 3, V + 1]])  # (1, 4) new ids now embed
    logits, loss = model(ids, ids)
    assert logits.shape == (1, 4, V + 2) and torch.isfinite(loss)
    loss.backward()
    assert model.tok_emb.weight.grad[V:].abs().sum() > 0


def test_padding_follows_pad_vocab_multiple():
    model = _gpt(pad_vocab_multiple=8)  # 20 ids -> 24 rows
    ids = _old_ids()
    with torch.no_grad():
        before = model(ids)[0]
    resize_token_embeddings(model, V + 3)  # 23 ids still fit 24 rows: rows filled, the table keeps its size
    assert model.tok_emb.weight.shape[0] == 24 and model.config.padded_vocab_size == 24
    assert torch.equal(model.tok_emb.weight[23], torch.zeros(model.config.n_embd))  # padding stays zero
    resize_token_embeddings(model, V + 5)  # 25 ids -> 32 rows
    assert model.tok_emb.weight.shape[0] == 32 and model.lm_head.weight is model.tok_emb.weight
    assert torch.equal(model.tok_emb.weight[25:], torch.zeros(7, model.config.n_embd))
    with torch.no_grad():
        after = model(ids)[0]
    assert after.shape[-1] == V + 5 and torch.equal(after[..., :V], before)


def test_refusals_and_options():
    model = _gpt()
    with pytest.raises(ValueError, match="smaller than the model's vocab_size=20"):
        resize_token_embeddings(model, V - 1)
    w = model.tok_emb.weight
    assert resize_token_embeddings(model, V) is model and model.tok_emb.weight is w  # the same size: unchanged
    with pytest.raises(ValueError, match="init='zeros' is not valid"):
        resize_token_embeddings(model, V + 1, init="zeros")
    a, b = _gpt(), _gpt()
    resize_token_embeddings(a, V + 2, init="normal", seed=3)
    resize_token_embeddings(b, V + 2, init="normal", seed=3)
    assert torch.equal(a.tok_emb.weight, b.tok_emb.weight)  # seeded
    assert 0.005 < a.tok_emb.weight[V:].std() < 0.05  # ~init_std = 0.02
    apply_lora(model, LoRAConfig(rank=2, target_modules=("lm_head",)))
    with pytest.raises(TypeError, match="before wrapping"):
        resize_token_embeddings(model, V + 1)
    with pytest.raises(TypeError, match="minillm GPT"):
        resize_token_embeddings(torch.nn.Linear(2, 2), 3)


def test_only_new_rows_learn_after_lora():
    model = _gpt()
    resize_token_embeddings(model, V + 2)
    apply_lora(model, LoRAConfig(rank=2))
    assert not model.tok_emb.weight.requires_grad  # PEFT froze the table, new rows included
    assert train_new_token_rows(model, V) == 2 * model.config.n_embd
    old = model.tok_emb.weight.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    ids = torch.tensor([[1, V, 2, V + 1, 3]])
    for _ in range(3):
        model(ids, ids)[1].backward()
        opt.step()
        opt.zero_grad()
    assert torch.equal(model.tok_emb.weight[:V], old[:V])  # zero gradient, zero Adam moments: bit-identical
    assert not torch.equal(model.tok_emb.weight[V:], old[V:])
    assert train_new_token_rows(model, V + 2) == 0  # nothing added: nothing unfrozen
    with pytest.raises(ValueError, match="first_id=23"):
        train_new_token_rows(model, V + 3)


def test_a_resized_checkpoint_loads_with_load_run(tmp_path):
    tok = CharTokenizer.from_text("abcdefghijklmnopqrs ")  # 20 characters = V
    model = _gpt()
    tok = add_special_tokens(tok, CHAT_TOKENS)
    resize_token_embeddings(model, tok.vocab_size)
    save_run(tmp_path / "run", model, tok)
    back, tok2 = load_run(tmp_path / "run")
    assert back.config.vocab_size == V + 4 and tok2.vocab_size == V + 4
    ids = torch.tensor([[0, V, 5, V + 3]])
    with torch.no_grad():
        assert torch.equal(back(ids)[0], model(ids)[0])
