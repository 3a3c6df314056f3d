"""When a training loop draws a progress bar. Survey §4.3 (model training): watching a run, not a part of it.

A tqdm bar redraws itself with carriage returns. On a terminal that is one line updating in place; written to a
log file, a pipe (`| tee log`), a batch job's output or a CI log it becomes hundreds of partial lines burying
what matters. In a Jupyter kernel stderr is not a terminal either, but there `tqdm.auto` draws a widget, which is
what a notebook reader wants. So a bar is shown only when it was asked for (TrainConfig.progress), on the rank
that reports (rank 0), and when stderr is a terminal or the code runs in a Jupyter/IPython kernel.
"""
from __future__ import annotations

import sys
from typing import IO, Any


def in_notebook() -> bool:
    """True inside a Jupyter/IPython kernel: tqdm.auto's own test ('IPKernelApp' in the shell's config).

    Looks only at an IPython already imported (a kernel imports it before running any cell), so calling this
    never imports IPython; a plain IPython terminal shell is not a kernel (its stderr is the terminal anyway).
    """
    ipython: Any = sys.modules.get("IPython")
    get_shell = getattr(ipython, "get_ipython", None)
    shell = get_shell() if callable(get_shell) else None
    config = getattr(shell, "config", None)
    try:
        return config is not None and "IPKernelApp" in config
    except TypeError:  # a config object that supports no `in`: not IPython's
        return False


def is_terminal(stream: IO | None) -> bool:
    """True when `stream` is an open terminal (False for None, files, pipes, pytest's capture, closed streams)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # closed or detached stream
        return False


def show_progress(requested: bool, is_main: bool = True, stream: IO | None = None) -> bool:
    """Whether to draw a progress bar: `requested` (e.g. TrainConfig.progress) and `is_main` (rank 0) and either
    `stream` (default: sys.stderr, where tqdm writes) is a terminal or we run in a notebook kernel."""
    if not (requested and is_main):
        return False
    return is_terminal(sys.stderr if stream is None else stream) or in_notebook()
