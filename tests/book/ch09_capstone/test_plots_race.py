"""book.ch09_capstone.plots_race on a hand-made record of bench/shakespeare_race.py: the summary states the record's
numbers, the figure draws both recipes against seconds with the goal and the baseline's loss, the newest shipped
record is read by date, and a record of something else is refused with a message saying what it lacks."""
from __future__ import annotations

import copy
import json

import matplotlib
import pytest

matplotlib.use("Agg")

from book.ch09_capstone.plots_race import plot_race, race_summary, shipped_race  # noqa: E402


def _record(date: str = "2025-01-02T03:04:05", ours_val: float = 1.55) -> dict:
    base = {"val_loss": 1.89, "seconds": 62.0, "steps": 2000, "tokens": 1_536_000,
            "curve": [[0.5, 40, 3.1], [31.0, 1000, 2.05], [62.0, 2000, 1.80]],
            "val_curve": [[31.0, 1000, 2.1], [62.0, 2000, 1.9]]}
    ours = {"val_loss": ours_val, "seconds": 61.0, "steps": 900, "tokens": 1_843_200,
            "curve": [[0.4, 18, 2.9], [30.0, 450, 1.7], [61.0, 900, 1.35]],
            "val_curve": [[30.0, 450, 1.75], [61.0, 900, ours_val + 0.01]]}
    return {"bench": "shakespeare_race", "size": "laptop", "recipes": {"nanogpt": base, "ours": ours},
            "time_ratio": round(61.0 / 62.0, 4), "goal": 1.60, "goal_met": ours_val <= 1.60,
            "provenance": {"date": date}}


def test_race_summary_states_the_record():
    s = race_summary(_record())
    assert s["baseline_val"] == 1.89 and s["ours_val"] == 1.55
    assert s["baseline_seconds"] == 62.0 and s["ours_seconds"] == 61.0
    assert s["baseline_steps"] == 2000 and s["ours_tokens"] == 1_843_200
    assert s["time_ratio"] == 0.9839 and s["goal"] == 1.60 and s["goal_met"] is True
    assert s["val_gain"] == pytest.approx(0.34) and s["size"] == "laptop"
    assert race_summary(_record(ours_val=1.7))["goal_met"] is False


def test_plot_race_draws_both_recipes_the_goal_and_the_baseline():
    fig = plot_race(_record())
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines["nanogpt: training loss"].get_xdata()) == [0.5, 31.0, 62.0]
    assert list(lines["ours: training loss"].get_ydata()) == [2.9, 1.7, 1.35]
    assert list(lines["ours: held-out loss"].get_ydata()) == [1.75, 1.56]
    assert list(lines["goal 1.60"].get_ydata()) == [1.60, 1.60]
    assert list(lines["baseline's final held-out loss"].get_ydata()) == [1.89, 1.89]
    final = [k for k in lines if k.startswith("ours: final")]
    assert final == ["ours: final 1.550 in 61 s (900 steps)"]
    lo, hi = ax.get_ylim()  # the first loss (3.1) is cut at baseline + 1.0; the lowest loss stays in view
    assert lo == pytest.approx(1.30) and hi == pytest.approx(2.94)
    assert "0.98" in ax.get_title() and "goal met" in ax.get_title()
    assert ax.get_xlabel() == "training seconds"


def test_plot_race_draws_into_a_given_axis():
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2)
    assert plot_race(_record(), ax=b) is fig and not a.get_lines() and b.get_lines()


@pytest.mark.parametrize("change, message", [
    (lambda r: r["recipes"].pop("ours"), "no recipes 'nanogpt' and 'ours'"),
    (lambda r: r["recipes"]["nanogpt"].pop("curve"), "recipe 'nanogpt' of the record lacks curve"),
    (lambda r: r.pop("goal_met"), "lacks goal_met"),
])
def test_race_refuses_a_record_of_something_else(change, message):
    rec = copy.deepcopy(_record())
    change(rec)
    with pytest.raises(ValueError, match=message):
        race_summary(rec)
    with pytest.raises(TypeError, match="record must be a dict"):
        race_summary([rec])


def test_shipped_race_reads_the_newest_record(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILLM_RESULTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="shakespeare_race.jsonl"):
        shipped_race()
    lines = [_record("2025-03-01T00:00:00", 1.58), _record("2025-01-01T00:00:00", 1.50)]  # newest first in file
    (tmp_path / "shakespeare_race.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert shipped_race()["recipes"]["ours"]["val_loss"] == 1.58
    assert race_summary()["ours_val"] == 1.58 and plot_race().axes
