"""Verifiable rewards for RL fine-tuning: the reward is a check of the answer, not a learned model. Survey §5.2
(alignment tuning with RL), as in DeepSeek-R1's rule-based accuracy and format rewards and Tülu 3's RLVR:
where a task has a checkable answer (arithmetic, math word problems, multiple choice), the reward can be exact
and cannot be gamed the way a reward model can, so no reward model is trained.

Every builder returns a `minillm.finetune.rollout.RewardFn`: callable(responses: list[str], prompts: list[str])
-> torch.Tensor (N,) float32, one reward per response, ready for `grpo_step` / `ppo_step`.

- `exact_match_reward(gold, parse)`: `correct` where parse(response) equals parse(gold answer of its prompt),
  `wrong` where it differs, `unparsed` where the response holds no answer. `parse` defaults to
  `minillm.evaluation.answers.parse_number` (the final number, canonical: "18", "18.0" and "#### 18" agree);
  for multiple choice pass e.g. ``lambda t: parse_choice(t, 4)``.
- `format_reward(pattern)`: `reward` where the response matches a regex (whole response by default), e.g.
  r"-?\\d+" for "answers with only a number" (responses from `Rollout.texts` have their stop token removed).
- `combine_rewards((fn, weight), ...)`: the weighted sum, e.g. accuracy plus a small format bonus.
- `arithmetic_gold(prompt)`: the exact value of the prompt's final "a+b=" / "a-b=" / "a*b=" (integers), a gold
  for `exact_match_reward` on any arithmetic prompt set without storing answers.

A GRPO run on arithmetic with a verifiable reward:

    reward_fn = combine_rewards((exact_match_reward(arithmetic_gold), 1.0), (format_reward(r"-?\\d+"), 0.1))
    stats = grpo_step(policy, reference, opt, prompt_ids, tokenizer, reward_fn, cfg)
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

import torch

from minillm.evaluation.answers import parse_number
from minillm.finetune.rollout import RewardFn

__all__ = ["arithmetic_gold", "combine_rewards", "exact_match_reward", "format_reward"]

# "a op b =" at the very end of the prompt (spaces allowed; a trailing "[" opens written working, as in
# minillm.data.tasks' chain-of-thought prompts). The first operand must not follow a digit, operator or
# bracket, so "15-4+5=" (a longer expression) is not read as 4+5.
_EXPR = re.compile(r"(?<![\d)+\-*/.])(-?\d+)[^\S\n]*([+\-*])[^\S\n]*(-?\d+)[^\S\n]*=[^\S\n]*\[?\s*$", re.ASCII)


def _real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number")
    return float(value)


def _check_batch(responses, prompts) -> None:
    for name, xs in (("responses", responses), ("prompts", prompts)):
        if isinstance(xs, str) or not all(isinstance(x, str) for x in xs):
            raise TypeError(f"{name} must be a list of str (one per rollout row), got {type(xs).__name__}")
    if len(responses) != len(prompts):
        raise ValueError(f"{len(responses)} responses for {len(prompts)} prompts; give each response its prompt")


def exact_match_reward(gold: Mapping[str, str | int] | Callable[[str], str | int | None],
                       parse: Callable[[str], str | None] = parse_number, *, correct: float = 1.0,
                       wrong: float = 0.0, unparsed: float = 0.0) -> RewardFn:
    """A reward of `correct` / `wrong` / `unparsed` per response: parse(response) == parse(gold), != , or None.

    `gold` maps each prompt to its answer (a Mapping, or a callable such as `arithmetic_gold`). The gold goes
    through the same `parse`, so "18", "18.0" and "#### 18" are one gold. A prompt without a gold, or whose gold
    does not parse, raises ValueError naming the prompt: a reward must never silently score 0 for a data bug."""
    if not (isinstance(gold, Mapping) or callable(gold)):
        raise TypeError(f"gold must be a Mapping prompt -> answer or a callable prompt -> answer, "
                        f"got {type(gold).__name__}")
    if not callable(parse):
        raise TypeError(f"parse must be a callable text -> answer | None, got {type(parse).__name__}")
    values = (_real("correct", correct), _real("wrong", wrong), _real("unparsed", unparsed))

    def gold_of(prompt: str) -> str:
        if isinstance(gold, Mapping):
            if prompt not in gold:
                raise ValueError(f"no gold answer for prompt {prompt!r}: add it to the gold mapping "
                                 f"({len(gold)} prompts), or pass a callable prompt -> answer")
            g = gold[prompt]
        else:
            g = gold(prompt)
            if g is None:
                raise ValueError(f"the gold function {getattr(gold, '__name__', gold)!r} gave no answer for "
                                 f"prompt {prompt!r}; only prompts it can answer may be trained on")
        if isinstance(g, bool) or not isinstance(g, (str, int)):
            raise TypeError(f"the gold answer of prompt {prompt!r} must be a str or int, got {type(g).__name__}")
        parsed = parse(str(g))
        if parsed is None:
            raise ValueError(f"the gold answer {g!r} of prompt {prompt!r} does not parse with "
                             f"{getattr(parse, '__name__', parse)!r}; "
                             "fix the gold or pass the parse that reads it")
        return parsed

    def reward(responses: list[str], prompts: list[str]) -> torch.Tensor:
        _check_batch(responses, prompts)
        out = []
        for r, p in zip(responses, prompts):
            g, pred = gold_of(p), parse(r)
            out.append(values[2] if pred is None else values[0] if pred == g else values[1])
        return torch.tensor(out, dtype=torch.float32)  # (N,)

    return reward


def format_reward(pattern: str | re.Pattern, *, full: bool = True, reward: float = 1.0) -> RewardFn:
    """`reward` for each response the regex matches, else 0: the whole response with full=True (re.fullmatch),
    anywhere in it with full=False (re.search). E.g. format_reward(r"-?\\d+") rewards answering with a number
    only; format_reward(r"<think>.*</think>", full=False) rewards showing a reasoning block."""
    if isinstance(pattern, str):
        try:
            pattern = re.compile(pattern, re.DOTALL)
        except re.error as e:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {e}") from None
    elif not isinstance(pattern, re.Pattern):
        raise TypeError(f"pattern must be a str or a compiled re.Pattern, got {type(pattern).__name__}")
    if not isinstance(full, bool):
        raise TypeError(f"full={full!r} must be True (match the whole response) or False (search in it)")
    value = _real("reward", reward)
    match = pattern.fullmatch if full else pattern.search

    def fn(responses: list[str], prompts: list[str]) -> torch.Tensor:
        _check_batch(responses, prompts)
        return torch.tensor([value if match(r) else 0.0 for r in responses], dtype=torch.float32)  # (N,)

    return fn


def combine_rewards(*weighted: tuple[RewardFn, float]) -> RewardFn:
    """sum_k weight_k * fn_k(responses, prompts), shape (N,) float32, from (fn, weight) pairs."""
    if not weighted:
        raise ValueError("combine_rewards needs at least one (reward_fn, weight) pair")
    pairs = []
    for i, pair in enumerate(weighted):
        if not (isinstance(pair, tuple) and len(pair) == 2 and callable(pair[0])):
            raise TypeError(f"argument {i} must be a (reward_fn, weight) pair, got {pair!r}")
        pairs.append((pair[0], _real(f"weight of pair {i}", pair[1])))

    def fn(responses: list[str], prompts: list[str]) -> torch.Tensor:
        _check_batch(responses, prompts)
        total = torch.zeros(len(responses), dtype=torch.float32)  # (N,)
        for i, (f, w) in enumerate(pairs):
            r = torch.as_tensor(f(responses, prompts), dtype=torch.float32).cpu()
            if r.shape != total.shape:
                raise ValueError(f"reward function {i} ({getattr(f, '__name__', f)!r}) returned shape "
                                 f"{tuple(r.shape)}; every reward must be one value per response, ({len(responses)},)")
            total += w * r
        return total

    return fn


def arithmetic_gold(prompt: str) -> str | None:
    """The exact integer value of the expression "a+b=", "a-b=" or "a*b=" that ends `prompt` (spaces and a
    trailing "[" allowed: "12+3=15\\n4 * 5 =" -> "20", "37+48=[" -> "85"), None if the prompt ends otherwise
    (no "=", a longer expression "1+2+3=", division). Operands may be negative: "-3+4=" -> "1"."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    m = _EXPR.search(prompt)
    if m is None:
        return None
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    return str(a + b if op == "+" else a - b if op == "-" else a * b)
