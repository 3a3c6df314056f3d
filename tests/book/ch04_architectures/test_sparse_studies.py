"""Sparse attention in chapter 04: cost rows against the masks, the verdict's arithmetic, the study on a tiny run, and
the figures (book.ch04_architectures.studies_sparse, plots_sparse)."""
import json

import matplotlib
import pytest
from matplotlib.figure import Figure

from book.ch04_architectures.plots_sparse import plot_sparse_cost, plot_sparse_patterns
from book.ch04_architectures.studies_sparse import (PATTERNS, count_tiles, pattern_mask, sparse_cost_rows,
                                                    sparse_study, sparse_verdict, sqrt_block)
from book.runs import ArchRun
from minillm.model.sparse import block_sparse_layout

matplotlib.use("Agg")


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("T, tile", [(1, 4), (37, 8), (100, 16), (64, 64)])
def test_tiles_counted_row_by_row_equal_the_whole_mask(pattern, T, tile):
    block = sqrt_block(T)
    whole = block_sparse_layout(pattern_mask(pattern, T, block, 9), tile, tile)
    assert count_tiles(pattern, T, block, 9, tile) == int(whole.sum())


def test_cost_rows_match_the_masks():
    rows = sparse_cost_rows(seq_lens=(64, 200), window=16, tile=16, tiles_up_to=64)
    assert json.loads(json.dumps(rows)) == rows
    assert [(r["T"], r["pattern"]) for r in rows] == [(T, p) for T in (64, 200) for p in PATTERNS]
    for r in rows:
        block = sqrt_block(r["T"])
        mask = pattern_mask(r["pattern"], r["T"], block, 16)
        assert r["pairs"] == int(mask.sum())
        assert r["pairs_fraction"] == pytest.approx(int(mask.sum()) / (r["T"] * (r["T"] + 1) / 2))
        assert (r["tiles"] is None) == (r["T"] > 64)
    assert sqrt_block(64) == 8 and sqrt_block(200) == 14
    small = {r["pattern"]: r for r in rows if r["T"] == 64}
    assert small["dense"]["tile_fraction"] == 1.0 and small["sliding"]["tiles"] == 4 + 3
    assert small["strided"]["pairs_fraction"] < 0.4 and small["strided"]["tile_fraction"] == 1.0  # l < tile
    with pytest.raises(ValueError, match="window=0"):
        sparse_cost_rows(seq_lens=(64,), window=0)
    with pytest.raises(ValueError, match="pattern 'banded'"):
        pattern_mask("banded", 8, 2, 2)


def test_verdict_compares_gaps_with_the_seed_spread():
    rows = [{"pattern": None, "val_loss": 2.0}, {"pattern": None, "val_loss": 2.1},
            {"pattern": "strided", "val_loss": 2.02}, {"pattern": "strided", "val_loss": 2.04},
            {"pattern": "fixed", "val_loss": 1.5}, {"pattern": "fixed", "val_loss": 1.52}]
    v = {r["pattern"]: r for r in sparse_verdict(rows)}
    assert v["strided"]["gap"] == pytest.approx(2.03 - 2.05)
    assert v["strided"]["noise"] == pytest.approx(0.1)  # the dense seeds differ most
    assert v["strided"]["within_noise"] and not v["fixed"]["within_noise"]
    with pytest.raises(ValueError, match="no dense arm"):
        sparse_verdict([r for r in rows if r["pattern"] is not None])
    with pytest.raises(ValueError, match="two seeds"):
        sparse_verdict(rows[::2])


def test_sparse_study_on_a_tiny_run():
    run = ArchRun.for_size("ci", n_embd=16, n_head=2, block_size=16, batch_size=4, steps=4, warmup=1, eval_windows=4)
    rows = sparse_study(patterns=(None, "fixed"), seeds=2, run=run)
    assert [(r["label"], r["seed"]) for r in rows] == [("dense", run.seed), ("dense", run.seed + 1),
                                                       ("fixed (block 4)", run.seed), ("fixed (block 4)", run.seed + 1)]
    assert rows[0]["val_loss"] != rows[1]["val_loss"]  # the seed changes the run
    assert rows[2]["pairs_fraction"] == pytest.approx((4 * 10 + 4 * (1 + 2 + 3)) / (16 * 17 / 2))
    # 4 blocks of 4: 10 pairs inside each, and each of block k's 4 rows reads k summary columns
    assert len(sparse_verdict(rows)) == 2
    with pytest.raises(ValueError, match="distinct values"):
        sparse_study(patterns=("dense",), run=run)


def test_figures():
    fig = plot_sparse_patterns(T=32, tile=8)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert "pairs" in fig.axes[2].get_title() and len(fig.axes[3].get_legend().get_texts()) == 2
    rows = sparse_cost_rows(seq_lens=(64, 128, 256), tile=16, tiles_up_to=128)
    fig = plot_sparse_cost(rows)
    assert len(fig.axes) == 2 and len(fig.axes[0].get_lines()) == 4
    assert len(fig.axes[1].get_lines()) == 8  # pairs and tiles per pattern
    with pytest.raises(ValueError, match="sparse_cost_rows"):
        plot_sparse_cost([{"T": 1}])
    matplotlib.pyplot.close("all")
