"""Batches of (input, target) windows cut from a token stream (Survey §4.1.3 data scheduling, §4.3 training).

A language model learns p(x_t | x_<t) at every position, so one training example is a window of
T + 1 consecutive tokens: x = window[:-1], y = window[1:] (the same tokens shifted by one). A batch
is B such windows. Two ways to choose them:

- random windows (`get_batch`, `RandomLoader`): the usual pre-training sampler, as in nanoGPT. Any
  start offset is allowed, so over many steps the model sees every token at every position.
- contiguous, non-overlapping windows (`SequentialLoader`): each token is a target exactly once,
  which is what evaluation (perplexity) and "one epoch" mean.

Both build a (B, T+1) index matrix by broadcasting `starts[:, None] + arange(T+1)` and gather all
tokens with one fancy-indexing call: no Python loop over tokens or rows. The tokens can be a numpy
array, an np.memmap over a shard (only the touched pages are read) or a torch tensor.

Both loaders can save and restore their position (`state_dict`), so a resumed run sees exactly
the batches it would have seen without the interruption.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from minillm.data.shards import PREPARE_HINT, read_shard
from minillm.device import resolve_device

Tokens = Any  # np.ndarray | np.memmap | torch.Tensor, 1-D


# ----------------------------------------------------------------------------- helpers


def _check_tokens(tokens: Tokens) -> Tokens:
    if isinstance(tokens, (list, tuple)):
        tokens = np.asarray(tokens, dtype=np.int64)
    if not isinstance(tokens, (np.ndarray, torch.Tensor)):
        raise ValueError(f"tokens must be a numpy array, np.memmap or torch tensor, got {type(tokens).__name__}")
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be 1-D (one long stream of ids), got shape {tuple(tokens.shape)}")
    return tokens


def _check_sizes(n_tokens: int, batch_size: int, context_length: int) -> None:
    for name, v in (("batch_size", batch_size), ("context_length", context_length)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if n_tokens <= context_length:
        raise ValueError(
            f"need more than context_length={context_length} tokens to cut one window of "
            f"{context_length + 1} (inputs + shifted targets), got {n_tokens}: "
            f"use a smaller context_length or more data"
        )


def _check_rank(rank: int, world_size: int) -> None:
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, world_size={world_size}), got {rank!r}")


def _random_starts(n_tokens: int, context_length: int, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """`count` window starts, uniform over every offset that leaves room for T + 1 tokens."""
    if generator is not None and generator.device.type != "cpu":
        raise ValueError("generator must be a CPU torch.Generator (window starts are drawn on the CPU)")
    # randint's high is exclusive: the last valid start is n - T - 1, whose target ends at index n - 1.
    return torch.randint(0, n_tokens - context_length, (count,), generator=generator)  # (count,)


def _gather_windows(tokens: Tokens, starts: torch.Tensor, context_length: int, device: torch.device):
    """Cut windows tokens[s : s + T + 1] for each start s; return int64 (x, y), each (B, T)."""
    offsets = torch.arange(context_length + 1)  # (T+1,)
    idx = starts[:, None] + offsets[None, :]  # (B, T+1): row b holds the positions of window b
    if isinstance(tokens, torch.Tensor):
        window = tokens[idx.to(tokens.device)].long()  # (B, T+1)
    else:
        # One fancy-index into the array / memmap; int64 so the ids become a valid embedding index.
        window = torch.from_numpy(np.asarray(tokens[idx.numpy()], dtype=np.int64))  # (B, T+1)
    x = window[:, :-1].contiguous()  # (B, T) inputs
    y = window[:, 1:].contiguous()  # (B, T) targets: the next token at each position
    if device.type == "cuda" and x.device.type == "cpu":
        # Pinned (page-locked) host memory lets the copy run asynchronously with the GPU's work.
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def _check_state(kind: str, state: dict, expected: dict) -> None:
    """Refuse to resume when the loader was built differently: the position would mean something else."""
    if state.get("kind") != kind:
        raise ValueError(f"this state_dict is from a {state.get('kind')!r}, not a {kind!r}")
    diff = {k: (state.get(k), v) for k, v in expected.items() if state.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"cannot resume {kind}: it was built with different settings ({detail})")


# ----------------------------------------------------------------------------- random batches


def get_batch(
    tokens: Tokens,
    batch_size: int,
    context_length: int,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """B random windows from `tokens`: x (B, T) and y (B, T) int64, y shifted one ahead of x.

    Pass a seeded `torch.Generator` for reproducible batches; without one, torch's global RNG is used.
    """
    tokens = _check_tokens(tokens)
    _check_sizes(len(tokens), batch_size, context_length)
    device = resolve_device(device)
    starts = _random_starts(len(tokens), context_length, batch_size, generator)
    return _gather_windows(tokens, starts, context_length, device)


class RandomLoader:
    """Endless random batches with their own generator; resumable to the exact batch.

    With several data-parallel ranks, every rank draws the same world_size * B starts from the same
    seed and keeps its own slice of B. So the global batch does not depend on how it is split across
    ranks: 2 ranks with B each see exactly what 1 rank with 2B would.
    """

    def __init__(
        self,
        tokens: Tokens,
        batch_size: int,
        context_length: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
    ):
        self.tokens = _check_tokens(tokens)
        _check_sizes(len(self.tokens), batch_size, context_length)
        _check_rank(rank, world_size)
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.batch_size, self.context_length = batch_size, context_length
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.device = resolve_device(device)
        self.generator = torch.Generator().manual_seed(seed)
        self.step = 0  # batches produced so far

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        B = self.batch_size
        starts = _random_starts(len(self.tokens), self.context_length, B * self.world_size, self.generator)
        starts = starts[self.rank * B : (self.rank + 1) * B]  # (B,) this rank's share
        self.step += 1
        return _gather_windows(self.tokens, starts, self.context_length, self.device)

    def _settings(self) -> dict:
        return dict(
            batch_size=self.batch_size, context_length=self.context_length, seed=self.seed,
            world_size=self.world_size, num_tokens=len(self.tokens),
        )  # fmt: skip

    def state_dict(self) -> dict:
        return {"kind": "RandomLoader", "step": self.step, "generator_state": self.generator.get_state(),
                **self._settings()}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        _check_state("RandomLoader", state, self._settings())
        self.generator.set_state(state["generator_state"])
        self.step = int(state["step"])


# ----------------------------------------------------------------------------- sequential batches


class SequentialLoader:
    """Contiguous, non-overlapping windows in order: every token is a target exactly once per epoch.

    Window w covers tokens[w*T : w*T + T + 1] (consecutive windows share one boundary token, which is
    the last target of one and the first input of the next). Windows are grouped into batches of B;
    rank r takes global batches r, r + world_size, r + 2*world_size, ... so ranks never overlap. The
    tail that does not fill one batch on every rank is dropped, so all ranks take the same number of
    steps (a data-parallel rank that ran one step more would wait forever for the others).
    Iterating again after the end starts the next epoch.
    """

    def __init__(
        self,
        tokens: Tokens,
        batch_size: int,
        context_length: int,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
    ):
        self.tokens = _check_tokens(tokens)
        _check_sizes(len(self.tokens), batch_size, context_length)
        _check_rank(rank, world_size)
        self.batch_size, self.context_length = batch_size, context_length
        self.rank, self.world_size = rank, world_size
        self.device = resolve_device(device)
        n_windows = (len(self.tokens) - 1) // context_length
        self._len = n_windows // batch_size // world_size
        if self._len == 0:
            need = batch_size * world_size * context_length + 1
            raise ValueError(
                f"{len(self.tokens)} tokens do not fill one batch per rank: batch_size={batch_size} x "
                f"context_length={context_length} x world_size={world_size} needs at least {need} tokens; "
                f"use a smaller batch_size or context_length"
            )
        self.step = 0  # next batch of this epoch
        self.epoch = 0

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return self._len

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while self.step < self._len:
            batch = self.batch(self.step)
            self.step += 1  # before yielding, so a state_dict taken now points at the next batch
            yield batch
        self.step, self.epoch = 0, self.epoch + 1

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's batch number `step` of the epoch (random access, used by __iter__)."""
        if not 0 <= step < self._len:
            raise ValueError(f"step must be in [0, {self._len}), got {step}")
        g = step * self.world_size + self.rank  # global batch index
        windows = g * self.batch_size + torch.arange(self.batch_size)  # (B,) window numbers
        return _gather_windows(self.tokens, windows * self.context_length, self.context_length, self.device)

    def _settings(self) -> dict:
        return dict(
            batch_size=self.batch_size, context_length=self.context_length, rank=self.rank,
            world_size=self.world_size, num_tokens=len(self.tokens),
        )  # fmt: skip

    def state_dict(self) -> dict:
        return {"kind": "SequentialLoader", "step": self.step, "epoch": self.epoch, **self._settings()}

    def load_state_dict(self, state: dict) -> None:
        _check_state("SequentialLoader", state, self._settings())
        self.step, self.epoch = int(state["step"]), int(state["epoch"])


def eval_window_starts(n_tokens: int, length: int, max_windows: int) -> torch.Tensor:
    """(n,) start offsets of n = min(max_windows, available) non-overlapping windows of `length` tokens (plus the
    one target after each) spread evenly over a stream of n_tokens. Evenly spread rather than the first windows,
    so a stream that starts with one kind of document is not scored on that kind alone; deterministic, so two
    models are scored on exactly the same targets."""
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ValueError(f"length={length!r} must be a positive int")
    n_windows = (n_tokens - 1) // length
    if n_windows < 1:
        raise ValueError(f"{n_tokens} tokens are fewer than one window of length+1={length + 1}: give more text")
    picks = np.linspace(0, n_windows - 1, min(max_windows, n_windows)).round().astype(np.int64)
    return torch.from_numpy(picks) * length


# ----------------------------------------------------------------------------- train / val splits


@dataclass
class DataSplits:
    """Train and validation token streams plus what they were tokenized with."""

    train: Tokens  # (N_train,) token ids
    val: Tokens | None  # (N_val,) or None when there is no held-out data
    vocab_size: int | None = None  # None: unknown (e.g. raw tokens); shards always know it
    tokenizer_hash: str = ""

    def __post_init__(self) -> None:
        self.train = _check_tokens(self.train)
        if len(self.train) < 2:
            raise ValueError(f"train needs at least 2 tokens (one input, one target), got {len(self.train)}")
        if self.val is not None:
            self.val = _check_tokens(self.val)
        if self.vocab_size is not None and (not isinstance(self.vocab_size, int) or self.vocab_size < 1):
            raise ValueError(f"vocab_size must be a positive int or None, got {self.vocab_size!r}")

    @classmethod
    def from_tokens(
        cls, tokens: Tokens, val_fraction: float = 0.1, vocab_size: int | None = None, tokenizer_hash: str = ""
    ) -> "DataSplits":
        """Hold out the LAST `val_fraction` of the stream as validation.

        Not shuffled, on purpose: text is one contiguous sequence, and windows cut at random offsets
        overlap. A random token- or window-level split would put the same sentences on both sides,
        so validation loss would measure memorisation, not generalisation. A contiguous tail is
        genuinely unseen text (nanoGPT splits Shakespeare 90/10 the same way).
        """
        tokens = _check_tokens(tokens)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if vocab_size is not None and len(tokens) and int(tokens.max()) >= vocab_size:
            top = int(tokens.max())
            raise ValueError(f"token id {top} >= vocab_size={vocab_size}: pass the tokenizer's vocab_size")
        n_val = int(round(len(tokens) * val_fraction))
        if val_fraction > 0 and n_val < 2:
            raise ValueError(
                f"val_fraction={val_fraction} of {len(tokens)} tokens leaves {n_val} validation tokens; "
                f"need at least 2: use more data, a larger val_fraction, or val_fraction=0"
            )
        split = len(tokens) - n_val
        return cls(tokens[:split], tokens[split:] if n_val else None, vocab_size, tokenizer_hash)

    @classmethod
    def from_dir(cls, path: str | os.PathLike, mmap: bool = True) -> "DataSplits":
        """Open `train.bin` and `val.bin` as written by `prepare` (memory-mapped by default)."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"no prepared data directory at {path}: {PREPARE_HINT}")
        train = read_shard(path / "train.bin", mmap=mmap)
        val = read_shard(path / "val.bin", mmap=mmap) if (path / "val.bin").exists() else None
        if val is not None and (val.vocab_size, val.tokenizer_hash) != (train.vocab_size, train.tokenizer_hash):
            raise ValueError(
                f"{path}: train.bin and val.bin were written with different tokenizers "
                f"(vocab_size {train.vocab_size} vs {val.vocab_size}); {PREPARE_HINT} again"
            )
        val_tokens = val.tokens if val is not None and len(val) else None
        return cls(train.tokens, val_tokens, train.vocab_size, train.tokenizer_hash)
