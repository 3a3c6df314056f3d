"""book.ch06_tuning.studies_noise: the standard errors behind chapter 06's "within noise" sentences."""
import math

import pytest

from book.ch06_tuning import studies_noise as sn


def test_binomial_se_and_z():
    assert sn.binomial_se(0.5, 100) == pytest.approx(0.05)
    assert sn.binomial_se(0.0, 10) == 0.0
    assert sn.z_score(0.6, 0.5, 0.03, 0.04) == pytest.approx(2.0)
    assert sn.z_score(0.2, 0.2, 0.0, 0.0) == 0.0
    with pytest.raises(ValueError):
        sn.binomial_se(1.5, 10)
    with pytest.raises(ValueError):
        sn.binomial_se(0.5, 0)


def test_reward_se_adds_the_components():
    row = {"correctness_sampled": 0.5, "harm_sampled": -1.0, "style_sampled": 0.0}  # half harmful
    assert sn.reward_se(row, 100) == pytest.approx(math.sqrt((0.25 + 4 * 0.25) / 100))


def test_finetune_noise_reads_the_shipped_records():
    out = sn.finetune_noise()
    assert out["peft"]["n"] == 128 and out["knowledge"]["n"] == 30
    for study in out.values():
        assert all(math.isfinite(v) for v in study.values())
    assert 0 < out["peft"]["se_full"] < 0.05
