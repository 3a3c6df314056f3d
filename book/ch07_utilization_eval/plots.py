"""Figures and widgets of chapter 07 (`utilization.py`, `tools.py`, `contamination.py`). Survey §4.2.4,
§6, §7.

- `shipped_utilization_studies`: the latest shipped record of each study (bench/results/utilization_studies.jsonl).
- `plot_decoding`: each decoding strategy's diversity (distinct-2) against its quality (share of valid stories).
- `plot_prompting`, `plot_ppl_vs_accuracy`, `plot_tools`, `plot_contamination`.
- `DecodingWidget`: temperature, top-p and beam-width sliders that regenerate a story with a live model.

Each plot takes the rows a study returns and returns the matplotlib Figure (matplotlib imported inside).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from book import results
from book.viz import SliderPanel, need_rows

__all__ = ["shipped_utilization_studies", "plot_decoding", "plot_prompting", "plot_ppl_vs_accuracy", "plot_tools",
           "plot_contamination", "DecodingWidget"]

def shipped_utilization_studies() -> dict[str, dict]:
    """The latest record of each chapter-07 study shipped with the book, by study name."""
    return results.latest("utilization_studies.jsonl")


def _need(rows: Sequence[Mapping], keys: tuple[str, ...], study: str) -> None:
    need_rows(rows, keys, "minillm." + study)


def plot_decoding(rows: Sequence[Mapping]):
    """x: distinct-2 (diversity), y: share of continuations that are valid stories (quality); one point each."""
    import matplotlib.pyplot as plt

    _need(rows, ("label", "distinct_2", "valid"), "utilization.decoding_sweep")
    fig, ax = plt.subplots(figsize=(5.8, 3.6), layout="constrained")
    for r in rows:
        ax.scatter(r["distinct_2"], r["valid"], s=40)
        ax.annotate(r["label"], (r["distinct_2"], r["valid"]), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.set(xlabel="diversity: distinct-2 over all samples", ylabel="quality: share of valid stories",
           xlim=(-0.03, 1.05), ylim=(-0.03, 1.05), title="decoding: diversity vs quality")
    return fig


def plot_prompting(rows: Sequence[Mapping]):
    """Accuracy per (task, prompt) for each model; dashed lines mark chance for the multiple-choice tasks."""
    import matplotlib.pyplot as plt
    import numpy as np

    _need(rows, ("model", "task", "shots", "cot", "accuracy"), "utilization.prompting_study")
    arms = list(dict.fromkeys((r["task"], r["shots"], r["cot"]) for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    acc = {(r["model"], r["task"], r["shots"], r["cot"]): r["accuracy"] for r in rows}
    x = np.arange(len(arms))
    w = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(8.4, 3.4), layout="constrained")
    for k, m in enumerate(models):
        ax.bar(x + (k - (len(models) - 1) / 2) * w, [acc.get((m, *a), np.nan) for a in arms], w, label=m)
    for i, a in enumerate(arms):
        chance = next((r["chance"] for r in rows if (r["task"], r["shots"], r["cot"]) == a), None)
        if chance:
            ax.plot([i - 0.45, i + 0.45], [chance, chance], "k--", lw=0.8)
    labels = [f"{t}\n{'CoT' if c else 'direct'}" if t == "arithmetic" else f"{t}\n{s}-shot" for t, s, c in arms]
    ax.set(xticks=x, ylabel="accuracy", ylim=(0, 1.05), title="prompting: shots and chain-of-thought")
    ax.set_xticklabels(labels, fontsize=7)
    ax.legend(fontsize=7)
    return fig


def plot_ppl_vs_accuracy(rows: Sequence[Mapping], tasks=("facts_mc", "story_cloze", "arithmetic_cot")):
    """Held-out bits per byte (x, lower is better) against each task's accuracy (y), one point per model."""
    import matplotlib.pyplot as plt

    _need(rows, ("model", "bits_per_byte", *tasks), "utilization.ppl_vs_accuracy")
    rs = sorted(rows, key=lambda r: r["bits_per_byte"], reverse=True)
    fig, ax = plt.subplots(figsize=(5.8, 3.6), layout="constrained")
    for t in tasks:
        ax.plot([r["bits_per_byte"] for r in rs], [r[t] for r in rs], "o-", label=t)
    for r in rs:
        ax.annotate(r["model"], (r["bits_per_byte"], 0.02), fontsize=7, rotation=90)
    ax.invert_xaxis()
    ax.set(xlabel="held-out bits per byte (better →)", ylabel="accuracy", ylim=(0, 1.05),
           title="language modelling vs downstream tasks")
    ax.legend(fontsize=7)
    return fig


def plot_tools(rows: Sequence[Mapping]):
    """Exact match against digit count, one line per (size, arm): calculator calls solid, direct answers dashed."""
    import matplotlib.pyplot as plt

    _need(rows, ("size", "arm", "digits", "exact_match"), "tools.tool_study")
    fig, ax = plt.subplots(figsize=(5.8, 3.6), layout="constrained")
    for key in dict.fromkeys((r["size"], r["arm"]) for r in rows):
        rs = sorted((r for r in rows if (r["size"], r["arm"]) == key), key=lambda r: r["digits"])
        ax.plot([r["digits"] for r in rs], [r["exact_match"] for r in rs], "o-" if key[1] == "tool" else "s--",
                label=f"{key[0]}, {key[1].replace('_', ' ')}")
    ax.set(xlabel="digits per operand", ylabel="exact match", ylim=(-0.03, 1.05),
           title="arithmetic with and without a calculator")
    ax.legend(fontsize=7)
    return fig


def plot_contamination(rows: Sequence[Mapping]):
    """Accuracy of the clean and the contaminated model on the leaked and the clean half of a benchmark."""
    import matplotlib.pyplot as plt
    import numpy as np

    _need(rows, ("model", "split", "accuracy"), "contamination.contamination_demo")
    models = list(dict.fromkeys(r["model"] for r in rows))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    acc = {(r["model"], r["split"]): r["accuracy"] for r in rows}
    x = np.arange(len(models))
    fig, ax = plt.subplots(figsize=(5.4, 3.2), layout="constrained")
    for k, s in enumerate(splits):
        ax.bar(x + (k - (len(splits) - 1) / 2) * 0.35, [acc.get((m, s), np.nan) for m in models], 0.35,
               label=f"{s} items")
    chance = rows[0].get("chance")
    if chance:
        ax.axhline(chance, color="k", ls="--", lw=0.8, label="chance")
    ax.set(xticks=x, xticklabels=[f"{m} model" for m in models], ylabel="accuracy", ylim=(0, 1.05),
           title="a benchmark leaked into training")
    ax.legend(fontsize=7)
    return fig


class DecodingWidget(SliderPanel):
    """Temperature, top-p and beam-width sliders; each move regenerates one story continuation with a live
    `utilization.ChapterModel` and judges it with the story grammar (valid or not, exact log-prob per char)."""

    def __init__(self, cm, prompt: str, max_new_tokens: int = 200, seed: int = 0):
        import ipywidgets as widgets

        self.cm, self.prompt, self.max_new_tokens, self.seed = cm, prompt, max_new_tokens, seed
        self._build({"temperature": widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.1,
                                                        description="temperature"),
                     "top_p": widgets.FloatSlider(value=1.0, min=0.1, max=1.0, step=0.05, description="top-p"),
                     "beam": widgets.IntSlider(value=0, min=0, max=8, description="beam (0=off)")})

    def _render(self) -> dict:
        import html

        import matplotlib.pyplot as plt
        import torch

        from minillm.data.synthetic import doc_logprob
        from book.ch07_utilization_eval.studies import STORY_KNOBS, decode

        t, p, b = (self.controls[k].value for k in ("temperature", "top_p", "beam"))
        g = torch.Generator().manual_seed(self.seed)
        text = decode(self.cm, self.prompt, self.max_new_tokens, temperature=t, top_p=None if p >= 1.0 else p,
                      beam=b, generator=g)
        lp = doc_logprob("story", self.prompt + text, **STORY_KNOBS)
        valid = lp != float("-inf")
        self.result = {"temperature": t, "top_p": p, "beam": b, "text": text, "valid": valid,
                       "logprob_per_char": lp / max(1, len(text)) if valid else None}
        mode = f"beam {b}" if b else ("greedy" if t == 0 else f"T={t:.1f}, top-p {p:.2f}")
        verdict = (f"valid story, {self.result['logprob_per_char']:.2f} nats/char" if valid
                   else "not a story the grammar can produce")
        self.summary.value = (f"<b>{mode}</b>: {verdict}<br><tt>{html.escape(self.prompt)}"
                              f"<b>{html.escape(text)}</b></tt>")
        fig, ax = plt.subplots(figsize=(3.2, 1.2), layout="constrained")
        ax.barh([0], [1.0 if valid else 0.0], color="tab:green" if valid else "tab:red")
        ax.set(xlim=(0, 1), yticks=[], xticks=[], title="valid" if valid else "invalid")
        self._show(fig)
        return self.result


def plot_kv_speed(rows: list[dict]):
    """Figure from bench/kv_cache.py rows ({seq_len, cached_tps, uncached_tps, speedup}): tokens/s with and
    without the cache against sequence length (left) and the speedup (right)."""
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no rows to plot: run bench/kv_cache.py (or kv_cache_speed) first")
    rows = sorted(rows, key=lambda r: r["seq_len"])
    x = [r["seq_len"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(x, [r["cached_tps"] for r in rows], "o-", label="with KV cache")
    ax1.plot(x, [r["uncached_tps"] for r in rows], "s--", label="without (re-encode prefix)")
    ax1.set(xscale="log", yscale="log", xlabel="sequence length (tokens)", ylabel="new tokens / s",
            title="Decoding speed")
    ax1.legend()
    ax2.plot(x, [r["speedup"] for r in rows], "o-", color="C2")
    ax2.axhline(1.0, color="gray", lw=0.8)
    ax2.set(xscale="log", xlabel="sequence length (tokens)", ylabel="cached / uncached", title="KV-cache speedup")
    fig.tight_layout()
    return fig
