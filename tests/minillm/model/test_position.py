"""Position encodings: the properties that make each one work."""
import math

import torch

from minillm.model.position import alibi_bias, alibi_slopes, apply_rope, sinusoidal_embedding


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
