"""The Shakespeare race in chapter 09: nanoGPT's char-level recipe against ours in the same wall-clock time.
Survey §4.2.2 (architecture configuration) and §4.3.1 (optimization settings).

Reads the record bench/shakespeare_race.py appends (bench/results/shakespeare_race.jsonl); a record is
{"size", "recipes": {"nanogpt": {...}, "ours": {...}}, "time_ratio", "goal", "goal_met", ...}, each recipe with
"val_loss", "seconds", "steps", "tokens", "curve" [[seconds, step, train loss], ...] and "val_curve" (the same
with held-out loss).

    race_summary()          # {"baseline_val": 1.89, "ours_val": ..., "time_ratio": ..., "goal_met": ...}
    plot_race()             # loss against seconds, both recipes on one axis
    plot_race(record)       # any record, e.g. one made with `python bench/shakespeare_race.py --out x.jsonl`

`shipped_race()` is the newest shipped record; both functions read it when given no record. matplotlib is imported
inside plot_race.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from book import results

__all__ = ["RECORD", "BASELINE", "OURS", "shipped_race", "race_summary", "plot_race"]

RECORD = "shakespeare_race.jsonl"
BASELINE, OURS = "nanogpt", "ours"  # the record's recipe names
_RECIPE_KEYS = ("val_loss", "seconds", "steps", "tokens", "curve", "val_curve")
COLORS = {BASELINE: "tab:gray", OURS: "tab:orange"}


def shipped_race() -> dict[str, Any]:
    """The newest record of bench/results/shakespeare_race.jsonl (FileNotFoundError says how to make one)."""
    rec = results.last(RECORD, require=("recipes",))
    if rec is None:
        raise FileNotFoundError(f"bench/results/{RECORD} holds no record: run `python bench/shakespeare_race.py`")
    return rec


def _checked(record: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The record (the shipped one if None), checked to hold both recipes with the fields the figures read."""
    rec = shipped_race() if record is None else record
    if not isinstance(rec, Mapping):
        raise TypeError(f"record must be a dict (a line of {RECORD}), got {type(rec).__name__}")
    recipes = rec.get("recipes")
    if not isinstance(recipes, Mapping) or not {BASELINE, OURS} <= recipes.keys():
        raise ValueError(f"the record has no recipes {BASELINE!r} and {OURS!r}: pass a record of {RECORD} "
                         f"(made by bench/shakespeare_race.py)")
    for name in (BASELINE, OURS):
        missing = [k for k in _RECIPE_KEYS if k not in recipes[name]]
        if missing:
            raise ValueError(f"recipe {name!r} of the record lacks {', '.join(missing)}: not a record of "
                             f"bench/shakespeare_race.py")
    missing = [k for k in ("time_ratio", "goal", "goal_met") if k not in rec]
    if missing:
        raise ValueError(f"the record lacks {', '.join(missing)}: not a record of bench/shakespeare_race.py")
    return rec


def race_summary(record: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The race in numbers: each recipe's held-out loss, seconds, steps and tokens, the time ratio (ours / baseline
    seconds), the goal (val loss) and whether ours met it in the baseline's time, as the record states them."""
    rec = _checked(record)
    b, o = rec["recipes"][BASELINE], rec["recipes"][OURS]
    out: dict[str, Any] = {"size": rec.get("size")}
    for prefix, r in (("baseline", b), ("ours", o)):
        out.update({f"{prefix}_val": r["val_loss"], f"{prefix}_seconds": r["seconds"], f"{prefix}_steps": r["steps"],
                    f"{prefix}_tokens": r["tokens"]})
    out.update(time_ratio=rec["time_ratio"], goal=rec["goal"], goal_met=bool(rec["goal_met"]),
               val_gain=round(b["val_loss"] - o["val_loss"], 4))
    return out


def plot_race(record: Mapping[str, Any] | None = None, ax: Any = None):
    """Training loss (line) and held-out loss (dots; the final score as a large dot) against training seconds for
    both recipes on one axis, with the goal and the baseline's final held-out loss as horizontal lines. Returns
    the Figure."""
    import matplotlib.pyplot as plt

    rec = _checked(record)
    s = race_summary(rec)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    else:
        fig = ax.figure
    lows, highs = [s["goal"]], []
    for name in (BASELINE, OURS):
        r, color = rec["recipes"][name], COLORS[name]
        if r["curve"]:
            t, _, loss = zip(*r["curve"])  # [[seconds, step, loss], ...] -> columns
            ax.plot(t, loss, color=color, lw=1.2, alpha=0.8, label=f"{name}: training loss")
            lows.append(min(loss))
            highs.append(max(loss))
        if r["val_curve"]:
            t, _, loss = zip(*r["val_curve"])
            ax.plot(t, loss, "o", color=color, ms=4, label=f"{name}: held-out loss")
            lows.append(min(loss))
        ax.plot([r["seconds"]], [r["val_loss"]], "o", color=color, ms=9, mec="black",
                label=f"{name}: final {r['val_loss']:.3f} in {r['seconds']:.0f} s ({r['steps']} steps)")
        lows.append(r["val_loss"])
    ax.axhline(s["goal"], color="tab:green", ls="--", lw=1, label=f"goal {s['goal']:.2f}")
    ax.axhline(s["baseline_val"], color=COLORS[BASELINE], ls=":", lw=1, label="baseline's final held-out loss")
    # The start of training (loss ~ln 65 = 4.2) would squash the part that matters; a ci record stays whole.
    top = min(max(highs, default=s["baseline_val"]), s["baseline_val"] + 1.0)
    ax.set_ylim(min(lows) - 0.05, max(top, s["baseline_val"]) + 0.05)
    ax.set(xlabel="training seconds", ylabel="loss (nats/char)",
           title=f"char-level Shakespeare in the same time: ours / nanoGPT time = {s['time_ratio']:.2f}, "
                 f"goal {'met' if s['goal_met'] else 'not met'}")
    ax.title.set_fontsize("medium")
    ax.legend(fontsize="small")
    return fig
