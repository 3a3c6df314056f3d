"""Tool use (Survey §6.4): the calculator, the training text format, generation that runs calls, and the study. (chapter code)."""
import pytest

from book.ch07_utilization_eval.studies_tools import RECIPE, ToolStudyConfig, tool_study


def test_tool_study_ci_rows_and_determinism():
    cfg = ToolStudyConfig.for_size("ci")
    rows = tool_study(size="ci", seed=0)
    assert len(rows) == len(cfg.sizes) * 2 * len(cfg.eval_digits)
    for r in rows:
        assert set(r) == {"size", "params", "arm", "digits", "exact_match", "calls_per_answer"}
        assert r["arm"] in ("tool", "no_tool") and r["digits"] in cfg.eval_digits and r["params"] > 0
        assert 0.0 <= r["exact_match"] <= 1.0 and 0.0 <= r["calls_per_answer"] <= 4
    assert {r["size"] for r in rows} == {"L1-C16", "L1-C32"}
    assert tool_study(size="ci", seed=0) == rows


def test_study_config_validates():
    with pytest.raises(ValueError, match="block_size"):
        ToolStudyConfig(run=RECIPE.replace(block_size=32), eval_digits=(4,))
    with pytest.raises(ValueError, match="sizes"):
        ToolStudyConfig(sizes=((1, 20),))
