"""Chapter 04's shipped records and mask figure (book.ch04_architectures.plots_attention)."""
import importlib.util
import json
import warnings
from dataclasses import asdict
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from book import results
from book.ch04_architectures import plots_attention as study_plots_b
from book.runs import ArchRun

matplotlib.use("Agg")
STUDIES = ("stability", "activation", "positions", "attention", "kv_heads", "prefix", "architectures", "moe",
           "objectives")
ROOT = Path(__file__).resolve().parents[3]
# Fields of the recipe that a shipped "run" may lack because the record predates the field, with the value every
# run had before it existed: Run.model_fields (extra ModelConfig fields) came after the 2026-11-23 records, which
# trained with none. A plan that sets the field to anything else is a change that needs a re-run.
PREDATES = {"model_fields": []}


def bench_studies(script: str):
    """The study table of bench/SCRIPT (its `studies(run)` function), imported from the file."""
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), ROOT / "bench" / script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.studies


def run_differences(recorded: dict, planned: dict) -> tuple[dict, list]:
    """({field: (recorded, planned)} where they differ, [fields the record lacks, accepted by PREDATES])."""
    differ, predates = {}, []
    for k in sorted(recorded.keys() | planned.keys()):
        if k not in recorded and k in PREDATES and planned[k] == PREDATES[k]:
            predates.append(k)
        elif recorded.get(k, "<absent>") != planned.get(k, "<absent>"):
            differ[k] = (recorded.get(k, "<absent>"), planned.get(k, "<absent>"))
    return differ, predates


def test_shipped_arch_records_are_of_every_study_the_bench_script_runs_with_the_current_laptop_recipe():
    """bench/arch_studies.py trains ArchRun.for_size("laptop") and stores it as each record's "run": a changed
    recipe or study table fails here until the records are made again (python bench/arch_studies.py)."""
    got = results.latest("arch_studies.jsonl")
    planned = json.loads(json.dumps(asdict(ArchRun.for_size("laptop"))))  # tuples as the record's lists
    table = bench_studies("arch_studies.py")(ArchRun.for_size("laptop"))
    assert set(STUDIES) == set(table), "the chapter's study list and the bench script's differ"
    missing = sorted(set(table) - set(got))
    assert not missing, f"no shipped record of {missing}: run python bench/arch_studies.py --only ..."
    stale, older = {}, {}
    for name in table:
        differ, predates = run_differences(got[name].get("run", {}), planned)
        if differ:
            stale[name] = differ
        if predates:
            older[name] = predates
    if older:
        warnings.warn(f"arch_studies.jsonl records predate recipe fields (accepted: PREDATES says what ran before "
                      f"them): {older}")
    assert not stale, f"records made with another recipe than ArchRun.for_size('laptop') ({{field: (recorded, " \
                      f"now)}}); re-run python bench/arch_studies.py --only ...: {stale}"


def test_shipped_arch_studies_has_every_study_with_provenance():
    got = study_plots_b.shipped_arch_studies()
    assert set(STUDIES) <= got.keys()
    for name in STUDIES:
        assert got[name]["rows"] and got[name]["provenance"]["command"].startswith("python bench/arch_studies.py")


def test_plot_masks_draws_the_three_masks():
    fig = study_plots_b.plot_masks(seq_len=6, prefix_len=2)
    causal, prefix, encdec = (ax.images[0].get_array() for ax in fig.axes)
    assert np.array_equal(np.asarray(causal, bool), np.tril(np.ones((6, 6), bool)))
    assert np.asarray(prefix, bool)[0, 1]            # a prefix token sees the next prefix token
    assert not np.asarray(prefix, bool)[2, 3]        # a suffix token does not see the future
    assert np.asarray(encdec).shape == (4, 6)       # 4 decoder queries: 4 self keys + 2 encoder keys
    with pytest.raises(ValueError, match="prefix_len"):
        study_plots_b.plot_masks(4, 4)
