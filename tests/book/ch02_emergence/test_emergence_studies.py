"""book.ch02_emergence.studies: the shared model zoo, the study rows, and the appearance table."""
import pytest

from book.ch02_emergence import studies as S

TINY = S.EmergenceRun(sizes=((1, 16), (1, 32)), run=S.RECIPE.replace(steps=3, batch_size=2), n_chars=12_000,
                      n_eval=4, ablation_sizes=(1,), digits=(2,), shots=(0, 2))


@pytest.fixture(scope="module")
def zoo():
    return S.ModelZoo(TINY)


def test_run_profiles_and_validation():
    assert len(S.EmergenceRun.for_size("laptop").sizes) >= 5
    with pytest.raises(ValueError, match="ablation_sizes"):
        S.EmergenceRun(sizes=((1, 16),), ablation_sizes=(3,))
    with pytest.raises(ValueError, match="multiple of 16"):
        S.EmergenceRun(sizes=((1, 20),))


def test_base_rates_arms():
    rates, knobs = S.base_rates()
    assert rates["instructions"] > 0 and knobs["addition"]["cot"] > 0
    rates, knobs = S.base_rates(cot=False, instructions=False)
    assert "instructions" not in rates and knobs["addition"]["cot"] == 0


def test_zoo_trains_each_model_once(zoo):
    a = zoo.get(0)
    assert zoo.get(0) is a
    with pytest.raises(ValueError, match="arm"):
        zoo.get(0, "nope")


def test_studies_rows(zoo):
    sweep = S.size_sweep(zoo)
    assert len(sweep) == 2 * len(S.SWEEP_TASKS)
    assert sweep[0]["params"] < sweep[-1]["params"]
    for r in sweep:
        assert 0 <= r["exact_match"] <= r["token_accuracy"] + 1e-9 <= 1 + 1e-9 and r["logprob_mean"] < 0
    assert len(S.icl_by_shots(zoo)) == 2 * 2 * 2
    cot = S.cot_study(zoo)
    assert {(r["arm"], r["prompt"]) for r in cot} == {(arm, p) for arm in ("base", "no_cot")
                                                      for p in ("cot", "direct", "free")}
    ins = S.instruction_study(zoo)
    assert {r["arm"] for r in ins} == {"base", "no_instructions"}
    inv = S.inverse_scaling_study(zoo)
    assert all(r["correct"] + r["imitation"] <= 1 for r in inv)
    assert {p["task"] for p in S.predictability(sweep)} == set(S.SWEEP_TASKS)


def test_appearance_table_thresholds():
    rows = [{"task": "t", "size": s, "params": p, "exact_match": em, "token_accuracy": ta, "brier": b,
             "logprob_mean": lp} for s, p, em, ta, b, lp in (("a", 1, 0.0, 0.3, 0.9, -2.0),
                                                             ("b", 10, 0.2, 0.6, 0.6, -0.5),
                                                             ("c", 100, 0.7, 0.9, 0.2, -0.3))]
    (t,) = S.appearance_table(rows)
    assert (t["exact_match"], t["token_accuracy"], t["brier"], t["logprob_mean"]) == ("c", "b", "c", "b")
    assert t["exact_match_params"] == 100
    rows[2]["exact_match"] = 0.4
    assert S.appearance_table(rows)[0]["exact_match"] is None
    with pytest.raises(ValueError):
        S.appearance_table([])


def test_loss_correlations_with_and_without_the_smallest_size():
    # the smallest size's loss is far from the rest: it alone makes the correlation look perfect
    rows = [{"task": "t", "size": s, "params": p, "heldout_loss": l, "exact_match": em, "token_accuracy": ta}
            for s, p, l, em, ta in (("a", 1, 2.0, 0.0, 0.0), ("b", 10, 0.5, 0.5, 0.6), ("c", 100, 0.4, 0.4, 0.5),
                                    ("d", 1000, 0.3, 0.6, 0.7))]
    c = S.loss_correlations(rows)
    assert c["all"]["t"]["token_accuracy"] < -0.9
    assert c["without_smallest"]["t"]["token_accuracy"] > c["all"]["t"]["token_accuracy"]
    assert set(c["all"]["t"]) == {"exact_match", "token_accuracy"}
    shipped = S.shipped_loss_correlations()
    assert set(shipped) == {"all", "without_smallest"} and "instructions" in shipped["all"]


def test_live_budget_is_smaller_than_the_shipped_one_on_a_laptop():
    EmergenceRun = S.EmergenceRun
    live, shipped = EmergenceRun.live("laptop"), EmergenceRun.for_size("laptop")
    assert len(live.sizes) < len(shipped.sizes) and live.run.tokens < shipped.run.tokens
    assert EmergenceRun.live("ci") == EmergenceRun.for_size("ci")
    assert EmergenceRun.live("gpu") == EmergenceRun.for_size("gpu")


# ------------------------------------------------------------------------------------------ shipped records


def _bench_study_names() -> set:
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[3] / "bench" / "emergence_studies.py"
    spec = importlib.util.spec_from_file_location("emergence_studies", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return set(bench.studies(None))  # the table's lambdas only capture the zoo


# The shipped records of 2026-11-23 predate book.runs.Run: their "run" is the flat EmergenceRun of commit 0999003
# (steps, batch_size, block_size, lr and position beside the sizes), which trained every model with
# minillm/emergence/scoring.py's train_lm: warmup max(1, steps // 20), held-out loss over 64 windows, on the CPU, a
# head per 32 channels, init seed 1337 + seed. What that format does not store is checked against those values.
FLAT_RUN_RECIPE = ("steps", "batch_size", "block_size", "lr")


def test_shipped_emergence_records_are_of_every_study_the_bench_script_runs_with_the_current_laptop_budget():
    """bench/emergence_studies.py stores asdict(EmergenceRun.for_size(size)) as each record's "run": a changed
    budget (sizes, recipe, data, evaluation) fails here until the records are made again."""
    import json
    import warnings
    from dataclasses import asdict

    from book import results

    got = results.latest("emergence_studies.jsonl")
    missing = sorted(_bench_study_names() - set(got))
    assert not missing, f"no shipped record of {missing}: run python bench/emergence_studies.py --only ..."
    plan = S.EmergenceRun.for_size("laptop")
    planned = json.loads(json.dumps(asdict(plan)))  # tuples as the record's lists
    stale, old_format = {}, []
    for name in sorted(_bench_study_names()):
        rec = got[name]
        assert rec["size"] == "laptop", (name, rec["size"])
        recorded = rec.get("run", {})
        if isinstance(recorded.get("run"), dict):  # the current format: the Run nested
            want = planned
        else:  # the flat format of the 2026-11-23 records (see FLAT_RUN_RECIPE)
            old_format.append(name)
            r = plan.run
            want = {**{k: v for k, v in planned.items() if k != "run"}, **{k: getattr(r, k) for k in FLAT_RUN_RECIPE},
                    **dict(r.model_fields)}
            what_train_lm_did = dict(warmup_steps=max(1, r.steps // 20), eval_windows=64, device="cpu")
            now = dict(warmup_steps=r.warmup_steps, eval_windows=r.eval_windows, device=r.device)
            assert now == what_train_lm_did, f"{name}: the recipe's {now} differs from what the flat-format record " \
                                             f"ran ({what_train_lm_did}): re-run bench/emergence_studies.py"
        differ = {k: (recorded.get(k, "<absent>"), want.get(k, "<absent>"))
                  for k in sorted(recorded.keys() | want.keys()) if recorded.get(k, "<absent>") != want.get(k, "<absent>")}
        if differ:
            stale[name] = differ
    if old_format:
        warnings.warn(f"emergence_studies.jsonl records {old_format} predate book.runs.Run (the flat 'run' of "
                      f"commit 0999003); their recipe matches today's, checked field by field")
    assert not stale, f"records made with another budget than EmergenceRun.for_size('laptop') ({{field: (recorded, " \
                      f"now)}}); re-run python bench/emergence_studies.py --only ...: {stale}"
