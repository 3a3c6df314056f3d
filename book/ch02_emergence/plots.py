"""Figures and the widget of the emergence studies (`studies.py`). Survey §2.1, Schaeffer et al. 2023.

- `shipped_emergence_studies`: the latest shipped record of each study (bench/results/emergence_studies.jsonl).
- `plot_metric_vs_size`: one task, every metric side by side against non-embedding parameters: the "emergent
  vs smooth" figure (exact match may jump where token accuracy and log-likelihood rise steadily).
- `plot_icl_shots`, `plot_cot`, `plot_instructions`, `plot_predictability`, `plot_inverse_scaling`.
- `EmergenceWidget`: dropdowns for task and metric, redrawing the curve vs size (shipped rows, and yours).

Each plot takes the rows a study returns and returns the matplotlib Figure (matplotlib imported inside).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from book import results
from book.viz import SliderPanel, need_rows

METRIC_LABELS = {"exact_match": "exact match", "token_accuracy": "token accuracy",
                 "logprob_mean": "log-likelihood per token (nats)", "brier": "Brier score (lower is better)"}


def shipped_emergence_studies() -> dict[str, dict]:
    """The latest record of each emergence study shipped with the book, by study name."""
    return results.latest("emergence_studies.jsonl")


def _need(rows: Sequence[Mapping], keys: tuple[str, ...], study: str) -> None:
    need_rows(rows, keys, "book.ch02_emergence.studies." + study)


def _curve(ax, rows, key, label=None, **kw):
    rs = sorted(rows, key=lambda r: r["params"])
    x, y = [r["params"] for r in rs], [r[key] for r in rs]
    se = [r.get(key + "_se") or 0.0 for r in rs]
    ax.errorbar(x, y, yerr=se, capsize=2, label=label, **{"marker": "o", **kw})
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters")


def plot_metric_vs_size(rows: Sequence[Mapping], task: str, metrics: Sequence[str] = tuple(METRIC_LABELS),
                        live_rows: Sequence[Mapping] | None = None):
    """One panel per metric: task score vs model size, the same model outputs under each metric (live rows
    dashed if given). Error bars are one standard error over the evaluation examples."""
    import matplotlib.pyplot as plt

    _need(rows, ("params", "task", *metrics), "size_sweep")
    if task not in {r["task"] for r in rows}:
        raise ValueError(f"task={task!r} is not in the rows; they have {sorted({r['task'] for r in rows})}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 3.0), squeeze=False, layout="constrained")
    for ax, m in zip(axes[0], metrics):
        _curve(ax, [r for r in rows if r["task"] == task], m, "shipped")
        if live_rows:
            _curve(ax, [r for r in live_rows if r["task"] == task], m, "yours", ls="--")
            ax.legend(fontsize=8)
        ax.set_title(METRIC_LABELS.get(m, m), fontsize=10)
        if m in ("exact_match", "token_accuracy"):
            ax.set_ylim(-0.03, 1.03)
    fig.suptitle(f"{task}: one set of model outputs, four metrics")
    return fig


def plot_icl_shots(rows: Sequence[Mapping], metric: str = "exact_match"):
    """One panel per ICL task: accuracy vs number of shots, a line per model size; chance dotted, the
    Bayes-optimal reader of the prompts dashed."""
    import matplotlib.pyplot as plt

    _need(rows, ("task", "shots", "size", "params", metric), "icl_by_shots")
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.2), squeeze=False, layout="constrained")
    for ax, task in zip(axes[0], tasks):
        rs = [r for r in rows if r["task"] == task]
        for size in sorted({r["size"] for r in rs}, key=lambda s: next(r["params"] for r in rs if r["size"] == s)):
            sr = sorted((r for r in rs if r["size"] == size), key=lambda r: r["shots"])
            ax.plot([r["shots"] for r in sr], [r[metric] for r in sr], marker="o", label=size)
        ref = sorted({r["shots"]: r for r in rs}.values(), key=lambda r: r["shots"])
        if ref[0].get("bayes") is not None:
            ax.plot([r["shots"] for r in ref], [r["bayes"] for r in ref], "k--", label="Bayes-optimal")
        if ref[0].get("chance") is not None:
            ax.axhline(ref[0]["chance"], color="k", ls=":", label="chance")
        ax.set(xlabel="shots in the prompt", ylabel=METRIC_LABELS.get(metric, metric), title=task, ylim=(-0.03, 1.03))
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    return fig


def plot_cot(rows: Sequence[Mapping]):
    """One panel per digit count: greedy exact match vs size, CoT vs direct vs free prompt; the arm trained
    without traces as separate markers. The digit counts beyond training (out of distribution) are marked."""
    import matplotlib.pyplot as plt

    _need(rows, ("digits", "prompt", "arm", "params", "exact_match"), "cot_study")
    digits = sorted({r["digits"] for r in rows})
    fig, axes = plt.subplots(1, len(digits), figsize=(3.6 * len(digits), 3.2), squeeze=False, sharey=True,
                             layout="constrained")
    styles = {("base", "cot"): dict(color="tab:blue"), ("base", "direct"): dict(color="tab:orange"),
              ("base", "free"): dict(color="tab:green", ls=":"),
              ("no_cot", "cot"): dict(color="tab:blue", ls="none", marker="x", ms=9),
              ("no_cot", "direct"): dict(color="tab:orange", ls="none", marker="x", ms=9)}
    for ax, d in zip(axes[0], digits):
        for (arm, prompt), st in styles.items():
            rs = [r for r in rows if r["digits"] == d and r["arm"] == arm and r["prompt"] == prompt]
            if rs:
                label = f"{prompt} prompt" + ("" if arm == "base" else ", trained without traces")
                _curve(ax, rs, "exact_match", label, **st)
        ood = not rows[[r["digits"] for r in rows].index(d)].get("in_distribution", True)
        ax.set_title(f"{d} digits" + (" (beyond training)" if ood else ""), fontsize=10)
        ax.set_ylim(-0.03, 1.03)
    axes[0][0].set_ylabel("exact match (greedy)")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    return fig


def plot_instructions(rows: Sequence[Mapping], metric: str = "exact_match"):
    """Zero-shot score vs size on held-out and train phrasings; the arm trained without instruction data as
    crosses."""
    import matplotlib.pyplot as plt

    _need(rows, ("arm", "templates", "params", metric), "instruction_study")
    fig, ax = plt.subplots(figsize=(5.2, 3.4), layout="constrained")
    for (arm, split), st in {("base", "heldout"): dict(color="tab:green"), ("base", "train"): dict(color="tab:gray"),
                             ("no_instructions", "heldout"): dict(color="tab:green", ls="none", marker="x", ms=9),
                             ("no_instructions", "train"): dict(color="tab:gray", ls="none", marker="x", ms=9)}.items():
        rs = [r for r in rows if r["arm"] == arm and r["templates"] == split]
        if rs:
            _curve(ax, rs, metric, f"{split} phrasings" + ("" if arm == "base" else ", no instruction data"), **st)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.legend(fontsize=8)
    return fig


def plot_predictability(sweep_rows: Sequence[Mapping], metric: str = "exact_match"):
    """Task score against held-out story loss, one point per size and a line per task (loss axis reversed:
    better models to the right)."""
    import matplotlib.pyplot as plt

    _need(sweep_rows, ("task", "heldout_loss", "params", metric), "size_sweep")
    fig, ax = plt.subplots(figsize=(5.4, 3.6), layout="constrained")
    for task in dict.fromkeys(r["task"] for r in sweep_rows):
        rs = sorted((r for r in sweep_rows if r["task"] == task), key=lambda r: r["params"])
        ax.plot([r["heldout_loss"] for r in rs], [r[metric] for r in rs], marker="o", label=task)
    ax.invert_xaxis()
    ax.set(xlabel="held-out story loss (nats/char)", ylabel=METRIC_LABELS.get(metric, metric))
    ax.legend(fontsize=8)
    return fig


def plot_inverse_scaling(rows: Sequence[Mapping]):
    """pattern_conflict: rate of the instructed answer and of the imitated pattern vs size."""
    import matplotlib.pyplot as plt

    _need(rows, ("params", "correct", "imitation"), "inverse_scaling_study")
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.2), layout="constrained")
    _curve(axes[0], rows, "correct", "instructed answer (correct)", color="tab:green")
    _curve(axes[0], rows, "imitation", "pattern's answer (imitation)", color="tab:red")
    axes[0].set(ylabel="exact match (teacher-forced)", ylim=(-0.03, 1.03))
    axes[0].legend(fontsize=8)
    for key, color in (("correct_logprob", "tab:green"), ("imitation_logprob", "tab:red")):
        _curve(axes[1], rows, key, key.replace("_logprob", ""), color=color)
    axes[1].set_ylabel("log-likelihood per token (nats)")
    return fig


class EmergenceWidget(SliderPanel):
    """Choose a task and a metric; the curve vs model size redraws (shipped rows solid, yours dashed)."""

    def __init__(self, rows: Sequence[Mapping], live_rows: Sequence[Mapping] | None = None):
        import ipywidgets as widgets

        _need(rows, ("task", "params"), "size_sweep")
        self.rows, self.live_rows = list(rows), list(live_rows or [])
        tasks = list(dict.fromkeys(r["task"] for r in rows))
        self._build({"task": widgets.Dropdown(options=tasks, value=tasks[0], description="task"),
                     "metric": widgets.Dropdown(options=[(METRIC_LABELS[m], m) for m in METRIC_LABELS],
                                                value="exact_match", description="metric")})

    def _render(self) -> dict:
        import matplotlib.pyplot as plt

        task, metric = self.controls["task"].value, self.controls["metric"].value
        fig, ax = plt.subplots(figsize=(4.6, 3.2), layout="constrained")
        rs = [r for r in self.rows if r["task"] == task]
        _curve(ax, rs, metric, "shipped")
        mine = [r for r in self.live_rows if r["task"] == task]
        if mine:
            _curve(ax, mine, metric, "yours", ls="--")
            ax.legend(fontsize=8)
        ax.set(ylabel=METRIC_LABELS[metric], title=task)
        rs = sorted(rs, key=lambda r: r["params"])
        self.result = {"task": task, "metric": metric, "values": [round(r[metric], 3) for r in rs]}
        values = " → ".join(f"{v:.2f}" for v in self.result["values"])
        self.summary.value = f"{task}, {METRIC_LABELS[metric]}: {values}"
        self._show(fig)
        return self.result
