"""Sharing a sweep's trained models between processes through a directory (bench/emergence_studies.py --jobs).

Each model is one file named by a hash of the run's settings, the arm and the size index, written atomically
(temp + rename), so a reader never sees half a file and a changed run never reads another run's models. A
process about to train a model first creates `<name>.lock` exclusively; any other process that wants the same
model waits for the weights to appear instead of training it a second time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import torch


def path_for(cache_dir: str | os.PathLike, run, arm: str, index: int) -> Path:
    """The file of model (arm, index) of `run` (an EmergenceRun) in cache_dir."""
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(run), sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{digest}-{arm}-{index}.pt"


def save(path: Path, model, tokenizer, val_loss: float) -> None:
    """Weights, config and validation loss of a trained model; the tokenizer is the fixed emergence one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"config": model.config.to_dict(), "state": model.state_dict(), "val_loss": float(val_loss)}, tmp)
    os.replace(tmp, path)  # atomic: readers see the old state (no file) or the whole file
    path.with_suffix(".lock").unlink(missing_ok=True)


def load(path: Path):
    """(model in eval mode, the emergence tokenizer, val_loss) from a file written by `save`."""
    from minillm.config import ModelConfig
    from minillm.model.transformer import GPT
    from minillm.data.tasks.pretraining import emergence_tokenizer

    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = GPT(ModelConfig.from_dict(blob["config"]))
    model.load_state_dict(blob["state"])
    model.eval()
    return model, emergence_tokenizer(), blob["val_loss"]


def load_or_claim(path: Path, wait_s: float, poll_s: float = 5.0):
    """The cached model if it exists; None if this process should train it (it now holds the lock); if another
    process holds the lock, wait up to wait_s for its file (TimeoutError after that, naming the lock to delete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_suffix(".lock")
    deadline = time.monotonic() + wait_s
    while True:
        if path.is_file():
            return load(path)
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {wait_s:.0f} s for {path.name}, which another process claimed ({lock}); "
                                   "if that process died, delete the lock file and run again") from None
            time.sleep(poll_s)
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return None
