"""Figures and tables of the capstone's tokenizer section (Survey §4.1.2, tokenization).

Drawn from the rows of `studies_tokenizer`; nothing is read from disk.

- `plot_vocab_tradeoff(rows)`: what a vocabulary size buys (left: held-out UTF-8 bytes per token, English and
  Chinese) and what it costs (right: embedding + output parameters, and their share of the chapter's model), the
  BPE sweep as lines and the char tokenizer as stars at its own vocabulary size.
- `tradeoff_table(rows)`: the same rows as a Markdown table.
- `tokenization_table(rows)`: texts cut into tokens (rows of `tokenization_rows`), one table row per tokenizer.

Each returns what it made (a Figure, or a Markdown str for IPython.display.Markdown). matplotlib is imported inside
the function, so importing this module is cheap and the backend is the reader's.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from book.viz import markdown_table

__all__ = ["LANGUAGES", "plot_vocab_tradeoff", "tradeoff_table", "tokenization_table"]

LANGUAGES = {"en": "English (Shakespeare)", "zh": "Chinese (Tang poems)"}
_TRADEOFF_KEYS = ("tokenizer", "vocab_size", "en_bytes_per_token", "zh_bytes_per_token", "lushi_tokens",
                  "embedding_params", "embedding_share", "unknown_chars")
_PIECE_KEYS = ("text", "tokenizer", "tokens", "pieces")


def _rows(rows: Any, keys: Sequence[str], source: str) -> list[Mapping[str, Any]]:
    """A non-empty list of dicts that all have `keys`; else one error naming the producer of such rows."""
    if isinstance(rows, (Mapping, str, bytes)) or not isinstance(rows, Sequence):
        raise TypeError(f"rows must be a list of dicts (from {source}), got {type(rows).__name__}")
    if not rows:
        raise ValueError(f"rows is empty: pass the rows of {source}")
    for r in rows:
        if not isinstance(r, Mapping):
            raise TypeError(f"each row must be a dict (from {source}), got {type(r).__name__}")
        missing = [k for k in keys if k not in r]
        if missing:
            raise ValueError(f"a row lacks {missing}: pass the rows of {source}")
    return list(rows)


def plot_vocab_tradeoff(rows: Sequence[Mapping[str, Any]]):
    """Two panels against vocabulary size (log scale). Left: bytes per held-out token per language; higher means
    shorter sequences. Right: embedding + output parameters (millions) and, on a twin axis, their share of the
    chapter's model. BPE rows are lines; a "char" row is a star at its own vocabulary size."""
    import matplotlib.pyplot as plt

    rows = _rows(rows, _TRADEOFF_KEYS, "studies_tokenizer.bytes_per_token_rows(corpus, cfg)")
    bpe = sorted((r for r in rows if r["tokenizer"] == "bpe"), key=lambda r: r["vocab_size"])
    char = [r for r in rows if r["tokenizer"] == "char"]
    if not bpe:
        raise ValueError("no row has tokenizer='bpe': the figure needs the BPE sweep of bytes_per_token_rows")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    xs = [r["vocab_size"] for r in bpe]
    for i, (lang, name) in enumerate(LANGUAGES.items()):
        left.plot(xs, [r[f"{lang}_bytes_per_token"] for r in bpe], "o-", color=f"C{i}", label=f"BPE, {name}")
        for r in char:
            left.plot([r["vocab_size"]], [r[f"{lang}_bytes_per_token"]], "*", ms=14, color=f"C{i}",
                      label=f"char, {name}")
    left.set(xscale="log", xlabel="vocabulary size", ylabel="UTF-8 bytes per token (held-out)",
             title="What a bigger vocabulary buys: shorter sequences")
    left.grid(alpha=0.3, which="both")
    left.legend(fontsize=8)

    right.plot(xs, [r["embedding_params"] / 1e6 for r in bpe], "o-", color="C2", label="BPE: embedding params")
    for r in char:
        right.plot([r["vocab_size"]], [r["embedding_params"] / 1e6], "*", ms=14, color="C2", label="char")
    right.set(xscale="log", xlabel="vocabulary size", ylabel="embedding + output parameters (M)",
              title="What it costs: parameters in the vocabulary")
    right.grid(alpha=0.3, which="both")
    share = right.twinx()
    share.plot(xs, [100 * r["embedding_share"] for r in bpe], "s--", color="C3", label="share of the model")
    for r in char:
        share.plot([r["vocab_size"]], [100 * r["embedding_share"]], "*", ms=14, color="C3")
    share.set_ylabel("share of the model's parameters (%)", color="C3")
    share.set_ylim(0, 100)
    for ax in (left, right):  # the swept sizes as ticks (log-scale decades alone say little here)
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.minorticks_off()
    handles = right.get_legend_handles_labels()[0] + share.get_legend_handles_labels()[0]
    right.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def tradeoff_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The sweep's rows as Markdown: bytes per token per language, tokens per 七言律詩, parameters, unknowns."""
    rows = _rows(rows, _TRADEOFF_KEYS, "studies_tokenizer.bytes_per_token_rows(corpus, cfg)")
    two = "{:.2f}".format
    return markdown_table(rows, list(_TRADEOFF_KEYS), {
        "en_bytes_per_token": two, "zh_bytes_per_token": two, "lushi_tokens": "{:.0f}".format,
        "embedding_params": lambda x: f"{x / 1e6:.2f}M", "embedding_share": "{:.0%}".format})


def tokenization_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown row per (text, tokenizer): the token count and the pieces, separated by "·" (a space shows as
    ␣; ⟨e9 9b⟩ is a token holding part of a character's UTF-8 bytes)."""
    rows = _rows(rows, _PIECE_KEYS, "studies_tokenizer.tokenization_rows(tokenizers, texts)")
    shown = [{**r, "pieces": " · ".join(r["pieces"])} for r in rows]
    return markdown_table(shown, list(_PIECE_KEYS))
