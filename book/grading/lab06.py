"""Lab 06 checks: the response-only loss mask of instruction tuning, the DPO loss, and LoRA's forward and merge
(Survey §5.1 instruction tuning, §5.2 alignment tuning without RL, §5.3 parameter-efficient adaptation).

Each check compares the student's function with minillm.finetune's own (`ChatTemplate.render`'s mask shifted as
`sft.pack` does, `dpo.dpo_loss`, `peft.LoRALinear` and its `merge`) on hand cases that separate the right answer
from the usual wrong ones, plus seeded random cases. The DPO check also compares the loss's gradient with respect
to the policy log-probs (its sign says which response the update favours); the merge check also runs the merged
weight as a plain linear layer and compares its output with the package's unmerged LoRALinear (merged == unmerged).
On a mismatch the compare functions here recompute the usual MISTAKES on the same inputs (mask not shifted, prompt
tokens kept, padding kept; DPO sign flipped, beta missing, no reference, sum instead of mean; alpha instead of
alpha/rank, A and B swapped, W not transposed) and name the one the student's output equals.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from book.grading.core import Case, Check, _compare, _Mismatch, register_check
from book.grading.diagnose import Mistake, diagnosing

IGNORE = -100


# ------------------------------------------------------------------------------------------------ comparing tuples


def _same(got: Any, wrong: Any) -> bool:
    """Whether two outputs (tensors, or tuples of them) are equal element by element (shapes included)."""
    got, wrong = (got if isinstance(got, (tuple, list)) else (got,)), (wrong if isinstance(wrong, (tuple, list))
                                                                       else (wrong,))
    if len(got) != len(wrong):
        return False
    for a, b in zip(got, wrong):
        if not (torch.is_tensor(a) and torch.is_tensor(b)) or a.shape != b.shape:
            return False
        if not torch.allclose(a.detach().double(), b.detach().double(), rtol=1e-5, atol=1e-7, equal_nan=True):
            return False
    return True


def _compare_tuple(got: Any, expected: tuple, spec: Check, case: Case, names: Sequence[str]) -> float:
    """A tuple of tensors, compared element by element with core's tensor comparison; messages name the element."""
    if not isinstance(got, (tuple, list)) or len(got) != len(expected):
        raise _Mismatch(f"expected a tuple of {len(expected)} tensors ({', '.join(names)}), got "
                        f"{type(got).__name__}" + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""),
                        f"Return ({', '.join(names)}) in this order.")
    worst = 0.0
    for name, g, e in zip(names, got, expected):
        try:
            worst = max(worst, _compare(g, e, spec, case))
        except _Mismatch as err:
            raise _Mismatch(f"{name}: {err}", err.hint) from None
    return worst


def _diagnosing(names: Sequence[str], mistakes: Sequence[Mistake], runner: Callable | None = None) -> Callable:
    """A compare function for tuple outputs: `_compare_tuple`, and on a mismatch name the first mistake whose output
    the student's equals; with `runner`, each mistake runs through it as the student's function did."""
    return diagnosing(mistakes, partial(_compare_tuple, names=names), runner=runner, same=_same)


# ------------------------------------------------------------------------------------------------ 1. response targets


def _targets_hand() -> tuple[torch.Tensor, torch.Tensor]:
    """Two rendered chats, right-padded with END (id 3): 0 = <|user|>, 2 = <|assistant|>, 3 = <|end|>, the rest
    text. Row 0: user 'ab', assistant 'cd'; row 1: a two-turn chat (prompt tokens after a response) and padding."""
    ids = torch.tensor([[0, 10, 11, 3, 2, 12, 13, 3, 3, 3, 3, 3, 3],
                        [0, 14, 3, 2, 15, 3, 0, 16, 17, 3, 2, 18, 3]])
    mask = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0],
                         [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    return ids, mask


def _targets_chat(seed: int, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Real conversations rendered by minillm's ChatTemplate and padded by pad_batch (mask False on padding)."""
    from minillm.finetune.chat import ChatTemplate, chat_tokenizer, pad_batch
    from minillm.finetune.sft import instruction_data

    template = ChatTemplate(chat_tokenizer())
    convs = instruction_data(n, seed=seed, mix={"instructions": 0.5, "addition": 0.5})
    ids, mask, _ = pad_batch([template.render(c.messages) for c in convs], template.end_id)
    return ids, mask


def _targets_random(seed: int, B: int = 5, L: int = 17) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids with random response spans (several per row) and a padded tail."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 50, (B, L), generator=g)
    mask = torch.rand(B, L, generator=g) < 0.4
    lengths = torch.randint(L // 2, L + 1, (B,), generator=g)
    pad = torch.arange(L)[None, :] >= lengths[:, None]
    return ids.masked_fill(pad, 3), mask & ~pad


def _targets_reference(ids: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`sft.pack`'s rule on an already padded batch (rows of whole conversations): position t predicts ids[t+1],
    a target only where ids[t+1] is a response token (ChatTemplate.render's loss_mask)."""
    from minillm.finetune.sft import IGNORE as ignore

    return ids[:, :-1], torch.where(loss_mask[:, 1:], ids[:, 1:], torch.full_like(ids[:, 1:], ignore))


def _first_response_onwards(mask: torch.Tensor) -> torch.Tensor:
    return mask.long().cummax(dim=1).values.bool()


_TARGETS_MISTAKES: tuple[Mistake, ...] = (
    (lambda i, m: (i[:, :-1], torch.where(m[:, :-1], i[:, 1:], IGNORE)),
     "The mask is not shifted: loss_mask[t] says ids[t] is a response token, and ids[t] is the TARGET of position "
     "t-1. Use loss_mask[:, 1:] with ids[:, 1:] (the first response token is predicted from the assistant tag)."),
    (lambda i, m: (i[:, :-1], i[:, 1:]),
     "Prompt tokens kept: every target is there. Set y = -100 wherever the target token is not a response token, "
     "so the model is trained to answer, not to write the user's prompt."),
    (lambda i, m: (i[:, :-1], torch.where(_first_response_onwards(m)[:, 1:], i[:, 1:], IGNORE)),
     "Padding (and later prompt turns) kept: not everything after the first response token is a response. Use the "
     "mask itself, position by position: padding and the user's next turn have loss_mask False."),
    (lambda i, m: (i[:, :-1], torch.where(m[:, 1:], i[:, 1:], 0)),
     "Ignored targets must be -100 (F.cross_entropy's ignore_index), not 0: 0 is a real token id."),
    (lambda i, m: (i[:, :-1], torch.where(~m[:, 1:], i[:, 1:], IGNORE)),
     "The mask is inverted: keep targets where loss_mask is True (response tokens), ignore the rest."),
)


# ------------------------------------------------------------------------------------------------ 2. DPO


def _dpo_case(seed: int, B: int = 8, beta: float = 0.1, scale: float = 5.0) -> tuple:
    """(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta): sequence log-probs (B,) float32, <= 0."""
    g = torch.Generator().manual_seed(seed)
    pc, pr, rc, rr = (-(torch.rand(B, generator=g) * 20 + 1) for _ in range(4))
    pc, pr = rc + torch.randn(B, generator=g) * scale, rr + torch.randn(B, generator=g) * scale
    return pc, pr, rc, rr, beta


def _dpo_hand() -> tuple:
    """Policy = reference on pair 0 (loss log 2); the policy favours chosen by 2 nats on pair 1, rejected by 1 on pair 2;
    pair 3: both log-ratios equal but the raw log-probs differ (only the ratio to the reference counts)."""
    return (torch.tensor([-10.0, -8.0, -12.0, -4.0]), torch.tensor([-12.0, -12.0, -10.0, -20.0]),
            torch.tensor([-10.0, -9.0, -11.5, -5.0]), torch.tensor([-12.0, -11.0, -10.5, -21.0]), 1.0)


def _dpo_reference_values(pc, pr, rc, rr, beta):
    from minillm.finetune.dpo import dpo_loss

    return dpo_loss(pc, pr, rc, rr, beta)


def _with_policy_grads(fn: Callable, pc, pr, rc, rr, beta) -> tuple:
    """fn's (loss, chosen_rewards, rejected_rewards) plus d loss / d policy_chosen and d loss / d policy_rejected."""
    pc, pr = pc.detach().clone().requires_grad_(True), pr.detach().clone().requires_grad_(True)
    out = fn(pc, pr, rc, rr, beta)
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        return out  # the comparison says what is wrong with the shape of the answer
    loss = out[0]
    if not torch.is_tensor(loss) or loss.grad_fn is None:
        raise _Mismatch("no gradient flows from your loss to the policy log-probs",
                        "Stay in torch (no .item(), .detach() or float() on the loss): DPO trains through it.")
    grads = torch.autograd.grad(loss, (pc, pr), allow_unused=True)
    grads = tuple(torch.zeros_like(p) if gr is None else gr for p, gr in zip((pc, pr), grads))
    return (*out, *grads)


def _dpo_reference(pc, pr, rc, rr, beta):
    return _with_policy_grads(_dpo_reference_values, pc, pr, rc, rr, beta)


def _dpo_runner(fn, pc, pr, rc, rr, beta):
    return _with_policy_grads(fn, pc, pr, rc, rr, beta)


def _dpo_parts(pc, pr, rc, rr, beta, *, sign=1.0, use_beta=True, ref=True, reduce="mean"):
    b = beta if use_beta else 1.0
    chosen, rejected = (pc - rc, pr - rr) if ref else (pc, pr)
    loss = -F.logsigmoid(sign * b * (chosen - rejected))
    return (loss.mean() if reduce == "mean" else loss.sum()), b * chosen, b * rejected


_DPO_MISTAKES: tuple[Mistake, ...] = (
    (partial(_dpo_parts, sign=-1.0),
     "Sign flipped: the loss is -log sigmoid(beta * (chosen log-ratio - rejected log-ratio)); yours rewards the "
     "REJECTED response (its gradient pushes the policy the wrong way)."),
    (partial(_dpo_parts, use_beta=False),
     "beta is missing: multiply the log-ratio difference by beta inside the sigmoid, and the rewards too "
     "(reward = beta * (log pi - log ref))."),
    (partial(_dpo_parts, ref=False),
     "No reference: DPO's implicit reward is beta * (log pi(y) - log pi_ref(y)), the log-RATIO to the reference "
     "model, not the policy's log-prob alone."),
    (partial(_dpo_parts, reduce="sum"),
     "Return the MEAN loss over the batch of pairs, not the sum (the learning rate must not depend on batch size)."),
    (lambda pc, pr, rc, rr, beta: (_dpo_parts(pc, pr, rc, rr, beta)[0], pc - rc, pr - rr),
     "The loss is right; the rewards are beta * (log pi - log ref), with beta."),
)


# ------------------------------------------------------------------------------------------------ 3. LoRA


def _lora_case(seed: int, n_in: int = 12, n_out: int = 10, rank: int = 4, alpha: float = 8.0,
               lead: tuple = (2, 5)) -> tuple:
    """(x (*lead, in), W (out, in), A (rank, in), B (out, rank), alpha, rank); B is non-zero (a trained adapter)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, n_in, generator=g)
    W = torch.randn(n_out, n_in, generator=g) / n_in ** 0.5
    A = torch.randn(rank, n_in, generator=g) / n_in ** 0.5
    B = torch.randn(n_out, rank, generator=g) * 0.5
    return x, W, A, B, alpha, rank


def _package_lora(W, A, B, alpha, rank):
    from minillm.finetune.peft import LoRALinear

    base = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    with torch.no_grad():
        base.weight.copy_(W)
    layer = LoRALinear(base, rank, alpha)
    with torch.no_grad():
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
    return layer


def _lora_forward_reference(x, W, A, B, alpha, rank):
    """LoRALinear's forward with the given tensors, differentiable in x, W, A and B (for the gradient check)."""
    layer = _package_lora(W.detach(), A.detach(), B.detach(), alpha, rank)
    # functional_call runs the layer on the case's own tensors, so gradients flow to them
    return torch.func.functional_call(layer, {"base.weight": W, "lora_A": A, "lora_B": B}, (x,))


def _merge_reference(W, A, B, alpha, rank, x):
    """(merged W from LoRALinear.merge(), the package's UNMERGED LoRALinear output on x)."""
    layer = _package_lora(W, A, B, alpha, rank)
    with torch.no_grad():
        unmerged = layer(x)
        layer.merge()
    return layer.base.weight.detach().clone(), unmerged


def _merge_runner(fn, W, A, B, alpha, rank, x):
    merged = fn(W, A, B, alpha, rank)
    if not torch.is_tensor(merged):
        return merged
    with torch.no_grad():
        return merged, F.linear(x, merged.detach())  # the merged weight used as a plain Linear


def _lin(x, W, A, B, scale, *, order="BA", transpose=True):
    base = F.linear(x, W) if transpose else x @ W
    low = F.linear(F.linear(x, A), B) if order == "BA" else F.linear(F.linear(x, B), A)
    return base + scale * low


_SCALE_ADVICE = ("Scale the update by alpha / rank, not by alpha: dividing by the rank keeps the update's size "
                 "(and a good learning rate) the same when you change the rank.")
_LORA_MISTAKES: tuple[Mistake, ...] = (
    (lambda x, W, A, B, a, r: _lin(x, W, A, B, a), _SCALE_ADVICE),
    (lambda x, W, A, B, a, r: _lin(x, W, A, B, 1.0), "The update is scaled: W x + (alpha / rank) * B A x."),
    (lambda x, W, A, B, a, r: _lin(x, W, A, B, r / a), "The scale is alpha / rank, not rank / alpha."),
    (lambda x, W, A, B, a, r: _lin(x, W, A, B, a / r, order="AB"),
     "A and B in the wrong order: A (rank, in) acts first (down to rank dimensions), then B (out, rank): "
     "x @ A.T @ B.T."),
    (lambda x, W, A, B, a, r: _lin(x, W, A, B, a / r, transpose=False),
     "Transpose W: it is stored (out, in) as in nn.Linear, so the base output is x @ W.T (F.linear(x, W))."),
    (lambda x, W, A, B, a, r: F.linear(x, W),
     "The low-rank update is missing: add (alpha / rank) * x @ A.T @ B.T to the frozen path x @ W.T."),
)


def _merge_mistake(fn: Callable[..., torch.Tensor]) -> Callable[..., tuple]:
    """A mistaken merge as the runner would report it: (merged W, the merged layer's output on x)."""
    def run(W, A, B, a, r, x):
        m = fn(W, A, B, a, r)
        return m, F.linear(x, m)
    return run


_MERGE_MISTAKES: tuple[Mistake, ...] = (
    (_merge_mistake(lambda W, A, B, a, r: W + a * B @ A), _SCALE_ADVICE),
    (_merge_mistake(lambda W, A, B, a, r: W + B @ A), "The update is scaled: W + (alpha / rank) * B @ A."),
    (_merge_mistake(lambda W, A, B, a, r: W + a / r * A @ B),
     "B @ A, not A @ B: B (out, rank) @ A (rank, in) is (out, in), W's shape."),
    (_merge_mistake(lambda W, A, B, a, r: W + a / r * (B @ A).T),
     "Do not transpose the update: B @ A is already (out, in), like W."),
    (_merge_mistake(lambda W, A, B, a, r: a / r * B @ A),
     "You returned the update alone: the merged weight is W + (alpha / rank) * B @ A."),
)


# ------------------------------------------------------------------------------------------------ registration


def _register_lab06() -> None:
    register_check(Check(
        name="response_targets",
        summary="response_targets(ids, loss_mask) -> (x, y): x = ids[:, :-1], y = the next token where it is a "
                "response token, else -100",
        hint="x = ids[:, :-1]; y = torch.where(loss_mask[:, 1:], ids[:, 1:], -100): position t predicts ids[t+1], "
             "so the mask to read is the target's, loss_mask[:, 1:].",
        reference=_targets_reference, compare=_diagnosing(("x", "y"), _TARGETS_MISTAKES), atol=0.0, rtol=0.0,
        cases=(
            Case("hand case: one chat, and a two-turn chat with padding", _targets_hand),
            Case("6 real chats rendered by ChatTemplate, padded", partial(_targets_chat, 0)),
            Case("random spans and padding", partial(_targets_random, 1)),
            Case("one row, one token of response at the end", lambda: (torch.tensor([[0, 5, 3, 2, 6]]),
                                                                        torch.tensor([[0, 0, 0, 0, 1]]).bool())),
            Case("random spans, longer rows", partial(_targets_random, 2, 8, 40)),
        ),
    ))
    names = ("loss", "chosen_rewards", "rejected_rewards", "d loss / d policy_chosen", "d loss / d policy_rejected")
    register_check(Check(
        name="dpo_loss",
        shortcuts=("minillm.finetune.dpo.dpo_loss",),
        summary="dpo_loss(pc, pr, rc, rr, beta) -> (mean loss, chosen_rewards, rejected_rewards) from sequence "
                "log-probs (B,) of the policy and the reference",
        hint="rewards = beta * (policy - ref) for chosen and rejected; loss = -F.logsigmoid(chosen_rewards - "
             "rejected_rewards).mean().",
        reference=_dpo_reference, runner=_dpo_runner, compare=_diagnosing(names, _DPO_MISTAKES, _dpo_runner),
        atol=1e-5, rtol=1e-4,
        cases=(
            Case("hand cases: policy = reference gives log 2; the sign of the margin; beta = 1", _dpo_hand),
            Case("8 random pairs, beta = 0.1", partial(_dpo_case, 0)),
            Case("beta = 0.5", partial(_dpo_case, 1, 16, 0.5)),
            Case("huge margins (beta * margin of +-400)", partial(_dpo_case, 2, 8, 1.0, 400.0),
                 "log(sigmoid(z)) underflows to -inf for very negative z: use F.logsigmoid(z)."),
            Case("one pair", partial(_dpo_case, 3, 1, 0.1)),
        ),
    ))
    register_check(Check(
        name="lora_forward",
        shortcuts=("minillm.finetune.peft.LoRALinear.forward",),
        summary="lora_forward(x, W, A, B, alpha, rank) -> x @ W.T + (alpha/rank) * x @ A.T @ B.T, (..., out)",
        hint="W is (out, in), A (rank, in), B (out, rank): F.linear(x, W) + (alpha / rank) * F.linear(F.linear(x, A), "
             "B).",
        reference=_lora_forward_reference, compare=diagnosing(_LORA_MISTAKES, _compare, same=_same), atol=1e-5, rtol=1e-4,
        cases=(
            Case("square: in = out = rank = 6, alpha 3 (order and transposes matter)",
                 partial(_lora_case, 1, 6, 6, 6, 3.0), grad=True),
            Case("in 12, out 10, rank 4, alpha 8 (scale 2)", partial(_lora_case, 0), grad=True),
            Case("rank 1, alpha 16 (scale 16)", partial(_lora_case, 2, 16, 8, 1, 16.0, (7,)), grad=True),
            Case("3-D input (batch, time, in), rank 8, alpha 8", partial(_lora_case, 3, 8, 8, 8, 8.0, (2, 3, 4))),
        ),
    ))
    register_check(Check(
        name="lora_merge",
        shortcuts=("minillm.finetune.peft.LoRALinear.merge", "minillm.finetune.peft.merge_lora"),
        summary="lora_merge(W, A, B, alpha, rank) -> W + (alpha/rank) * B @ A (out, in); the merged layer must "
                "give the unmerged layer's output",
        hint="Return a NEW tensor W + (alpha / rank) * (B @ A); do not modify W in place.",
        reference=_merge_reference, runner=_merge_runner,
        compare=_diagnosing(("merged weight", "merged layer's output (vs the unmerged LoRA layer)"), _MERGE_MISTAKES),
        atol=1e-5, rtol=1e-4,
        cases=(
            Case("square: in = out = rank = 6, alpha 3", lambda: _merge_args(1, 6, 6, 6, 3.0)),
            Case("in 12, out 10, rank 4, alpha 8", lambda: _merge_args(0)),
            Case("rank 1, alpha 16", lambda: _merge_args(2, 16, 8, 1, 16.0)),
            Case("wide input: in 20, out 6, rank 2, alpha 4", lambda: _merge_args(4, 20, 6, 2, 4.0)),
        ),
    ))


def _merge_args(seed: int, *args) -> tuple:
    """(W, A, B, alpha, rank, x): the LoRA case's tensors with x moved last (the student's merge never sees it)."""
    x, W, A, B, alpha, rank = _lora_case(seed, *args)
    return W, A, B, alpha, rank, x


_register_lab06()  # cheap: builds Check objects only
