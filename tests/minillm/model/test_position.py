"""Position encodings: the properties that make each one work."""
import math

import pytest
import torch

from minillm.model.position import alibi_bias, alibi_slopes, apply_rope, rope_angles, sinusoidal_embedding


def test_sinusoidal_table_values():
    t = sinusoidal_embedding(10, 8)
    assert t.shape == (10, 8)
    assert math.isclose(t[3, 0].item(), math.sin(3.0), rel_tol=1e-6)
    assert math.isclose(t[3, 1].item(), math.cos(3.0), rel_tol=1e-6)
    assert math.isclose(t[5, 2].item(), math.sin(5 / 10000 ** (2 / 8)), rel_tol=1e-5)


def test_rope_rotates_adjacent_pairs_and_keeps_norm():
    x = torch.randn(2, 6, 8)
    pos = torch.arange(6)
    y = apply_rope(x, pos, theta=10000.0)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))  # rotations preserve length
    # pair (0,1) at position 2 rotates by angle 2 * theta^0 = 2 radians
    c, s = math.cos(2.0), math.sin(2.0)
    torch.testing.assert_close(y[0, 2, 0], x[0, 2, 0] * c - x[0, 2, 1] * s)
    torch.testing.assert_close(y[0, 2, 1], x[0, 2, 0] * s + x[0, 2, 1] * c)
    torch.testing.assert_close(y[:, 0], x[:, 0])  # position 0 is not rotated


def test_rope_scores_depend_only_on_relative_offset():
    q, k = torch.randn(1, 16), torch.randn(1, 16)
    def score(m, n):
        return (apply_rope(q, torch.tensor([m])) * apply_rope(k, torch.tensor([n]))).sum()
    torch.testing.assert_close(score(7, 3), score(14, 10), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(score(7, 3), score(7, 5))


def test_alibi_slopes_and_bias():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert alibi_slopes(6).shape == (6,) and (alibi_slopes(6) > 0).all()
    b = alibi_bias(4, 5)
    assert b.shape == (4, 5, 5)
    assert torch.all(b.diagonal(dim1=1, dim2=2) == 0)
    torch.testing.assert_close(b[0, 4, 1], torch.tensor(-3 * 0.25))


# ---- batched positions (#21, bug 1) --------------------------------------------------------------------------------
def _row_by_row(x, positions, theta=10000.0):
    """The reference: apply_rope with (T,) positions, one leading row at a time."""
    return torch.stack([apply_rope(x[b], positions[b], theta) for b in range(x.size(0))])


@pytest.mark.parametrize("T, hd", [(8, 16), (5, 16), (8, 8), (3, 32)])  # (8, 16): T == hd // 2, the silent case
def test_rope_batched_positions_equal_row_by_row(T, hd):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, T, hd, generator=g)
    same = torch.arange(T).expand(2, T)
    torch.testing.assert_close(apply_rope(x, same), apply_rope(x, torch.arange(T)), atol=0, rtol=0)
    shifted = torch.stack([torch.arange(T), torch.arange(T) + 5])  # a KV-cache batch at different offsets
    torch.testing.assert_close(apply_rope(x, shifted), _row_by_row(x, shifted), atol=0, rtol=0)


def test_rope_positions_broadcast_over_heads():
    """x (B, H, T, hd) with positions (B, T): the HF convention (position_ids per sequence, shared by heads)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 16, generator=g)
    pos = torch.stack([torch.arange(8), torch.arange(8) * 2 + 1])
    want = torch.stack([apply_rope(x[b], pos[b]) for b in range(2)])  # each (H, T, hd) with (T,) positions
    torch.testing.assert_close(apply_rope(x, pos), want, atol=0, rtol=0)
    torch.testing.assert_close(apply_rope(x, pos[:, None, :].expand(2, 3, 8)), want, atol=0, rtol=0)


def test_rope_angles_shapes():
    cos, sin = rope_angles(torch.arange(8), 16)
    assert cos.shape == sin.shape == (8, 8)
    cos_b, sin_b = rope_angles(torch.stack([torch.arange(8), torch.arange(8) + 3]), 16)
    assert cos_b.shape == (2, 8, 8)
    torch.testing.assert_close(cos_b[0], cos, atol=0, rtol=0)
    torch.testing.assert_close(sin_b[1], rope_angles(torch.arange(8) + 3, 16)[1], atol=0, rtol=0)


@pytest.mark.parametrize("pos, match", [
    (torch.arange(7), "positions"),                       # wrong T
    (torch.arange(24).view(3, 8), "leading"),              # batch 3 for x's batch 2
    (torch.tensor(3), "positions"),                        # a scalar
])
def test_rope_bad_positions_get_a_clear_error(pos, match):
    x = torch.randn(2, 8, 16)
    with pytest.raises(ValueError, match=match):
        apply_rope(x, pos)


def test_rope_angles_rejects_a_scalar():
    with pytest.raises(ValueError, match="positions"):
        rope_angles(torch.tensor(3), 16)
