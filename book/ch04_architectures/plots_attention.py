"""Figures of chapter 04's attention and architecture studies (Survey §4.2.1, §4.2.2, §4.2.4).

One function per study of `studies_attention.py` and `studies_arch.py`, each taking that study's rows and
returning a matplotlib Figure:

- `plot_attention`: held-out loss and forward time per window, and attention FLOPs per token against context
  length (formula), where the T² vs T·w difference becomes visible.
- `plot_kv_heads`: KV-cache bytes and decode speed against context for MHA/GQA/MQA.
- `plot_prefix`: suffix loss of the prefix-continuation arms, and their held-out curves.
- `plot_architectures`: held-out suffix loss during training of the three families.
- `plot_moe`: held-out loss and final max expert share against the number of experts, with/without balancing.
- `plot_expert_load`: one run's expert load over training as a heatmap (steps × experts).
- `plot_masks`: who may attend to whom in a causal decoder, a prefix decoder and an encoder-decoder.
- `shipped_arch_studies`: the latest shipped record of each study (bench/results/arch_studies.jsonl).

matplotlib is imported inside the functions, so importing minillm stays cheap.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from book import results
from book.ch04_architectures.studies_attention import attention_flops


def _need(rows: Sequence[Mapping], study: str, keys: Sequence[str]) -> list[Mapping]:
    rows = list(rows)
    if not rows:
        raise ValueError(f"no rows to plot: run {study} first")
    missing = sorted(set(keys) - set(rows[0]))
    if missing:
        raise ValueError(f"rows lack {', '.join(missing)}: pass the rows {study} returns")
    return rows


def _bars(ax, labels: Sequence[str], values: Sequence[float | None], ylabel: str, title: str) -> None:
    vals = [np.nan if v is None else float(v) for v in values]
    ax.bar(range(len(vals)), vals, color=[f"C{i}" for i in range(len(vals))])
    ax.set_xticks(range(len(vals)), labels, rotation=15, fontsize=8)
    finite = [v for v in vals if np.isfinite(v)]
    if finite:  # losses differ in the 2nd decimal: a bar from 0 would hide it
        lo, hi = min(finite), max(finite)
        pad = max(0.05 * (hi - lo), 0.02 * hi, 1e-9)
        ax.set_ylim(max(0.0, lo - 4 * pad) if "loss" in ylabel else 0.0, hi + 2 * pad)
    ax.set(ylabel=ylabel, title=title)


def plot_attention(rows: Sequence[Mapping], max_len: int = 32768):
    """Three panels: held-out loss per window, measured forward time per token, and attention FLOPs per token
    from T = 16 to max_len by formula (full attention grows linearly per token, a window stays flat)."""
    import matplotlib.pyplot as plt

    rows = _need(rows, "attention_study", ("window", "label", "val_loss", "fwd_us_per_token", "n_layer", "n_embd"))
    labels = [r["label"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    _bars(axes[0], labels, [r["val_loss"] for r in rows], "held-out loss (nats/char)", "loss")
    _bars(axes[1], labels, [r["fwd_us_per_token"] for r in rows], "forward µs / token",
          f"measured, T = {rows[0].get('block_size', '?')}")
    T = np.unique(np.geomspace(16, max_len, 40).round().astype(int))
    for i, r in enumerate(rows):
        f = [attention_flops(int(t), r["n_layer"], r["n_embd"], r["window"]) / t for t in T]
        axes[2].plot(T, f, color=f"C{i}", label=r["label"])
    if "block_size" in rows[0]:
        axes[2].axvline(rows[0]["block_size"], color="gray", linestyle=":", linewidth=1, label="trained context")
    axes[2].set(xscale="log", yscale="log", xlabel="context length T", ylabel="attention FLOPs / token (forward)",
                title="T²/2 vs T·w (formula)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_kv_heads(rows: Sequence[Mapping]):
    """KV-cache bytes (log-log) and decode tokens/s against context length, one line per n_kv_head; the
    legend carries each arm's held-out loss and parameters."""
    import matplotlib.pyplot as plt

    rows = _need(rows, "kv_heads_study", ("n_kv_head", "kind", "seq_len", "kv_cache_bytes", "decode_tok_per_s",
                                          "val_loss"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, k in enumerate(sorted({r["n_kv_head"] for r in rows}, reverse=True)):
        rs = sorted((r for r in rows if r["n_kv_head"] == k), key=lambda r: r["seq_len"])
        loss = rs[0]["val_loss"]
        label = f"{rs[0]['kind']} ({k} kv heads), loss {loss:.3f}" if loss is not None else f"{rs[0]['kind']} ({k})"
        L = [r["seq_len"] for r in rs]
        axes[0].plot(L, [r["kv_cache_bytes"] for r in rs], "o-", color=f"C{i}", label=label)
        axes[1].plot(L, [r["decode_tok_per_s"] for r in rs], "o-", color=f"C{i}", label=label)
    axes[0].set(xscale="log", yscale="log", xlabel="context length (cached tokens)", ylabel="KV-cache bytes",
                title=f"KV cache, batch {rows[0].get('batch_size', '?')}")
    axes[1].set(xscale="log", xlabel="context length (cached tokens)", ylabel="decode tokens / s",
                title="decoding with the cache (measured)")
    axes[1].set_ylim(bottom=0)
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _curve(ax, hist: Sequence[Mapping], x: str, **kw) -> None:
    pts = [(h[x], h["val_loss"]) for h in hist if h.get("val_loss") is not None]
    if pts:
        ax.plot(*zip(*pts), **kw)


def plot_prefix(rows: Sequence[Mapping]):
    """Suffix held-out loss per arm of `prefix_continuation` (bars) and each arm's held-out suffix loss along
    training (curves; a continued arm's curve starts with its causal phase)."""
    import matplotlib.pyplot as plt

    rows = _need(rows, "prefix_continuation", ("arm", "suffix_val_loss", "history", "steps"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    _bars(axes[0], [f"{r['arm']}\n{r['steps']} steps" for r in rows], [r["suffix_val_loss"] for r in rows],
          "held-out suffix loss (nats/char)", f"prefix_len = {rows[0].get('prefix_len', '?')}")
    for i, r in enumerate(rows):
        _curve(axes[1], r["history"], "step", color=f"C{i}", marker=".", label=r["arm"])
    causal = next((r for r in rows if r["arm"] == "causal"), None)
    if causal is not None:
        axes[1].axvline(causal["steps"], color="gray", linestyle=":", linewidth=1, label="switch to prefix mask")
    axes[1].set(xlabel="step", ylabel="held-out suffix loss", title="during training")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_architectures(rows: Sequence[Mapping]):
    """Held-out suffix loss during training of each family of `architecture_comparison`, parameters in the
    legend (they should agree within a few %)."""
    import matplotlib.pyplot as plt

    rows = _need(rows, "architecture_comparison", ("arch", "params", "history", "suffix_val_loss"))
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, r in enumerate(rows):
        _curve(ax, r["history"], "step", color=f"C{i}", marker=".",
               label=f"{r['arch']}: {r['params']:,} params, final {r['suffix_val_loss']:.3f}")
    floor = rows[0].get("floor")  # a line at the floor would squash the curves of a short run: said in the label
    ax.set(xlabel="step", ylabel="held-out suffix loss (nats/char)" + (f", floor {floor:.2f}" if floor else ""),
           title=f"same batches and steps, loss after the first {rows[0].get('prefix_len', '?')} tokens")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_moe(rows: Sequence[Mapping]):
    """Held-out loss against the number of experts (top-k at fixed active parameters), with and without the
    balancing loss, the dense model as a dashed line; and the final max expert share vs perfect balance 1/E."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    rows = _need(rows, "moe_study", ("n_expert", "balance", "val_loss", "max_share"))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in rows:
        if r["n_expert"] == 0:
            axes[0].axhline(r["val_loss"], color="black", linestyle="--", linewidth=1, label="dense")
    moe = [r for r in rows if r["n_expert"]]
    for i, b in enumerate(sorted({r["balance"] for r in moe}, reverse=True)):
        rs = sorted((r for r in moe if r["balance"] == b), key=lambda r: r["n_expert"])
        E = [r["n_expert"] for r in rs]
        label = "with balancing loss" if b else "without (aux weight 0)"
        axes[0].plot(E, [r["val_loss"] for r in rs], "o-", color=f"C{i}", label=label)
        axes[1].plot(E, [r["max_share"] for r in rs], "o-", color=f"C{i}", label=label)
    E = sorted({r["n_expert"] for r in moe})
    if E:
        axes[1].plot(E, [1 / e for e in E], color="gray", linestyle=":", label="perfect balance 1/E")
    axes[0].set(xscale="log", xlabel="experts E", ylabel="held-out loss (nats/char)",
                title=f"top-{moe[0]['top_k'] if moe else '?'} MoE, equal active parameters")
    axes[1].set(xscale="log", xlabel="experts E", ylabel="largest expert's share of tokens", ylim=(0, 1.05),
                title="load at the end of training")
    for ax in axes:
        if E:
            ax.set_xticks(E, [str(e) for e in E])
            ax.xaxis.set_minor_formatter(NullFormatter())  # only the E values as labels
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_expert_load(load_history: Sequence[Sequence[float]], steps: Sequence[int] | None = None,
                     title: str = "expert load"):
    """Heatmap of the share of tokens routed to each expert (columns) at each recorded step (rows), as
    `moe_study` rows carry in load_history / load_steps. A column that fills up while the others go dark is
    router collapse."""
    import matplotlib.pyplot as plt

    load = np.asarray(load_history, dtype=float)
    if load.ndim != 2 or load.size == 0:
        raise ValueError(f"load_history must be a non-empty list of per-expert lists (steps × experts), got shape "
                         f"{load.shape}: pass a moe_study row's load_history")
    if steps is not None and len(steps) != len(load):
        raise ValueError(f"steps has {len(steps)} entries but load_history {len(load)} rows")
    fig, ax = plt.subplots(figsize=(max(3.5, 0.5 * load.shape[1] + 2.5), 3.8))
    im = ax.imshow(load, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="share of token-slots")
    ax.set_xticks(range(load.shape[1]))
    if steps is not None:
        idx = np.unique(np.linspace(0, len(steps) - 1, min(6, len(steps))).round().astype(int))
        ax.set_yticks(idx, [str(steps[i]) for i in idx])
    ax.set(xlabel="expert", ylabel="training step" if steps is not None else "record", title=title)
    fig.tight_layout()
    return fig


def shipped_arch_studies() -> dict[str, dict]:
    """The latest record of each architecture study shipped with the book, by study name."""
    return results.latest("arch_studies.jsonl")


def plot_masks(seq_len: int = 8, prefix_len: int = 3):
    """Three panels of attention masks (query rows × key columns, filled = may attend): causal decoder, prefix
    decoder, and the encoder-decoder's decoder (causal self-attention beside full cross-attention)."""
    import matplotlib.pyplot as plt

    from minillm.model.attention import causal_mask, prefix_mask

    if not (isinstance(seq_len, int) and isinstance(prefix_len, int) and 1 <= prefix_len < seq_len):
        raise ValueError(f"need ints 1 <= prefix_len < seq_len, got prefix_len={prefix_len!r}, seq_len={seq_len!r}")
    S, T = prefix_len, seq_len - prefix_len
    panels = (("causal decoder", causal_mask(seq_len, seq_len).numpy(), None),
              ("prefix decoder", prefix_mask(seq_len, prefix_len).numpy(), prefix_len),
              ("encoder-decoder: decoder self | cross",
               np.concatenate([causal_mask(T, T).numpy(), np.ones((T, S), dtype=bool)], axis=1), T))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    for ax, (title, mask, split) in zip(axes, panels):
        ax.imshow(mask, cmap="Blues", vmin=0, vmax=1.3)
        if split is not None:
            ax.axvline(split - 0.5, color="black", linewidth=1)
        ax.set(title=title, xlabel="key position", ylabel="query position")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
