"""Checkpoints: save and restore everything a training run needs to continue exactly. Survey §4.3.2.

Large runs are interrupted (hardware faults, preemption, time limits), so training state is saved regularly and
restored later as if nothing had happened. "Everything" is more than the weights: the optimizer's moments, the
step (it sets the learning rate), the data loader's position and all random-number generator states (those of
every rank in a data-parallel run: each GPU draws its own dropout masks). Restoring all of them makes the resumed
loss curve bit-identical to an uninterrupted one on CPU.

A checkpoint is a directory:

    model.safetensors   the weights (safetensors: no pickle, so loading cannot run code; memory-mappable)
    state.pt            optimizer state, step, RNG states (per rank), loader state, configs, versions (torch.save)
    meta.json           a human-readable summary (step, versions, time)

Writes are atomic: everything goes into a temporary directory next to the target, is fsynced, and only then
renamed into place, so a crash mid-save never leaves a half-written checkpoint and the previous one survives.

Sharded models (FSDP2, = ZeRO-3: every parameter a DTensor holding 1/N of it) are saved in this same format, so
`load_run`, `generate --run` and a single process read what N ranks wrote: `parallel.fsdp.full_state_dicts`
gathers the full weights and optimizer state onto rank 0 (a collective: every rank calls it), rank 0 passes them
to `save_checkpoint(model_state=, optimizer_state=)`, and `load_checkpoint` shards a checkpoint back into a
sharded model (every rank reads the file and keeps its own slice).
"""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.tensor import DTensor

from minillm.device import rng_state, set_rng_state
from minillm.io import atomic_write, atomic_write_text, fsync_dir, replace_dir
from minillm.train.parallel.fsdp import load_full_state_dicts

FORMAT = "minillm-checkpoint-1"
WEIGHTS, STATE, META = "model.safetensors", "state.pt", "meta.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


# ----------------------------------------------------------------------------- small helpers


def _unwrap(model: nn.Module) -> nn.Module:
    """The module whose state_dict has clean keys (torch.compile wraps it as `_orig_mod`)."""
    return getattr(model, "_orig_mod", model)


def _minillm_version() -> str:
    try:
        return metadata.version("minillm")
    except metadata.PackageNotFoundError:  # running from a source checkout without an install
        return str(getattr(sys.modules.get("minillm"), "__version__", "unknown"))


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _save_torch(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def _encode_rng(state: dict) -> dict:
    """RNG states as tensors and plain tuples, so `torch.load(weights_only=True)` can read them back."""
    kind, keys, pos, has_gauss, cached = state["numpy"]
    keys = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    return {**state, "numpy": (kind, keys, int(pos), int(has_gauss), float(cached))}


def _decode_rng(state: dict) -> dict:
    kind, keys, pos, has_gauss, cached = state["numpy"]
    return {**state, "numpy": (kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached)}


def _weights_to_save(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """CPU copies of a state_dict with tied (shared) tensors stored once, plus {alias: stored name}.

    safetensors refuses two names for one storage (a tied embedding/output matrix is exactly that), so the
    second name is recorded as an alias in the file's metadata and filled back in on load.
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"state_dict entry {name!r} is a {type(t).__name__}, not a tensor; cannot save it")
        key = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t.detach().to("cpu", copy=True).contiguous()  # a private copy: no shared storage
    return tensors, aliases


# ----------------------------------------------------------------------------- save


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None, step: int,
                    *, scheduler: Any = None, loader_state: dict | None = None, config: Any = None,
                    extra: dict | None = None, rng_states: list[dict] | None = None,
                    model_state: dict[str, torch.Tensor] | None = None, optimizer_state: dict | None = None) -> Path:
    """Write a checkpoint directory at `path` atomically; returns the path.

    model: weights go to model.safetensors (and `model.config`, if it has `to_dict`, into state.pt so a
    mismatch can be explained on load). optimizer: its state_dict (None for weights-only). scheduler: anything
    with state_dict(). loader_state: e.g. `RandomLoader.state_dict()`. config: the TrainConfig (or a dict).
    extra: any further picklable-by-torch data (tensors, numbers, strings, lists, dicts).
    rng_states: every rank's `minillm.device.rng_state()`, in rank order (`Parallelism.rng_states()`, gathered
    on all ranks before rank 0 saves); None = a single process, whose own state is saved as rank 0's.
    model_state / optimizer_state: the state dicts to write instead of model.state_dict() / optimizer.state_dict();
    a sharded (FSDP2) model needs them: rank 0's result of `parallel.fsdp.full_state_dicts(model, optimizer)`.
    An existing checkpoint at `path` is replaced only once the new one is completely on disk.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step={step!r} must be a non-negative integer")
    if rng_states is not None and (not isinstance(rng_states, list) or not rng_states
                                   or not all(isinstance(r, dict) for r in rng_states)):
        raise ValueError("rng_states must be a non-empty list of rng_state() dicts, one per rank in rank order "
                         "(Parallelism.rng_states()), or None for a single process")
    path = Path(path)
    raw = _unwrap(model)
    if model_state is None and is_sharded(raw):
        raise ValueError("save_checkpoint got a sharded (FSDP2/DTensor) model: each rank holds only a slice of its "
                         "weights. Gather them with minillm.train.parallel.fsdp.full_state_dicts(model, optimizer) on "
                         "EVERY rank, then on rank 0 pass save_checkpoint(..., model_state=, optimizer_state=) what "
                         "it returned")
    if optimizer_state is None and optimizer is not None:
        optimizer_state = optimizer.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    model_cfg = getattr(raw, "config", None)
    state = {
        "format": FORMAT,
        "step": step,
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "loader_state": loader_state,
        # One entry per rank; a single process is rank 0. (Format 1 checkpoints written before this held only
        # "rng", the saving process's state; load_checkpoint still reads those for rank 0.)
        "rng_per_rank": [_encode_rng(r) for r in (rng_states if rng_states is not None else [rng_state()])],
        "model_config": model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else None,
        "train_config": config.to_dict() if hasattr(config, "to_dict") else config,
        "extra": extra,
        "minillm_version": _minillm_version(),
        "torch_version": str(torch.__version__),
    }
    tensors, aliases = _weights_to_save(raw.state_dict() if model_state is None else model_state)
    meta = {"format": FORMAT, "step": step, "minillm_version": state["minillm_version"],
            "torch_version": str(torch.__version__), "n_tensors": len(tensors),
            "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}

    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt", "minillm_aliases": json.dumps(aliases)})
        _fsync_file(tmp / WEIGHTS)
        _save_torch(state, tmp / STATE)
        atomic_write_text(tmp / META, json.dumps(meta, indent=1))
        fsync_dir(tmp)
        replace_dir(tmp, path)  # an existing checkpoint at `path` is swapped out only now
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


# ----------------------------------------------------------------------------- load


def _check_is_checkpoint(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}: check the path (Trainer checkpoints live in "
                                f"OUT_DIR/ckpt/step_NNNNNNNN; latest_checkpoint(OUT_DIR) finds the newest)")
    missing = [n for n in (WEIGHTS, STATE) if not (path / n).is_file()]
    if missing:
        hint = ""
        if path.is_dir() and latest_checkpoint(path) is not None:
            hint = f"; it holds checkpoints, the newest is {latest_checkpoint(path)} (use latest_checkpoint)"
        raise ValueError(f"{path} is not a minillm checkpoint: {', '.join(missing)} missing "
                         f"(a checkpoint is a directory written by save_checkpoint){hint}")


def load_checkpoint_state(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Everything in state.pt: step, optimizer, loader_state, rng, model_config, train_config, extra, versions."""
    path = Path(path)
    _check_is_checkpoint(path)
    # weights_only=True: only tensors and plain containers are unpickled, so a checkpoint cannot run code.
    state = torch.load(path / STATE, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path / STATE} is not a {FORMAT} state file (format={state.get('format')!r} "
                         f"if a dict); was it written by a different tool or minillm version?")
    return state


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model's state_dict from a checkpoint's safetensors file (tied names filled back in)."""
    path = Path(path)
    _check_is_checkpoint(path)

    with safe_open(str(path / WEIGHTS), framework="pt") as f:
        aliases = json.loads((f.metadata() or {}).get("minillm_aliases", "{}"))
    weights = load_file(str(path / WEIGHTS))
    for alias, name in aliases.items():
        weights[alias] = weights[name]
    return weights


def _architecture_error(path: Path, model: nn.Module, weights: dict, saved_cfg: dict | None) -> str | None:
    """A message listing every difference between the checkpoint's tensors and the model's, or None."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in weights.items()}
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    shapes = [f"{k}: checkpoint {saved[k]} vs model {expected[k]}" for k in sorted(set(saved) & set(expected))
              if saved[k] != expected[k]]
    if not (missing or unexpected or shapes):
        return None

    def listing(title: str, items: list[str]) -> str:
        return f"\n  {title} ({len(items)}): " + ", ".join(items[:8]) + (", ..." if len(items) > 8 else "")

    msg = f"checkpoint {path} does not fit this model's architecture:"
    if missing:
        msg += listing("missing in checkpoint", missing)
    if unexpected:
        msg += listing("unexpected in checkpoint", unexpected)
    if shapes:
        msg += listing("shape mismatches", shapes)
    model_cfg = getattr(model, "config", None)
    if saved_cfg and hasattr(model_cfg, "to_dict"):
        now = model_cfg.to_dict()
        diff = [f"{k}: checkpoint {saved_cfg.get(k)!r} vs model {now.get(k)!r}"
                for k in sorted(set(saved_cfg) | set(now)) if saved_cfg.get(k) != now.get(k)]
        if diff:
            msg += listing("ModelConfig fields that differ", diff)
    msg += ("\nBuild the model from the checkpoint's config: "
            "GPT(ModelConfig.from_dict(load_checkpoint_state(path)['model_config'])).")
    return msg


def load_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                    map_location: str | torch.device = "cpu", restore_rng: bool = False,
                    rank: int | None = None) -> int:
    """Load weights (and optimizer state, and RNG states if `restore_rng`) from `path`; return the saved step.

    A sharded (FSDP2) model and its optimizer are loaded on every rank (a collective): each rank reads the full
    checkpoint and keeps its own slice, so a checkpoint written by one process or by any number of ranks loads.

    restore_rng restores the RNG states saved for `rank` (None = this process's rank in the default process
    group, 0 without one): each data-parallel rank continues its own random streams.
    The model must have the same architecture; otherwise a RuntimeError lists missing/unexpected keys, shape
    mismatches and the ModelConfig fields that differ. Weights are copied into the model's own device/dtype.
    """
    path = Path(path)
    state = load_checkpoint_state(path, map_location)
    weights = load_weights(path)
    raw = _unwrap(model)
    # Every rank checks for itself (a sharded model's DTensors report their global shapes), so a mismatch fails
    # on all ranks alike instead of leaving the others waiting in the collectives below.
    error = _architecture_error(path, raw, weights, state.get("model_config"))
    if error:
        raise RuntimeError(error)
    if optimizer is not None and state["optimizer"] is None:
        raise ValueError(f"checkpoint {path} holds no optimizer state (saved with optimizer=None); "
                         f"load it with optimizer=None")
    if is_sharded(raw):
        try:
            load_full_state_dicts(raw, optimizer, weights, state["optimizer"] if optimizer is not None else None)
        except ValueError as e:
            raise ValueError(f"checkpoint {path}: {e}") from e
    else:
        raw.load_state_dict(weights, strict=True)
        if optimizer is not None:
            try:
                optimizer.load_state_dict(state["optimizer"])
            except ValueError as e:
                raise ValueError(f"the optimizer state in {path} does not fit this optimizer ({e}); build the "
                                 f"optimizer the same way as the saved run (same param groups, same model)") from e
    if restore_rng:
        set_rng_state(_decode_rng(_rng_of_rank(path, state, _this_rank() if rank is None else rank)))
    return int(state["step"])


def _this_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _rng_of_rank(path: Path, state: dict, rank: int) -> dict:
    """The encoded RNG states saved for `rank`, or a clear error when the checkpoint has none for it."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"rank={rank!r} must be a non-negative integer")
    per_rank = state.get("rng_per_rank")
    if per_rank is None:  # written before per-rank states: it holds the saving process's (rank 0's) only
        per_rank = [state["rng"]]
    if rank >= len(per_rank):
        raise ValueError(f"checkpoint {path} holds the RNG states of {len(per_rank)} process(es), none for rank "
                         f"{rank}: resume with the number of processes that saved it "
                         f"(--nproc_per_node={len(per_rank)}), or load with restore_rng=False")
    return per_rank[rank]


# ----------------------------------------------------------------------------- sharded models (FSDP2)


def is_sharded(model: nn.Module) -> bool:
    """True when the model's parameters are DTensors (FSDP2's `fully_shard`): each rank holds only a slice."""
    return any(isinstance(p, DTensor) for p in _unwrap(model).parameters())


# ----------------------------------------------------------------------------- what changed since the save


def config_changes(saved: dict | None, now: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """['name: saved -> now', ...] for every field that differs between a saved config dict and the current one
    (fields in `ignore` left out; a field one side lacks shows as <absent>). [] when `saved` is None."""
    if saved is None:
        return []
    absent = "<absent>"

    def show(v: Any) -> str:  # 12 digits: lr / 10 reads 0.0003, not 0.00030000000000000003
        return format(v, ".12g") if isinstance(v, float) else repr(v)

    return [f"{k}: {show(saved.get(k, absent))} -> {show(now.get(k, absent))}" for k in sorted(set(saved) | set(now))
            if k not in ignore and saved.get(k, absent) != now.get(k, absent)]


# ----------------------------------------------------------------------------- finding checkpoints


def checkpoint_path(out_dir: str | os.PathLike, step: int) -> Path:
    """Where the Trainer puts the checkpoint of `step`: OUT_DIR/ckpt/step_00000100."""
    return Path(out_dir) / "ckpt" / f"step_{step:08d}"


def list_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under OUT_DIR/ckpt (or directly under OUT_DIR), oldest step first."""
    root = Path(out_dir)
    found = []
    for base in (root / "ckpt", root):
        if base.is_dir():
            for d in base.iterdir():
                m = _STEP_DIR.match(d.name)
                if m and (d / WEIGHTS).is_file() and (d / STATE).is_file():
                    found.append((int(m.group(1)), d))
    return [d for _, d in sorted(found)]


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under OUT_DIR (see `list_checkpoints`), or None if there is none."""
    found = list_checkpoints(out_dir)
    return found[-1] if found else None
