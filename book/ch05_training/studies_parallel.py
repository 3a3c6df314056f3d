"""Data parallelism run for real from the notebook and the lab (Survey §4.3.2), through `minillm.train.launch`.

- `ddp_vs_single`: prepare a corpus, train it through the CLI once on one process and once with DDP on two
  (torchrun, gloo), and compare the loss curves (equal to ~1e-6: the same global batch, averaged gradients).
- `allreduce_under_torchrun`: run a student's gradient all-reduce (lab 05) on 2 processes under torchrun and
  return its largest difference from the one-process gradients.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from minillm.train.launch import torchrun


def ddp_vs_single(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *, steps: int = 6, batch_size: int = 4,
                  nproc: int = 2, model_args: Sequence[str] = ("--n_layer", "1", "--n_embd", "32", "--block_size", "32"),
                  timeout_s: float = 180) -> dict:
    """Train the same model twice with the CLI: one process with `batch_size`, and `nproc` DDP processes with
    batch_size / nproc each (the same global batch, so the same windows), and read both histories back.

    Returns {"single": rows, "ddp": rows, "max_loss_diff": max |loss difference| over logged steps, "stdout"}.
    The DDP run is launched with torchrun exactly as one would from a shell (`torchrun -m minillm train ...`).
    """
    from minillm.__main__ import main
    from minillm.train.history import read_history

    if batch_size % nproc:
        raise ValueError(f"batch_size={batch_size} must be divisible by nproc={nproc}: each rank takes an equal slice")
    out = Path(out_dir)
    common = ["--data", str(data_dir), "--preset", "tiny", "--max_steps", str(steps), "--log_interval", "1",
              "--device", "cpu", *model_args]
    if main(["train", *common, "--out", str(out / "single"), "--batch_size", str(batch_size)]) != 0:
        raise RuntimeError("the single-process run failed; see its output above")
    res = torchrun(["-m", "minillm", "train", *common, "--out", str(out / "ddp"), "--batch_size",
                    str(batch_size // nproc), "--parallel", "ddp"], nproc=nproc, timeout_s=timeout_s)
    single, ddp = read_history(out / "single" / "history.jsonl"), read_history(out / "ddp" / "history.jsonl")
    diff = max(abs(a["loss"] - b["loss"]) for a, b in zip(single, ddp, strict=True))
    return {"single": single, "ddp": ddp, "max_loss_diff": diff, "stdout": res.stdout}


_ALLREDUCE_SCRIPT = '''
import torch, torch.distributed as dist
from minillm import GPT, ModelConfig
from minillm.train.optim import AdamW
from minillm.train.parallel import init_distributed
{source}
def model_and_data():
    torch.manual_seed(0)
    # no biases: Adam would blow a key bias's ~1e-11 rounding noise up to a full step (its true gradient is 0)
    model = GPT(ModelConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16, bias=False))
    seq = torch.randint(0, 20, ({steps}, 4, 9), generator=torch.Generator().manual_seed(1))
    return model, seq
rank, world = init_distributed(backend="gloo")
model, seq = model_and_data()
opt = AdamW(model.parameters(), lr=1e-2)
n = 4 // world
for s in range({steps}):
    opt.zero_grad()
    model(seq[s, rank * n:(rank + 1) * n, :-1], seq[s, rank * n:(rank + 1) * n, 1:])[1].backward()
    {name}(model, world, dist)
    opt.step()
if rank == 0:
    ref, seq = model_and_data()
    ref_opt = AdamW(ref.parameters(), lr=1e-2)
    for s in range({steps}):
        ref_opt.zero_grad()
        ref(seq[s, :, :-1], seq[s, :, 1:])[1].backward()
        ref_opt.step()
    diff = max((a - b).abs().max().item() for a, b in zip(model.parameters(), ref.parameters()))
    print(f"MAXDIFF {{diff:.3e}}")
dist.destroy_process_group()
'''


def allreduce_under_torchrun(fn, nproc: int = 2, steps: int = 3, timeout_s: float = 120) -> float:
    """Run a hand-written `fn(model, world_size, dist)` (lab 05) in real processes: `nproc` gloo ranks each train
    on their slice of the same batches, calling fn between backward and the AdamW step; rank 0 compares the result
    with one process on the whole batches. Returns the largest parameter difference. fn travels as source code
    (a function defined in a notebook cannot be imported by another process)."""
    import inspect
    import tempfile
    import textwrap

    source = textwrap.dedent(inspect.getsource(fn))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "allreduce_check.py"
        script.write_text(_ALLREDUCE_SCRIPT.format(source=source, steps=steps, name=fn.__name__), encoding="utf-8")
        res = torchrun([str(script)], nproc=nproc, timeout_s=timeout_s)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("MAXDIFF ")), None)
    if line is None:
        raise RuntimeError(f"the all-reduce check printed no result; its output was:\n{res.stdout[-2000:]}")
    return float(line.split()[1])
