"""The architecture calculator: counts equal the real model's, memory formulas, the slider widget."""
import itertools

import pytest
import torch

from minillm.config import ModelConfig
from minillm.model.calculator import arch_stats, format_bytes, param_breakdown
from minillm.model.transformer import GPT

GRID = [dict(norm=n, norm_position=p, bias=b, tie_embeddings=t, position=pos, activation=a, n_kv_head=kv)
        for n, p, b, t, pos, a, kv in itertools.product(
            ["layernorm", "rmsnorm"], ["pre", "sandwich"], [True, False], [True, False], ["learned", "rope"],
            ["swiglu", "gelu"], [4, 2, 1])]

GRID += [dict(norm="deepnorm"), dict(norm_position="post", bias=False), dict(position="alibi"),
         dict(position="sinusoidal", activation="geglu"), dict(activation="relu", ffn_hidden=50)]


def tiny(**kw):
    base = dict(vocab_size=29, block_size=16, n_layer=2, n_head=4, n_embd=32)
    return ModelConfig(**{**base, **kw})


def build(cfg: ModelConfig, device: str = "cpu") -> GPT:
    # at these toy widths a CPU build (~1 ms) beats "meta" (~60 ms: its normal_ init runs a Python
    # decomposition); meta is for shapes too big to allocate
    with torch.device(device):
        return GPT(cfg)


def test_counts_equal_the_real_model_on_a_grid():
    for kw in GRID:  # one loop, not 100 parametrized tests: each case is a ~1 ms build
        cfg = tiny(**kw)
        m, s = build(cfg), arch_stats(cfg)
        assert s["params_total"] == m.num_params(non_embedding=False), kw
        assert s["params_non_embedding"] == m.num_params(non_embedding=True), kw
        assert s["params_active"] == s["params_total"], kw  # dense: every parameter is used by every token
        assert s["flops_per_token"] == m.flops_per_token(), kw
        assert arch_stats(cfg, seq_len=5)["flops_per_token"] == m.flops_per_token(seq_len=5), kw
        b = s["breakdown"]
        assert sum(b.values()) == s["params_total"], kw
        assert b["attention"] == sum(p.numel() for blk in m.blocks for p in blk.attn.parameters()), kw
        assert b["mlp"] == sum(p.numel() for blk in m.blocks for p in blk.mlp.parameters()), kw
        assert b["lm_head"] == (0 if cfg.tie_embeddings else m.lm_head.weight.numel()), kw
        assert b["router"] == 0


def test_hand_counted_gpt2_small():
    # GPT-2 small (124M): the published count, 124,439,808 with tied embeddings, 85M non-embedding
    cfg = ModelConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257)
    s = arch_stats(cfg)
    assert s["flops_per_token"] == build(cfg, "meta").flops_per_token()
    assert s["params_total"] == 124_439_808
    assert s["params_embedding"] == 50257 * 768 + 1024 * 768
    assert s["params_non_embedding"] == 124_439_808 - 50257 * 768 - 1024 * 768 == 85_056_000
    assert s["breakdown"]["norms"] == (12 * 2 + 1) * 2 * 768


@pytest.mark.parametrize("dtype,nbytes", [(torch.float32, 4), (torch.bfloat16, 2)])
@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_kv_cache_bytes_equal_the_allocated_cache(dtype, nbytes, n_kv_head):
    cfg = tiny(n_kv_head=n_kv_head, n_layer=3)
    m = build(cfg).to(dtype)
    cache = m.make_cache(5, 11)
    allocated = sum(t.nbytes for t in cache.k + cache.v)
    assert arch_stats(cfg, batch_size=5, seq_len=11, bytes_per_value=nbytes)["kv_cache_bytes"] == allocated
    assert allocated == 2 * 3 * 5 * 11 * n_kv_head * 8 * nbytes  # by hand: k and v, L, B, T, Hkv, D


def test_memory_formulas_by_hand():
    cfg = tiny(n_embd=64, n_head=4, n_layer=2)
    s = arch_stats(cfg, batch_size=3, seq_len=8)
    # Korthikanti et al. eq. 1 per layer: s b h (34 + 5 a s / h) = 8*3*64*(34 + 5*4*8/64) = 1536 * 36.5
    assert s["activation_bytes"] == 2 * 56064
    n = s["params_total"]
    assert (s["weights_bytes"], s["grads_bytes"], s["adam_bytes"]) == (2 * n, 2 * n, 12 * n)
    # activations grow as s^2 through the attention scores, the KV cache only linearly
    longer = arch_stats(cfg, batch_size=3, seq_len=16)
    assert longer["kv_cache_bytes"] == 2 * s["kv_cache_bytes"]
    assert longer["activation_bytes"] == 2 * (34 * 16 * 3 * 64 + 5 * 4 * 16 * 16 * 3)


@pytest.mark.parametrize("kw", [dict(), dict(activation="swiglu", bias=False, tie_embeddings=False),
                                dict(expert_top_k=1, n_kv_head=1)])
def test_moe_counts_equal_the_real_model(kw):
    cfg = tiny(n_expert=4, **kw)
    m, s = build(cfg), arch_stats(cfg)
    dense = arch_stats(cfg.replace(n_expert=0))
    assert s["params_total"] == m.num_params(non_embedding=False)
    assert s["params_non_embedding"] == m.num_params(non_embedding=True)
    assert s["breakdown"]["router"] == 2 * 32 * 4  # n_layer * n_embd * n_expert
    assert s["breakdown"]["mlp"] == 4 * dense["breakdown"]["mlp"]  # four expert copies of the dense MLP
    k = cfg.expert_top_k
    inactive = 2 * (4 - k) * dense["breakdown"]["mlp"] // 2  # per layer (E - k) experts sit idle
    assert s["params_active"] == s["params_total"] - inactive
    assert s["params_active_non_embedding"] == s["params_non_embedding"] - inactive
    if hasattr(m, "num_active_params"):
        assert s["params_active"] == m.num_active_params(non_embedding=False)
        assert s["params_active_non_embedding"] == m.num_active_params(non_embedding=True)
    assert s["flops_per_token"] == m.flops_per_token()
    # compute follows the active parameters: top-k experts plus the router, not all E
    tied = 29 * 32 if cfg.tie_embeddings else 0
    assert s["flops_per_token"] == 6 * (s["params_active_non_embedding"] + tied) + 12 * 2 * 32 * 16
    assert s["kv_cache_bytes"] == dense["kv_cache_bytes"]


def test_bad_inputs_raise():
    cfg = tiny()
    with pytest.raises(ValueError, match="batch_size=0 must be a positive integer"):
        arch_stats(cfg, batch_size=0)
    with pytest.raises(ValueError, match="seq_len"):
        arch_stats(cfg, seq_len=-1)
    with pytest.raises(ValueError, match="bytes_per_value"):
        arch_stats(cfg, bytes_per_value=1.5)
    with pytest.raises(TypeError, match="needs a ModelConfig"):
        arch_stats({"n_layer": 2})
    assert (format_bytes(1536), format_bytes(3 * 2**30), format_bytes(12)) == ("1.5 KiB", "3 GiB", "12 B")
    assert param_breakdown(cfg) == arch_stats(cfg)["breakdown"]
