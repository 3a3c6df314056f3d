"""RL with a verifiable reward: GRPO on two-digit addition (Survey §5.2; DeepSeekMath / DeepSeek-R1, Tülu 3's RLVR).

The alignment studies (studies_align.py) optimise a LEARNED reward model, which can be gamed. When the task has a
checkable answer, the reward can be a program instead: parse the response's final number and compare it with the
true sum. This study pretrains a small char GPT on "a+b=c" lines until it is right about half the time when it
samples, then runs GRPO (minillm.finetune.grpo) with `exact_match_reward(arithmetic_gold)` on training problems
and measures exact match on HELD-OUT problems (pairs never seen in pretraining) as it trains.

    cfg  = verifiable_config("laptop")
    base, tok, pairs = pretrain_adder(cfg)      # char GPT on "a+b=c" lines of the training pairs
    rows = grpo_addition(cfg)                   # step rows (reward, KL) and eval rows (held-out exact match)

Rows: {"kind": "step", step, reward, kl, response_len, zero_std_frac} for every GRPO step, and
{"kind": "eval", step, greedy_exact_match, sampled_exact_match, format_ok, n, examples} before GRPO (step 0) and
every `eval_every` steps. greedy = argmax decoding; sampled = temperature 1 (what GRPO trains on), `eval_samples`
draws per held-out problem; format_ok = share of sampled responses that are digits only (the verifier reads the
LAST number of a response, so a policy that learned to emit several numbers would show here).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import torch

from minillm.data.tokenizer import CharTokenizer
from minillm.finetune.grpo import GRPOConfig, grpo_step
from minillm.finetune.rollout import frozen_copy
from minillm.finetune.verifiable import arithmetic_gold, exact_match_reward
from minillm.generate import generate
from minillm.presets import by_size
from book.results import note
from book.runs import Run, train

__all__ = ["VerifiableConfig", "verifiable_config", "addition_pairs", "pretrain_adder", "addition_accuracy",
           "grpo_addition"]

ALPHABET = "0123456789+=\n"  # every character of the task: the char tokenizer's vocabulary
DIGITS_ONLY = re.compile(r"\d+")


@dataclass(frozen=True)
class VerifiableConfig:
    """Sizes of the study. `pretrain` is the base model's recipe (book.runs.Run)."""

    pretrain: Run
    n_lines: int = 60_000  # pretraining lines "a+b=c" drawn (with repetition) from the training pairs
    n_heldout: int = 500  # problems never seen in pretraining nor in GRPO: the evaluation set
    grpo_steps: int = 400
    prompts_per_step: int = 32
    group_size: int = 8
    lr: float = 3e-4
    beta: float = 0.04
    eval_every: int = 25
    eval_samples: int = 2  # sampled responses per held-out problem (sampled exact match is noisier than greedy)
    seed: int = 0

    def __post_init__(self) -> None:
        for k in ("n_lines", "n_heldout", "grpo_steps", "prompts_per_step", "group_size", "eval_every",
                  "eval_samples"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"VerifiableConfig.{k}={v!r} must be a positive int")
        if self.group_size < 2:
            raise ValueError(f"VerifiableConfig.group_size={self.group_size} must be >= 2 (GRPO's group baseline)")
        if not 0 < self.lr < 1 or self.beta < 0:
            raise ValueError(f"VerifiableConfig: lr={self.lr} must be in (0, 1) and beta={self.beta} >= 0")


def verifiable_config(size: str | None = None, **changes) -> VerifiableConfig:
    """The study's sizes per profile. laptop: a 0.1M-parameter GPT pretrained for 900 steps (half a minute on one
    CPU thread) sits in the middle of learning addition, right on about half of the held-out sums when greedy and
    a fifth when sampling (1200 steps would leave little to gain; 400 learn almost nothing); 400 GRPO steps of 32
    prompts x 8 samples take under a minute more. ci: seconds, a smoke run (the model learns little)."""
    run = by_size(ci=Run(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=16, steps=80, lr=3e-3,
                         warmup=0.05, seed=0, eval_windows=8),
                  laptop=Run(n_layer=2, n_head=4, n_embd=64, block_size=32, batch_size=32, steps=900, lr=3e-3,
                             warmup=0.05, seed=0, eval_windows=32),
                  gpu=Run(n_layer=2, n_head=4, n_embd=64, block_size=32, batch_size=32, steps=900, lr=3e-3,
                          warmup=0.05, seed=0, eval_windows=32), size=size)
    base = by_size(ci=dict(n_lines=4000, n_heldout=64, grpo_steps=6, prompts_per_step=8, group_size=4, eval_every=3,
                           eval_samples=1),
                   laptop={}, gpu=dict(grpo_steps=800), size=size)
    return replace(VerifiableConfig(pretrain=run, **base), **changes)


def addition_pairs(n_heldout: int, seed: int = 0) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """All 8100 two-digit pairs (a, b), shuffled with `seed`: (training pairs, the first n_heldout held out)."""
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    order = np.random.default_rng([seed, 21]).permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    if not 0 < n_heldout < len(pairs):
        raise ValueError(f"n_heldout={n_heldout} must be in [1, {len(pairs) - 1}]")
    return pairs[n_heldout:], pairs[:n_heldout]


def _prompts(tok: CharTokenizer, pairs) -> torch.Tensor:
    """(N, 7) ids of "\\na+b=": every prompt has the same length, so they stack (what grpo_step needs)."""
    return torch.tensor([tok.encode(f"\n{a}+{b}=") for a, b in pairs])


def pretrain_adder(cfg: VerifiableConfig):
    """A char GPT trained on cfg.n_lines lines "a+b=c" of the training pairs -> (model, tokenizer, (train, held))."""
    train_pairs, held = addition_pairs(cfg.n_heldout, cfg.seed)
    rng = np.random.default_rng([cfg.seed, 22])
    text = "\n".join(f"{a}+{b}={a + b}" for a, b in (train_pairs[i] for i in rng.integers(0, len(train_pairs),
                                                                                             cfg.n_lines)))
    tok = CharTokenizer(ALPHABET)
    out = train(cfg.pretrain, text, tokenizer=tok)
    return out.model.eval(), tok, (train_pairs, held)


@torch.no_grad()
def addition_accuracy(model, tok: CharTokenizer, pairs, *, temperature: float = 0.0, samples: int = 1,
                generator: torch.Generator | None = None) -> dict:
    """Exact match of the model's answer to "a+b=" over `pairs`: greedy (temperature 0) or sampled (`samples`
    draws each). Returns {"exact_match", "format_ok", "n", "examples"} (the first 4 prompts and responses)."""
    nl = tok.encode("\n")[0]
    ids = _prompts(tok, pairs).repeat_interleave(samples, 0)  # (N * samples, 7)
    out = generate(model, ids, max_new_tokens=4, temperature=temperature, stop_tokens=[nl], generator=generator)
    responses = [tok.decode(r).split("\n")[0] for r in out[:, ids.size(1):].tolist()]
    golds = [str(a + b) for a, b in pairs for _ in range(samples)]
    right = np.array([r == g for r, g in zip(responses, golds)])
    fmt = np.array([bool(DIGITS_ONLY.fullmatch(r)) for r in responses])
    examples = [(f"{a}+{b}=", r) for (a, b), r in zip(pairs[:4], responses[::samples][:4])]
    return {"exact_match": float(right.mean()), "format_ok": float(fmt.mean()), "n": len(responses),
            "examples": examples}


def _eval_row(step: int, model, tok, held, cfg: VerifiableConfig) -> dict:
    model.eval()
    g = torch.Generator().manual_seed(cfg.seed + 7)  # the same draws at every evaluation: curves differ by model
    greedy = addition_accuracy(model, tok, held)
    sampled = addition_accuracy(model, tok, held, temperature=1.0, samples=cfg.eval_samples, generator=g)
    return {"kind": "eval", "step": step, "greedy_exact_match": greedy["exact_match"],
            "sampled_exact_match": sampled["exact_match"], "format_ok": sampled["format_ok"], "n": len(held),
            "n_sampled": sampled["n"], "examples": greedy["examples"]}


def grpo_addition(cfg: VerifiableConfig | None = None, *, size: str | None = None, base=None) -> list[dict]:
    """Pretrain (or take `base` = (model, tokenizer, (train, held)) from `pretrain_adder`), then GRPO with the
    verifiable exact-match reward; returns step and eval rows (module docstring). The base is not modified."""
    cfg = verifiable_config(size) if cfg is None else cfg
    model, tok, (train_pairs, held) = pretrain_adder(cfg) if base is None else base
    policy, reference = frozen_copy(model), frozen_copy(model)
    for p in policy.parameters():  # frozen_copy freezes; the policy is the one model that trains
        p.requires_grad_(True)
    reward = exact_match_reward(arithmetic_gold)  # parse the response's final number, compare with the true sum
    rl = GRPOConfig(max_new_tokens=4, stop_tokens=(tok.encode("\n")[0],), group_size=cfg.group_size, beta=cfg.beta)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 23])
    note(study="grpo_addition", pretrain_lines=cfg.n_lines, heldout=cfg.n_heldout, grpo_steps=cfg.grpo_steps,
         prompts_per_step=cfg.prompts_per_step, group_size=cfg.group_size, grpo_lr=cfg.lr, beta=cfg.beta,
         eval_samples=cfg.eval_samples, reward="exact_match_reward(arithmetic_gold), parse_number")
    rows = [_eval_row(0, policy, tok, held, cfg)]
    for step in range(1, cfg.grpo_steps + 1):
        batch = [train_pairs[i] for i in rng.integers(0, len(train_pairs), cfg.prompts_per_step)]
        st = grpo_step(policy, reference, opt, _prompts(tok, batch), tok, reward, rl, gen)
        rows.append({"kind": "step", "step": step, "reward": st["score"], "kl": st["kl"],
                     "response_len": st["response_len"], "zero_std_frac": st["zero_std_frac"]})
        if step % cfg.eval_every == 0 or step == cfg.grpo_steps:
            rows.append(_eval_row(step, policy, tok, held, cfg))
    return rows
