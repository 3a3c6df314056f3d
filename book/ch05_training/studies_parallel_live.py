"""ZeRO-1, tensor and pipeline parallelism run live on 2 gloo processes, memory and bytes measured (Survey §4.3.2).

`parallel_live` launches one torchrun job (`studies_parallel_worker`, torchrun costs seconds per launch, so every
form runs in the same job) that trains one step of one small GPT on one global batch as: one process (the
reference), ZeRO-1 (minillm's `ZeroOneAdamW`), tensor parallelism (minillm's `tensor_parallel`, and the same
plan written with PyTorch's own `parallelize_module`), and a GPipe pipeline with micro-batches. Each row is one
(form, rank): loss, max |weight - one-process weight| after the step, the bytes of parameters, gradients and
optimizer state that rank holds (summed from its tensors), the bytes it sent (every c10d op counted), the
formula's prediction, and seconds.

    rows = parallel_live(live_config("ci"))
    print(format_table(rows))
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from minillm.presets import by_size
from minillm.train.launch import torchrun

FORMS = ("single", "zero1", "tp", "tp_torch", "pp")
_WORKER = "book.ch05_training.studies_parallel_worker"


def live_config(size: str | None = None) -> dict:
    """The model and batch of the live study per size profile (worker argument names)."""
    return by_size(ci=dict(vocab=64, seq=16, n_layer=2, n_head=2, n_embd=32, batch=4, n_micro=2),
                   laptop=dict(vocab=256, seq=64, n_layer=4, n_head=4, n_embd=128, batch=8, n_micro=4),
                   gpu=dict(vocab=256, seq=64, n_layer=4, n_head=4, n_embd=128, batch=8, n_micro=4), size=size)


def parallel_live(config: dict | None = None, *, nproc: int = 2, timeout_s: float = 180) -> list[dict]:
    """Run every form on `nproc` gloo processes in one torchrun job; return its rows (one per form and rank)."""
    config = live_config() if config is None else config
    unknown = set(config) - {"vocab", "seq", "n_layer", "n_head", "n_embd", "batch", "n_micro", "lr"}
    if unknown:
        raise ValueError(f"parallel_live: unknown settings {sorted(unknown)}; use the keys of live_config()")
    from book.results import note

    note(parallel_live=config, nproc=nproc, forms=FORMS)  # stored in a bench record's "settings"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        argv = ["-m", _WORKER, "--out", str(out)]
        for k, v in config.items():
            argv += [f"--{k}", str(v)]
        res = torchrun(argv, nproc=nproc, timeout_s=timeout_s)
        if not out.exists():
            raise RuntimeError(f"parallel_live: the workers wrote no rows; their output was:\n{res.stdout[-2000:]}")
        rows = json.loads(out.read_text(encoding="utf-8"))
    got = {r["form"] for r in rows}
    if got != set(FORMS) or len(rows) != len(FORMS) * nproc:
        raise RuntimeError(f"parallel_live: expected forms {FORMS} on {nproc} ranks, got {sorted(got)} "
                           f"in {len(rows)} rows")
    return rows


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table: per form and rank, what it holds and sends, against one process."""
    head = (f"{'form':<9}{'rank':>5}{'max diff':>10}{'grad diff':>10}{'params B':>10}{'grads B':>10}{'state B':>10}"
            f"{'sent B':>10}{'formula B':>11}{'seconds':>9}")
    lines = [head, "-" * len(head)]
    for r in sorted(rows, key=lambda r: (FORMS.index(r["form"]) if r["form"] in FORMS else len(FORMS), r["rank"])):
        if r["form"] == "single" and r["rank"] != 0:
            continue  # every rank computed the same reference
        lines.append(f"{r['form']:<9}{r['rank']:>5}{r['max_diff']:>10.1e}{r['max_grad_diff']:>10.1e}"
                     f"{r['param_bytes']:>10,}"
                     f"{r['grad_bytes']:>10,}{r['state_bytes']:>10,}{r['sent_bytes']:>10,.0f}"
                     f"{r['predicted_sent_bytes']:>11,.0f}{r['seconds']:>9.3f}")
    return "\n".join(lines)


def find(rows: list[dict], form: str, rank: int = 0) -> dict:
    """The row of one form on one rank."""
    for r in rows:
        if r["form"] == form and r["rank"] == rank:
            return r
    raise KeyError(f"no row for form={form!r}, rank={rank}; forms are {FORMS}")
