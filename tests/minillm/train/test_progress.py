"""The progress bar turns itself off when output is not a terminal (issue #22, item 11; minillm/train/progress.py).

A bar is drawn only when asked for (TrainConfig.progress), on rank 0, and when stderr is a terminal or the code
runs inside a Jupyter/IPython kernel (where tqdm.auto draws a widget). Redirected to a file, a pipe or pytest's
capture, training prints no bar.
"""
from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest
import torch

from minillm.config import ModelConfig, TrainConfig
from minillm.model.transformer import GPT
from minillm.train.progress import in_notebook, is_terminal, show_progress
from minillm.train.trainer import Trainer


class Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def fake_ipython(monkeypatch, config: dict | None) -> None:
    """Make `IPython` look imported, with a shell whose config is `config` (None: no shell running)."""
    shell = None if config is None else types.SimpleNamespace(config=config)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))


def test_the_decision(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert show_progress(True, True, Stream(tty=True))
    assert not show_progress(True, True, Stream(tty=False))  # a log file or a pipe
    assert not show_progress(False, True, Stream(tty=True))  # not asked for
    assert not show_progress(True, False, Stream(tty=True))  # not rank 0
    closed = io.StringIO()
    closed.close()  # its isatty() raises ValueError
    assert not is_terminal(closed) and not is_terminal(None) and not is_terminal(object())
    monkeypatch.setattr(sys, "stderr", Stream(tty=True))  # the default stream is sys.stderr, where tqdm writes
    assert show_progress(True)


def test_a_notebook_kernel_counts_as_a_terminal(monkeypatch):
    fake_ipython(monkeypatch, {"IPKernelApp": {"connection_file": "kernel.json"}})
    assert in_notebook() and show_progress(True, True, Stream(tty=False))
    assert not show_progress(True, False, Stream(tty=False))  # rank 1 in a notebook: still no bar
    fake_ipython(monkeypatch, {"TerminalInteractiveShell": {}})  # IPython in a terminal: not a kernel
    assert not in_notebook()
    fake_ipython(monkeypatch, None)  # IPython imported, no shell running
    assert not in_notebook()
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not in_notebook()


def _fit(progress: bool) -> None:
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
    cfg = TrainConfig(batch_size=2, max_steps=3, warmup_steps=1, eval_interval=0, eval_batches=1, log_interval=1,
                      device="cpu", progress=progress)
    Trainer(model, cfg, np.tile(np.arange(20), 20)).fit()


@pytest.mark.parametrize("tty", [False, True])
def test_the_trainer_draws_a_bar_only_on_a_terminal(monkeypatch, tty):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    err = Stream(tty=tty)
    monkeypatch.setattr(sys, "stderr", err)
    _fit(progress=True)
    drawn = err.getvalue()
    if tty:
        assert "train:" in drawn and "3/3" in drawn, drawn
    else:
        assert drawn == "", drawn  # before #22: the bar's redraws went into the log
