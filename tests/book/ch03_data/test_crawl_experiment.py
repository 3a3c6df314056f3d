"""Tests of minillm.data.curation: every stage on one small crawl, scored against the crawl's ground truth. (chapter code)."""
import numpy as np

from book.ch03_data.studies_crawl import crawl_experiment
from minillm.data.curation import PipelineConfig


def test_crawl_experiment_tiny():
    from book.runs import Run

    run = Run(n_layer=1, n_embd=16, n_head=1, block_size=32, batch_size=4, steps=10, eval_windows=4)
    out = crawl_experiment(200, seed=1, run=run, cfg=PipelineConfig(n_reference_docs=100), n_eval_docs=20)
    assert set(out["raw"]) == {"english", "chinese"}
    assert 0 < out["kept"] < out["pages"] and out["clean_chars"] < out["raw_chars"]
    assert np.isfinite(list(out["clean_minus_raw"].values())).all()
