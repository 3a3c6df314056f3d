"""book.ch06_tuning.studies_peft: the PEFT comparison, the LoRA rank sweep and the quantization cost, at ci size."""
import math

import pytest
import torch
import torch.nn as nn

from minillm.data.tasks.pretraining import pretraining_mixture
from minillm.finetune.chat import ASSISTANT, USER, chat_tokenizer
from book.ch06_tuning.studies_peft import (PEFT_METHODS, PEFT_RUN, PEFTStudyConfig, apply_method, lora_rank_sweep, lora_trainable_count, peft_comparison, pretrain_base, pretraining_text, quantization_cost, sft_task, study_config)

CFG = PEFTStudyConfig(run=PEFT_RUN.replace(steps=12, batch_size=8), n_train=96, n_eval=16)


@pytest.fixture(scope="module")
def base():
    model, tok = pretrain_base("ci")
    return model


def _finite(row):
    return all(math.isfinite(v) for v in row.values() if isinstance(v, (int, float)) and not isinstance(v, bool))


def test_pretrain_base_is_cached_frozen_and_speaks_the_chat_vocabulary(base):
    model, tok = pretrain_base("ci")
    assert model is base  # cached: the second call trains nothing
    assert tok.vocab_size == chat_tokenizer().vocab_size == model.config.vocab_size
    assert not any(p.requires_grad for p in model.parameters())  # read-only cache; studies train copies


def test_peft_comparison_rows_and_parameter_economics(base):
    before = {k: v.clone() for k, v in base.state_dict().items()}
    rows = peft_comparison(base, PEFT_METHODS, budget=12, cfg=CFG)
    assert [r["method"] for r in rows] == list(PEFT_METHODS)
    keys = {"method", "trainable", "trainable_frac", "train_memory_bytes", "accuracy", "accuracy_seen", "loss",
            "seconds"}
    for r in rows:
        assert keys <= set(r) and _finite(r), r
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["accuracy_seen"] <= 1 and r["steps"] == 12
    by = {r["method"]: r for r in rows}
    full = by["full"]
    assert full["trainable_frac"] == 1.0 and full["train_memory_bytes"] == full["full_ft_memory_bytes"]
    # fp32 AdamW: weights + grads + 2 moments = 16 bytes per trained parameter
    assert full["train_memory_bytes"] == 16 * full["trainable"]
    for m in ("lora", "adapters", "prefix", "prompt"):
        assert by[m]["trainable_frac"] < 0.1 * full["trainable_frac"], m  # << full fine-tuning
        assert by[m]["train_memory_bytes"] < 0.5 * full["train_memory_bytes"], m
        # frozen weights cost 4 bytes each, trained ones 16
        assert by[m]["train_memory_bytes"] == 4 * by[m]["total"] + 12 * by[m]["trainable"], m
    # LoRA r=8 on wq, wv of 2 layers with n_embd 32: 2 layers * 2 targets * 8 * (32 + 32)
    assert by["lora"]["trainable"] == 2 * 2 * 8 * 64
    assert by["prompt"]["trainable"] == CFG.n_virtual * base.config.n_embd
    after = base.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the cached base was not trained


def test_apply_method_freezes_the_base_except_full(base):
    full = apply_method(base, "full", CFG)
    assert all(p.requires_grad for p in full.parameters())
    lora = apply_method(base, "lora", CFG)
    names = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert names and all(n.endswith(("lora_A", "lora_B")) for n in names)
    prompt = apply_method(base, "prompt", CFG)
    assert [n for n, p in prompt.named_parameters() if p.requires_grad] == ["prompt"]


def test_lora_targets_set_which_linears_get_lora(base):
    C, L = base.config.n_embd, base.config.n_layer
    lora = apply_method(base, "lora", CFG.replace(lora_targets=("wq", "wo")))
    n = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert n == L * 2 * CFG.lora_rank * (C + C)  # wq and wo are both (C -> C)


def test_study_config_profiles_and_families():
    lap = study_config("laptop")
    assert lap.families == ("count", "first") and lap.run.steps == 600 and lap.n_eval == 128
    assert study_config("ci").run.steps == 40 and len(study_config("ci").families) == 7  # "all"
    assert study_config("laptop", steps=5).run.steps == 5  # overrides re-validate, routed into the recipe
    assert study_config("ci", run=PEFT_RUN.replace(batch_size=4)).run.batch_size == 4
    cfg = PEFTStudyConfig(n_train=16, n_eval=8, families="count")
    x, y, heldout, seen, _ = sft_task(cfg, 48)
    assert x.shape == y.shape and len(heldout) == len(seen) == 8
    assert all(c.answer.isdigit() for c in heldout + seen)  # only the count family
    assert {c.meta["family"] for c in heldout} == {"count"}
    with pytest.raises(ValueError, match="families=.*give 'all' or names"):
        PEFTStudyConfig(families=("count", "shout"))


def test_pretraining_text_renders_stories_not_tasks_as_chats():
    plain, chat = pretraining_text("ci", chat_fraction=0.0), pretraining_text("ci", chat_fraction=1.0)
    assert USER not in plain and ASSISTANT not in plain
    chats = [ln for ln in chat.splitlines() if ln.startswith(USER)]
    assert len(chats) > 10 and all(ASSISTANT in ln for ln in chats)
    # instruction lines stay plain text: SFT, not pretraining, teaches the tasks in chat form
    assert not any(k in ln for ln in chats for k in ("letters", "Reverse", "Uppercase"))
    with pytest.raises(ValueError, match="chat_fraction"):
        pretraining_text("ci", chat_fraction=1.5)


def test_lora_rank_sweep_trainable_is_exactly_linear_in_rank(base):
    ranks, alphas = (1, 2, 4), (4.0, 8.0)
    rows = lora_rank_sweep(base, ranks, alphas, cfg=CFG.replace(steps=4))
    assert [(r["rank"], r["alpha"]) for r in rows] == [(r, a) for r in ranks for a in alphas]
    C, L = base.config.n_embd, base.config.n_layer
    kv = base.config.n_kv_head * (C // base.config.n_head) if base.config.n_kv_head else C
    for r in rows:
        assert {"rank", "alpha", "trainable", "accuracy", "loss"} <= set(r) and _finite(r)
        # A (r, in) + B (out, r) on wq (C -> C) and wv (C -> kv) in each layer
        assert r["trainable"] == L * r["rank"] * ((C + C) + (C + kv))
        assert r["trainable"] == lora_trainable_count(base, r["rank"])
        assert r["scale"] == pytest.approx(r["alpha"] / r["rank"])
    default = lora_rank_sweep(base, (2,), cfg=CFG.replace(steps=2))
    assert default[0]["alpha"] == 4.0  # alphas=None -> alpha = 2 * rank


@pytest.fixture(scope="module")
def quant_rows(base):
    text = pretraining_mixture({"instructions": 0.5}, 12_000, seed=99, instructions={"templates": "train"}).text
    return quantization_cost(base, text, bits=(8, 4), group_sizes=(None, 32), max_windows=16)


def test_quantization_cost_rows_and_error_ordering(quant_rows):
    rows = {(r["bits"], r["group_size"]): r for r in quant_rows}
    assert list(rows) == [(32, None), (8, None), (8, 32), (4, None), (4, 32)]
    for r in quant_rows:
        assert {"bits", "group_size", "bytes", "ratio", "perplexity", "delta_ppl", "weight_error"} <= set(r)
        assert _finite({k: v for k, v in r.items() if k != "group_size"}) and r["perplexity"] > 1
    assert rows[(32, None)]["delta_ppl"] == 0.0 and rows[(32, None)]["ratio"] == 1.0
    for g in (None, 32):
        # 4 bits round to a step 127/7 ~ 18x coarser than 8 bits: far more reconstruction error, fewer bytes
        assert rows[(4, g)]["weight_error"] > 5 * rows[(8, g)]["weight_error"] > 0
        assert rows[(4, g)]["bytes"] < rows[(8, g)]["bytes"] < rows[(32, None)]["bytes"]
    for b in (8, 4):
        # a scale per 32 weights is never coarser than one per tensor (more bytes for the extra scales)
        assert rows[(b, 32)]["weight_error"] < rows[(b, None)]["weight_error"]
        assert rows[(b, 32)]["bytes"] > rows[(b, None)]["bytes"]


def test_quantization_bytes_by_hand(base, quant_rows):
    rows = {(r["bits"], r["group_size"]): r for r in quant_rows}
    lin = [m.weight for n, m in base.named_modules() if isinstance(m, nn.Linear)
           and m.weight is not base.tok_emb.weight]  # the tied head stays in float
    n = sum(w.numel() for w in lin)
    # int8 per tensor: each fp32 weight (4 bytes) becomes 1 byte, plus one fp32 scale per matrix
    assert rows[(32, None)]["bytes"] - rows[(8, None)]["bytes"] == 3 * n - 4 * len(lin)
    # int4 with groups of 32: half a byte per weight plus 4 bytes per group (all widths here are even)
    assert rows[(32, None)]["bytes"] - rows[(4, 32)]["bytes"] == 4 * n - (n // 2 + 4 * (n // 32))


def test_validation_messages():
    with pytest.raises(ValueError, match="choose a non-empty list"):
        peft_comparison(nn.Linear(2, 2), ("full", "ia3"))
    with pytest.raises(ValueError, match="steps=0 must be a positive int"):
        PEFTStudyConfig(run=PEFT_RUN.replace(steps=0))
    with pytest.raises(ValueError, match="lr has invalid entries"):
        PEFTStudyConfig(lr={"lora": -1.0})
    with pytest.raises(ValueError, match="n_train=4 is below batch_size"):
        PEFTStudyConfig(n_train=4, run=PEFT_RUN.replace(batch_size=8))
    with pytest.raises(ValueError, match="ranks="):
        lora_rank_sweep(nn.Linear(2, 2), ranks=(0,))
    with pytest.raises(ValueError, match="non-empty str"):
        quantization_cost(nn.Linear(2, 2), "")
