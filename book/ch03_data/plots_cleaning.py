"""Figures and the perplexity-filter widget of chapter 03's cleaning section (Survey §4.1.2).

The chapter runs the pipeline on a synthetic crawl whose truth is known, so every stage can be *scored*, not
just described. These builders turn what it computed into pictures; nothing is read from disk.

- `plot_stage_scores`: precision, recall and F1 of every stage (rows of `pipeline.stage_rows`).
- `plot_register_bias`: how often each quality filter wrongly drops clean formal vs clean informal pages
  (rows of `pipeline.register_bias`): the survey's warning that filters remove colloquial registers.
- `plot_compression`: bytes per token against vocabulary size, English and Chinese side by side (rows of
  `tokenizer_study.compression_table`).
- `FilterExplorer`: a slider for the perplexity threshold over the pipeline's scores; the histogram of log
  perplexity of clean formal, clean informal and junk pages shows what a cut keeps and what it loses.
  ``w = FilterExplorer(result); w.update(max_perplexity=20, language="en"); display(w.widget)``.

The MinHash figures and the LSH widget are in `dedup_plots`. Each builder returns its Figure (the widget keeps
its latest in `.figure`) so tests and readers can inspect what was drawn. matplotlib and ipywidgets are
imported inside the functions: importing minillm stays cheap, and the backend is whatever the reader chose.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from book.viz import SliderPanel
from minillm.data.clean import precision_recall

SCORES = ("precision", "recall", "f1")
CORPUS_TITLES = {"en": "English", "zh": "Chinese"}
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}


def _rows(rows: Any, keys: Sequence[str], source: str) -> list[Mapping]:
    """A non-empty list of dicts that all have `keys`; else one error naming the producer of such rows."""
    if isinstance(rows, (Mapping, str, bytes)) or not isinstance(rows, Sequence):
        raise TypeError(f"rows must be a list of dicts (from {source}), got {type(rows).__name__}")
    if not rows:
        raise ValueError(f"rows is empty: pass the rows of {source}")
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise TypeError(f"rows[{i}] is {type(r).__name__}, not a dict; pass the rows of {source}")
        missing = [k for k in keys if k not in r]
        if missing:
            raise ValueError(f"rows[{i}] has no {missing} field(s); pass the rows of {source}")
    return list(rows)


def _finite_or_zero(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Bar heights with NaN (undefined: nothing to score) drawn as 0, and the mask of those NaNs."""
    v = np.array([float(x) for x in values])  # (K,)
    nan = np.isnan(v)
    return np.where(nan, 0.0, v), nan


def plot_stage_scores(rows: Sequence[Mapping]):
    """Horizontal grouped bars: precision, recall and F1 of each stage. A NaN score (a stage with nothing to
    find or nothing flagged) is drawn as an empty bar marked "n/a"."""
    import matplotlib.pyplot as plt

    rows = _rows(rows, ("stage", *SCORES), "minillm.data.curation.stage_rows(result)")
    stages = [str(r["stage"]) for r in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(rows) + 1.5))
    height = 0.27
    for k, score in enumerate(SCORES):
        v, nan = _finite_or_zero([r[score] for r in rows])
        pos = y + (k - 1) * height
        ax.barh(pos, v, height, color=f"C{k}", label=score)
        for p in pos[nan]:
            ax.text(0.01, p, "n/a", va="center", fontsize=7, color="grey")
    ax.set_yticks(y, stages)
    ax.invert_yaxis()  # the first stage of the pipeline on top
    ax.set(xlim=(0, 1.05), xlabel="score against the crawl's ground truth", ylabel="pipeline stage",
           title="Every stage scored: precision, recall, F1")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: bars reach 1
    fig.tight_layout()
    return fig


def plot_register_bias(rows: Sequence[Mapping]):
    """Side-by-side bars per quality filter: the share of clean formal and of clean informal pages it drops.
    Both should be near 0; a tall informal bar is a filter that has learned "formal", not "good"."""
    import matplotlib.pyplot as plt

    rows = _rows(rows, ("filter", "dropped_formal", "dropped_informal"),
                 "minillm.data.curation.register_bias(result)")
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2.5, 3.8))
    for k, reg in enumerate(("formal", "informal")):
        v, nan = _finite_or_zero([r[f"dropped_{reg}"] for r in rows])
        n = [r.get(f"n_{reg}") for r in rows]
        label = f"clean {reg}" + (f" ({n[0]} pages)" if n[0] is not None and len(set(n)) == 1 else "")
        pos = x + (k - 0.5) * 0.4
        ax.bar(pos, v, 0.4, color=f"C{k}", label=label)
        for p in pos[nan]:
            ax.text(p, 0.01, "n/a", ha="center", fontsize=7, color="grey")
    ax.set_xticks(x, [str(r["filter"]) for r in rows], rotation=20)
    ax.set(ylim=(0, 1.05), xlabel="quality filter", ylabel="share of clean pages wrongly dropped",
           title="Who pays for filtering: formal vs informal clean pages")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_compression(rows: Sequence[Mapping]):
    """Two panels (English, Chinese): bytes per token against the vocabulary size actually learned, one line
    per tokenizer kind. Higher is better compression: fewer tokens, so less compute, per byte of text."""
    import matplotlib.pyplot as plt

    rows = _rows(rows, ("kind", "actual_vocab_size", "corpus", "bytes_per_token"),
                 "book.ch03_data.studies_tokenizers.compression_table(...)")
    unknown = sorted({str(r["corpus"]) for r in rows} - set(CORPUS_TITLES))
    if unknown:
        raise ValueError(f"corpus {unknown} is not drawn: the panels are {list(CORPUS_TITLES)}; "
                         "pass compression_table rows measured on 'en' and 'zh'")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    kinds = list(dict.fromkeys(str(r["kind"]) for r in rows))  # same colour for a kind in both panels
    for ax, (corpus, title) in zip(axes, CORPUS_TITLES.items()):
        for i, kind in enumerate(kinds):
            pts = sorted((float(r["actual_vocab_size"]), float(r["bytes_per_token"]))
                         for r in rows if r["corpus"] == corpus and r["kind"] == kind)
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, "o-", color=f"C{i}", label=kind)
        ax.set(xscale="log", xlabel="vocabulary size (tokens actually learned)", title=f"{title} held-out text")
        ax.grid(alpha=0.3, which="both")
        if ax.lines:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("bytes per token (higher = shorter sequences)")
    fig.tight_layout()
    return fig


def _share(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.0%}"


class FilterExplorer(SliderPanel):
    """A perplexity threshold and a language to play with, on a `PipelineResult`.

    Pages shown and scored: fresh pages (not a duplicate, not an other-language page, by the crawl's labels)
    of the chosen language (as the pipeline detected it, since that chose the language model that scored the
    page) with a finite perplexity. A page is dropped when its perplexity exceeds the threshold, as
    `perplexity_filter` does; precision and recall are against junk = quality != "clean". The threshold
    starts at the pipeline's own cut for the language (the largest perplexity it kept), and moves there
    again when the language changes without a new threshold.
    """

    def __init__(self, result: Any):
        import ipywidgets as widgets

        from minillm.data.curation import PipelineResult

        if not isinstance(result, PipelineResult):
            raise TypeError(f"result must be a PipelineResult from run_pipeline, got {type(result).__name__}")
        missing = [k for k in ("perplexity", "labels", "languages") if k not in result.extras]
        if missing or "perplexity" not in result.flags:
            raise ValueError(f"result.extras lacks {missing or ['perplexity flags']}: pass what run_pipeline returned")
        labels = result.extras["labels"]
        self.scores = np.asarray(result.extras["perplexity"], dtype=np.float64)   # (D,)
        detected = np.asarray(result.extras["languages"])                         # (D,)
        fresh = (labels["duplicate_of"] < 0) & (labels["language"] != "other") & np.isfinite(self.scores)
        self.junk = labels["quality"] != "clean"                                  # (D,)
        self.register = np.asarray(labels["register"])                            # (D,)
        self.pages = {lang: fresh & (detected == lang) for lang in LANGUAGE_NAMES}
        self.pages = {lang: m for lang, m in self.pages.items() if m.any()}
        if not self.pages:
            raise ValueError("no fresh English or Chinese page has a perplexity score: nothing to explore")
        kept = ~np.asarray(result.flags["perplexity"], dtype=bool)
        # The pipeline's cut per language: its largest kept score (every page above it was dropped).
        self.pipeline_thresholds = {lang: float(self.scores[m & kept].max() if (m & kept).any()
                                                else self.scores[m].min()) for lang, m in self.pages.items()}
        shown = self.scores[np.logical_or.reduce(list(self.pages.values()))]
        # Slider range: half the lowest score (drops everything) to ten times the highest (drops nothing).
        self.log_range = (math.floor(math.log10(shown.min() / 2) * 10) / 10,
                          math.ceil(math.log10(shown.max() * 10) * 10) / 10)
        language = next(iter(self.pages))
        self.controls = {
            "max_perplexity": widgets.FloatLogSlider(
                value=self.pipeline_thresholds[language], base=10, min=self.log_range[0], max=self.log_range[1],
                step=0.01, description="max perplexity", continuous_update=False,
                style={"description_width": "110px"}, layout=widgets.Layout(width="420px")),
            "language": widgets.ToggleButtons(options=list(self.pages), value=language, description="language"),
        }
        self._build(self.controls)

    @property
    def threshold_range(self) -> tuple[float, float]:
        """The thresholds the slider (and update) accept, in perplexity units."""
        return 10.0 ** self.log_range[0], 10.0 ** self.log_range[1]

    def update(self, max_perplexity: float | None = None, language: str | None = None) -> dict[str, Any]:
        """Set the threshold and/or language, redraw, and return precision, recall, f1, dropped_formal,
        dropped_informal (shares of clean pages of each register dropped), threshold and language."""
        if language is not None and language not in self.pages:
            raise ValueError(f"language={language!r}: this result has fresh scored pages in {list(self.pages)}; "
                             "choose one of those")
        if max_perplexity is not None:
            if isinstance(max_perplexity, bool) or not isinstance(max_perplexity, (int, float, np.number)):
                raise TypeError(f"max_perplexity must be a number, got {type(max_perplexity).__name__}")
            lo, hi = self.threshold_range
            if not lo <= max_perplexity <= hi:
                raise ValueError(f"max_perplexity={max_perplexity!r} is outside the slider's range "
                                 f"[{lo:.3g}, {hi:.3g}] (from half the lowest to 10x the highest score)")
        if language is not None and max_perplexity is None:
            max_perplexity = self.pipeline_thresholds[language]
        values = {} if language is None else {"language": language}
        if max_perplexity is not None:
            values["max_perplexity"] = float(max_perplexity)
        self._set(values)  # one redraw for both controls
        return self._render()

    def scores_for(self, language: str, threshold: float) -> dict[str, Any]:
        """The numbers of `update` for a language and threshold, without drawing."""
        m = self.pages[language]
        drop = self.scores[m] > threshold                                          # (M,)
        pr = precision_recall(drop, self.junk[m])
        out = {k: pr[k] for k in SCORES}
        for reg in ("formal", "informal"):
            clean_reg = ~self.junk[m] & (self.register[m] == reg)
            out[f"dropped_{reg}"] = float(drop[clean_reg].mean()) if clean_reg.any() else math.nan
        return {**out, "threshold": float(threshold), "language": language}

    def _render(self) -> dict[str, Any]:
        import matplotlib.pyplot as plt

        language, threshold = self.controls["language"].value, float(self.controls["max_perplexity"].value)
        res = self.scores_for(language, threshold)
        m = self.pages[language]
        logp = np.log10(self.scores)                                               # (D,)
        bins = np.histogram_bin_edges(logp[m], bins=30)
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        groups = (("clean formal", m & ~self.junk & (self.register == "formal"), "C0"),
                  ("clean informal", m & ~self.junk & (self.register == "informal"), "C2"),
                  ("junk", m & self.junk, "C3"))
        for name, g, colour in groups:
            ax.hist(logp[g], bins=bins, alpha=0.55, color=colour, label=f"{name} ({int(g.sum())} pages)")
        ax.axvline(math.log10(threshold), color="black", linestyle="--", label=f"threshold {threshold:.3g}")
        ax.set(xlabel="log10 perplexity per character (character 4-gram LM)", ylabel="pages",
               title=f"{LANGUAGE_NAMES[language]}: pages right of the line are dropped")
        ax.legend(fontsize=8)
        fig.tight_layout()
        self.result = res
        self.summary.value = (f"drop perplexity &gt; {threshold:.3g}: precision {res['precision']:.2f}, "
                              f"recall {res['recall']:.2f}, F1 {res['f1']:.2f}; clean pages dropped: formal "
                              f"{_share(res['dropped_formal'])}, informal {_share(res['dropped_informal'])}")
        self._show(fig)
        return self.result

    def _on_change(self, change: dict) -> None:
        if self._syncing:
            return
        if change["owner"] is self.controls["language"]:  # a new language: start from the pipeline's cut
            self._set({"max_perplexity": self.pipeline_thresholds[change["new"]]})
        self._render()
