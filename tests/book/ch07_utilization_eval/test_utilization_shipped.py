"""Chapter 07's shipped records (bench/results/utilization_studies.jsonl, kv_cache.jsonl) draw with provenance."""
import matplotlib
import matplotlib.pyplot as plt
import pytest

from book import results
from book.ch07_utilization_eval import plots as up
from book.ch07_utilization_eval.plots import plot_kv_speed

matplotlib.use("Agg")
FIGURES = {"decoding": up.plot_decoding, "prompting": up.plot_prompting, "ppl_vs_accuracy": up.plot_ppl_vs_accuracy,
           "tools": up.plot_tools, "contamination": up.plot_contamination}


def test_every_study_is_shipped_at_laptop_size_with_provenance_and_draws():
    got = up.shipped_utilization_studies()
    assert set(FIGURES) <= got.keys()
    for name, draw in FIGURES.items():
        rec = got[name]
        assert rec["size"] == "laptop" and rec["rows"], name
        assert rec["provenance"]["command"].startswith("python bench/utilization_studies.py"), name
        plt.close(draw(rec["rows"]))


def test_shipped_contamination_flags_exactly_the_leaked_half():
    rows = {(r["model"], r["split"]): r for r in up.shipped_utilization_studies()["contamination"]["rows"]}
    assert rows["contaminated", "leaked"]["flagged"] == 1.0
    assert rows["contaminated", "clean"]["flagged"] == rows["clean", "leaked"]["flagged"] == 0.0


def test_shipped_kv_cache_record_draws():
    rec = results.last("kv_cache.jsonl")
    assert rec["provenance"]["command"].startswith("python bench/kv_cache.py")
    assert all(r["speedup"] == pytest.approx(r["cached_tps"] / r["uncached_tps"], rel=0.01) for r in rec["rows"])
    plt.close(plot_kv_speed(rec["rows"]))
