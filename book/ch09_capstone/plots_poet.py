"""Figures and tables of the capstone's poet (sections 4-5): Survey §5.1 (instruction tuning) and §5.2 (RL with
a verifiable reward).

- `plot_adherence`: form adherence per form and overall, one bar per stage (base, SFT, GRPO, ...), greedy and
  sampled decoding side by side.
- `plot_sft_curves`: the SFT training loss and the held-out response loss against steps.
- `plot_grpo_curves`: GRPO's reward, the share of rollouts that follow the form, the KL to the SFT model and the
  rollouts' distinct-character ratio against steps; a second run (the reward-hacking one) dashed beside it.
- `samples_table`: a Markdown table of prompts and responses per stage (book.viz.markdown_table).

Each plot takes what the studies return and returns its matplotlib Figure (matplotlib imported inside). Axis
labels name the forms in English: the default matplotlib fonts have no CJK glyphs; the Markdown table shows the
poems themselves.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from book.ch09_capstone.studies_poems import FORMS
from book.viz import markdown_table, need_rows

__all__ = ["FORM_LABELS", "adherence_of", "plot_adherence", "plot_sft_curves", "plot_grpo_curves", "samples_table"]

FORM_LABELS = {"五言絕句": "5-char\nquatrain", "七言絕句": "7-char\nquatrain", "五言律詩": "5-char\noctave",
               "七言律詩": "7-char\noctave"}
_DECODINGS = ("greedy", "sampled")


def adherence_of(ev: Mapping, decoding: str = "greedy") -> tuple[float, dict[str, float]]:
    """(overall, {form: adherence}) of one evaluation: a `studies_poet.form_eval` result or a
    `studies_grpo.eval_row`, for the greedy or the sampled decoding."""
    if decoding not in _DECODINGS:
        raise ValueError(f"decoding={decoding!r} is not valid; choose one of {', '.join(_DECODINGS)}")
    if decoding in ev:  # a form_eval result
        return ev[decoding]["adherence"], dict(ev[decoding]["by_form"])
    if "by_form" in ev:  # an eval row
        prefix = "" if decoding == "greedy" else "sampled_"
        return ev[f"{prefix}adherence"], dict(ev[f"{prefix}by_form"])
    raise ValueError(f"not an evaluation (keys {sorted(ev)}): pass form_eval's result or an eval row of grpo_poet")


def plot_adherence(stages: Mapping[str, Mapping], goal: float | None = 0.8):
    """Grouped bars: for each form and overall (x), one bar per stage ({"base": ev, "SFT": ev, "GRPO": ev}); left
    panel greedy, right sampled. `goal` draws the target line (None: none)."""
    import matplotlib.pyplot as plt
    import numpy as np

    if not stages:
        raise ValueError("no stages to plot: pass {'base': form_eval(...), 'SFT': ..., 'GRPO': ...}")
    groups = [*FORMS, "overall"]
    x = np.arange(len(groups))
    w = 0.8 / len(stages)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), layout="constrained", sharey=True)
    for ax, decoding in zip(axes, _DECODINGS):
        for k, (name, ev) in enumerate(stages.items()):
            overall, by_form = adherence_of(ev, decoding)
            vals = [by_form.get(f, np.nan) for f in FORMS] + [overall]  # a form absent from the set: no bar
            bars = ax.bar(x + (k - (len(stages) - 1) / 2) * w, vals, w, label=name)
            ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=2, rotation=90)
        if goal is not None:
            ax.axhline(goal, color="k", lw=0.7, ls=":")
        ax.set(xticks=x, ylim=(0, 1.3), yticks=np.linspace(0, 1, 6), title=f"{decoding} decoding, held-out titles")
        ax.set_xticklabels([FORM_LABELS.get(g, g) for g in groups], fontsize=8)
    axes[0].set_ylabel("form adherence")
    axes[0].legend(fontsize=8, ncol=len(stages), loc="upper left")
    return fig


def plot_sft_curves(rows: Sequence[Mapping]):
    """SFT training loss (response tokens) and held-out response loss against steps (`sft_poet`'s rows)."""
    import matplotlib.pyplot as plt

    need_rows(rows, ("step", "loss", "heldout_loss"), "book.ch09_capstone.studies_poet.sft_poet")
    fig, ax = plt.subplots(figsize=(5.5, 3.2), layout="constrained")
    trained = [r for r in rows if r["loss"] is not None]
    ax.plot([r["step"] for r in trained], [r["loss"] for r in trained], "o-", ms=3, label="training pairs")
    ax.plot([r["step"] for r in rows], [r["heldout_loss"] for r in rows], "s-", ms=3, label="held-out titles")
    ax.set(xlabel="SFT step", ylabel="nats / response token", title="instruction tuning: response-only loss")
    ax.legend(fontsize=8)
    return fig


def plot_grpo_curves(rows: Sequence[Mapping], other: Sequence[Mapping] | None = None, labels=("GRPO", "hacking"),
                     smooth: int = 10):
    """Four panels against GRPO step: reward, share of rollouts following the form, KL to the SFT model,
    distinct-character ratio. `other`: a second run's rows (`reward_hacking`), drawn dashed. Each step is one
    batch of rollouts (noisy): drawn faint, with its trailing mean over `smooth` steps on top (1: no mean)."""
    import matplotlib.pyplot as plt
    import numpy as np

    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"smooth={smooth!r} must be a positive int (steps in the trailing mean; 1 = none)")

    keys = ("reward", "follows", "kl", "distinct_ratio")
    runs = [(labels[0], rows, "-")] + ([(labels[1], other, "--")] if other is not None else [])
    for _, rs, _ in runs:
        need_rows([r for r in rs if r.get("kind") == "step"], ("step", *keys),
                  "book.ch09_capstone.studies_grpo.grpo_poet")
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.0), layout="constrained")
    titles = ("reward (what is optimised)", "rollouts following the form", "KL to the SFT model (k3, per token)",
              "distinct characters / characters")
    for ax, key, title in zip(axes, keys, titles):
        for k, (name, rs, style) in enumerate(runs):
            steps = [r for r in rs if r.get("kind") == "step"]
            x, y = [r["step"] for r in steps], np.array([r[key] for r in steps], dtype=float)
            if smooth == 1:
                ax.plot(x, y, style, color=f"C{k}", label=name)
                continue
            ax.plot(x, y, style, color=f"C{k}", alpha=0.3, lw=0.8)
            mean = np.array([y[max(0, i - smooth + 1): i + 1].mean() for i in range(len(y))])  # trailing mean
            ax.plot(x, mean, style, color=f"C{k}", lw=1.8, label=f"{name} ({smooth}-step mean)")
        ax.set(xlabel="GRPO step", title=title)
        ax.title.set_fontsize(9)
    axes[0].legend(fontsize=8)
    return fig


def samples_table(stages: Mapping[str, Mapping], decoding: str = "greedy", per_stage: int | None = None) -> str:
    """A Markdown table of each stage's shown samples (`form_eval(...)["samples"]`) under `decoding`: stage, form,
    prompt, response (lines joined by ' / '), whether it follows the form."""
    if decoding not in _DECODINGS:
        raise ValueError(f"decoding={decoding!r} is not valid; choose one of {', '.join(_DECODINGS)}")
    rows = []
    for name, ev in stages.items():
        if "samples" not in ev:
            raise ValueError(f"stage {name!r} has no samples: pass form_eval's result (eval rows drop them)")
        shown = [s for s in ev["samples"] if s["decoding"] == decoding][:per_stage]
        rows += [{"stage": name, "form": s["form"], "prompt": s["prompt"],
                  "response": " / ".join(s["response"].strip().splitlines()) or "(empty)",
                  "follows": "yes" if s["follows"] else "no"} for s in shown]
    return markdown_table(rows, ["stage", "form", "prompt", "response", "follows"])
