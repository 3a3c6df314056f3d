"""Figures and the LSH widget of chapter 03's de-duplication section (Survey §4.1.2).

MinHash promises an unbiased estimate of Jaccard similarity with standard deviation sqrt(J (1 - J) / P), and
LSH banding turns signatures into candidate pairs with probability 1 - (1 - s^r)^b. These builders let the
reader check both promises on data the chapter computes (nothing is read from disk):

- `jaccard_estimates`, `plot_jaccard_estimates`: exact against estimated Jaccard for sampled document pairs
  (known near duplicates plus random pairs), with the theoretical ±2σ band.
- `LSHExplorer`: sliders for the threshold and the number of bands; draws the S-curve over the histogram of
  the exact Jaccard of the true duplicate pairs, and scores the resulting de-duplication against the truth.
  ``w = LSHExplorer(texts, duplicate_of); w.update(threshold=0.6, bands=32); display(w.widget)``.

matplotlib and ipywidgets are imported inside the functions: importing minillm stays cheap.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from book.viz import SliderPanel
from minillm.data.clean import precision_recall
from minillm.data.dedup import (NearDedupConfig, cluster_signatures, estimate_jaccard, jaccard, minhash_signatures, permutations,
                    s_curve, shingle_hashes)
from minillm.data.dedup._checks import check_int, check_texts, check_unit

THRESHOLD_RANGE = (0.3, 0.95)  # the LSH explorer's slider


def _signatures(texts: list[str], num_perm: int, n: int, unit: str, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    hashes = [shingle_hashes(t, n, unit) for t in texts]       # list of (S_d,) uint64
    a, b = permutations(num_perm, seed)                         # (P,), (P,)
    return hashes, minhash_signatures(hashes, a, b)             # (D, P)


def _check_pairs(pairs: Any, n_docs: int) -> np.ndarray:
    p = np.asarray(pairs)
    if p.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    if p.ndim != 2 or p.shape[1] != 2 or p.dtype.kind not in "iu":
        raise ValueError(f"pairs must be (K, 2) integer document indices, got shape {p.shape} dtype {p.dtype}")
    if p.min() < 0 or p.max() >= n_docs or np.any(p[:, 0] == p[:, 1]):
        raise ValueError(f"pairs must index two different documents among 0..{n_docs - 1}")
    return p.astype(np.int64)


def jaccard_estimates(texts: Sequence[str], num_perm: int = 128, n: int = 5, unit: str = "word",
                      n_pairs: int = 300, seed: int = 0, pairs: Any = None) -> dict[str, Any]:
    """Exact vs MinHash-estimated Jaccard for the given `pairs` (e.g. known near duplicates) plus `n_pairs`
    random pairs (mostly dissimilar), so both ends of [0, 1] are covered.

    Returns pairs (K, 2), given (K,) bool (True for the pairs passed in), exact (K,), estimated (K,),
    std (K,) = sqrt(J (1 - J) / P) the theory's standard deviation at the exact J, mean_abs_error,
    within_2sigma (share of estimates within 2 std, or equal where std = 0) and num_perm.
    """
    texts = check_texts(texts)
    num_perm, n, unit = check_int(num_perm, "num_perm"), check_int(n, "n"), check_unit(unit)
    n_pairs = check_int(n_pairs, "n_pairs", minimum=0)
    given = _check_pairs([] if pairs is None else pairs, len(texts))           # (G, 2)
    if n_pairs and len(texts) < 2:
        raise ValueError("random pairs need at least 2 texts")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(texts), size=n_pairs)
    j = (i + rng.integers(1, max(len(texts), 2), size=n_pairs)) % len(texts)   # j != i
    rand = np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1)               # (R, 2)
    all_pairs = np.concatenate([given, rand]).astype(np.int64)                  # (K, 2)
    if not len(all_pairs):
        raise ValueError("no pairs to compare: pass pairs or n_pairs >= 1")
    hashes, sig = _signatures(texts, num_perm, n, unit, seed)
    exact = np.array([jaccard(hashes[a], hashes[b]) for a, b in all_pairs.tolist()])  # (K,) one per pair
    est = estimate_jaccard(sig[all_pairs[:, 0]], sig[all_pairs[:, 1]])                 # (K,)
    std = np.sqrt(exact * (1 - exact) / num_perm)                                      # (K,)
    err = np.abs(est - exact)
    return {"pairs": all_pairs, "given": np.arange(len(all_pairs)) < len(given), "exact": exact,
            "estimated": est, "std": std, "mean_abs_error": float(err.mean()),
            "within_2sigma": float(np.mean(err <= 2 * std + 1e-12)), "num_perm": num_perm}


def plot_jaccard_estimates(est: dict[str, Any]):
    """Scatter of estimated against exact Jaccard (given pairs and random pairs in two colours), the line
    y = x and the band y = J ± 2 sqrt(J (1 - J) / P) where about 95% of estimates should fall."""
    import matplotlib.pyplot as plt

    if not isinstance(est, dict) or not {"exact", "estimated", "num_perm"} <= est.keys():
        raise ValueError("est must be the dict returned by jaccard_estimates(texts, ...)")
    exact, estimated = np.asarray(est["exact"]), np.asarray(est["estimated"])
    given = np.asarray(est.get("given", np.zeros(len(exact), dtype=bool)))
    P = est["num_perm"]
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    J = np.linspace(0, 1, 201)                                                   # (201,)
    band = 2 * np.sqrt(J * (1 - J) / P)
    ax.fill_between(J, J - band, J + band, color="grey", alpha=0.25, label=f"±2σ, σ = sqrt(J(1-J)/{P})")
    ax.plot([0, 1], [0, 1], "k-", linewidth=1, label="y = x")
    for mask, colour, name in ((~given, "C0", "random pairs"), (given, "C3", "given pairs")):
        if mask.any():
            ax.scatter(exact[mask], estimated[mask], s=12, color=colour, alpha=0.7, label=f"{name} ({int(mask.sum())})")
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="exact Jaccard of the shingle sets",
           ylabel=f"MinHash estimate ({P} permutations)",
           title=f"MinHash estimates: mean |error| {est.get('mean_abs_error', float('nan')):.3f}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def _divisors(n: int) -> list[int]:
    return [b for b in range(1, n + 1) if n % b == 0]


class LSHExplorer(SliderPanel):
    """Threshold and bands of MinHash-LSH on `texts` whose true duplicates are known.

    duplicate_of[i] is the index of the document i copies, -1 for none (as `Crawl.labels()` gives, re-indexed
    if you filter the texts). Signatures are computed once; each update re-runs `cluster_signatures` (LSH
    candidates, verification at the threshold, connected components) and scores the documents it removes
    against the true duplicates. The bands stay as they are when only the threshold changes.
    """

    def __init__(self, texts: Sequence[str], duplicate_of: Any, num_perm: int = 128, n: int = 5,
                 unit: str = "word", seed: int = 1):
        import ipywidgets as widgets

        texts = check_texts(texts)
        self.num_perm = check_int(num_perm, "num_perm")
        dup = np.asarray(duplicate_of)
        if dup.shape != (len(texts),) or (dup.size and dup.dtype.kind not in "iu"):
            raise ValueError(f"duplicate_of must hold one int per text ({len(texts)}), -1 for none; "
                             f"got shape {dup.shape} dtype {dup.dtype}")
        dup = dup.astype(np.int64)
        if np.any(dup < -1) or np.any(dup >= len(texts)) or np.any(dup == np.arange(len(texts))):
            raise ValueError(f"duplicate_of values must be -1 or the index of another text (0..{len(texts) - 1}); "
                             "re-index Crawl.labels()['duplicate_of'] if you filtered the pages")
        self.duplicate_of = dup                                                     # (D,)
        hashes, self.signatures = _signatures(texts, self.num_perm, check_int(n, "n"), check_unit(unit),
                                              check_int(seed, "seed", minimum=0))  # (D, P)
        true = np.flatnonzero(dup >= 0)
        self.true_jaccard = np.array([jaccard(hashes[i], hashes[dup[i]]) for i in true])  # (T,) one per true pair
        threshold = 0.7  # the pipeline's near_threshold
        bands, _ = NearDedupConfig(threshold=threshold, num_perm=self.num_perm).band_rows()
        common = dict(continuous_update=False, style={"description_width": "90px"},
                      layout=widgets.Layout(width="380px"))
        self.controls = {
            "threshold": widgets.FloatSlider(value=threshold, min=THRESHOLD_RANGE[0], max=THRESHOLD_RANGE[1],
                                             step=0.01, description="threshold", **common),
            "bands": widgets.Dropdown(options=_divisors(self.num_perm), value=bands, description="bands b",
                                      style=common["style"]),
        }
        self._build(self.controls)

    def update(self, threshold: float | None = None, bands: int | None = None) -> dict[str, Any]:
        """Set the Jaccard threshold and/or the number of bands, redraw, and return precision and recall of
        the removed documents against the true duplicates, the candidate pairs, bands and rows."""
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
                raise TypeError(f"threshold must be a number, got {type(threshold).__name__}")
            if not THRESHOLD_RANGE[0] <= threshold <= THRESHOLD_RANGE[1]:
                raise ValueError(f"threshold={threshold!r} is outside the slider's range {list(THRESHOLD_RANGE)}")
        if bands is not None:
            if isinstance(bands, bool) or not isinstance(bands, (int, np.integer)):
                raise TypeError(f"bands must be an int, got {type(bands).__name__}")
            if bands < 1 or self.num_perm % bands:
                raise ValueError(f"bands={bands} must divide num_perm={self.num_perm} (bands * rows = num_perm); "
                                 f"choose from {_divisors(self.num_perm)}")
        values = {} if threshold is None else {"threshold": float(threshold)}
        if bands is not None:
            values["bands"] = int(bands)
        self._set(values)  # one redraw for both controls
        return self._render()

    def _render(self) -> dict[str, Any]:
        import matplotlib.pyplot as plt

        threshold, b = float(self.controls["threshold"].value), int(self.controls["bands"].value)
        r = self.num_perm // b
        res = cluster_signatures(self.signatures, threshold, b)
        pr = precision_recall(~res.keep, self.duplicate_of >= 0)
        self.result = {"precision": pr["precision"], "recall": pr["recall"], "candidates": res.n_candidates,
                       "bands": b, "rows": r, "removed": res.n_removed, "threshold": threshold}
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        hist = ax.twinx()  # counts of true pairs behind the probability curve
        hist.hist(self.true_jaccard, bins=np.linspace(0, 1, 41), color="C2", alpha=0.4,
                  label=f"true duplicate pairs ({len(self.true_jaccard)})")
        hist.set_ylabel("true duplicate pairs")
        s = np.linspace(0, 1, 201)
        ax.plot(s, s_curve(s, b, r), color="C0", linewidth=2, label=f"P[candidate], b = {b}, r = {r}")
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.2f}")
        ax.set_zorder(hist.get_zorder() + 1)
        ax.patch.set_visible(False)  # keep the histogram visible under the curve's axes
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Jaccard similarity s of a pair",
               ylabel="P[candidate] = 1 - (1 - s^r)^b",
               title=f"LSH S-curve, steepest near (1/b)^(1/r) = {(1 / b) ** (1 / r):.2f}")
        lines = ax.get_legend_handles_labels()
        bars = hist.get_legend_handles_labels()
        ax.legend(lines[0] + bars[0], lines[1] + bars[1], fontsize=8, loc="upper left")
        fig.tight_layout()
        self.summary.value = (f"{res.n_candidates} candidate pairs, {res.n_removed} documents removed: "
                              f"precision {pr['precision']:.2f}, recall {pr['recall']:.2f}")
        self._show(fig)
        return self.result
