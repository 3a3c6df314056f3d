"""Tests of minillm.data.curation: every stage on one small crawl, scored against the crawl's ground truth."""
import pytest

from minillm.data.crawl import generate_crawl
from minillm.data.curation import (
    QUALITY_FILTERS,
    STAGE_TARGETS,
    PipelineConfig,
    register_bias,
    run_pipeline,
    stage_rows,
)


@pytest.fixture(scope="module")
def result():
    return run_pipeline(generate_crawl(400, seed=3), PipelineConfig(n_reference_docs=200))


def test_every_stage_has_flags_and_truth(result):
    n = len(result.texts)
    assert set(STAGE_TARGETS) <= set(result.flags) and set(STAGE_TARGETS) <= set(result.truth)
    for stage in STAGE_TARGETS:
        assert result.flags[stage].shape == (n,) and result.flags[stage].dtype == bool


def test_stage_quality_on_a_known_crawl(result):
    rows = {r["stage"]: r for r in stage_rows(result)}
    # Stages with a crisp signal must be near perfect; these bounds fail if a stage breaks.
    for stage in ("language", "exact_dup", "contaminated", "pii", "classifier_labelled"):
        assert rows[stage]["precision"] >= 0.95 and rows[stage]["recall"] >= 0.95, rows[stage]
    assert rows["near_dup"]["recall"] >= 0.8 and rows["near_dup"]["precision"] >= 0.9
    assert rows["heuristic"]["recall"] >= 0.9
    assert rows["keyword"]["precision"] >= 0.9  # it only fires on spam
    assert result.extras["extraction_exact"] == 1.0


def test_cleaned_set_is_clean_and_masked(result):
    labels = result.extras["labels"]
    kept_quality = labels["quality"][result.keep]
    assert (kept_quality == "clean").mean() >= 0.95
    assert not (labels["language"][result.keep] == "other").any()
    assert not labels["contaminated"][result.keep].any()
    assert len(result.cleaned) == int(result.keep.sum())
    assert sum(result.pii_counts.values()) > 0
    from minillm.data.pii import find_pii

    assert not any(find_pii(t) for t in result.cleaned)  # masked: nothing left to find


def test_register_bias_rows(result):
    rows = {r["filter"]: r for r in register_bias(result)}
    assert set(rows) == set(QUALITY_FILTERS)
    for r in rows.values():
        assert 0 <= r["dropped_formal"] <= 1 and r["n_informal"] > 0
    # The perplexity LM was trained on formal text only: it drops chatty clean pages far more often.
    assert rows["perplexity"]["dropped_informal"] > rows["perplexity"]["dropped_formal"] + 0.3


def test_config_validation():
    with pytest.raises(ValueError, match="unknown filters"):
        PipelineConfig(use_filters=("magic",))
    with pytest.raises(ValueError, match="near_threshold"):
        PipelineConfig(near_threshold=1.5)
    with pytest.raises(TypeError, match="generate_crawl"):
        run_pipeline(["not a crawl"])
    with pytest.raises(ValueError, match="use_filters is empty"):
        run_pipeline(generate_crawl(20, seed=0), PipelineConfig(use_filters=()))
