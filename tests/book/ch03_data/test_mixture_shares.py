"""Tests for book.ch03_data.studies_mixture.excess_by_share: each domain's mean excess loss per share it had."""
from __future__ import annotations

import pytest

from book.ch03_data.studies_mixture import excess_by_share, shipped_excess_by_share


def _row(en: float, zh: float, ex_en: float, ex_zh: float) -> dict:
    return {"weights": {"english": en, "chinese": zh}, "excess": {"english": ex_en, "chinese": ex_zh}}


def test_excess_by_share_hand_computed():
    rows = [_row(1 / 3, 2 / 3, 1.0, 0.2), _row(2 / 3, 1 / 3, 0.4, 0.6), _row(1 / 3, 2 / 3, 3.0, 0.4)]
    out = excess_by_share(rows)
    assert [r["share"] for r in out] == ["1/3", "2/3"]  # float shares read back as fractions, smallest first
    assert out[0]["english"] == pytest.approx(2.0) and out[0]["n_english"] == 2  # mean of 1.0 and 3.0
    assert out[0]["chinese"] == pytest.approx(0.6) and out[0]["n_chinese"] == 1
    assert out[1]["english"] == pytest.approx(0.4) and out[1]["chinese"] == pytest.approx(0.3)


def test_excess_by_share_marks_a_share_a_domain_never_had():
    out = excess_by_share([_row(0.5, 0.5, 1.0, 1.0), _row(0.25, 0.75, 2.0, 0.5)])
    quarter = next(r for r in out if r["share"] == "1/4")
    assert quarter["chinese"] is None and quarter["n_chinese"] == 0 and quarter["english"] == 2.0


def test_excess_by_share_rejects_no_rows():
    with pytest.raises(ValueError, match="rows of a mixture sweep"):
        excess_by_share([])


def test_shipped_excess_by_share_covers_every_mixture_once_per_domain():
    rows = shipped_excess_by_share()["rows"]
    assert rows, "the shipped mixture sweep has rows"
    n = {d: sum(r["n_" + d] for r in rows) for d in ("english", "chinese", "arithmetic")}
    assert len(set(n.values())) == 1 and n["english"] >= 10  # each mixture counted once for each domain
