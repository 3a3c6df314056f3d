"""Figures of chapter 01's two extra studies: data far past Chinchilla, and knowledge capacity (Survey §2.1).

- `shipped_studies` reads the records measured for this book (bench/results/scaling_studies.jsonl).
- `plot_data_scaling`: held-out loss against tokens per parameter, yours beside the shipped run, with the
  ratios real models were trained at (computed from their N and D below, not typed in).
- `plot_knowledge`: bits of facts stored against parameters, with the 1 and 2 bits/param lines of
  Allen-Zhu & Li 2024 and the world's total as the ceiling.

matplotlib is imported inside the functions, as in `plots.py`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from book import results


class TrainedModel(NamedTuple):
    name: str
    n_params: float
    tokens: float
    source: str


TRAINED_MODELS = (
    TrainedModel("Chinchilla 70B", 70e9, 1.4e12, "Hoffmann et al. 2022"),
    TrainedModel("LLaMA 7B", 6.7e9, 1.0e12, "Touvron et al. 2023, Table 2"),
    TrainedModel("Llama 2 7B", 6.7e9, 2.0e12, "Touvron et al. 2023b, Table 1"),
)


def shipped_studies() -> dict[str, dict]:
    """The latest shipped record of each study, by name ("data_scaling", "knowledge_capacity").

    Each record is {"study", "summary", "rows", "provenance"} as bench/scaling_studies.py appends them; a
    later record of the same study replaces an earlier one (the file keeps the history)."""
    return results.latest("scaling_studies.jsonl")


def _rows_of(rows: Sequence[Mapping], schedule: str) -> tuple[np.ndarray, np.ndarray]:
    pts = sorted((float(r["tokens_per_param"]), float(r["val_loss"])) for r in rows if r.get("schedule") == schedule)
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def plot_data_scaling(live_rows: Sequence[Mapping], shipped_rows: Sequence[Mapping] = ()):
    """Loss vs tokens/param: each length its own annealed run (markers), and the longest run evaluated along
    the way (thin line, "mid_run"); yours left, the shipped one right when given. Dashed: the entropy floor."""
    import matplotlib.pyplot as plt

    panels = [("your run", live_rows)] + ([("shipped (laptop)", shipped_rows)] if shipped_rows else [])
    if not live_rows:
        raise ValueError("no rows to plot: run book.ch01_scaling_laws.studies.data_scaling_curve first")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (title, rows) in zip(axes[0], panels):
        x, y = _rows_of(rows, "own_cosine")
        ax.plot(x, y, "o-", color="C0", label="separate runs, each annealed")
        xm, ym = _rows_of(rows, "mid_run")
        if len(xm):
            ax.plot(xm, ym, "-", color="C1", linewidth=1, label="one long run, read mid-way")
        ax.axhline(float(rows[0]["floor"]), color="black", linestyle="--", linewidth=1, label="entropy floor")
        for k, m in enumerate(TRAINED_MODELS):
            ax.axvline(m.tokens / m.n_params, color=f"C{k + 2}", linewidth=0.8, linestyle=":",
                       label=f"{m.name}: {m.tokens / m.n_params:.0f} tok/param")
        ax.set(xscale="log", xlabel="tokens per (non-embedding) parameter", ylabel="held-out loss (nats/char)",
               title=f"{title}: N = {int(rows[0]['n_params']):,}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def knowledge_points(rows: Sequence[Mapping]) -> dict[float, dict[str, np.ndarray]]:
    """Rows grouped by exposures (rounded): {exposures: {"n_params", "bits", "total"}} sorted by size."""
    groups: dict[float, list[Mapping]] = {}
    for r in rows:
        groups.setdefault(round(float(r["exposures"])), []).append(r)
    out = {}
    for e, rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["n_params"])
        out[e] = {"n_params": np.array([float(r["n_params"]) for r in rs]),
                  "bits": np.array([float(r["bits_vs_prior"]) for r in rs]),
                  "total": float(rs[0]["total_bits_vs_prior"])}
    return out


def plot_knowledge(live_rows: Sequence[Mapping], shipped_rows: Sequence[Mapping] = ()):
    """Bits stored (vs the value prior) against non-embedding parameters, at each exposure count; reference
    lines at 1 and 2 bits/param (Allen-Zhu & Li 2024) and the world's total as the ceiling."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    if not live_rows:
        raise ValueError("no rows to plot: run minillm.scaling.knowledge.knowledge_capacity first")
    panels = [("your run", live_rows)] + ([("shipped (laptop)", shipped_rows)] if shipped_rows else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (title, rows) in zip(axes[0], panels):
        pts = knowledge_points(rows)
        for k, (e, p) in enumerate(pts.items()):
            ax.plot(p["n_params"], np.maximum(p["bits"], 1.0), "o-", color=f"C{k}", label=f"{e:.0f} exposures")
        n = np.geomspace(min(p["n_params"].min() for p in pts.values()) / 2,
                         max(p["n_params"].max() for p in pts.values()) * 2, 20)
        for bpp, style in ((2.0, "-"), (1.0, ":")):
            ax.plot(n, bpp * n, color="gray", linestyle=style, linewidth=1, label=f"{bpp:.0f} bit/param")
        total = next(iter(pts.values()))["total"]
        ax.axhline(total, color="black", linestyle="--", linewidth=1, label=f"whole world: {total:,.0f} bits")
        ax.xaxis.set_minor_formatter(NullFormatter())  # less than a decade of sizes: minor labels would overlap
        ax.set(xscale="log", yscale="log", xlabel="non-embedding parameters", ylim=(1, total * 3),
               ylabel="bits of facts stored (vs value prior)", title=f"{title}: {rows[0]['n_people']} people")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def knowledge_table(rows: Sequence[Mapping]) -> list[dict[str, Any]]:
    """One line per (size, exposures): the numbers behind `plot_knowledge`, for printing."""
    return [{"shape": f"L{r['n_layer']} E{r['n_embd']}", "n_params": int(r["n_params"]),
             "exposures": round(float(r["exposures"])), "bits": round(float(r["bits_vs_prior"])),
             "of_world": float(r["bits_vs_prior"]) / float(r["total_bits_vs_prior"]),
             "bits_per_param": float(r["bits_per_param"]), "accuracy": float(r["accuracy"]),
             "val_loss": float(r["val_loss"]), "floor": float(r["floor"])}
            for r in sorted(rows, key=lambda r: (r["n_params"], r["exposures"]))]
