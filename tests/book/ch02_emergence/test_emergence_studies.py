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


def test_live_budget_is_smaller_than_the_shipped_one_on_a_laptop():
    EmergenceRun = S.EmergenceRun
    live, shipped = EmergenceRun.live("laptop"), EmergenceRun.for_size("laptop")
    assert len(live.sizes) < len(shipped.sizes) and live.run.tokens < shipped.run.tokens
    assert EmergenceRun.live("ci") == EmergenceRun.for_size("ci")
    assert EmergenceRun.live("gpu") == EmergenceRun.for_size("gpu")
