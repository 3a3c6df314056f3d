"""Sparse attention patterns (minillm.model.sparse) and ModelConfig.sparse_attention in the model."""
import math

import pytest
import torch
import torch.nn.functional as F

from minillm import GPT, ModelConfig, scaled_dot_product_attention
from minillm.model.attention import causal_mask, sliding_window_mask
from minillm.model.sparse import (attention_cost, block_sparse_layout, fixed_sparse_mask, fixed_sparse_parts,
                                  sparse_attention_fn, sparse_mask, sparse_pairs, strided_sparse_mask,
                                  strided_sparse_parts)


def _rows(*rows: str) -> list[list[bool]]:
    return [[c == "x" for c in r] for r in rows]


def _allowed(pattern: str, i: int, j: int, l: int, c: int = 1) -> bool:
    """The paper's definitions, one pair at a time (an implementation independent of the vectorised one)."""
    if j > i:
        return False
    if pattern == "strided":
        return i - j < l or (i - j) % l == 0
    return j // l == i // l or (j % l >= l - c)


def _loop_mask(pattern: str, T: int, l: int, c: int = 1) -> torch.Tensor:
    return torch.tensor([[_allowed(pattern, i, j, l, c) for j in range(T)] for i in range(T)])


# ---- the masks, by hand ---------------------------------------------------------------------------------------

def test_strided_mask_by_hand():
    assert strided_sparse_mask(8, 3).tolist() == _rows(
        "x.......",
        "xx......",
        "xxx.....",
        "xxxx....",  # i=3: band 1..3, plus j=0 (3 back)
        ".xxxx...",
        "..xxxx..",
        "x..xxxx.",  # i=6: band 4..6, plus 3 and 0
        ".x..xxxx")
    local, strided = strided_sparse_parts(8, 3)
    assert torch.equal(local, sliding_window_mask(8, 3))  # the local head is a sliding window of `stride`
    assert strided[7].tolist() == [False, True, False, False, True, False, False, True]  # 7, 4, 1
    assert torch.equal(local | strided, strided_sparse_mask(8, 3))


def test_fixed_mask_by_hand():
    assert fixed_sparse_mask(8, 3).tolist() == _rows(
        "x.......",
        "xx......",
        "xxx.....",
        "..xx....",  # block 1 starts: own block 3..3, plus block 0's last position 2
        "..xxx...",
        "..xxxx..",
        "..x..xx.",  # block 2: own 6..6, summaries 2 and 5
        "..x..xxx")
    assert fixed_sparse_mask(8, 3, n_summary=2)[7].tolist() == [False, True, True, False, True, True, True, True]
    own, summary = fixed_sparse_parts(8, 3)
    assert own[7].tolist() == [False] * 6 + [True, True]
    assert summary[7].tolist() == [False, False, True, False, False, True, False, False]
    assert not (own & summary).any()  # the summary head adds only earlier blocks' columns
    assert torch.equal(own | summary, fixed_sparse_mask(8, 3))


@pytest.mark.parametrize("pattern", ["strided", "fixed"])
@pytest.mark.parametrize("T, l, c", [(1, 1, 1), (7, 2, 1), (16, 4, 1), (16, 4, 2), (23, 5, 3), (30, 7, 7)])
def test_masks_match_the_pairwise_definition(pattern, T, l, c):
    assert torch.equal(sparse_mask(pattern, T, l, n_summary=c), _loop_mask(pattern, T, l, c))


@pytest.mark.parametrize("mask_fn", [lambda T: strided_sparse_mask(T, 4), lambda T: fixed_sparse_mask(T, 4),
                                     lambda T: fixed_sparse_mask(T, 5, n_summary=2)])
def test_each_query_attends_to_itself_and_only_to_the_past(mask_fn):
    m = mask_fn(21)
    assert m.diagonal().all()
    assert not (m & ~causal_mask(21)).any()


def test_a_large_stride_or_block_is_plain_causal_attention():
    assert torch.equal(strided_sparse_mask(9, 9), causal_mask(9))
    assert torch.equal(fixed_sparse_mask(9, 12), causal_mask(9))
    assert torch.equal(strided_sparse_mask(9, 1), causal_mask(9))  # every position is a multiple of 1 back


# ---- the property that makes factorised attention work ----------------------------------------------------------

def _two_hops(m: torch.Tensor) -> torch.Tensor:
    """Pairs (i, j) connected by a path of one or two attention edges: i -> j, or i -> k -> j."""
    f = m.float()
    return ((f @ f) > 0) | m


@pytest.mark.parametrize("pattern", ["strided", "fixed"])
@pytest.mark.parametrize("T, l, c", [(16, 4, 1), (31, 3, 1), (40, 6, 2), (64, 8, 1), (100, 10, 3)])
def test_every_earlier_position_is_reachable_in_two_hops(pattern, T, l, c):
    m = sparse_mask(pattern, T, l, n_summary=c)
    assert not torch.equal(m, causal_mask(T))  # sparse: one hop does not reach everything
    assert torch.equal(_two_hops(m), causal_mask(T))  # two do (two layers mix like one dense layer)


def test_the_reachability_check_catches_a_pattern_without_its_second_head():
    local, _ = strided_sparse_parts(32, 4)
    own, _ = fixed_sparse_parts(32, 4)
    assert not torch.equal(_two_hops(local), causal_mask(32))  # a band of 4 reaches 7 back in two hops, not 31
    assert not torch.equal(_two_hops(own), causal_mask(32))  # blocks alone never talk to each other


# ---- KV-cache convention (offset, T_k) --------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["strided", "fixed"])
def test_cached_queries_see_what_the_full_forward_saw(pattern):
    full = sparse_mask(pattern, 13, 4, n_summary=2)
    for T in (1, 3, 13):  # the last T queries over all 13 keys
        part = sparse_mask(pattern, T, 4, T_k=13, offset=13 - T, n_summary=2)
        assert torch.equal(part, full[13 - T:])
    assert torch.equal(sparse_mask(pattern, 2, 4, T_k=9, offset=5, n_summary=2), full[5:7, :9])  # keys beyond the queries


@pytest.mark.parametrize("call, match", [
    (lambda: strided_sparse_mask(8, 0), "stride=0"),
    (lambda: strided_sparse_mask(8, True), "stride=True"),
    (lambda: fixed_sparse_mask(8, -2), "block=-2"),
    (lambda: fixed_sparse_mask(8, 4, n_summary=0), "n_summary=0"),
    (lambda: fixed_sparse_mask(8, 4, n_summary=5), "must not exceed block"),
    (lambda: strided_sparse_mask(0, 2), "T=0"),
    (lambda: strided_sparse_mask(4, 2, offset=-1), "offset=-1"),
    (lambda: sparse_mask("dilated", 8, 2), "choose one of strided, fixed"),
    (lambda: sparse_pairs("dilated", 8, 2), "choose one of strided, fixed"),
    (lambda: sparse_pairs("fixed", 8, 2, n_summary=3), "must not exceed"),
    (lambda: sparse_attention_fn("banded", 4), "choose one of"),
])
def test_bad_arguments_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- cost: pairs and tiles --------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["strided", "fixed"])
@pytest.mark.parametrize("T, l, c", [(1, 3, 1), (5, 3, 2), (16, 4, 1), (17, 4, 3), (50, 7, 2), (64, 64, 1), (9, 20, 1)])
def test_pair_formula_equals_the_mask(pattern, T, l, c):
    assert sparse_pairs(pattern, T, l, n_summary=c) == int(sparse_mask(pattern, T, l, n_summary=c).sum())


def test_cost_grows_as_t_sqrt_t_when_the_block_grows_as_sqrt_t():
    for pattern, lo, hi in (("strided", 1.4, 1.6), ("fixed", 0.9, 1.1)):
        ratios = [sparse_pairs(pattern, T, round(math.sqrt(T))) / T ** 1.5 for T in (256, 1024, 4096, 16384)]
        assert all(lo < r < hi for r in ratios), (pattern, ratios)  # T·l + T²/(2l) = 1.5 T^1.5; T·l/2 + ...
    T = 16384
    assert sparse_pairs("strided", T, 128) < 0.025 * T * (T + 1) / 2  # 2.3% of dense causal at 16k


def test_block_sparse_layout_by_hand():
    assert block_sparse_layout(causal_mask(4), 2, 2).tolist() == [[True, False], [True, True]]
    # 5 x 5 in 2 x 2 tiles: 3 x 3 tiles, the last row/column partial
    assert block_sparse_layout(causal_mask(5), 2, 2).tolist() == [[True, False, False], [True, True, False],
                                                                 [True, True, True]]
    # a window of 2 over 8 positions, tiles 2 x 4: query tile 2 (rows 4-5) sees keys 3..5 -> both key tiles
    assert block_sparse_layout(sliding_window_mask(8, 2), 2, 4).tolist() == [[True, False], [True, False],
                                                                            [True, True], [False, True]]


def test_block_sparse_layout_matches_a_loop_and_keeps_leading_dims():
    m = fixed_sparse_mask(37, 8, n_summary=2)
    got = block_sparse_layout(m, 5, 7)
    want = [[bool(m[a:a + 5, b:b + 7].any()) for b in range(0, 37, 7)] for a in range(0, 37, 5)]
    assert got.tolist() == want
    batched = torch.stack([m, causal_mask(37)])[:, None]  # (2, 1, 37, 37)
    lay = block_sparse_layout(batched, 5, 7)
    assert lay.shape == (2, 1, 8, 6) and torch.equal(lay[0, 0], got)
    with pytest.raises(TypeError, match="boolean"):
        block_sparse_layout(m.float(), 4, 4)
    with pytest.raises(ValueError, match="block_n=0"):
        block_sparse_layout(m, 4, 0)


def test_attention_cost():
    dense = attention_cost(causal_mask(64), 16, 16)
    assert dense["pairs"] == dense["dense_pairs"] == 64 * 65 // 2
    assert dense["fraction"] == 1.0 and dense["tiles"] == dense["dense_tiles"] == 4 * 5 // 2
    win = attention_cost(sliding_window_mask(64, 16), 16, 16)
    assert win["pairs"] == 16 * 64 - 16 * 15 // 2  # w·T - w(w-1)/2
    assert win["tiles"] == 4 + 3  # diagonal tiles and the one below each
    fixed = attention_cost(fixed_sparse_mask(64, 16), 16, 16)
    assert fixed["pairs"] == sparse_pairs("fixed", 64, 16)
    assert fixed["tiles"] == fixed["dense_tiles"]  # a summary column touches every tile below the diagonal
    coarse = attention_cost(fixed_sparse_mask(256, 64), 16, 16)  # a summary column per 4 key tiles
    assert coarse["tile_fraction"] < 0.5
    cached = attention_cost(causal_mask(3, 10, offset=7), 4, 4)  # 3 new queries over 10 cached keys
    assert cached["dense_pairs"] == 8 + 9 + 10 and cached["fraction"] == 1.0
    with pytest.raises(ValueError, match="one \\(Tq, Tk\\) mask"):
        attention_cost(causal_mask(4)[None])
    with pytest.raises(ValueError, match="Tq <= Tk"):
        attention_cost(torch.ones(5, 3, dtype=torch.bool))


# ---- ModelConfig.sparse_attention in the model ------------------------------------------------------------------

def test_config_validates_the_sparse_fields():
    cfg = ModelConfig(sparse_attention="fixed", sparse_block=8)
    assert cfg.replace(sparse_attention="strided").sparse_block == 8
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="sparse_attention='dense' is not valid"):
        ModelConfig(sparse_attention="dense")
    with pytest.raises(ValueError, match="sparse_block=0"):
        ModelConfig(sparse_block=0)
    with pytest.raises(ValueError, match="sliding_window"):
        ModelConfig(sparse_attention="strided", sliding_window=4)
    with pytest.raises(ValueError, match="attention_mask='causal'"):
        ModelConfig(sparse_attention="strided", attention_mask="prefix")


def _cfg(**kw) -> ModelConfig:
    base = dict(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16, attn_impl="math")
    return ModelConfig(**{**base, **kw})


def _pair(cfg: ModelConfig) -> tuple[GPT, GPT]:
    """A model with cfg's pattern and a dense one with the same weights."""
    torch.manual_seed(0)
    sparse = GPT(cfg).eval()
    dense = GPT(cfg.replace(sparse_attention=None)).eval()
    dense.load_state_dict(sparse.state_dict())
    return sparse, dense


@pytest.mark.parametrize("pattern, l", [("strided", 3), ("fixed", 4)])
def test_model_equals_attention_masked_by_hand(pattern, l):
    sparse, dense = _pair(_cfg(sparse_attention=pattern, sparse_block=l))
    T = 13
    by_hand = _loop_mask(pattern, T, l)

    def hand(q, k, v, mask):  # (B, H, T, D): softmax(q k^T / sqrt(d)) v over the hand-listed pairs only
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
        scores = scores.masked_fill(~by_hand, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=by_hand))  # torch agrees
        return out

    dense.set_attention_fn(hand)
    idx = torch.randint(0, 11, (2, T), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(sparse(idx)[0], dense(idx)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pattern, l", [("strided", 4), ("fixed", 4)])
def test_positions_where_the_pattern_is_dense_match_dense_attention(pattern, l):
    sparse, dense = _pair(_cfg(sparse_attention=pattern, sparse_block=l))
    idx = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(2))
    a, b = sparse(idx)[0], dense(idx)[0]
    # the first l queries see all their past under both patterns, in both layers
    torch.testing.assert_close(a[:, :l], b[:, :l], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, l + 1:], b[:, l + 1:], atol=1e-3)  # later ones miss some keys


@pytest.mark.parametrize("kw", [dict(), dict(n_kv_head=1, position="rope"), dict(position="alibi")])
def test_sdpa_path_is_given_the_same_mask(kw):
    cfg = _cfg(sparse_attention="strided", sparse_block=3, **kw)
    torch.manual_seed(0)
    math_model = GPT(cfg).eval()
    sdpa_model = GPT(cfg.replace(attn_impl="sdpa")).eval()
    sdpa_model.load_state_dict(math_model.state_dict())
    idx = torch.randint(0, 11, (2, 14), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(math_model(idx)[0], sdpa_model(idx)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["math", "sdpa"])
@pytest.mark.parametrize("pattern", ["strided", "fixed"])
def test_decoding_with_the_kv_cache_matches_the_full_forward(pattern, impl):
    model, _ = _pair(_cfg(sparse_attention=pattern, sparse_block=3, attn_impl=impl))
    idx = torch.randint(0, 11, (1, 11), generator=torch.Generator().manual_seed(4))
    full = model(idx)[0]
    cache = model.make_cache(1)
    steps = [model(idx[:, :5], cache=cache)[0]]  # prefill 5, then one token at a time (the model advances pos)
    for t in range(5, 11):
        steps.append(model(idx[:, t:t + 1], cache=cache)[0])
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_a_sparse_model_trains():
    torch.manual_seed(0)
    model = GPT(_cfg(sparse_attention="fixed", sparse_block=4, block_size=24))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    seq = torch.arange(25) % 11  # a periodic sequence, predictable from the last token
    x, y = seq[None, :-1].repeat(4, 1), seq[None, 1:].repeat(4, 1)
    losses = []
    for _ in range(30):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


# ---- a pattern per layer: sparse_attention_fn ------------------------------------------------------------------

def test_sparse_attention_fn_equals_the_config_pattern_and_alternates_per_layer():
    cfg = _cfg(position="alibi", sparse_attention="fixed", sparse_block=4)
    sparse, dense = _pair(cfg)
    idx = torch.randint(0, 11, (2, 13), generator=torch.Generator().manual_seed(5))
    dense.set_attention_fn(sparse_attention_fn("fixed", 4))  # ALiBi: the fn takes and applies `bias`
    torch.testing.assert_close(dense(idx)[0], sparse(idx)[0], atol=1e-5, rtol=1e-5)
    # GPT-3: dense and sparse layers alternate; differs from both all-dense and all-sparse
    dense.set_attention_fn(factory=lambda i: sparse_attention_fn("fixed", 4) if i % 2 else scaled_dot_product_attention)
    mixed = dense(idx)[0]
    dense.set_attention_fn()
    assert not torch.allclose(mixed, sparse(idx)[0], atol=1e-4)
    assert not torch.allclose(mixed, dense(idx)[0], atol=1e-4)
