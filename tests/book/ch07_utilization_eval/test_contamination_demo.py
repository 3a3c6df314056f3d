"""minillm.evaluation.contamination: the n-gram report finds planted test items (and nothing in disjoint text); the demo's rows. (chapter code)."""
import pytest

from book.ch07_utilization_eval.studies_contamination import contamination_demo


def test_demo_row_layout_at_ci():
    rows = contamination_demo("ci", seed=0)
    assert [(r["model"], r["split"]) for r in rows] == [("clean", "leaked"), ("clean", "clean"),
                                                       ("contaminated", "leaked"), ("contaminated", "clean")]
    for r in rows:
        assert set(r) >= {"model", "split", "accuracy", "n"} and 0 <= r["accuracy"] <= 1 and r["n"] == 8
    flagged = {(r["model"], r["split"]): r["flagged"] for r in rows}
    assert flagged == {("clean", "leaked"): 0.0, ("clean", "clean"): 0.0, ("contaminated", "leaked"): 1.0,
                       ("contaminated", "clean"): 0.0}  # the report flags exactly the leaked items
    with pytest.raises(ValueError, match="override"):
        contamination_demo("ci", stepz=3)
