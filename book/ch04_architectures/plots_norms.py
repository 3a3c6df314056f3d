"""Where the norm sits on the residual path: post-LN, pre-LN, sandwich-LN and DeepNorm as four small diagrams.
Survey §4.2.2 (normalization position).

One sub-layer F (attention or MLP) of each, drawn bottom to top as the data flows:

    post-LN   (Vaswani et al. 2017)   x_{l+1} = LN(x_l + F(x_l))
    pre-LN    (GPT-2, most LLMs)      x_{l+1} = x_l + F(LN(x_l))
    sandwich  (CogView)               x_{l+1} = x_l + LN(F(LN(x_l)))
    DeepNorm  (Wang et al. 2022)      x_{l+1} = LN(alpha * x_l + F(x_l)), F's weights initialised scaled by beta

What to read in them: in pre-LN and sandwich the residual line runs from bottom to top untouched (the identity
path every gradient can take); in post-LN and DeepNorm a norm sits on it, once per sub-layer. `SETUPS` maps each
diagram to the ModelConfig fields that build it (`studies.NORM_SETUPS`, which the stability map trains).
matplotlib is imported inside the function, so importing the package stays cheap.
"""
from __future__ import annotations

from book.ch04_architectures.studies import NORM_SETUPS

__all__ = ["RESIDUAL_PATHS", "SETUPS", "plot_residual_paths"]

# name -> (title, formula in matplotlib mathtext, the boxes on the branch bottom to top, norm after the add?)
RESIDUAL_PATHS: dict[str, tuple[str, str, tuple[str, ...], bool]] = {
    "post_ln": ("post-LN", r"$x_{l+1} = \mathrm{LN}(x_l + F(x_l))$", ("F",), True),
    "pre_ln": ("pre-LN", r"$x_{l+1} = x_l + F(\mathrm{LN}(x_l))$", ("LN", "F"), False),
    "sandwich": ("sandwich-LN", r"$x_{l+1} = x_l + \mathrm{LN}(F(\mathrm{LN}(x_l)))$", ("LN", "F", "LN"), False),
    "deepnorm": ("DeepNorm", r"$x_{l+1} = \mathrm{LN}(\alpha x_l + F(x_l))$", ("F (init × β)",), True),
}
# the ModelConfig fields of each diagram: the stability map's setups of the same names
SETUPS: dict[str, dict[str, str]] = {name: NORM_SETUPS[name] for name in RESIDUAL_PATHS}
_NORM, _BRANCH, _ADD = "#f4a582", "#92c5de", "#ffffff"


def _box(ax, x: float, y: float, text: str, color: str, w: float = 0.9, h: float = 0.55) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04", facecolor=color,
                                edgecolor="black", linewidth=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(ax, x0: float, y0: float, x1: float, y1: float) -> None:
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->", linewidth=1.0))


def plot_residual_paths(names: tuple[str, ...] = tuple(RESIDUAL_PATHS)):
    """One panel per residual placement in `names` (keys of RESIDUAL_PATHS): the input x_l at the bottom, the
    residual line on the left, the branch F (with its norms) on the right, the addition ⊕ and, for post-LN and
    DeepNorm, the norm after it; the formula as the title. Returns the figure."""
    import matplotlib.pyplot as plt

    unknown = [n for n in names if n not in RESIDUAL_PATHS]
    if unknown or not names:
        raise ValueError(f"names={names!r}: give one or more of {', '.join(RESIDUAL_PATHS)}")
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 5.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        title, formula, branch, norm_after = RESIDUAL_PATHS[name]
        ax.set(xlim=(-0.3, 3.0), ylim=(-0.6, 5.7))
        ax.set_aspect("equal")  # keeps the ⊕ round
        ax.axis("off")
        ax.set_title(f"{title}\n{formula}", fontsize=9)
        ax.text(0.5, -0.35, r"$x_l$", ha="center", fontsize=10)
        add_y = 1.2 + len(branch) * 1.0
        # the residual (skip) line: straight up from x_l to the addition
        skip = r"$\alpha\, x_l$" if name == "deepnorm" else "identity"
        ax.plot([0.5, 0.5], [0.0, add_y], color="black", linewidth=1.6)
        ax.text(0.38, add_y / 2, skip, rotation=90, ha="right", va="center", fontsize=8)
        # the branch: right of the line, boxes bottom to top
        ax.plot([0.5, 1.9], [0.45, 0.45], color="black", linewidth=1.0)
        y = 0.45
        for i, box in enumerate(branch):
            top = 1.0 + i * 1.0
            _arrow(ax, 1.9, y, 1.9, top - 0.3)
            _box(ax, 1.9, top, box, _NORM if box == "LN" else _BRANCH, w=1.3 if len(box) > 2 else 0.9)
            y = top + 0.3
        _arrow(ax, 1.9, y, 0.68, add_y)
        ax.add_patch(plt.Circle((0.5, add_y), 0.18, facecolor=_ADD, edgecolor="black"))
        ax.text(0.5, add_y, "+", ha="center", va="center", fontsize=11)
        out_y = add_y + 0.2
        if norm_after:
            _arrow(ax, 0.5, add_y + 0.18, 0.5, add_y + 0.75)
            _box(ax, 0.5, add_y + 1.05, "LN", _NORM)
            out_y = add_y + 1.35
            ax.text(1.0, add_y + 1.05, "on the residual\npath", fontsize=7, va="center", color="#b2182b")
        _arrow(ax, 0.5, out_y, 0.5, out_y + 0.7)
        ax.text(0.5, out_y + 0.8, r"$x_{l+1}$", ha="center", fontsize=10)
    fig.tight_layout()
    return fig
