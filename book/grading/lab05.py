"""Lab 05 checks: one AdamW step, the warmup-cosine schedule, and DDP's gradient all-reduce written by hand
(Survey §4.3.1 optimization setting, §4.3.2 data parallelism).

The all-reduce check runs the student's function on N simulated ranks: one thread per rank, each with its own
model replica and its own half of the batch, and a small stand-in for `torch.distributed` whose `all_reduce`
waits for every rank (a barrier), sums, and hands each rank the result, as gloo would. Real processes could not
import a function defined in a notebook; the lab's last cell runs the same function under torchrun for real.
"""
from __future__ import annotations

import threading

import torch

from book.grading.core import Case, Check, _Mismatch, compare_numbers, register_check


def _randn(seed: int, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


# ------------------------------------------------------------------------------------------------ AdamW


def _adamw_args(seed: int, step: int, lr: float = 1e-2, wd: float = 0.1, shape=(5, 3)) -> tuple:
    """(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay): state as after `step` steps."""
    m = _randn(seed + 1, *shape, scale=0.1) if step else torch.zeros(shape)
    v = _randn(seed + 2, *shape, scale=0.1).abs() if step else torch.zeros(shape)
    return (_randn(seed, *shape), _randn(seed + 3, *shape, scale=0.5), m, v, step, lr, 0.9, 0.95, 1e-8, wd)


def _adamw_reference(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    from minillm.train.optim import AdamW

    p = torch.nn.Parameter(param.clone())
    p.grad = grad.clone()
    opt = AdamW([p], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
    opt.state[p] = {"step": torch.tensor(float(step)), "exp_avg": exp_avg.clone(), "exp_avg_sq": exp_avg_sq.clone()}
    opt.step()
    st = opt.state[p]
    return p.detach(), st["exp_avg"], st["exp_avg_sq"]


def compare_tensor_triple(got, expected, spec: Check, case: Case) -> float:
    """(param, exp_avg, exp_avg_sq) after the step, each within tolerance of the reference's."""
    names = ("param", "exp_avg", "exp_avg_sq")
    if not isinstance(got, (tuple, list)) or len(got) != 3 or not all(torch.is_tensor(t) for t in got):
        raise _Mismatch("expected a tuple of 3 tensors (new param, new exp_avg, new exp_avg_sq)",
                        "Return the three updated tensors, in that order.")
    worst = 0.0
    for name, g, e in zip(names, got, expected):
        if g.shape != e.shape:
            raise _Mismatch(f"{name} has shape {tuple(g.shape)}, expected {tuple(e.shape)}")
        err = float((g.detach() - e).abs().max())
        if not torch.allclose(g.detach(), e, atol=spec.atol, rtol=spec.rtol):
            raise _Mismatch(f"{name} differs from the reference by up to {err:.3g}", case.hint)
        worst = max(worst, err)
    return worst


# ------------------------------------------------------------------------------------------------ schedule


def _lr_reference(step, max_steps, warmup_steps, lr, min_lr):
    from minillm.config import TrainConfig
    from minillm.train.optim import lr_at

    cfg = TrainConfig(max_steps=max_steps, warmup_steps=warmup_steps, lr=lr, min_lr=min_lr, schedule="cosine")
    return lr_at(step, cfg)


# ------------------------------------------------------------------------------------------------ all-reduce


class SimulatedGroup:
    """`world_size` ranks as threads; `handle(rank)` is a stand-in for torch.distributed seen from that rank."""

    def __init__(self, world_size: int):
        self.world_size = world_size
        # A rank that calls all_reduce fewer times than the others would leave them waiting: time out instead.
        self._barrier = threading.Barrier(world_size, timeout=10)
        self._slots: list[torch.Tensor | None] = [None] * world_size
        self.calls = [0] * world_size

    def handle(self, rank: int):
        group = self

        class _Dist:
            class ReduceOp:
                SUM = "sum"

            @staticmethod
            def get_world_size() -> int:
                return group.world_size

            @staticmethod
            def get_rank() -> int:
                return rank

            @staticmethod
            def all_reduce(tensor: torch.Tensor, op="sum") -> None:
                if op not in ("sum", torch.distributed.ReduceOp.SUM):
                    raise ValueError("this lab's all_reduce supports op=SUM only (then divide by the world size)")
                group.calls[rank] += 1
                group._slots[rank] = tensor.detach().clone()
                group._barrier.wait()                        # every rank has contributed
                total = torch.stack(group._slots).sum(0)
                group._barrier.wait()                        # everyone has read the slots before they are reused
                tensor.copy_(total)

        return _Dist


def _tiny_model_and_data(seed: int):
    from minillm import GPT, ModelConfig

    torch.manual_seed(seed)
    model = GPT(ModelConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
    g = torch.Generator().manual_seed(seed + 1)
    seq = torch.randint(0, 20, (4, 9), generator=g)
    return model, seq[:, :-1], seq[:, 1:]


def _ddp_case(seed: int, world_size: int) -> tuple:
    return (seed, world_size)


def _full_batch_grads(seed: int, world_size: int) -> torch.Tensor:
    model, x, y = _tiny_model_and_data(seed)
    model(x, y)[1].backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def run_allreduce(fn, seed: int, world_size: int) -> torch.Tensor:
    """Each simulated rank: its replica, its slice of the batch, backward, then fn(model, world_size, dist).
    Returns rank 0's flattened gradients after fn (every rank's must be equal, else a mismatch is raised)."""
    group = SimulatedGroup(world_size)
    results: list = [None] * world_size
    errors: list = []

    # Replicas are built here, one after another: seeding the global RNG from several threads at once would race.
    replicas = [_tiny_model_and_data(seed) for _ in range(world_size)]

    def rank_main(rank: int) -> None:
        try:
            model, x, y = replicas[rank]
            n = len(x) // world_size
            model(x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n])[1].backward()
            fn(model, world_size, group.handle(rank))
            results[rank] = torch.cat([p.grad.flatten() for p in model.parameters()])
        except Exception as e:  # reported below with the rank, after every thread has stopped
            errors.append((rank, e))
            group._barrier.abort()

    threads = [threading.Thread(target=rank_main, args=(r,), daemon=True) for r in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        rank, err = errors[0]
        if isinstance(err, threading.BrokenBarrierError):
            raise _Mismatch("the ranks did not all call all_reduce the same number of times (one waited 10 s for the others)",
                            "Call dist.all_reduce once for every parameter's gradient, on every rank.")
        raise err
    if not all(torch.equal(results[0], r) for r in results[1:]):
        raise _Mismatch("ranks ended with different gradients", "Every rank must end with the same averaged gradients.")
    return results[0]


def _register_lab05() -> None:
    register_check(Check(
        name="adamw_step",
        shortcuts=("minillm.train.optim.AdamW._update", "torch.optim.adamw.adamw", "torch._fused_adamw_"),
        summary="adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay) -> "
                "(param, exp_avg, exp_avg_sq) after AdamW step number step + 1",
        hint="t = step + 1; param *= 1 - lr*wd; m = beta1 m + (1-beta1) g; v = beta2 v + (1-beta2) g^2; "
             "m_hat = m / (1 - beta1^t); v_hat = v / (1 - beta2^t); param -= lr * m_hat / (sqrt(v_hat) + eps).",
        reference=_adamw_reference, compare=compare_tensor_triple, atol=1e-6, rtol=1e-5,
        cases=(
            Case("the first step (moments start at 0)", lambda: _adamw_args(0, 0),
                 "At t = 1 the bias correction divides m by 1 - beta1 = 0.1: do not skip it."),
            Case("step 10, weight decay 0.1", lambda: _adamw_args(1, 10)),
            Case("no weight decay", lambda: _adamw_args(2, 3, wd=0.0)),
            Case("large lr and decay: decoupled, not L2", lambda: _adamw_args(3, 5, lr=0.5, wd=0.5),
                 "Decoupled decay shrinks the parameter directly (param * (1 - lr wd)); do not add wd*param to g."),
        ),
    ))
    register_check(Check(
        name="lr_schedule",
        shortcuts=("minillm.train.optim.lr_at",),
        summary="lr_schedule(step, max_steps, warmup_steps, lr, min_lr) -> linear warmup then cosine decay to min_lr",
        hint="step < W: lr (step + 1) / W. After: p = (step - W) / (S - 1 - W), clipped to 1; "
             "min_lr + (lr - min_lr)(1 + cos(pi p)) / 2.",
        reference=_lr_reference, compare=compare_numbers, atol=1e-12, rtol=1e-9,
        cases=(
            Case("the first warmup step", lambda: (0, 100, 10, 1e-3, 1e-4),
                 "Warmup starts at lr/W, not 0: the first step is not wasted."),
            Case("the last warmup step reaches the peak", lambda: (9, 100, 10, 1e-3, 1e-4)),
            Case("half-way through the decay", lambda: (54, 100, 10, 1e-3, 1e-4)),
            Case("the final step and beyond", lambda: (120, 100, 10, 1e-3, 1e-4),
                 "Past the last step the rate stays at min_lr (clip the progress at 1)."),
        ),
    ))
    register_check(Check(
        name="allreduce_gradients",
        summary="allreduce_gradients(model, world_size, dist): average every parameter's .grad across ranks in place",
        hint="for p in model.parameters(): dist.all_reduce(p.grad) (a sum over ranks), then p.grad /= world_size.",
        reference=_full_batch_grads, runner=run_allreduce, atol=1e-6, rtol=1e-5,
        cases=(
            Case("2 ranks, half the batch each", lambda: _ddp_case(0, 2),
                 "After the sum each rank holds the total of 2 half-batch means: divide by the world size."),
            Case("4 ranks, one sequence each", lambda: _ddp_case(1, 4)),
            Case("2 ranks, another model", lambda: _ddp_case(2, 2)),
            Case("1 rank (nothing to average)", lambda: _ddp_case(3, 1)),
        ),
    ))


_register_lab05()  # cheap: builds Check objects only; models and threads are made when a check runs
