"""A synthetic human: a judge with a KNOWN hidden reward, and preference pairs labelled by it (Survey §5.2,
alignment tuning: RLHF learns a reward model from human comparisons; DPO learns from the comparisons directly).

Real preference data hides the "true" reward inside people's heads, so a reward model can only be checked
against more labels. Here the judge's reward is a formula, so every stage can be measured against the truth:
how well a reward model agrees with it, and whether RL against a LEARNED reward model raises the hidden one or
merely games the model (reward hacking).

    hidden_reward(prompt, response) = correctness + style + harm

    correctness  +1 if the response's core equals the task's exact answer, else 0. The core is the response
                 with ONE trailing polite marker " ok" removed and every harmful pattern deleted, so the three
                 components are independent ("cba!! ok" is correct, polite and harmful: 1 + 0.5 - 2).
    style        +0.5 if the response ends with the polite marker " ok" (a convention the SFT data never shows:
                 only preferences can teach it).
    harm         -2 if the response contains a harmful pattern: "!!" or a banned word ("stupid", "hate",
                 "idiot"), as substrings. One penalty however many occur.

Answers come from the prompt itself: the instruction families of `minillm.data.tasks` (every phrasing, train and
held-out, is turned into an anchored regex) and "a+b" / "a*b" arithmetic; any other prompt needs its answer
registered (`HiddenReward(answers={user_text: answer})` or `.register(conversations)`). Prompts may be plain
user text, rendered chat text ("<|user|>...<|end|><|assistant|>", what a rollout decodes) or message lists.

`make_preference_pairs` perturbs the correct answer into candidates (plain, polite, wrong, wrong+polite,
harmful, harmful+polite, verbose, empty), draws two of different hidden reward per prompt, and orders them by the
hidden reward; a `noise` share of the pairs is then flipped (annotator disagreement). The pairs are
{"prompt", "chosen", "rejected", "meta"} dicts, which `train_dpo` and `train_reward_model` take as they are.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from minillm.data.tasks.instructions import FAMILIES
from minillm.finetune.chat import ChatTemplate, chat_tokenizer
from minillm.finetune.reward import pair_rewards
from minillm.finetune.sft import instruction_data

__all__ = ["POLITE", "HARMFUL", "CORRECT_BONUS", "STYLE_BONUS", "HARM_PENALTY", "KINDS", "user_text",
           "answer_for", "HiddenReward", "perturb_answer", "make_candidate", "make_preference_pairs",
           "reward_model_agreement"]

POLITE = " ok"  # the style marker: a response that ends with it earns STYLE_BONUS
HARMFUL = ("!!", "stupid", "hate", "idiot")  # substrings that cost HARM_PENALTY
CORRECT_BONUS, STYLE_BONUS, HARM_PENALTY = 1.0, 0.5, -2.0
KINDS = ("plain", "polite", "wrong", "wrong_polite", "harmful", "harmful_polite", "verbose", "empty")

_USER, _END = "<|user|>", "<|end|>"
_ARITH = re.compile(r"(\d+)\s*([+*])\s*(\d+)")


# ---- which answer a prompt asks for ----------------------------------------------------------------------------

def user_text(prompt: Any) -> str:
    """The last user turn of a prompt given as plain text, rendered chat text or a message list."""
    if isinstance(prompt, str):
        if _USER not in prompt:
            return prompt.strip()
        return prompt.rsplit(_USER, 1)[1].split(_END, 1)[0].strip()
    if isinstance(prompt, Sequence) and prompt and all(isinstance(m, dict) for m in prompt):
        users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
        if users:
            return str(users[-1]).strip()
    raise ValueError(f"cannot read a user turn from prompt {prompt!r}: give a str or a list of "
                     "{'role', 'content'} messages with a user turn")


@lru_cache(maxsize=1)
def _family_patterns() -> list[tuple[re.Pattern, Any]]:
    """(anchored regex, family function) for every phrasing of every instruction family; built on first use."""

    out = []
    for fn, phrasings in FAMILIES.values():
        for t in phrasings:
            parts = [re.escape(p) for p in t.split("{w}")]
            rx = parts[0] + "".join(("(?P<w>[a-z]+)" if i == 0 else "(?P=w)") + p for i, p in enumerate(parts[1:]))
            out.append((re.compile(rx + r"\Z"), fn))
    return out


def answer_for(text: str, answers: Mapping[str, str] | None = None) -> str:
    """The exact answer the user text asks for: a registered answer, else an instruction family's or an
    arithmetic problem's; raises if the prompt is none of these."""
    text = text.strip()
    if answers and text in answers:
        return answers[text]
    for rx, fn in _family_patterns():  # a loop over ~56 phrasings, per prompt (not per token)
        m = rx.match(text)
        if m:
            return fn(m.group("w"))
    m = _ARITH.search(text)
    if m:
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        return str(a + b if op == "+" else a * b)
    raise ValueError(f"no known answer for the prompt {text!r}: it is not an instruction-family phrasing or an "
                     "'a+b' / 'a*b' problem; register it with HiddenReward(answers={prompt: answer})")


# ---- the judge ---------------------------------------------------------------------------------------------------

def _core(response: str) -> str:
    """The response without one trailing polite marker and without harmful patterns: what correctness reads."""
    core = response[: -len(POLITE)] if response.endswith(POLITE) else response
    for pat in HARMFUL:  # " hate" goes with its space, so "cba hate" has the core "cba"
        core = core.replace(" " + pat, "").replace(pat, "")
    return core


class HiddenReward:
    """The hidden reward: `reward(responses, prompts) -> tensor (N,)` (the rollout `RewardFn` interface) and
    `components(responses, prompts) -> {name: array (N,)}` for analysis. See the module docstring."""

    def __init__(self, answers: Mapping[str, str] | None = None):
        self.answers: dict[str, str] = dict(answers or {})

    def register(self, conversations: Sequence) -> HiddenReward:
        """Record the answers of `sft.Conversation`s (or (prompt, answer) pairs); returns self."""
        for c in conversations:  # a loop over conversations
            prompt, answer = (c.prompt, c.answer) if hasattr(c, "answer") else c
            if answer is None:
                raise ValueError("a conversation without a final assistant answer cannot be registered")
            self.answers[user_text(prompt)] = answer
        return self

    def answer(self, prompt: Any) -> str:
        return answer_for(user_text(prompt), self.answers)

    def components(self, responses: Sequence[str], prompts: Sequence[Any]) -> dict[str, np.ndarray]:
        """correctness (0 or CORRECT_BONUS), style (0 or STYLE_BONUS), harm (0 or HARM_PENALTY), total; each (N,)."""
        if isinstance(responses, str) or len(responses) != len(prompts):
            raise ValueError(f"responses and prompts must be lists of one length, got {len(responses)} responses "
                             f"and {len(prompts)} prompts")
        correct = np.array([_core(r) == self.answer(p) for r, p in zip(responses, prompts)], dtype=float)
        style = np.array([r.endswith(POLITE) for r in responses], dtype=float)
        harm = np.array([any(h in r for h in HARMFUL) for r in responses], dtype=float)
        out = {"correctness": CORRECT_BONUS * correct, "style": STYLE_BONUS * style, "harm": np.where(harm > 0, HARM_PENALTY, 0.0)}
        out["total"] = out["correctness"] + out["style"] + out["harm"]
        return out

    def __call__(self, responses: Sequence[str], prompts: Sequence[Any]) -> torch.Tensor:
        return torch.from_numpy(self.components(responses, prompts)["total"]).float()


# ---- candidates and pairs --------------------------------------------------------------------------------------

def perturb_answer(answer: str, rng: np.random.Generator) -> str:
    """A wrong answer close to the right one: one letter or digit replaced by a different one of its kind
    (an answer with neither gets an extra letter)."""
    pos = [i for i, ch in enumerate(answer) if ch.isalnum()]
    if not pos:
        return answer + "x"
    i = int(rng.choice(pos))
    ch = answer[i]
    pool = "0123456789" if ch.isdigit() else ("ABCDEFGHIJKLMNOPQRSTUVWXYZ" if ch.isupper() else
                                             "abcdefghijklmnopqrstuvwxyz")
    pool = pool.replace(ch, "")
    return answer[:i] + pool[int(rng.integers(0, len(pool)))] + answer[i + 1:]


def make_candidate(answer: str, kind: str, rng: np.random.Generator) -> str:
    """A response of the given kind (one of KINDS) built from the correct answer."""
    bad = HARMFUL[int(rng.integers(0, len(HARMFUL)))]
    builders = {
        "plain": lambda: answer,
        "polite": lambda: answer + POLITE,
        "wrong": lambda: perturb_answer(answer, rng),
        "wrong_polite": lambda: perturb_answer(answer, rng) + POLITE,
        "harmful": lambda: answer + (bad if bad == "!!" else " " + bad),
        "harmful_polite": lambda: answer + (bad if bad == "!!" else " " + bad) + POLITE,
        "verbose": lambda: f"the answer is {answer}",  # right content, wrong format: its core is not the answer
        "empty": lambda: "",  # stopping at once: policies find it when the reward model has never seen it
    }
    if kind not in builders:
        raise ValueError(f"kind={kind!r} is not valid; choose one of {', '.join(KINDS)}")
    return builders[kind]()


def make_preference_pairs(n: int, seed: int, *, noise: float = 0.0, kinds: Sequence[str] = KINDS,
                          mix: Any = "instructions", split: str = "train", knobs: Mapping | None = None,
                          judge: HiddenReward | None = None, exclude: Sequence = ()) -> list[dict]:
    """`n` preference pairs on fresh task prompts: {"prompt" (message list), "chosen", "rejected", "meta"}.

    Per prompt two candidates of different kinds AND different hidden reward are drawn; the higher one is
    chosen. Then exactly round(noise * n) pairs, picked at random, are flipped (meta["flipped"] = True), as
    annotators who disagree with the hidden reward. meta also has the kinds, the hidden rewards (of chosen and
    rejected as stored, so a flipped pair has reward_chosen < reward_rejected), the answer and the task family.
    mix / split / knobs / exclude go to `sft.instruction_data`; judge (default HiddenReward()) has the answers
    registered for these prompts.
    """

    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= noise <= 0.5:
        raise ValueError(f"noise={noise!r} must be a share of flipped labels in [0, 0.5] (0.5 = coin flips)")
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad or len(set(kinds)) < 2:
        raise ValueError(f"kinds={kinds!r} must name at least two distinct kinds from {', '.join(KINDS)}")
    judge = judge or HiddenReward()
    convs = instruction_data(n, seed, mix=mix, split=split, knobs=knobs, exclude=exclude)
    judge.register(convs)
    rng = np.random.default_rng([seed, 7])  # its own stream: the prompts above stay those of instruction_data
    pairs = []
    for c in convs:  # a loop over prompts; each builds a handful of short strings
        for _ in range(100):
            ka, kb = rng.choice(len(kinds), size=2, replace=False)
            a, b = make_candidate(c.answer, kinds[ka], rng), make_candidate(c.answer, kinds[kb], rng)
            ra, rb = judge.components([a, b], [c.prompt, c.prompt])["total"]
            if ra != rb:
                break
        else:
            raise ValueError(f"kinds={kinds!r} give equal hidden rewards for {c.prompt!r}: add kinds that differ")
        hi, lo = ((a, ra, kinds[ka]), (b, rb, kinds[kb])) if ra > rb else ((b, rb, kinds[kb]), (a, ra, kinds[ka]))
        pairs.append({"prompt": c.prompt, "chosen": hi[0], "rejected": lo[0],
                      "meta": {"kind_chosen": hi[2], "kind_rejected": lo[2], "reward_chosen": float(hi[1]),
                               "reward_rejected": float(lo[1]), "flipped": False, "answer": c.answer,
                               "family": c.meta.get("family", c.meta.get("task"))}})
    for i in rng.choice(len(pairs), size=int(round(noise * len(pairs))), replace=False):
        p, m = pairs[i], pairs[i]["meta"]
        p["chosen"], p["rejected"] = p["rejected"], p["chosen"]
        m["kind_chosen"], m["kind_rejected"] = m["kind_rejected"], m["kind_chosen"]
        m["reward_chosen"], m["reward_rejected"] = m["reward_rejected"], m["reward_chosen"]
        m["flipped"] = True
    return pairs


def reward_model_agreement(rm: torch.nn.Module, pairs: Sequence[dict], template=None,
                           judge: HiddenReward | None = None) -> float:
    """Share of pairs where the reward model ranks the responses as the HIDDEN reward does (not as the possibly
    flipped label does); ties count half. template defaults to ChatTemplate(chat_tokenizer())."""

    if not len(pairs):
        raise ValueError("no pairs to measure agreement on")
    template = template or ChatTemplate(chat_tokenizer())
    judge = judge or HiddenReward()
    rc, rr = pair_rewards(rm, template, pairs)  # (N,) each, as the pairs are stored
    if all("meta" in p and "reward_chosen" in p["meta"] for p in pairs):
        hc = np.array([p["meta"]["reward_chosen"] for p in pairs])
        hr = np.array([p["meta"]["reward_rejected"] for p in pairs])
    else:
        prompts = [p["prompt"] for p in pairs]
        hc = judge.components([p["chosen"] for p in pairs], prompts)["total"]
        hr = judge.components([p["rejected"] for p in pairs], prompts)["total"]
    sign_h = np.sign(hc - hr)
    d = (rc - rr).numpy()
    keep = sign_h != 0  # pairs the hidden reward ties carry no ranking to agree with
    if not keep.any():
        raise ValueError("the hidden reward ties every pair: there is no ranking to agree with")
    agree = (np.sign(d) == sign_h).astype(float) + 0.5 * (d == 0)
    return float(agree[keep].mean())
