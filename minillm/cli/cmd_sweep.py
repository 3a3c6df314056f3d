"""`python -m minillm sweep`: a scaling-law sweep (IsoFLOP or grid), one JSONL row per run (Survey §2.1)."""
from __future__ import annotations

import argparse
import dataclasses

import torch


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 1e12,3e12, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def cmd_sweep(args: argparse.Namespace) -> None:
    # Here, not at the top: minillm.scaling brings scipy (~0.3 s), which no other command needs.
    from minillm.scaling.sweep import default_sweep, plan, run_sweep

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads={args.threads} must be at least 1")
        torch.set_num_threads(args.threads)
    base = default_sweep(args.size)
    changes = {k: v for k, v in (("mode", args.mode), ("budgets", args.budgets), ("token_budgets", args.tokens),
                                 ("n_docs", args.n_docs), ("device", args.device)) if v is not None}
    if changes.get("mode") == "grid" and "token_budgets" not in changes:
        raise ValueError("--mode grid needs --tokens (comma-separated token budgets, e.g. 1e5,1e6)")
    cfg = dataclasses.replace(base, **changes)  # dataclasses.replace runs __post_init__: the new values are validated
    if args.dry_run:
        for spec in plan(cfg):
            budget = f"{spec.budget:.2g}" if spec.budget is not None else "-"
            print(f"{spec.run_id:40s} C={budget:8s} N={spec.n_params:>10,} D={spec.tokens:>11,} steps={spec.steps}")
        return
    rows = run_sweep(cfg, args.out, progress=True, max_runs=args.max_runs)
    print(f"sweep: {len(rows)} of {len(plan(cfg))} planned runs are in {args.out}")



def register(sub: argparse._SubParsersAction) -> None:
    ps = sub.add_parser("sweep", help="run a scaling-law sweep (IsoFLOP or grid), one JSONL row per run",
                        description="Train many model sizes on the synthetic corpus and append one row per run "
                                    "(N, D, FLOPs, losses, loss curve, provenance) to --out. Rerunning the same "
                                    "command resumes: runs already in the file are skipped. Survey §2.1.")
    ps.add_argument("--size", default=None, choices=("ci", "laptop", "gpu"),
                    help="sweep profile from minillm.scaling.sweep.default_sweep [default: $MINILLM_SIZE or auto]")
    ps.add_argument("--out", required=True, help="JSONL file the rows are appended to (created if absent)")
    ps.add_argument("--mode", default=None, choices=("isoflop", "grid"),
                    help="isoflop: fixed FLOP budgets, steps = C / (FLOPs per step); grid: sizes x token budgets "
                         "[default: the profile's, isoflop]")
    ps.add_argument("--budgets", default=None, type=_float_list,
                    help="isoflop compute budgets in FLOPs, comma-separated, e.g. 2e11,7e11 [default: the profile's]")
    ps.add_argument("--tokens", default=None, type=_float_list,
                    help="grid mode: token budgets D per run, comma-separated, e.g. 1e5,1e6")
    ps.add_argument("--n_docs", type=int, default=None,
                    help="documents of the synthetic corpus [default: the profile's]")
    ps.add_argument("--max_runs", type=int, default=None,
                    help="train at most this many not-yet-done runs, then stop (rerun to continue) [default: all]")
    ps.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads; 1 is fastest on a machine shared with other jobs [default: torch's choice]")
    ps.add_argument("--device", default=None, help="auto, cpu, cuda, mps [default: auto]")
    ps.add_argument("--dry_run", action="store_true", help="print the planned runs and train nothing")
    ps.set_defaults(func=cmd_sweep)
