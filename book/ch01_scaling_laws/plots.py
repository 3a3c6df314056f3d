"""Figures and widgets of chapter 01: scaling laws seen, fitted and played with (Survey §2.1).

Chapter 01 keeps its cells short by calling these. Each builder returns its Figure (or widget object) so
that tests and readers can inspect what was drawn. matplotlib and ipywidgets are imported inside the
functions: importing minillm stays cheap, and the backend is whatever the reader (or CI) chose.

- `bracketed_budgets`, `envelope_curves`: the parts of a sweep each Chinchilla approach can use.
- `plot_published_laws` (the published laws compared by allocation and each relative to itself, never by
  absolute loss), `plot_isoflop`, `plot_allocation_fits`, `plot_prediction`: the chapter's figures.
- `predict_from_smaller_budgets`: predictable scaling on a sweep (fit the cheap budgets, predict the largest).
- `law_explorer`: sliders for a Chinchilla law and a budget, with a KM / Chinchilla allocation toggle.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from book.viz import show_figure
from minillm.scaling.laws import NAMED_BUDGETS, chinchilla_allocation, km_allocation
from minillm.scaling.fits import ChinchillaFit, fit_chinchilla, group_budgets
from minillm.scaling.laws import ChinchillaLaw, km_loss_c, published_fit

FLOOR_STYLE = dict(color="black", linestyle="--", linewidth=1)


def _column(rows: Sequence[Mapping], key: str) -> np.ndarray:
    if not rows:
        raise ValueError("the sweep has no rows; run a sweep (minillm.scaling.sweep.run_sweep) first")
    missing = [i for i, r in enumerate(rows) if key not in r]
    if missing:
        raise ValueError(f"sweep rows {missing[:5]} have no {key!r} field; pass rows read by minillm.scaling.sweep.load_sweep")
    return np.array([float(r[key]) for r in rows])


def run_columns(rows: Sequence[Mapping]) -> dict[str, np.ndarray]:
    """The scalar columns the fits read (N, D, C, budget, val_loss) of sweep rows, as a dict of arrays.

    Sweep rows also hold ragged fields (each run's training curve, its provenance) that a table of runs
    cannot hold as columns, so the fits get only these."""
    return {k: _column(rows, k) for k in ("n_params", "tokens", "flops", "budget", "val_loss")}


def bracketed_budgets(rows: Sequence[Mapping], min_runs: int = 3) -> list[dict]:
    """The rows of the IsoFLOP budgets whose profile brackets its optimum: at least `min_runs` runs, and the
    lowest loss at neither the smallest nor the largest model. A sweep still running (or a budget whose
    valley lies beyond the sizes tried) leaves budgets that approach 2 cannot fit; they are left out here."""
    budget, n, loss = _column(rows, "budget"), _column(rows, "n_params"), _column(rows, "val_loss")
    ids = group_budgets(budget)
    keep = np.zeros(len(rows), dtype=bool)
    for g in range(ids.max() + 1):  # loop over a handful of budgets
        m = ids == g
        if m.sum() < min_runs:
            continue
        best = n[m][np.argmin(loss[m])]
        keep |= m & (n[m].min() < best < n[m].max())
    return [dict(r) for r, k in zip(rows, keep) if k]


def envelope_curves(rows: Sequence[Mapping]) -> list[dict]:
    """Training curves of a sweep's runs in the form `fit_envelope` reads (approach 1), compute counted
    with each run's own FLOPs per token, as the sweep counted its budgets."""
    curves = []
    for r in rows:
        tokens, loss = np.asarray(r["curve"], dtype=np.float64).T  # (P,), (P,): train loss along the run
        curves.append({"n_params": float(r["n_params"]), "tokens": tokens, "loss": loss,
                       "flops": tokens * float(r["flops"]) / float(r["tokens"])})
    return curves


# --------------------------------------------------------------------------------------------- published laws


def plot_published_laws(law: str = "hoffmann2022_approach3", refit: str = "besiroglu2024_refit",
                        c_ref: float = 1e21):
    """Three panels, none of which puts the two laws' losses on one absolute axis (they were fitted on different
    corpora and tokenizers, and count N differently: Kaplan non-embedding, Chinchilla total parameters):

    1. Chinchilla's L(N, D) against N at a few fixed D, with its irreducible loss E (one law alone);
    2. what each law says to build: compute-optimal N (solid) and D (dashed) against compute, for KM, `law`
       and `refit`, the named budgets marked;
    3. loss against compute, each law relative to its own value at `c_ref` FLOPs: KM's L(C_min), Chinchilla's
       L(N_opt, D_opt), and Chinchilla's reducible part L - E, which falls as a pure power law.
    """
    import matplotlib.pyplot as plt

    chin = published_fit(law).law()
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.2))
    N = np.geomspace(1e7, 1e12, 200)  # (200,) parameters
    for i, D in enumerate((1e10, 1e11, 1e12, 1e13)):
        ax1.plot(N, chin.predict(N, D), color=f"C{i + 1}", label=f"D = {D:.0e} tokens")
    ax1.axhline(chin.E, label=f"E = {chin.E} (irreducible)", **FLOOR_STYLE)
    ax1.set(xscale="log", xlabel="total parameters N", ylabel="loss (nats per token, Chinchilla's data)",
            title="Chinchilla $L(N, D)$ at fixed data")

    C = np.geomspace(1e19, 1e26, 200)  # (200,) FLOPs
    allocations = (("KM (N: non-embedding)", km_allocation(C), "C0"),
                   (f"Chinchilla, {law} (N: total)", chinchilla_allocation(C, chin), "C1"),
                   (f"Chinchilla, {refit} (N: total)", chinchilla_allocation(C, published_fit(refit).law()), "C2"))
    for label, (n_opt, d_opt), colour in allocations:
        ax2.plot(C, n_opt, color=colour, label=f"{label}: $N_{{opt}}$")
        ax2.plot(C, d_opt, "--", color=colour, label="  $D_{opt}$ (tokens)")
    for b in NAMED_BUDGETS:
        ax2.axvline(b.flops, color="grey", alpha=0.4, linewidth=1)
    ax2.set(xscale="log", yscale="log", xlabel="training compute C (FLOPs)", ylabel="parameters (solid), tokens (dashed)",
            title="what each law says to build")

    def relative(f):  # f(C) / f(c_ref)
        return f(C) / f(np.array([c_ref]))[0]

    optimal = lambda c: chin.predict(*chinchilla_allocation(c, chin))
    ax3.plot(C, relative(km_loss_c), color="C0", linewidth=2, label="KM $L(C_{min})$ (no irreducible term)")
    ax3.plot(C, relative(optimal), color="C1", linewidth=2, label="Chinchilla $L(N_{opt}, D_{opt})$")
    ax3.plot(C, relative(lambda c: optimal(c) - chin.E), ":", color="C1", linewidth=2,
             label="Chinchilla $L - E$ (reducible part)")
    ax3.axhline(chin.E / float(optimal(np.array([c_ref]))[0]), label="Chinchilla's $E$, same scale", **FLOOR_STYLE)
    for b in NAMED_BUDGETS:
        ax3.axvline(b.flops, color="grey", alpha=0.4, linewidth=1)
        ax3.text(b.flops, 1.0, b.name, rotation=90, va="bottom", ha="right", fontsize=7)
    ax3.set(xscale="log", yscale="log", xlabel="training compute C (FLOPs)",
            ylabel=f"loss / its value at C = {c_ref:.0e}", title="loss vs compute, each law relative to itself")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------- sweeps


def plot_isoflop(rows: Sequence[Mapping], ax: Any = None, title: str = "IsoFLOP profiles", parabolas: bool = True):
    """Final validation loss vs N, one line per compute budget, the corpus' entropy floor dashed. Where a
    budget has 3+ runs, the parabola in log N that approach 2 fits is drawn through them, its minimum starred."""
    import matplotlib.pyplot as plt

    budget, n, loss = _column(rows, "budget"), _column(rows, "n_params"), _column(rows, "val_loss")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    ids = group_budgets(budget)
    for g in range(ids.max() + 1):  # one colour per budget
        m = ids == g
        order = np.argsort(n[m])
        x, y = n[m][order], loss[m][order]
        line, = ax.plot(x, y, "o-", alpha=0.8, label=f"C = {budget[m][0]:.2g} FLOPs")
        if parabolas and m.sum() >= 3:
            c2, c1, c0 = np.polyfit(np.log(x), y, 2)
            xs = np.geomspace(x.min(), x.max(), 100)
            ax.plot(xs, np.polyval([c2, c1, c0], np.log(xs)), ":", color=line.get_color())
            if c2 > 0 and np.log(x.min()) <= -c1 / (2 * c2) <= np.log(x.max()):
                ax.plot(np.exp(-c1 / (2 * c2)), c0 - c1**2 / (4 * c2), "*", ms=14, color=line.get_color(), mec="k")
    if "floor" in rows[0]:
        ax.axhline(float(rows[0]["floor"]), label="entropy floor of the corpus", **FLOOR_STYLE)
    ax.set(xscale="log", xlabel="non-embedding parameters N", ylabel="validation loss (nats per char)", title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return ax.figure


def plot_sweeps(live_rows: Sequence[Mapping], shipped_rows: Sequence[Mapping]):
    """Your own sweep (left) beside the shipped laptop sweep (right), both as IsoFLOP profiles."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    plot_isoflop(live_rows, ax=ax1, title=f"your sweep ({len(live_rows)} runs)")
    plot_isoflop(shipped_rows, ax=ax2, title=f"shipped laptop sweep ({len(shipped_rows)} runs)")
    fig.tight_layout()
    return fig


def plot_allocation_fits(fits: Mapping[str, Any], law: ChinchillaLaw | None = None):
    """N_opt(C) of each approach: measured optima as points, fitted power laws as lines (`fits` maps a label
    to an AllocationFit); `law` (an approach-3 fit) adds its closed-form allocation. Slopes are in the legend."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    lo = min(float(f.C.min()) for f in fits.values()) / 3
    hi = max(float(f.C.max()) for f in fits.values()) * 3
    C = np.geomspace(lo, hi, 100)
    for i, (label, f) in enumerate(fits.items()):
        ax.plot(f.C, f.n_opt, "o", color=f"C{i}", alpha=0.6)
        ax.plot(C, f.predict(C)[0], color=f"C{i}", label=f"{label}: $N_{{opt}} \\propto C^{{{f.a:.2f}}}$")
    if law is not None:
        a = law.beta / (law.alpha + law.beta)
        ax.plot(C, chinchilla_allocation(C, law)[0], "k--", label=f"approach 3 (closed form): $C^{{{a:.2f}}}$")
    ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel="compute-optimal N",
           title="compute-optimal model size, three ways")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return fig


# --------------------------------------------------------------------------------------------- predictable scaling


@dataclass(frozen=True)
class BudgetPrediction:
    """Approach-3 law fitted on the cheaper budgets of a sweep, and its prediction for the largest one."""

    fit: ChinchillaFit
    budget: float  # the held-out (largest) budget, FLOPs
    n_params: np.ndarray  # (H,) sizes trained at that budget
    measured: np.ndarray  # (H,) their validation losses
    predicted: np.ndarray  # (H,) what the law fitted without them says
    rel_error: np.ndarray  # (H,) (predicted - measured) / measured
    compute_ratio: float  # held-out budget / largest fitted budget


def predict_from_smaller_budgets(rows: Sequence[Mapping]) -> BudgetPrediction:
    """GPT-4-style predictable scaling on an IsoFLOP sweep: fit L = E + A/N^α + B/D^β on every budget but the
    largest, then predict the loss of each run at the largest budget."""
    budget = _column(rows, "budget")
    ids = group_budgets(budget)
    if ids.max() < 1:
        raise ValueError("predictable scaling needs runs at 2 or more budgets: one to fit, a larger one to predict")
    top = ids == ids.max()
    law = fit_chinchilla(run_columns([r for r, t in zip(rows, top) if not t]))
    test = [r for r, t in zip(rows, top) if t]
    n, d, measured = _column(test, "n_params"), _column(test, "tokens"), _column(test, "val_loss")
    predicted = law.predict(n, d)
    return BudgetPrediction(fit=law, budget=float(budget[top][0]), n_params=n, measured=measured,
                            predicted=predicted, rel_error=(predicted - measured) / measured,
                            compute_ratio=float(budget[top][0] / budget[~top].max()))


def plot_prediction(pred: BudgetPrediction, rows: Sequence[Mapping]):
    """The IsoFLOP profiles used for the fit, the held-out budget measured (points) and predicted (line)."""
    ax = plot_isoflop([r for r in rows if float(r["budget"]) < pred.budget], parabolas=False,
                      title=f"fit on cheaper budgets, predict C = {pred.budget:.2g}").axes[0]
    order = np.argsort(pred.n_params)
    ax.plot(pred.n_params[order], pred.measured[order], "ks", label=f"C = {pred.budget:.2g}: measured")
    ax.plot(pred.n_params[order], pred.predicted[order], "r-", linewidth=2, label="predicted before training them")
    ax.legend(fontsize=7)
    return ax.figure


# --------------------------------------------------------------------------------------------- widget


class LawExplorer:
    """Sliders for a Chinchilla law (E, A, B, α, β) and a compute budget, with a KM / Chinchilla toggle.

    Left: the loss of every model size that spends the budget exactly (an IsoFLOP curve of the law), both
    allocations marked, the chosen one filled. Right: N_opt and D_opt against compute for the chosen rule.
    ``w = law_explorer(); w.update(log10_C=23.5, allocation="KM"); display(w.widget)``.
    """

    PARAMS = ("E", "A", "B", "alpha", "beta")

    def __init__(self, law: ChinchillaLaw | str = "hoffmann2022_approach3", log10_C: float = 23.76,
                 allocation: str = "Chinchilla"):
        import ipywidgets as widgets

        law = published_fit(law).law() if isinstance(law, str) else law
        common = dict(continuous_update=False, style={"description_width": "110px"},
                      layout=widgets.Layout(width="380px"))
        self.controls = {
            "log10_C": widgets.FloatSlider(value=23.76, min=18.0, max=26.0, step=0.05, description="log10 C (FLOPs)",
                                           **common),
            "E": widgets.FloatSlider(value=law.E, min=0.0, max=4.0, step=0.01, description="E", **common),
            "A": widgets.FloatLogSlider(value=law.A, base=10, min=0, max=4, step=0.01, description="A", **common),
            "B": widgets.FloatLogSlider(value=law.B, base=10, min=0, max=4, step=0.01, description="B", **common),
            "alpha": widgets.FloatSlider(value=law.alpha, min=0.05, max=1.0, step=0.01, description="alpha", **common),
            "beta": widgets.FloatSlider(value=law.beta, min=0.05, max=1.0, step=0.01, description="beta", **common),
            "allocation": widgets.ToggleButtons(options=["Chinchilla", "KM"], value="Chinchilla",
                                                description="allocation"),
        }
        self.output = widgets.Output()
        self.summary = widgets.HTML()
        self.figure = None  # the latest drawing
        self.result: dict[str, float] = {}  # the latest numbers: C, n_opt, d_opt, tokens_per_param, loss
        self.widget = widgets.HBox([widgets.VBox([*self.controls.values(), self.summary]), self.output])
        self._syncing = False
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.update(log10_C=log10_C, allocation=allocation)

    def law(self) -> ChinchillaLaw:
        return ChinchillaLaw(**{k: float(self.controls[k].value) for k in self.PARAMS})

    def update(self, **values: Any) -> dict[str, float]:
        """Set any of log10_C, E, A, B, alpha, beta, allocation ('Chinchilla' or 'KM'); redraw; return the numbers."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; choose from {', '.join(self.controls)}")
        if "allocation" in values and values["allocation"] not in ("Chinchilla", "KM"):
            raise ValueError(f"allocation={values['allocation']!r} must be 'Chinchilla' or 'KM'")
        for k, v in values.items():
            c = self.controls[k]
            if k != "allocation" and not c.min <= (np.log10(v) if k in ("A", "B") and v > 0 else v) <= c.max:
                lo, hi = (10**c.min, 10**c.max) if k in ("A", "B") else (c.min, c.max)
                raise ValueError(f"{k}={v!r} is outside the slider's range [{lo:g}, {hi:g}]")
        self._syncing = True  # the observers must not redraw once per moved slider
        try:
            for k, v in values.items():
                self.controls[k].value = v
        finally:
            self._syncing = False
        return self._render()

    def _render(self) -> dict[str, float]:
        import matplotlib.pyplot as plt

        law, C = self.law(), 10.0 ** self.controls["log10_C"].value
        chosen = self.controls["allocation"].value
        n_ch, d_ch = (float(v) for v in chinchilla_allocation(C, law))
        n_km, d_km = (float(v) for v in km_allocation(C))
        n_opt, d_opt = (n_ch, d_ch) if chosen == "Chinchilla" else (n_km, d_km)
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
        N = np.geomspace(min(n_ch, n_km) / 100, max(n_ch, n_km) * 100, 300)  # (300,) sizes that spend C exactly
        ax1.plot(N, law.predict(N, C / (6 * N)), color="C0")
        for name, n, colour in (("Chinchilla", n_ch, "C1"), ("KM", n_km, "C2")):  # filled = the chosen rule
            ax1.plot(n, law.predict(n, C / (6 * n)), "o", ms=10, color=colour, label=name,
                     mfc=colour if name == chosen else "none")
        ax1.axhline(law.E, **FLOOR_STYLE)
        ax1.set(xscale="log", xlabel="parameters N (D = C / 6N)", ylabel="predicted loss",
                title=f"IsoFLOP curve at C = {C:.2g} FLOPs")
        ax1.legend(fontsize=8)
        Cs = np.geomspace(1e18, 1e26, 100)
        ns, ds = chinchilla_allocation(Cs, law) if chosen == "Chinchilla" else km_allocation(Cs)
        ax2.plot(Cs, ns, label="$N_{opt}$ (parameters)")
        ax2.plot(Cs, ds, label="$D_{opt}$ (tokens)")
        ax2.plot([C, C], [n_opt, d_opt], "ko")
        ax2.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", title=f"{chosen} allocation")
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3, which="both")
        ax2.legend(fontsize=8)
        fig.tight_layout()
        loss = float(law.predict(n_opt, C / (6 * n_opt)))  # on budget: D = C / 6N, whatever the rule said
        self.result = {"C": C, "n_opt": n_opt, "d_opt": d_opt, "tokens_per_param": d_opt / n_opt, "loss": loss}
        self.summary.value = (f"<b>{chosen}</b> at C = {C:.3g} FLOPs: N = {n_opt:.3g}, D = {d_opt:.3g}, "
                              f"D/N = {d_opt / n_opt:.3g} tokens per parameter, predicted loss {loss:.3f}")
        show_figure(self.output, fig)
        self.figure = fig
        return self.result

    def _on_change(self, change: dict) -> None:
        if not self._syncing:
            self._render()


def law_explorer(law: ChinchillaLaw | str = "hoffmann2022_approach3", **initial: Any) -> LawExplorer:
    """Build a LawExplorer (see its docstring); `initial` may set log10_C and allocation."""
    return LawExplorer(law, **initial)
