"""Figures and widgets of chapter 06's alignment, PEFT and quantization studies. Survey §5.2-§5.4.

- `shipped_finetune_studies`: the latest shipped record of each study (bench/results/finetune_studies.jsonl).
- `plot_alignment`: each stage (SFT, DPO, GRPO, PPO) on the hidden reward's components, greedy and sampled.
- `plot_kl_sweep`: learned vs hidden reward and the KL to the SFT model against the KL coefficient.
- `plot_grpo_addition`: GRPO with a verifiable reward: reward and KL per step, held-out exact match over steps.
- `plot_peft_comparison`: accuracy against trainable parameters (log scale) per method, seen and held-out.
- `plot_quantization`: model bytes against the perplexity each quantization costs.
- `LoRAWidget`: rank and alpha sliders over the shipped rank x alpha grid (and your live rows).
- `KLWidget`: a KL-coefficient slider over the shipped KL sweep (and your live rows).

Each plot takes the rows a study returns and returns the matplotlib Figure (matplotlib imported inside).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from book import results
from book.viz import SliderPanel, need_rows

__all__ = ["shipped_finetune_studies", "plot_alignment", "plot_kl_sweep", "plot_grpo_addition",
           "plot_peft_comparison", "plot_quantization", "LoRAWidget", "KLWidget"]

METHOD_COLORS = {"sft": "tab:gray", "dpo": "tab:blue", "grpo": "tab:orange", "ppo": "tab:green",
                 "full": "black", "lora": "tab:blue", "adapters": "tab:green", "prefix": "tab:orange",
                 "prompt": "tab:red"}


def shipped_finetune_studies() -> dict[str, dict]:
    """The latest record of each chapter-06 study shipped with the book, by study name."""
    return results.latest("finetune_studies.jsonl")


def _need(rows: Sequence[Mapping], keys: tuple[str, ...], study: str) -> None:
    need_rows(rows, keys, "minillm.finetune." + study)


# ---- alignment ---------------------------------------------------------------------------------------------------

def plot_alignment(rows: Sequence[Mapping]):
    """Left: the hidden reward of greedy replies split into its components (correct +1, polite +0.5, harmful
    -2, each as a mean) per method. Right: hidden reward of greedy vs sampled replies, and the learned reward."""
    import matplotlib.pyplot as plt
    import numpy as np

    _need(rows, ("method", "correctness", "style", "harm", "hidden", "hidden_sampled", "learned"),
          "studies_align.sft_then_align")
    names = [r["method"] for r in rows]
    x = np.arange(len(rows))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    for k, (key, color) in enumerate((("correctness", "tab:green"), ("style", "tab:purple"), ("harm", "tab:red"))):
        a.bar(x + (k - 1) * 0.26, [r[key] for r in rows], 0.26, color=color, label=key)
    a.plot(x, [r["hidden"] for r in rows], "k_", ms=22, mew=2, label="total (hidden reward)")
    a.axhline(0, color="k", lw=0.6)
    a.set(xticks=x, xticklabels=names, ylabel="mean reward per reply", title="greedy replies: hidden reward")
    a.legend(fontsize=7)
    for k, (key, label) in enumerate((("hidden", "hidden, greedy"), ("hidden_sampled", "hidden, sampled"),
                                      ("learned", "learned RM, greedy"))):
        b.bar(x + (k - 1) * 0.26, [r[key] for r in rows], 0.26, label=label,
              color=("tab:gray", "silver", "tab:cyan")[k])
    b.axhline(0, color="k", lw=0.6)
    b.set(xticks=x, xticklabels=names, ylabel="mean reward", title="what each method optimised vs the truth")
    b.legend(fontsize=7)
    return fig


def plot_kl_sweep(rows: Sequence[Mapping]):
    """Hidden and learned reward of sampled replies, and KL(policy || SFT), against the KL coefficient beta.
    The SFT model (beta None) is the dashed reference."""
    import matplotlib.pyplot as plt

    _need(rows, ("beta", "hidden_sampled", "learned_sampled", "kl"), "studies_align.kl_sweep")
    sft = [r for r in rows if r["beta"] is None]
    rs = sorted((r for r in rows if r["beta"] is not None), key=lambda r: r["beta"])
    if not rs:
        raise ValueError("no RL rows (beta not None) in the sweep")
    betas = [r["beta"] for r in rs]
    pos = list(range(len(rs)))  # categorical x: beta = 0 has no place on a log axis
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    a.plot(pos, [r["learned_sampled"] for r in rs], "o-", color="tab:cyan", label="learned reward (optimised)")
    a.plot(pos, [r["hidden_sampled"] for r in rs], "s-", color="k", label="hidden reward (the truth)")
    if sft:
        a.axhline(sft[0]["hidden_sampled"], color="k", ls="--", lw=0.8, label="SFT, hidden")
        a.axhline(sft[0]["learned_sampled"], color="tab:cyan", ls="--", lw=0.8, label="SFT, learned")
    a.set(xticks=pos, xticklabels=[f"{v:g}" for v in betas], xlabel="KL coefficient β",
          ylabel="mean reward of sampled replies", title="reward vs KL coefficient")
    a.legend(fontsize=7)
    b.plot([r["kl"] for r in rs], [r["hidden_sampled"] for r in rs], "s-", color="k", label="hidden")
    b.plot([r["kl"] for r in rs], [r["learned_sampled"] for r in rs], "o-", color="tab:cyan", label="learned")
    for r in rs:
        b.annotate(f"β={r['beta']:g}", (r["kl"], r["hidden_sampled"]), fontsize=7, xytext=(3, -10),
                   textcoords="offset points")
    b.set(xlabel="KL(policy || SFT) per reply (nats)", ylabel="mean reward", title="the reward-KL trade-off")
    b.legend(fontsize=7)
    return fig


def _smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over `window` values (fewer at the start): a GRPO step's reward is a noisy 256-sample mean."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot_grpo_addition(rows: Sequence[Mapping], live_rows: Sequence[Mapping] | None = None, window: int = 20):
    """Left: mean reward of the sampled responses at each GRPO step (the training-batch exact match; a trailing
    mean over `window` steps) and the per-token KL to the base model. Right: exact match on held-out sums,
    greedy and sampled, over the GRPO steps. `live_rows` (a reader's own run) are drawn thin beside them."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
    kl_ax = a.twinx()
    for rs, lw, tag in ((rows, 1.8, "shipped"), (live_rows or [], 0.8, "yours")):
        if not rs:
            continue
        steps = [r for r in rs if r["kind"] == "step"]
        evals = [r for r in rs if r["kind"] == "eval"]
        _need(steps, ("step", "reward", "kl"), "studies_verifiable.grpo_addition")
        _need(evals, ("step", "greedy_exact_match", "sampled_exact_match"), "studies_verifiable.grpo_addition")
        x = [r["step"] for r in steps]
        a.plot(x, _smooth([r["reward"] for r in steps], window), color="tab:orange", lw=lw,
               label=f"reward, {tag}")
        kl_ax.plot(x, _smooth([r["kl"] for r in steps], window), color="tab:purple", lw=lw * 0.6, ls="--",
                   label=f"KL, {tag}")
        ex = [r["step"] for r in evals]
        b.plot(ex, [r["greedy_exact_match"] for r in evals], "o-", color="k", lw=lw, ms=3 * lw,
               label=f"greedy, {tag}")
        b.plot(ex, [r["sampled_exact_match"] for r in evals], "s-", color="tab:orange", lw=lw, ms=3 * lw,
               label=f"sampled (T=1), {tag}")
    a.set(xlabel="GRPO step", ylabel=f"reward (exact match), mean of {window} steps",
          title="what GRPO optimises: the verifier's reward")
    kl_ax.set_ylabel("KL to the base model per token", color="tab:purple")
    a.legend(fontsize=7, loc="upper left")
    b.set(xlabel="GRPO step", ylabel="exact match on held-out sums", ylim=(0, 1),
          title="what we want: held-out exact match")
    b.legend(fontsize=7)
    return fig


# ---- PEFT and quantization ---------------------------------------------------------------------------------------

def plot_peft_comparison(rows: Sequence[Mapping]):
    """Accuracy (training phrasings on new problems, and held-out phrasings) against trainable parameters on a
    log axis, one point per method; the memory each needs to train is printed beside it."""
    import matplotlib.pyplot as plt

    _need(rows, ("method", "trainable", "accuracy", "accuracy_seen", "train_memory_bytes"),
          "studies_peft.peft_comparison")
    fig, ax = plt.subplots(figsize=(6.4, 3.8), layout="constrained")
    for r in rows:
        c = METHOD_COLORS.get(r["method"], None)
        ax.scatter(r["trainable"], r["accuracy_seen"], color=c, marker="o", s=40)
        ax.scatter(r["trainable"], r["accuracy"], color=c, marker="x", s=40)
        ax.annotate(f"{r['method']} ({r['train_memory_bytes'] / 2**20:.1f} MiB)", (r["trainable"], r["accuracy_seen"]),
                    fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.scatter([], [], color="gray", marker="o", label="seen phrasings, new problems")
    ax.scatter([], [], color="gray", marker="x", label="held-out phrasings")
    ax.set(xscale="log", xlabel="trainable parameters", ylabel="exact match", ylim=(-0.03, 1.03),
           title="same task, same steps: accuracy vs what is trained")
    ax.legend(fontsize=7, loc="center right")
    return fig


def plot_quantization(rows: Sequence[Mapping]):
    """Model bytes (x) against the perplexity change vs float32 (y), one point per (bits, group size)."""
    import matplotlib.pyplot as plt

    _need(rows, ("bits", "group_size", "bytes", "delta_ppl"), "studies_peft.quantization_cost")
    fig, ax = plt.subplots(figsize=(5.6, 3.4), layout="constrained")
    for r in rows:
        label = "float32" if r["bits"] == 32 else (f"int{r['bits']}, " + (
            "per tensor" if r["group_size"] is None else f"groups of {r['group_size']}"))
        ax.scatter(r["bytes"] / 2**20, r["delta_ppl"], s=40)
        ax.annotate(label, (r["bytes"] / 2**20, r["delta_ppl"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.axhline(0, color="k", lw=0.6)
    ax.set(xlabel="model size (MiB)", ylabel="perplexity change vs float32", title="weight-only quantization")
    return fig


# ---- widgets -------------------------------------------------------------------------------------------------------

class LoRAWidget(SliderPanel):
    """Rank and alpha sliders over a LoRA rank x alpha grid (shipped rows): accuracy and trainable parameters
    of every rank at the chosen alpha, the chosen cell marked; your live rows (if any) dashed."""

    def __init__(self, rows: Sequence[Mapping], live_rows: Sequence[Mapping] | None = None,
                 metric: str = "accuracy_seen"):
        import ipywidgets as widgets

        _need(rows, ("rank", "alpha", "trainable", metric), "studies_peft.lora_rank_sweep")
        self.rows, self.live_rows, self.metric = list(rows), list(live_rows or []), metric
        ranks = sorted({r["rank"] for r in rows})
        alphas = sorted({r["alpha"] for r in rows})
        self._build({"rank": widgets.SelectionSlider(options=ranks, value=ranks[len(ranks) // 2],
                                                     description="rank r"),
                     "alpha": widgets.SelectionSlider(options=alphas, value=alphas[len(alphas) // 2],
                                                      description="alpha α")})

    def _render(self) -> dict:
        import matplotlib.pyplot as plt

        rank, alpha = self.controls["rank"].value, self.controls["alpha"].value
        fig, (a, b) = plt.subplots(1, 2, figsize=(8.4, 3.0), layout="constrained")
        rs = sorted((r for r in self.rows if r["alpha"] == alpha), key=lambda r: r["rank"])
        a.plot([r["rank"] for r in rs], [r[self.metric] for r in rs], "o-", label=f"shipped, α={alpha:g}")
        mine = sorted(self.live_rows, key=lambda r: r["rank"])
        if mine:
            a.plot([r["rank"] for r in mine], [r[self.metric] for r in mine], "s--", label="yours")
        cell = next((r for r in rs if r["rank"] == rank), None)
        if cell is not None:
            a.plot([rank], [cell[self.metric]], "r*", ms=14)
        a.set(xscale="log", xlabel="rank r", ylabel="exact match", ylim=(-0.03, 1.03), title="accuracy")
        a.legend(fontsize=7)
        b.plot([r["rank"] for r in rs], [r["trainable"] for r in rs], "o-")
        if cell is not None:
            b.plot([rank], [cell["trainable"]], "r*", ms=14)
        b.set(xscale="log", yscale="log", xlabel="rank r", ylabel="trainable parameters", title="cost: r·(in+out)")
        acc = None if cell is None else round(cell[self.metric], 3)
        self.result = {"rank": rank, "alpha": alpha, "scale": alpha / rank, "accuracy": acc,
                       "trainable": None if cell is None else cell["trainable"]}
        acc_text = "n/a" if acc is None else f"{acc:.2f}"
        n_text = "n/a" if cell is None else f"{cell['trainable']:,}"
        self.summary.value = (f"r={rank}, α={alpha:g} (scale α/r={alpha / rank:.2g}): accuracy {acc_text}, "
                              f"{n_text} trainable")
        self._show(fig)
        return self.result


class KLWidget(SliderPanel):
    """A KL-coefficient slider over a KL sweep (shipped rows): hidden and learned reward and KL at each beta,
    the chosen beta marked; your live rows (if any) dashed."""

    def __init__(self, rows: Sequence[Mapping], live_rows: Sequence[Mapping] | None = None):
        import ipywidgets as widgets

        _need(rows, ("beta", "hidden_sampled", "learned_sampled", "kl"), "studies_align.kl_sweep")
        self.rows = sorted((r for r in rows if r["beta"] is not None), key=lambda r: r["beta"])
        self.live_rows = sorted((r for r in (live_rows or []) if r["beta"] is not None), key=lambda r: r["beta"])
        if not self.rows:
            raise ValueError("no RL rows (beta not None) in the sweep")
        betas = [r["beta"] for r in self.rows]
        self._build({"beta": widgets.SelectionSlider(options=betas, value=betas[len(betas) // 2],
                                                     description="KL coef β")})

    def _render(self) -> dict:
        import matplotlib.pyplot as plt

        beta = self.controls["beta"].value
        fig, ax = plt.subplots(figsize=(5.4, 3.2), layout="constrained")
        pos = range(len(self.rows))
        for key, style, label in (("learned_sampled", "o-", "learned"), ("hidden_sampled", "s-", "hidden")):
            ax.plot(pos, [r[key] for r in self.rows], style, label=f"shipped, {label}")
        by_beta = {r["beta"]: i for i, r in enumerate(self.rows)}
        mine = [r for r in self.live_rows if r["beta"] in by_beta]
        if mine:
            ax.plot([by_beta[r["beta"]] for r in mine], [r["hidden_sampled"] for r in mine], "s--", label="yours, hidden")
        row = self.rows[by_beta[beta]]
        ax.axvline(by_beta[beta], color="r", lw=0.8)
        ax.set(xticks=list(pos), xticklabels=[f"{r['beta']:g}" for r in self.rows], xlabel="KL coefficient β",
               ylabel="mean reward (sampled replies)")
        ax.legend(fontsize=7)
        self.result = {"beta": beta, "hidden": round(row["hidden_sampled"], 3),
                       "learned": round(row["learned_sampled"], 3), "kl": round(row["kl"], 3)}
        self.summary.value = (f"β={beta:g}: learned {self.result['learned']:+.2f}, hidden "
                              f"{self.result['hidden']:+.2f}, KL {self.result['kl']:.2f} nats")
        self._show(fig)
        return self.result
