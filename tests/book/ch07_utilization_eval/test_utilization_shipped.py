"""Chapter 07's shipped records (bench/results/utilization_studies.jsonl, kv_cache.jsonl) draw with provenance;
every study of bench/utilization_studies.py is shipped, and its record's "settings" (what book.results.recording()
saw it train and evaluate) are the current laptop plan, so a changed plan fails here until the records are made
again."""
import importlib.util
from pathlib import Path

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


def test_shipped_kv_cache_record_is_of_the_model_the_script_times_now():
    spec = importlib.util.spec_from_file_location("kv_cache", ROOT / "bench" / "kv_cache.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rec = results.last("kv_cache.jsonl")
    want = {"preset": bench.PRESET, "block_size": bench.BLOCK_SIZE, "vocab_size": bench.VOCAB, "threads": 1,
            "clock": "process_cpu"}
    assert {k: rec["config"].get(k) for k in want} == want, "re-run python bench/kv_cache.py"
    long = [r for r in rec["rows"] if r["new_tokens"] >= 256]
    assert long and all(r["speedup"] >= 1.5 for r in long), rec["rows"]  # as the live test asserts


ROOT = Path(__file__).resolve().parents[3]


def _bench_study_names() -> list:
    spec = importlib.util.spec_from_file_location("utilization_studies", ROOT / "bench" / "utilization_studies.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.studies("laptop"))


def test_every_study_of_the_bench_script_is_shipped_with_its_settings(assert_shipped_with_settings):
    """Records from before "settings" existed (2026-11-23) cannot say how they were made: they fail here, listed,
    until python bench/utilization_studies.py makes them again."""
    names = _bench_study_names()
    assert set(FIGURES) <= set(names)
    assert_shipped_with_settings(up.shipped_utilization_studies(), names, "utilization_studies.py")


def _one(settings: list, key: str, study: str) -> dict:
    found = [e[key] for e in settings if key in e]
    assert len(found) == 1, f"{study}: {len(found)} '{key}' entries in its settings"
    return found[0]


def _settings(name: str) -> list:
    settings = up.shipped_utilization_studies()[name].get("settings")
    assert settings is not None, f"{name}: the record has no settings (re-run bench/utilization_studies.py)"
    return settings


def test_shipped_tool_settings_are_the_current_plan():
    from book.ch07_utilization_eval.studies_tools import ToolStudyConfig

    cfg = ToolStudyConfig.for_size("laptop")
    tools = _settings("tools")
    assert _one(tools, "tools", "tools") == {"n_train": cfg.n_train, "train_digits": list(cfg.train_digits),
                                             "eval_digits": list(cfg.eval_digits), "n_eval": cfg.n_eval, "seed": 0}
    runs = [e for e in tools if "train" in e]  # both arms of a size train the same run: noted once
    assert {(e["n_layer"], e["n_embd"]) for e in runs} == set(cfg.sizes), runs
    assert {(e["steps"], e["batch_size"], e["lr"], e["block_size"]) for e in runs} == \
        {(cfg.run.steps, cfg.run.batch_size, cfg.run.lr, cfg.run.block_size)}, runs


def test_shipped_contamination_settings_are_the_current_plan():
    from book.ch07_utilization_eval.studies_contamination import _DEMO

    demo = _settings("contamination")
    assert _one(demo, "contamination", "contamination") == {**_DEMO["laptop"], "seed": 0}
    runs = [e for e in demo if "train" in e]
    assert runs and {(e["steps"], e["lr"]) for e in runs} == {(_DEMO["laptop"]["steps"], _DEMO["laptop"]["lr"])}, runs


def test_shipped_chapter_model_studies_evaluate_the_models_the_decoding_record_trained():
    """decoding trains the chapter's models (shared, so its record holds their runs); prompting and
    ppl_vs_accuracy must name those same models, and decoding the largest of them."""
    from book.runs import size_label

    trained = [size_label(e["n_layer"], e["n_embd"]) for e in _settings("decoding") if "train" in e]
    assert len(trained) >= 2, trained
    assert _one(_settings("decoding"), "decoding", "decoding")["model"] == trained[-1]
    for name in ("prompting", "ppl_vs_accuracy"):
        assert _one(_settings(name), name, name)["models"] == trained, name


def test_shipped_chapter_models_are_the_runs_chapter_models_would_train_now(monkeypatch):
    """chapter_models("laptop") with the fits and held-out scores stubbed out (what is noted is decided before
    them; ~3 s, mostly making the text): its runs must be the ones the decoding record trained."""
    import book.runs
    import minillm.train.trainer
    from book.ch07_utilization_eval import studies as ut

    monkeypatch.setattr(ut, "_CACHE", {})  # the untrained models are dropped with it
    monkeypatch.setattr(minillm.train.trainer.Trainer, "fit", lambda self, *a, **k: None)
    monkeypatch.setattr(book.runs, "heldout_loss", lambda *a, **k: 0.0)
    with results.recording() as now:
        ut.chapter_models("laptop")
    assert len(now) >= 2 and all(e.get("train") == "tokens" for e in now), now
    shipped = [e for e in _settings("decoding") if "train" in e]
    assert shipped == now, f"the chapter's models differ from the shipped ones; re-run python " \
                           f"bench/utilization_studies.py\nshipped: {shipped}\nnow:     {now}"
