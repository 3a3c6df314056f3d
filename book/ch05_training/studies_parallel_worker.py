"""The worker of `studies_parallel_live`: one torchrun job that trains one step of one small GPT four ways.

Survey §4.3.2 (scalable training techniques: ZeRO, tensor and pipeline parallelism). Run under torchrun with 2+
gloo processes (`studies_parallel_live.parallel_live` launches it); every rank builds the same model (seed 0)
and the same global batch, then runs, one after the other:

  single      one process, the whole batch, AdamW: the reference (computed locally on every rank, no comm)
  zero1       data parallelism with minillm's ZeroOneAdamW: each rank a slice of the batch, 1/N of Adam's state
  tp          minillm's `tensor_parallel` (Megatron layout through torch's DTensor), the whole batch per rank
  tp_torch    the same sharding written directly with `torch.distributed.tensor.parallel.parallelize_module`
  pp          minillm's GPipe pipeline (`split_stages` + `gpipe_step`), one stage per rank, micro-batches

For each form it MEASURES what this rank holds (bytes of parameters, gradients and optimizer state, summed over
its own tensors; a DTensor counts its local shard) and what it communicates: a TorchDispatchMode sees every
c10d op (all_reduce, all_gather, send, recv, and DTensor's functional collectives) with its tensors, whatever
the backend. Bytes *sent* per rank follow from each op's payload with the ring algorithm (all-reduce of S bytes:
2 (N-1)/N S; all-gather of N slices of s: (N-1) s; send: its bytes), beside the formula the chapter's widgets use.
Rank 0 writes the rows as JSON to --out.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode

from minillm import GPT, ModelConfig


class CommCounter(TorchDispatchMode):
    """Counts the bytes this rank sends through torch.distributed while active (any backend).

    `payload` is the sum of the tensors handed to the collectives; `sent` converts it to bytes this rank puts
    on the wire with the ring algorithm. `ops` counts calls per op name.
    """

    def __init__(self, world: int):
        super().__init__()
        self.world, self.payload, self.sent, self.ops = world, 0, 0.0, {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace in ("c10d", "_c10d_functional"):
            self._count(func.overloadpacket.__name__, args)
        return func(*args, **(kwargs or {}))

    def _count(self, name: str, args: tuple) -> None:
        N = self.world
        if name in ("allreduce_", "all_reduce"):  # c10d: ([tensors], ...); functional: (tensor, ...)
            size, factor = _nbytes(args[0]), 2 * (N - 1) / N
        elif name in ("allgather_", "allgather_into_tensor_coalesced_", "_allgather_base_"):
            size, factor = _nbytes(args[1]), N - 1  # (outputs, input): each rank's slice goes to N-1 others
        elif name == "all_gather_into_tensor":
            size, factor = _nbytes(args[0]), N - 1
        elif name in ("reduce_scatter_tensor", "reduce_scatter_"):
            size, factor = _nbytes(args[0] if name == "reduce_scatter_tensor" else args[1]), (N - 1) / N
        elif name == "send":
            size, factor = _nbytes(args[0]), 1.0
        elif name in ("recv_", "wait_tensor", "_wrap_tensor_autograd", "barrier"):
            size, factor = 0, 0.0  # receiving and bookkeeping put nothing on the wire
        else:
            raise RuntimeError(f"CommCounter: no byte rule for the c10d op {name!r}; add one before trusting totals")
        self.ops[name] = self.ops.get(name, 0) + 1
        self.payload += size
        self.sent += factor * size


def _nbytes(x) -> int:
    """Bytes of a tensor or a (nested) list of tensors."""
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(t) for t in x)
    return 0


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t  # a DTensor: only its shard lives on this rank


def tensor_bytes(tensors: Iterable[torch.Tensor | None]) -> int:
    """Bytes this rank holds in `tensors` (DTensors count their local shard; None counts nothing)."""
    return sum(_local(t).numel() * _local(t).element_size() for t in tensors if t is not None)


def state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of an optimizer's state tensors (moments, step counters) on this rank."""
    if hasattr(opt, "state_bytes"):
        return opt.state_bytes()
    return tensor_bytes(t for st in opt.state.values() for t in st.values() if isinstance(t, torch.Tensor))


def build(args: argparse.Namespace) -> tuple[GPT, torch.Tensor, torch.Tensor]:
    """The model (seed 0) and the global batch every form trains on. No biases: Adam would blow the key bias's
    ~1e-11 rounding noise (its true gradient is 0) up to a full step."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=args.vocab, block_size=args.seq, n_layer=args.n_layer, n_head=args.n_head,
                      n_embd=args.n_embd, bias=False)
    seq = torch.randint(0, args.vocab, (args.batch, args.seq + 1), generator=torch.Generator().manual_seed(1))
    return GPT(cfg), seq[:, :-1], seq[:, 1:]  # (B, T), (B, T)


def adamw(params, args: argparse.Namespace) -> torch.optim.Optimizer:
    # eps 1e-6, not 1e-8: Adam's first step is ~lr * sign(g), so float rounding on a near-zero gradient would
    # otherwise show up as a weight difference of up to lr between two equal computations
    return torch.optim.AdamW(params, lr=args.lr, eps=1e-6, weight_decay=0.1, foreach=False)


def max_diff(model: torch.nn.Module, ref: dict[str, torch.Tensor], names: dict[int, str] | None = None) -> float:
    """Largest |weight - reference weight| over the parameters this rank updates (DTensors gathered whole)."""
    names = names or {id(p): n for n, p in model.named_parameters()}
    out = 0.0
    for p in model.parameters():
        w = p.full_tensor() if hasattr(p, "full_tensor") else p
        out = max(out, (w.detach() - ref[names[id(p)]]).abs().max().item())
    return out


def max_grad_diff(model: torch.nn.Module, ref: dict[str, torch.Tensor], names: dict[int, str] | None = None) -> float:
    """Largest |gradient - one-process gradient| (the exact part of the comparison, before Adam's division)."""
    names = names or {id(p): n for n, p in model.named_parameters()}
    out = 0.0
    for p in model.parameters():
        g = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        out = max(out, (g - ref[names[id(p)]]).abs().max().item())
    return out


def row(form: str, world: int, loss: float, diff: float, gdiff: float, params, opt, counter: CommCounter,
        seconds: float, predicted: float) -> dict:
    params = list(params)
    return {"form": form, "world_size": world, "loss": loss, "max_diff": diff, "max_grad_diff": gdiff,
            "param_bytes": tensor_bytes(params), "grad_bytes": tensor_bytes(p.grad for p in params),
            "state_bytes": state_bytes(opt), "sent_bytes": counter.sent, "payload_bytes": counter.payload,
            "predicted_sent_bytes": predicted, "ops": counter.ops, "seconds": seconds}


@dataclass
class Live:
    """What every form needs: the settings, this rank, the global batch and the one-process reference."""

    args: argparse.Namespace
    rank: int
    world: int
    x: torch.Tensor  # (B, T) token ids, the same on every rank
    y: torch.Tensor  # (B, T) targets
    ref_w: dict[str, torch.Tensor] = field(default_factory=dict)  # weights after the one-process step
    ref_g: dict[str, torch.Tensor] = field(default_factory=dict)  # its gradients

    def timed(self, fn: Callable[[], object]) -> tuple[object, CommCounter, float]:
        """Run one training step `fn` with every byte it communicates counted; returns (its result, counter, s)."""
        counter = CommCounter(self.world)
        t0 = time.perf_counter()
        with counter:
            out = fn()
        return out, counter, time.perf_counter() - t0

    def step(self, model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
             y: torch.Tensor) -> torch.Tensor:
        loss = model(x, y)[1]
        loss.backward()
        opt.step()
        return loss.detach()

    def diffs(self, model: torch.nn.Module, names: dict[int, str] | None = None) -> tuple[float, float]:
        return max_diff(model, self.ref_w, names), max_grad_diff(model, self.ref_g, names)


def form_single(live: Live) -> tuple[dict, torch.Tensor]:
    """The reference: one process, the whole batch. Fills live.ref_w / ref_g; returns its row and its logits
    after the step (what every updated model must output)."""
    ref = build(live.args)[0]
    opt = adamw(ref.parameters(), live.args)
    loss, c, s = live.timed(lambda: live.step(ref, opt, live.x, live.y))
    live.ref_w = {n: p.detach().clone() for n, p in ref.named_parameters()}
    live.ref_g = {n: p.grad.detach().clone() for n, p in ref.named_parameters()}
    return row("single", 1, loss.item(), 0.0, 0.0, ref.parameters(), opt, c, s, 0.0), ref(live.x)[0].detach()


def form_zero1(live: Live) -> dict:
    """ZeRO-1: rank r trains on rows [r B/N, (r+1) B/N); the optimizer all-reduces the gradient, updates its
    1/N slice of the flat parameters, and all-gathers the updated slices."""
    from minillm.train.parallel import ZeroOneAdamW

    args, rank, N = live.args, live.rank, live.world
    model = build(args)[0]
    opt = ZeroOneAdamW(model.parameters(), N, rank, lr=args.lr, eps=1e-6, weight_decay=0.1)
    n = live.x.size(0) // N
    mine = slice(rank * n, (rank + 1) * n)
    loss, c, s = live.timed(lambda: live.step(model, opt, live.x[mine], live.y[mine]))
    dist.all_reduce(loss)  # outside the counter: only to report the global mean loss
    S = opt._shards[0].numel()  # padded shard length: the all-reduce and the all-gather each move N·S floats
    pred = (2 * (N - 1) / N + (N - 1) / N) * N * S * 4
    return row("zero1", N, loss.item() / N, *live.diffs(model), model.parameters(), opt, c, s, pred)


def torch_tp_plan(model: GPT) -> dict:
    """The Megatron plan in PyTorch's own terms: module path -> how its weight is split."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    plan = {}
    for i, block in enumerate(model.blocks):
        cols = ["attn.wq", "attn.wk", "attn.wv", "mlp.w1"] + (["mlp.w3"] if block.mlp.w3 is not None else [])
        plan |= {f"blocks.{i}.{name}": ColwiseParallel() for name in cols}
        plan |= {f"blocks.{i}.{name}": RowwiseParallel() for name in ("attn.wo", "mlp.w2")}
    return plan


def form_tp(live: Live, mesh, engine: str) -> dict:
    """Tensor parallelism on the whole batch, through minillm's `tensor_parallel` (engine "minillm") or by
    calling `parallelize_module` directly (engine "torch"): every rank computes the same loss."""
    from torch.distributed.tensor.parallel import parallelize_module

    from minillm.train.parallel import tensor_parallel, tp_comm_bytes

    model = build(live.args)[0]
    if engine == "minillm":
        tensor_parallel(model, mesh)
    else:
        for block in model.blocks:  # the model's attention reshapes by its own head count: this rank's heads
            attn = block.attn
            attn.n_head, attn.n_kv_head = attn.n_head // live.world, attn.n_kv_head // live.world
        parallelize_module(model, mesh, torch_tp_plan(model))
    opt = adamw(model.parameters(), live.args)
    fwd = CommCounter(live.world)  # the forward's share: Megatron's "g" all-reduces, one per sub-layer

    def step() -> torch.Tensor:
        with fwd:
            loss = model(live.x, live.y)[1]
        loss.backward()
        opt.step()
        return loss.detach()
    loss, c, s = live.timed(step)
    B, T = live.x.shape
    pred = tp_comm_bytes(model.config, B, T, live.world, bytes_per_elem=4)
    r = row("tp" if engine == "minillm" else "tp_torch", live.world, loss.item(), *live.diffs(model),
            model.parameters(), opt, c, s, pred)
    r["forward_sent_bytes"] = fwd.sent
    r["logits"] = model(live.x)[0].detach()  # popped by run_forms after comparing
    return r


def form_pp(live: Live) -> dict:
    """GPipe: rank r runs stage r; micro-batches flow forward (activations) and back (their gradients)."""
    from minillm.train.parallel import gpipe_step, split_stages

    rank, N, m = live.rank, live.world, live.args.n_micro
    model = build(live.args)[0]
    names = {id(p): nm for nm, p in model.named_parameters()}
    stage = split_stages(model, N)[rank]
    opt = adamw(stage.parameters(), live.args)

    def step():
        loss = gpipe_step(stage, rank, N, list(live.x.chunk(m)), list(live.y.chunk(m)))
        opt.step()
        return loss
    loss, c, s = live.timed(step)
    box = [loss.item() if loss is not None else None]
    dist.broadcast_object_list(box, src=N - 1)  # only the last stage computed the loss
    cfg = model.config
    B, T = live.x.shape
    act = B * T * cfg.n_embd * 4  # one (B, T, C) fp32 activation, summed over the micro-batches
    tied = cfg.padded_vocab_size * cfg.n_embd * 4 if cfg.tie_embeddings else 0  # its gradient is all-reduced
    pred = act * ((rank < N - 1) + (rank > 0)) + 2 * (N - 1) / N * tied
    return row("pp", N, box[0], *live.diffs(stage, names), stage.parameters(), opt, c, s, pred)


def run_forms(args: argparse.Namespace, rank: int, world: int) -> list[dict]:
    """Every form in turn on this rank; returns its rows (the reference first)."""
    from torch.distributed.device_mesh import init_device_mesh

    model, x, y = build(args)
    live = Live(args, rank, world, x, y)
    single, ref_logits = form_single(live)
    mesh = init_device_mesh("cpu", (world,))
    rows = [single, form_zero1(live), form_tp(live, mesh, "minillm"), form_tp(live, mesh, "torch"), form_pp(live)]
    tp_logits, torch_logits = rows[2].pop("logits"), rows[3].pop("logits")
    rows[3]["max_logit_diff_vs_tp"] = (torch_logits - tp_logits).abs().max().item()
    rows[3]["max_logit_diff_vs_single"] = (torch_logits - ref_logits).abs().max().item()
    for r in rows:
        r["rank"], r["n_params"] = rank, sum(p.numel() for p in model.parameters())
    return rows


def main(argv: list[str] | None = None) -> None:
    from minillm.train.parallel import init_distributed

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in (("vocab", 64), ("seq", 16), ("n_layer", 2), ("n_head", 2), ("n_embd", 32), ("batch", 4),
                          ("n_micro", 2)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rank, world = init_distributed(backend="gloo")
    if args.batch % world or args.batch % args.n_micro or args.n_head % world or args.n_layer < world:
        raise ValueError(f"batch={args.batch} and n_micro={args.n_micro}, n_head={args.n_head} and n_layer="
                         f"{args.n_layer} must suit world_size={world}: batch divisible by both, heads by world, "
                         "at least one layer per stage")
    rows = run_forms(args, rank, world)
    everyone = [None] * world
    dist.all_gather_object(everyone, rows)
    if rank == 0:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump([r for rs in everyone for r in rs], f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
