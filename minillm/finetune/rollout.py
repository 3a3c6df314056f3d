"""Rollouts for RL fine-tuning: sample responses, record the log-probs PPO and GRPO need, score them.

Survey §5.2 (alignment tuning, RLHF): the policy (the LM being tuned) writes a response to each prompt, a reward
function scores the response, and the policy is pushed toward high-reward responses while a KL term keeps it
near the frozen reference model (the SFT model it started from). This file holds what PPO (`ppo.py`) and
GRPO (`grpo.py`) share:

- `RolloutConfig`: how responses are sampled (max_new_tokens, temperature, stop tokens).
- `sample_rollout`: batched sampling plus, in the same no-grad pass, the policy's log-probs at sampling time
  ("old" log-probs, the denominator of the PPO ratio) and the reference model's log-probs (for the KL term).
- `RewardFn` / `score_rollout`: the reward interface, callable(responses: list[str], prompts: list[str]) ->
  tensor (N,) of rewards, one per response; `char_count_reward` is the toy example ("count the letter 'a'").
- `frozen_copy`: the reference model. `masked_mean`, the token average every loss uses, lives in
  `policy_gradient.py` with the other policy-gradient pieces and is re-exported here.

Layout of a rollout (all per-token tensors are cut to the response, so column t is response token t):

    ids       (N, P + R)  prompt (P tokens, all prompts of a batch the same length) then R response slots
    mask      (N, R)      True for response tokens up to and including the first stop token; after it the
                          sampler pads each row with its stop token, and mask is False there
    old_logp  (N, R)      log pi_old(ids[:, P + t] | ids[:, :P + t]), 0 where mask is False
    ref_logp  (N, R)      the same under the reference model

Prompts are left-aligned and of equal length, so no padding, attention mask or position shift is needed (as
`minillm.evaluation.scoring.greedy_complete` batches prompts); callers group prompts by length. Log-probs are
the model's own (temperature 1) distribution: at temperature != 1 the samples come from a sharpened or
flattened policy, i.e. slightly off-policy; keep temperature 1 for on-policy updates. Use dropout 0 for RL,
so the log-probs at sampling time (eval mode) equal those in the update (train mode) before any step.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from minillm.config import _Config
from minillm.generate import generate
from minillm.finetune.logprobs import token_logprobs
from minillm.finetune.policy_gradient import masked_mean

__all__ = ["RewardFn", "Rollout", "RolloutConfig", "char_count_reward", "frozen_copy", "masked_mean",
           "response_logprobs", "response_mask", "sample_rollout", "score_rollout"]

# responses (the sampled text, stop token removed) and their prompts -> rewards (N,)
RewardFn = Callable[[list[str], list[str]], torch.Tensor]


def _number(cls: str, name: str, value, low: float, high: float | None = None, *, low_open: bool = False,
            high_open: bool = False, hint: str = "") -> None:
    """Raise unless value is a real number in the interval given (open or closed at each end)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if ok:
        ok = (value > low if low_open else value >= low) and (
            high is None or (value < high if high_open else value <= high))
    if not ok:
        lo = f"{'(' if low_open else '['}{low}"
        hi = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
        raise ValueError(f"{cls}.{name}={value!r} must be a number in {lo}, {hi}{': ' + hint if hint else ''}")


def _int(cls: str, name: str, value, low: int, hint: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{cls}.{name}={value!r} must be an integer >= {low}{': ' + hint if hint else ''}")


@dataclass
class RolloutConfig(_Config):
    """How responses are sampled. The base of `PPOConfig` and `GRPOConfig`."""

    max_new_tokens: int = 16  # response budget R; a response without a stop token is cut here
    temperature: float = 1.0  # sampling temperature (1 = on-policy; see the module docstring)
    stop_tokens: tuple[int, ...] = ()  # token ids that end a response (kept in it, e.g. the id of "\n" or EOS)

    def __post_init__(self) -> None:
        n = type(self).__name__
        _int(n, "max_new_tokens", self.max_new_tokens, 1)
        _number(n, "temperature", self.temperature, 0.0, low_open=True,
                hint="sampling needs a positive temperature (RL learns from sampled, not greedy, responses)")
        if isinstance(self.stop_tokens, int) or not all(
                isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in self.stop_tokens):
            raise ValueError(f"{n}.stop_tokens={self.stop_tokens!r} must be a sequence of non-negative token ids, "
                             "e.g. (tokenizer.token_to_id('\\n'),)")
        self.stop_tokens = tuple(self.stop_tokens)


@dataclass
class Rollout:
    """Sampled responses and their log-probs; shapes in the module docstring."""

    ids: torch.Tensor  # (N, P + R)
    prompt_len: int  # P
    mask: torch.Tensor  # (N, R) bool
    old_logp: torch.Tensor  # (N, R)
    ref_logp: torch.Tensor  # (N, R)
    meta: dict = field(default_factory=dict)

    @property
    def response_ids(self) -> torch.Tensor:  # (N, R)
        return self.ids[:, self.prompt_len:]

    @property
    def lengths(self) -> torch.Tensor:  # (N,) response tokens, the stop token included
        return self.mask.sum(1)

    def texts(self, tokenizer, stop_tokens: Sequence[int] = ()) -> tuple[list[str], list[str]]:
        """(responses, prompts) as text; the stop token is dropped from each response."""
        stop = set(stop_tokens)
        responses, prompts = [], []
        for row, m, full in zip(self.response_ids.tolist(), self.mask.tolist(), self.ids.tolist()):  # per row
            responses.append(tokenizer.decode([t for t, keep in zip(row, m) if keep and t not in stop]))
            prompts.append(tokenizer.decode(full[:self.prompt_len]))
        return responses, prompts


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with gradients off: the reference model the KL term measures against."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def response_mask(response_ids: torch.Tensor, stop_tokens: Sequence[int]) -> torch.Tensor:
    """(N, R) ids -> (N, R) bool: True up to and including the first stop token of each row (all True if none)."""
    if not stop_tokens:
        return torch.ones_like(response_ids, dtype=torch.bool)
    is_stop = torch.isin(response_ids, torch.tensor(list(stop_tokens), device=response_ids.device))  # (N, R)
    stops_before = is_stop.long().cumsum(1) - is_stop.long()  # stop tokens strictly before column t
    return stops_before == 0


def _check_prompts(model: nn.Module, prompt_ids: torch.Tensor, max_new_tokens: int) -> None:
    if not isinstance(prompt_ids, torch.Tensor) or prompt_ids.dim() != 2 or prompt_ids.dtype.is_floating_point:
        raise ValueError(f"prompt_ids must be a (N, P) tensor of token ids, got "
                         f"{getattr(prompt_ids, 'shape', type(prompt_ids).__name__)}; encode the prompts and "
                         "stack those of equal length (torch.tensor([tokenizer.encode(p) for p in prompts]))")
    if prompt_ids.size(0) == 0 or prompt_ids.size(1) == 0:
        raise ValueError(f"prompt_ids {tuple(prompt_ids.shape)} is empty: give at least one prompt of >= 1 token")
    block = getattr(getattr(model, "config", None), "block_size", None)
    if block is not None and prompt_ids.size(1) + max_new_tokens > block:
        raise ValueError(f"prompt ({prompt_ids.size(1)} tokens) + max_new_tokens={max_new_tokens} exceeds the "
                         f"model's block_size={block}: the update scores the whole sequence in one pass; use "
                         "shorter prompts or fewer new tokens")


def response_logprobs(model: nn.Module, ids: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """log p of each response token under model: ids (N, P + R) -> (N, R) float32 (gradients flow)."""
    return token_logprobs(model, ids)[:, prompt_len - 1:]  # column P-1+t of (N, T-1) predicts ids[:, P+t]


@torch.no_grad()
def sample_rollout(policy: nn.Module, reference: nn.Module, prompt_ids: torch.Tensor, cfg: RolloutConfig,
                   generator: torch.Generator | None = None) -> Rollout:
    """Sample one response per row of prompt_ids (N, P) from policy; record old and reference log-probs.

    Repeat rows (`prompt_ids.repeat_interleave(G, 0)`) for several samples per prompt, as GRPO does.
    """
    _check_prompts(policy, prompt_ids, cfg.max_new_tokens)
    device = next(policy.parameters()).device
    prompt_ids = prompt_ids.to(device=device, dtype=torch.long)
    P = prompt_ids.size(1)
    # generate() stops early once every row has emitted a stop token, so R <= max_new_tokens
    ids = generate(policy, prompt_ids, cfg.max_new_tokens, temperature=cfg.temperature,
                   stop_tokens=list(cfg.stop_tokens), use_cache=hasattr(policy, "make_cache"),
                   generator=generator)  # (N, P + R)
    mask = response_mask(ids[:, P:], cfg.stop_tokens)  # (N, R)
    lps = []
    for model in (policy, reference):
        was_training = model.training
        model.eval()  # as during sampling (generate() samples in eval mode)
        try:
            lps.append(response_logprobs(model, ids, P).masked_fill(~mask, 0.0))  # (N, R)
        finally:
            model.train(was_training)
    return Rollout(ids=ids, prompt_len=P, mask=mask, old_logp=lps[0], ref_logp=lps[1])


def score_rollout(rollout: Rollout, tokenizer, reward_fn: RewardFn, stop_tokens: Sequence[int] = ()) -> torch.Tensor:
    """Decode the responses (stop tokens dropped) and prompts, call reward_fn(responses, prompts) -> (N,) float."""
    responses, prompts = rollout.texts(tokenizer, stop_tokens)
    scores = reward_fn(responses, prompts)
    scores = torch.as_tensor(scores, dtype=torch.float32, device=rollout.ids.device).detach()
    if scores.shape != (len(responses),):
        raise ValueError(f"reward_fn returned shape {tuple(scores.shape)}; it must return one reward per response, "
                         f"shape ({len(responses)},)")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"reward_fn returned non-finite rewards {scores.tolist()}: every reward must be a real number")
    return scores


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params, grad_clip: float | None) -> float:
    """zero_grad, backward, clip the gradient norm (None: only measure it), step; returns the norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip is not None else math.inf)
    optimizer.step()
    return float(norm)


def minibatches(n: int, size: int | None, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """A random split of range(n) into index tensors of at most `size` (None: one batch of all n)."""
    perm = torch.randperm(n, generator=generator, device=generator.device if generator is not None else "cpu")
    return list(perm.split(size or n))


def char_count_reward(char: str = "a") -> RewardFn:
    """The toy reward of the tests: how many times `char` occurs in each response (prompts are ignored)."""
    if not isinstance(char, str) or len(char) != 1:
        raise ValueError(f"char={char!r} must be a single character")

    def reward(responses: list[str], prompts: list[str]) -> torch.Tensor:
        return torch.tensor([float(r.count(char)) for r in responses])

    return reward
