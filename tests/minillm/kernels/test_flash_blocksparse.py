"""Block-sparse FlashAttention: block layouts (minillm.model.sparse), the tiles the kernels visit, and the reference
and Triton kernels against SDPA with the element mask the layout means (expand_block_layout) & the causal mask.

Shapes are tiny and odd on purpose (lengths that are no multiple of the block or tile, Tq != Tk, GQA, one layout per
head, S twice the tile), fp32 to 1e-5, forward and backward. The Triton kernels run in the interpreter on CPU (and,
via `device`, compiled on a GPU); the GPU's realistic lengths are in test_flash_attention_gpu.py.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minillm.kernels import flash_attention as fa
from minillm.kernels import ops
from minillm.kernels.flash_blocksparse import check_tiles, lookup_table, tile_layout
from minillm.kernels.flash_reference import (causal_mask_bottom_right, flash_attention_reference,
                                             flash_forward_reference)
from minillm.model.sparse import (block_sparse_layout, expand_block_layout, fixed_block_layout, fixed_sparse_mask,
                                  strided_block_layout, strided_sparse_mask)

FP32 = dict(atol=1e-5, rtol=1e-5)
TILE = 16


def _rows(*rows: str) -> list[list[bool]]:
    return [[c == "x" for c in r] for r in rows]


def _inputs(B, H, Hkv, Tq, Tk, D, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v, do = (torch.randn(B, h, t, D, generator=g) for h, t in ((H, Tq), (Hkv, Tk), (Hkv, Tk), (H, Tq)))
    return [t.to(device) for t in (q, k, v, do)]


def _run(fn, q, k, v, do):
    """(out, dq, dk, dv) of fn(q, k, v) with upstream gradient do."""
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = fn(q, k, v)
    out.backward(do)
    return out.detach(), q.grad, k.grad, v.grad


def _oracle_mask(layout, S, Tq, Tk, causal, device="cpu"):
    """(Tq, Tk) or (H, Tq, Tk): the layout's element mask, & the bottom-right causal mask."""
    mask = expand_block_layout(layout, S, Tq, Tk).to(device)
    return mask & causal_mask_bottom_right(Tq, Tk, device) if causal else mask


def _sdpa(mask):
    # a (H, Tq, Tk) per-head mask broadcasts over the batch; SDPA gives a row with no key 0 (and no gradient)
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


def _explicit(mask):
    """softmax(q k^T / sqrt(D), mask) v written out, a row without keys set to 0 (SDPA's CPU answer, and an oracle
    that does not depend on how a GPU backend treats such rows)."""
    def fn(q, k, v):
        k, v = (t.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for t in (k, v))
        s = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(~mask, float("-inf"))
        return torch.softmax(s, dim=-1).nan_to_num(0.0) @ v  # (B, H, Tq, D)
    return fn


def _assert_matches(got, want, what):
    for g, w, name in zip(got, want, ("out", "dq", "dk", "dv")):
        assert g.shape == w.shape and torch.isfinite(g).all(), f"{what} {name}"
        torch.testing.assert_close(g, w, **FP32, msg=lambda m: f"{what} {name}: {m}")


# ---- the layouts --------------------------------------------------------------------------------------------

def test_block_layouts_by_hand():
    assert strided_block_layout(6, 2).tolist() == _rows(
        "x.....",
        "xx....",
        "xxx...",  # band of 2 (blocks 1, 2) plus every 2nd block back (0)
        ".xxx..",
        "x.xxx.",
        ".x.xxx")
    assert fixed_block_layout(6, 3).tolist() == _rows(
        "x.....",
        "xx....",
        "xxx...",
        "..xx..",  # group 1 starts: its own block, plus group 0's summary block 2
        "..xxx.",
        "..xxxx")
    assert fixed_block_layout(6, 3, n_summary=2)[5].tolist() == [False, True, True, True, True, True]
    for lay in (strided_block_layout(9, 3), fixed_block_layout(9, 4, 2)):
        assert lay.diagonal().all() and not lay.triu(1).any()  # the diagonal block, nothing in the future
    # the element patterns drawn on the block grid
    assert torch.equal(strided_block_layout(11, 3), strided_sparse_mask(11, 3))
    assert torch.equal(fixed_block_layout(11, 4, 2), fixed_sparse_mask(11, 4, n_summary=2))
    with pytest.raises(ValueError, match="n_blocks=0"):
        strided_block_layout(0, 2)
    with pytest.raises(ValueError, match="stride=0"):
        strided_block_layout(4, 0)


def test_expand_block_layout_by_hand():
    lay = torch.tensor(_rows("x..", "..x", "x.x"))
    assert expand_block_layout(lay, 2, 5, 5).tolist() == _rows(
        "xx...",  # positions 0, 1: block 0 sees block 0
        "xx...",
        "....x",  # positions 2, 3: block 1 sees block 2 (a future block: the causal mask removes it)
        "....x",
        "xx..x")  # position 4: block 2 sees blocks 0 and 2
    # 3 queries over 5 keys are positions 2..4: the whole layout, or the rows of their blocks (1 and 2), says the same
    full = expand_block_layout(lay, 2, 5, 5)
    assert torch.equal(expand_block_layout(lay, 2, 3, 5), full[2:])
    assert torch.equal(expand_block_layout(lay[1:], 2, 3, 5), full[2:])
    per_head = torch.stack([lay, ~lay])  # (H, rows, cols) -> (H, Tq, Tk)
    assert torch.equal(expand_block_layout(per_head, 2, 5, 5)[1], ~full)
    with pytest.raises(ValueError, match=r"\(3, 3\) or \(2, 3\)"):
        expand_block_layout(lay[:, :2], 2, 3, 5)


def test_tiles_and_lookup_table_by_hand():
    lay = torch.tensor(_rows("x..", ".x.", "x.x"))
    visit, masked = tile_layout(lay, 16, 48, 48, 16, 16, causal=True)
    assert visit[0].tolist() == lay.tolist() and masked[0].tolist() == torch.eye(3, dtype=torch.bool).tolist()
    # per query tile: [unmasked, visited, key tiles: unmasked first, then masked, then the rest]
    assert lookup_table(visit, masked)[0].tolist() == [[0, 1, 0, 1, 2], [0, 1, 1, 0, 2], [1, 2, 0, 2, 1]]
    # per key tile, for the dK/dV programs: key tile 0 is seen whole by query tile 2 and in part by query tile 0
    assert lookup_table(visit, masked, by_key=True)[0].tolist() == [[1, 2, 2, 0, 1], [0, 1, 1, 0, 2],
                                                                    [0, 1, 2, 0, 1]]
    # S = 2 tiles: each layout entry covers 2 x 2 tiles; above the diagonal (tile (0, 1)) nothing is visited
    visit, _ = tile_layout(torch.tensor(_rows("x.", "xx")), 32, 64, 64, 16, 16, causal=True)
    assert visit[0].tolist() == _rows("x...", "xx..", "xxx.", "xxxx")


def _tiles_of(mask, Tq, Tk, block_m, block_n):
    """Tiles of an element mask (..., Tq, Tk) holding any True, the query tiles aligned to positions (shift rows
    of padding on top), computed with block_sparse_layout: independent of the kernels' tables."""
    shift = (Tk - Tq) % block_m
    padded = torch.cat([mask.new_zeros(*mask.shape[:-2], shift, Tk), mask], dim=-2)
    return block_sparse_layout(padded, block_m, block_n)


@pytest.mark.parametrize("Tq, Tk, S, causal", [(37, 37, 16, True), (20, 45, 32, True), (1, 37, 16, True),
                                               (33, 45, 16, False)])
def test_tile_layout_visits_exactly_the_tiles_the_mask_touches(Tq, Tk, S, causal):
    n = -(-Tk // S)
    layout = torch.stack([strided_block_layout(n, 2), fixed_block_layout(n, 2)])  # (H=2, n, n)
    visit, masked = tile_layout(layout[:, (Tk - Tq) // S:], S, Tq, Tk, TILE, TILE, causal)
    assert torch.equal(visit, _tiles_of(_oracle_mask(layout, S, Tq, Tk, causal), Tq, Tk, TILE, TILE))
    assert not (masked & ~visit).any()


# ---- the reference and the kernels against SDPA ---------------------------------------------------------------

# name: (B, H, Hkv, Tq, Tk, D, S, causal, layout(n_blocks, H))
_LAYOUTS = {
    "strided": lambda n, H: strided_block_layout(n, 2),
    "fixed": lambda n, H: fixed_block_layout(n, 2),
    "per_head": lambda n, H: torch.stack([strided_block_layout(n, 2) if h % 2 else fixed_block_layout(n, 2, 1)
                                          for h in range(H)]),
    "bidirectional": lambda n, H: (strided_block_layout(n, 2) | strided_block_layout(n, 2).T),
}
CASES = {  # each layout skips some block the causal mask would keep (the reference test checks the answer moves)
    "ragged_T": (1, 2, 2, 53, 53, 16, 16, True, "strided"),
    "S_two_tiles": (2, 2, 2, 70, 70, 16, 32, True, "fixed"),
    "gqa_per_head": (1, 4, 2, 70, 70, 8, 16, True, "per_head"),
    "kv_cache": (1, 2, 1, 20, 70, 16, 16, True, "strided"),  # queries 50..69: tile 0 starts 2 rows before query 0
    "decode": (1, 2, 2, 1, 37, 16, 16, True, "fixed"),
    "non_causal": (1, 2, 2, 33, 53, 12, 16, False, "bidirectional"),
}


def _case(name, device="cpu"):
    B, H, Hkv, Tq, Tk, D, S, causal, kind = CASES[name]
    n = -(-Tk // S)
    layout = _LAYOUTS[kind](n, H)
    return _inputs(B, H, Hkv, Tq, Tk, D, device), layout, S, causal


@pytest.mark.parametrize("case", CASES)
def test_reference_matches_sdpa_with_the_expanded_mask(case):
    (q, k, v, do), layout, S, causal = _case(case)
    Tq, Tk = q.shape[2], k.shape[2]
    want = _run(_sdpa(_oracle_mask(layout, S, Tq, Tk, causal)), q, k, v, do)
    got = _run(lambda *a: flash_attention_reference(*a, causal, block_m=TILE, block_n=TILE, block_layout=layout,
                                                    sparse_block=S), q, k, v, do)
    _assert_matches(got, want, case)
    assert not torch.allclose(want[0], _run(_sdpa(causal_mask_bottom_right(Tq, Tk) if causal else None),
                                            q, k, v, do)[0], atol=1e-3)  # the layout does change the answer


@pytest.mark.parametrize("case", CASES)
def test_triton_matches_sdpa_and_visits_only_true_tiles(case, device):
    (q, k, v, do), layout, S, causal = _case(case, device)
    B, H, Tq, _ = q.shape
    Tk = k.shape[2]
    mask = _oracle_mask(layout, S, Tq, Tk, causal, device)
    rows = layout[..., (Tk - Tq) // S:, :]  # the KV-cache form: only the query blocks' rows
    for lay in (layout, rows) if Tq < Tk else (layout,):
        visits = {}
        kw = dict(block_layout=lay.to(device), sparse_block=S, _visits=visits)
        o, lse = fa.flash_attention_forward(q, k, v, causal, None, TILE, TILE, **kw)
        dq, dk, dv = fa.flash_attention_backward(do, q, k, v, o, lse, causal, None, TILE, TILE, **kw)
        _assert_matches((o, dq, dk, dv), _run(_sdpa(mask), q, k, v, do), case)
        tiles = int(_tiles_of(mask.cpu(), Tq, Tk, TILE, TILE).sum()) * (1 if mask.dim() == 3 else H)
        for name in ("fwd", "dq", "dkdv"):  # one visit per (tile, head) in each kernel; B copies
            assert int(visits[name].sum()) == B * tiles, name
    got = _run(lambda *a: fa.flash_attention(*a, causal, block_m=TILE, block_n=TILE, block_layout=layout,
                                             sparse_block=S), q, k, v, do)  # through autograd
    _assert_matches(got, (o, dq, dk, dv), case)


def test_dense_kernels_visit_the_causal_tiles_and_a_coarse_layout_fewer(device):
    q, k, v, do = _inputs(1, 2, 2, 64, 64, 16, device)
    visits = {}
    o, lse = fa.flash_attention_forward(q, k, v, True, None, TILE, TILE, _visits=visits)
    fa.flash_attention_backward(do, q, k, v, o, lse, True, None, TILE, TILE, _visits=visits)
    assert [int(visits[n].sum()) for n in ("fwd", "dq", "dkdv")] == [2 * 10] * 3  # 4 * 5 / 2 tiles per head
    sparse = {}
    layout = strided_block_layout(4, 2)  # 9 of the 10 causal blocks: (3, 0) is skipped
    fa.flash_attention_forward(q, k, v, True, None, TILE, TILE, block_layout=layout.to(device), sparse_block=TILE,
                               _visits=sparse)
    assert sparse["fwd"][0, 0].tolist() == [1, 2, 3, 3] and int(sparse["fwd"].sum()) == 2 * 9


def test_a_query_that_sees_no_key_gets_zero_and_no_nan(device):
    # block 1's only True block lies in its future (the causal mask empties it); block 0 of head 1 has no True
    lay = torch.stack([torch.tensor(_rows("x..", "..x", "x.x")), torch.tensor(_rows("...", "xx.", "x.x"))])
    q, k, v, do = _inputs(1, 2, 1, 40, 40, 16, device)
    mask = _oracle_mask(lay, 16, 40, 40, True, device)
    want = _run(_explicit(mask), q, k, v, do)
    if device == "cpu":  # torch's CPU SDPA gives such a row 0 too (a GPU backend may give NaN)
        _assert_matches(want, _run(_sdpa(mask), q, k, v, do), "SDPA")
    empty = {0: slice(16, 32), 1: slice(0, 16)}  # head: its queries without keys
    for fn in (flash_attention_reference, fa.flash_attention):
        got = _run(lambda *a: fn(*a, True, block_m=TILE, block_n=TILE, block_layout=lay.to(device), sparse_block=16),
                   q, k, v, do)
        _assert_matches(got, want, fn.__name__)
        for h, rows in empty.items():
            assert got[0][:, h, rows].eq(0).all() and got[1][:, h, rows].eq(0).all(), fn.__name__
    for fn in (flash_forward_reference, fa.flash_attention_forward):
        _, lse = fn(q, k, v, True, None, TILE, TILE, block_layout=lay.to(device), sparse_block=16)
        s = (q @ k.transpose(-1, -2) / 4.0).masked_fill(~mask, float("-inf"))  # (1, 2, 40, 40), scale 1/sqrt(16)
        torch.testing.assert_close(lse, torch.logsumexp(s, dim=-1), **FP32)  # -inf where the row is empty
        assert lse[0, 0, 16:32].eq(float("-inf")).all() and lse[0, 1, :16].eq(float("-inf")).all()


def test_a_block_of_128_fits_every_gpu_tile_config():
    # test_flash_attention_gpu.py runs block-sparse layouts with S = 128 under the GPU's default tiles
    for kernel, configs in fa.GPU_CONFIGS.items():
        for bm, bn, *_ in configs.values():
            check_tiles(128, bm, bn, kernel)
    with pytest.raises(ValueError, match="multiple of the 'fwd' kernel's tiles"):
        check_tiles(64, *fa.GPU_CONFIGS["fwd"][("half", 128)][:2], "'fwd' kernel's")


def test_ops_entry_point_with_the_default_tiles(device):
    q, k, v, do = _inputs(1, 2, 2, 40, 70, 16, device)
    S = fa.launch_config("fwd", q.dtype, 16, q.device)[0] * 2  # a multiple of every kernel's tiles here
    layout = fixed_block_layout(-(-70 // S), 2)
    got = _run(lambda *a: ops.flash_attention(*a, block_layout=layout, sparse_block=S), q, k, v, do)
    _assert_matches(got, _run(_sdpa(_oracle_mask(layout, S, 40, 70, True, device)), q, k, v, do), "ops")


# ---- clear errors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [flash_attention_reference, fa.flash_attention], ids=["reference", "triton"])
@pytest.mark.parametrize("Tq, Tk, H, kwargs, error, match", [
    (37, 37, 2, dict(block_layout=torch.ones(2, 3, dtype=torch.bool), sparse_block=16), ValueError,
     r"need \(rows, cols\) = \(3, 3\)"),
    (20, 45, 2, dict(block_layout=torch.ones(3, 2, dtype=torch.bool), sparse_block=16), ValueError,
     r"\(3, 3\) or \(2, 3\)"),
    (37, 37, 2, dict(block_layout=torch.ones(3, 3, 3, dtype=torch.bool), sparse_block=16), ValueError,
     "one layout per query head: got 3 for 2 heads"),
    (40, 40, 2, dict(block_layout=torch.ones(5, 5, dtype=torch.bool), sparse_block=8), ValueError,
     r"sparse_block=8 must be a multiple of the .*BLOCK_M=16"),
    (37, 37, 2, dict(block_layout=torch.ones(3, 3), sparse_block=16), TypeError, "must be a bool tensor"),
    (37, 37, 2, dict(block_layout=torch.ones(3, 3, dtype=torch.bool)), ValueError, "go together"),
    (37, 37, 2, dict(sparse_block=16), ValueError, "go together"),
    (37, 37, 2, dict(block_layout=torch.ones(3, 3, dtype=torch.bool), sparse_block=0), ValueError,
     "sparse_block=0 must be a positive int"),
])
def test_clear_errors(fn, Tq, Tk, H, kwargs, error, match):
    q, k, v, _ = _inputs(1, H, H, Tq, Tk, 16)
    with pytest.raises(error, match=match):
        fn(q, k, v, True, block_m=TILE, block_n=TILE, **kwargs)


def test_more_queries_than_keys_is_refused_with_a_layout():
    q, k, v, _ = _inputs(1, 2, 2, 40, 32, 16)
    with pytest.raises(ValueError, match="Tq <= Tk"):
        flash_attention_reference(q, k, v, False, block_m=TILE, block_n=TILE,
                                  block_layout=torch.ones(2, 2, dtype=torch.bool), sparse_block=16)
