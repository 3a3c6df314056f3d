"""Process groups: how N copies of a training script find each other, and a `spawn` helper that never hangs.

Survey §4.3.2 (scalable training techniques): every form of parallelism (data, ZeRO, tensor, pipeline) runs one
process per accelerator, and the processes talk through collectives (all-reduce, all-gather, reduce-scatter)
over a *process group*. `torchrun` starts the processes and tells each one who it is through environment
variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); `init_distributed` reads them.

`spawn` runs a function in `world_size` fresh processes on this machine (CPU, gloo backend), for tests and
notebooks. A distributed bug usually shows up as a hang: one rank dies and the others wait forever in a
collective. `spawn` therefore has a deadline, and turns a failing rank into one RuntimeError that names it.
"""
from __future__ import annotations

import os
import pickle
import queue as queue_mod
import socket
import time
import traceback
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from minillm.device import resolve_device

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# After the first failure, how long spawn waits for the other ranks' reports, to tell cause from consequence.
_GRACE_S = 2.0
# Default collective timeouts (see init_distributed).
NCCL_TIMEOUT_S, GLOO_TIMEOUT_S = 600.0, 120.0


def init_distributed(backend: str | None = None, timeout_s: float | None = None, *,
                     device: str | torch.device = "auto") -> tuple[int, int]:
    """Join the process group that torchrun's environment describes; return (rank, world_size).

    device: the device this process will TRAIN on (TrainConfig.device: auto | cpu | cuda). backend None follows it:
    nccl for cuda (GPU collectives), gloo for cpu. A CPU run on a host that has GPUs must still use gloo: NCCL
    cannot reduce CPU tensors, and it would claim GPU LOCAL_RANK, which a one-GPU host lacks for rank 1.
    Under nccl each process takes GPU LOCAL_RANK (torch.cuda.set_device), which must exist on this host.
    timeout_s bounds every collective, so a rank that dies makes the others fail instead of waiting forever.
    None = 600 s for nccl (rank 0 writing a large checkpoint while the others wait at a barrier can take minutes),
    120 s for gloo (CPU runs are small). Calling it when the group already exists is an error: two trainers in one
    process would share it silently.
    """
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s={timeout_s!r} must be > 0")
    missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise RuntimeError(f"init_distributed: environment variables {missing} are not set; start the script with "
                           "`torchrun --nproc_per_node=N script.py` (or use minillm.train.parallel.spawn)")
    if dist.is_initialized():
        raise RuntimeError("init_distributed: the default process group already exists in this process")
    backend = backend if backend is not None else backend_for(device)
    if timeout_s is None:
        timeout_s = NCCL_TIMEOUT_S if backend == "nccl" else GLOO_TIMEOUT_S
    kwargs: dict[str, Any] = {}
    if backend == "nccl":  # one GPU per process: LOCAL_RANK picks which one on this node
        gpu = _local_gpu()
        if ":" in str(device) and torch.device(device) != gpu:
            raise ValueError(f"device={str(device)!r} names one GPU for every process, but this process owns {gpu} "
                             f"(LOCAL_RANK); under torchrun pass device='cuda' (--device cuda)")
        torch.cuda.set_device(gpu)
        # device_id (torch >= 2.3; minillm needs 2.5) binds the group to this GPU: NCCL sets up its communicator
        # now rather than at the first collective, and barrier() knows which GPU to use instead of guessing.
        kwargs["device_id"] = gpu
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s), **kwargs)
    return dist.get_rank(), dist.get_world_size()


def backend_for(device: str | torch.device) -> str:
    """The collective backend for training on `device`: 'nccl' for CUDA, 'gloo' otherwise (cpu; mps has none).

    'auto' resolves as the Trainer resolves it (CUDA when available), so the group and the model agree; asking
    for an absent accelerator raises (resolve_device).
    """
    return "nccl" if resolve_device(device).type == "cuda" else "gloo"


def _local_gpu() -> torch.device:
    """cuda:LOCAL_RANK, after checking that this host has that GPU (a clear error instead of 'invalid ordinal')."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if local >= n:
        raise RuntimeError(f"rank {local} asked for GPU {local} but this host has {n} (LOCAL_RANK={local}, "
                           f"one GPU per process); run with --nproc_per_node<={n} or --device cpu")
    return torch.device("cuda", local)


def rank() -> int:
    """This process's index in the default group, 0 when not distributed (a plain single-process run)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes in the default group, 1 when not distributed."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the one that logs, saves checkpoints and prints (all ranks hold the same model)."""
    return rank() == 0


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it), for MASTER_PORT."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank_: int, world: int, port: int, timeout_s: float, fn: Callable, args: tuple, results) -> None:
    # Runs in a fresh process. Everything that goes back to the parent goes through `results`, as plain
    # strings for failures: an exception object may not pickle, its formatted traceback always does.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank_), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank_))
    failed_at = None
    try:
        dist.init_process_group("gloo", rank=rank_, world_size=world, timeout=timedelta(seconds=timeout_s))
        try:
            out = fn(rank_, world, *args)
        except BaseException:
            # Taken before destroy_process_group closes the connections, which makes the peers fail next.
            failed_at = time.time()
            raise
        finally:
            dist.destroy_process_group()
        # Plain pickle copies tensors into the bytes; torch's queue would pass them as shared memory that
        # disappears when this process exits.
        results.put((rank_, True, time.time(), pickle.dumps(out)))
    except BaseException as e:  # noqa: BLE001 - every failure must reach the parent, or it would wait
        when = failed_at if failed_at is not None else time.time()
        results.put((rank_, False, when, f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def spawn(fn: Callable[..., Any], world_size: int, *args, timeout_s: float = 60) -> list[Any]:
    """Run fn(rank, world_size, *args) in `world_size` new processes joined by a gloo group; return their results.

    fn must be importable (a module-level function) and its return value picklable. Returns
    [result of rank 0, result of rank 1, ...]. Raises RuntimeError naming the rank and its exception soon after
    a rank fails: the first to fail by wall clock, since the others then mostly fail only because it went away
    (they are named too, and all are terminated). Raises naming the unfinished ranks when `timeout_s` passes.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size={world_size!r} must be a positive integer")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s={timeout_s!r} must be > 0")
    if not callable(fn):
        raise TypeError(f"fn={fn!r} is not callable")
    try:  # each new process receives fn by pickling: a lambda or a nested function cannot travel
        pickle.dumps((fn, args))
    except Exception as e:  # noqa: BLE001 - pickling raises several types; all mean the same here
        raise TypeError(f"spawn: fn and args must be picklable (fn a module-level function): {e}") from e
    ctx = mp.get_context("spawn")  # fresh interpreters: forking a process with torch threads running can deadlock
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, world_size, port, timeout_s, fn, args, results), daemon=True)
             for r in range(world_size)]
    deadline = time.monotonic() + timeout_s
    done: dict[int, Any] = {}
    failed: dict[int, tuple[float, str]] = {}  # rank -> (when it failed, what happened)
    grace_end: float | None = None  # set at the first failure
    try:
        for p in procs:
            p.start()
        while len(done) + len(failed) < world_size:
            now = time.monotonic()
            if grace_end is not None and now > grace_end:
                break
            try:
                r, ok, when, payload = results.get(timeout=0.1)
            except queue_mod.Empty:
                for r, p in enumerate(procs):  # killed without reporting (segfault, OOM): the exit code is all
                    if r not in done and r not in failed and p.exitcode not in (None, 0):
                        failed[r] = (time.time(), f"exited with code {p.exitcode} without reporting a result")
                if failed and grace_end is None:
                    grace_end = now + _GRACE_S
                if not failed and now > deadline:
                    pending = [r for r in range(world_size) if r not in done]
                    raise RuntimeError(f"spawn: ranks {pending} did not finish within timeout_s={timeout_s} "
                                       "(a rank waiting in a collective that another rank never entered?)") from None
                continue
            if ok:
                done[r] = pickle.loads(payload)
                continue
            failed[r] = (when, payload)
            if grace_end is None:
                grace_end = time.monotonic() + _GRACE_S
        if failed:
            # The first rank to fail is the cause; the others usually only saw their peer's connection close.
            first, *others = sorted(failed, key=lambda r: failed[r][0])
            also = "".join(f"\n(then rank {r} failed too: {failed[r][1].splitlines()[0]})" for r in others)
            raise RuntimeError(f"spawn: rank {first} failed: {failed[first][1]}{also}")
    finally:
        for p in procs:
            if p.pid is None:  # never started
                continue
            p.join(timeout=5 if len(done) == world_size else 0.1)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
    return [done[r] for r in range(world_size)]
