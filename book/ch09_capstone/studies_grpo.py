"""Section 5 of the capstone: RL with a verifiable reward, GRPO on form adherence, and what reward hacking looks
like when the reward checks only the shape of a poem.

Survey §5.2 (alignment tuning: RL from a reward, a KL penalty to the reference model) with a reward that is a
program (`poems.form_reward`: 1 when the response has exactly the line count and characters per line its prompt
asks for; no rhyme table ships, so form only). GRPO (`minillm.finetune.grpo`) samples `group_size` poems per
training title, scores them, and pushes the policy toward the better ones of each group, with beta times a k3 KL
to the frozen SFT model (`frozen_copy`) in the loss.

    cfg = grpo_poet_config("laptop")
    res = grpo_poet(sft_model, tok, corpus, cfg)          # res.rows: step rows and eval rows
    hack = reward_hacking(sft_model, tok, corpus, cfg)    # the same loop with the shaped reward and beta = 0

Rows: {"kind": "step", step, reward (what is optimised), follows (share of the rollouts that follow the form:
the binary reward whatever is optimised), kl, response_len (tokens, the stop token included), distinct_ratio,
unique_share (distinct responses / responses of the step), memorised_share (rollouts that are a training poem
verbatim), zero_std_frac} every step, and {"kind": "eval", step, adherence (greedy), sampled_adherence, by_form,
sampled_by_form, distinct_ratio and unique_share (sampled), greedy_distinct_ratio, greedy_unique_share,
heldout_loss} on held-out titles before (step 0), every cfg.eval_every steps and at the end.

Reward hacking: the reward is blind to content, so anything of the right shape scores 1: the same line four
times, one poem for every title, junk characters in the right counts. With the KL term the policy stays near the
SFT model, whose poems are poems; `reward_hacking` removes it (beta = 0), optimises the denser shaped reward
(`form_reward(shaped=True)`: half for the line count, half for the lines of the right length) at a higher lr, and
the rows measure what changed (distinct_ratio, unique_share, memorised_share, held-out loss) rather than assume it.

Measured at laptop (seed 0; the SFT model of studies_poet's docstring; 128 held-out prompts; 4.6 minutes of
GRPO steps per 60-step run, 6.4 with its evaluations, on a machine shared with 3 other jobs; about 1.5 minutes
on 2 idle cores by FLOP count):

                              greedy  sampled  KL(k3)  held-out loss  greedy distinct  greedy unique
    SFT                        0.97    0.89     -        5.12           0.55            0.82
    GRPO (beta .04, lr 1e-4)   0.98    0.91    0.03      5.15           0.54            0.80
    hacking (shaped, beta 0,   0.97    0.93    0.6       5.58           0.39            0.79
             lr 3e-4)

The rollouts' reward rose from 0.60 to ~0.75 (temperature 1) in 60 steps of GRPO, with the KL flat at ~0.03.
Without the KL term the policy drifts far (KL 0.6, the true poems' loss up 0.46 nats) while the held-out
adherence gains nothing more: the greedy poems turn into function-word soup of the right length ("一見有有有處去，
不是是是是人人"), the distinct-character ratio falls from 0.55 to 0.39, and the shaped reward reads 0.95 while
only 0.75 of the rollouts follow the form (it pays for lines of the right length in a poem of the wrong length).
The binary reward with beta = 0 drifted the same way (KL 0.5, loss +0.41, greedy adherence down to 0.89), so the
KL term, not the shaping, is what holds the policy. Pushing the KL-regularised run harder (lr 2e-4, 100 steps,
256 prompts) raised sampled adherence from 0.88 to 0.96 at step 50 but collapsed the greedy answers onto one
poem per form: at step 100 one 七言絕句 answered 42 of the 64 七言絕句 titles (greedy unique share 0.72 -> 0.34).
Rollouts never repeated a training poem verbatim (memorised_share 0 throughout): the hack is a generic poem, not
a memorised one.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn as nn

from minillm.device import resolve_device
from minillm.finetune.chat import ChatTemplate
from minillm.finetune.grpo import GRPOConfig, grpo_step
from minillm.finetune.rollout import RewardFn, frozen_copy
from minillm.presets import by_size
from book.ch09_capstone.studies_poems import distinct_ratio, follows_form, form_of_prompt, form_reward, instruction_pairs
from book.ch09_capstone.studies_poet import (PoetConfig, form_eval, heldout_eval_pairs, leaving_room, pair_messages,
                                             poet_config, stop_ids)
from book.results import note

__all__ = ["GRPOPoetConfig", "grpo_poet_config", "GRPOResult", "prompt_buckets", "draw_prompts", "grpo_poet",
           "reward_hacking", "eval_row"]


@dataclass(frozen=True)
class GRPOPoetConfig:
    """Sizes of the GRPO study (one per size profile: `grpo_poet_config`); `evaluation` sets the held-out
    evaluation (prompts, decoding) exactly as for SFT."""

    steps: int = 60
    prompts_per_step: int = 4  # titles per step (of one prompt length: grpo_step stacks prompts unpadded)
    group_size: int = 8  # poems sampled per title
    lr: float = 1e-4
    beta: float = 0.04  # the k3 KL weight (DeepSeekMath's value)
    temperature: float = 1.0  # rollout sampling: 1 = on-policy (see minillm.finetune.rollout)
    max_new_tokens: int = 100
    shaped: bool = False  # the main run optimises the binary form reward
    eval_every: int = 20
    hack_steps: int = 60  # the reward-hacking run: steps, lr, beta and reward
    hack_lr: float = 3e-4
    hack_beta: float = 0.0
    hack_shaped: bool = True
    evaluation: PoetConfig = field(default_factory=PoetConfig)
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        n = type(self).__name__
        for k in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "eval_every", "hack_steps"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{n}.{k}={v!r} must be a positive int")
        if self.group_size < 2:
            raise ValueError(f"{n}.group_size={self.group_size} must be >= 2: GRPO's baseline is the group mean")
        for k in ("lr", "hack_lr"):
            if not 0 < getattr(self, k) < 1:
                raise ValueError(f"{n}.{k}={getattr(self, k)!r} must be in (0, 1)")
        if self.beta < 0 or self.hack_beta < 0:
            raise ValueError(f"{n}: beta={self.beta} and hack_beta={self.hack_beta} must be >= 0 (0 = no KL term)")
        if not self.temperature > 0:
            raise ValueError(f"{n}.temperature={self.temperature!r} must be > 0 (RL learns from samples)")
        if not isinstance(self.evaluation, PoetConfig):
            raise TypeError(f"{n}.evaluation must be a PoetConfig (studies_poet.poet_config(size)), got "
                            f"{type(self.evaluation).__name__}")


def grpo_poet_config(size: str | None = None, **changes) -> GRPOPoetConfig:
    """laptop: 60 steps of 4 titles x 8 poems at lr 1e-4, beta 0.04 (about 1.5 minutes on 2 idle cores for the
    1.3M-parameter poet, see the module docstring), evaluated on 128 held-out prompts at steps 0, 20, 40, 60; the
    hacking run 60 steps more. ci: seconds, mechanics only. gpu: unmeasured (written for the 10-30M base)."""
    base = by_size(ci=dict(steps=3, prompts_per_step=2, group_size=4, max_new_tokens=24, eval_every=3, hack_steps=2),
                   laptop={},
                   gpu=dict(steps=300, prompts_per_step=16, group_size=16, eval_every=50, hack_steps=200,
                            device="auto"), size=size)
    return GRPOPoetConfig(**{"evaluation": poet_config(size), **base, **changes})


@dataclass
class GRPOResult:
    """What `grpo_poet` returns: the tuned policy, its rows, and the full evaluations before and after."""

    model: nn.Module
    rows: list[dict]  # step rows and eval rows (module docstring)
    before: dict  # form_eval of the SFT model (samples before)
    after: dict  # form_eval of the policy (samples after)
    seconds: float  # wall time of the GRPO steps (evaluations excluded)
    meta: dict = field(default_factory=dict)


def prompt_buckets(template: ChatTemplate, pairs: Sequence[dict]) -> dict[int, list[int]]:
    """{prompt length in tokens: indices of the pairs whose chat prompt has that length}."""
    out: dict[int, list[int]] = {}
    for i, p in enumerate(pairs):  # a loop over pairs: each prompt is rendered once
        out.setdefault(len(template.prompt_ids(pair_messages(p, with_response=False))), []).append(i)
    return out


def draw_prompts(rng: np.random.Generator, buckets: dict[int, list[int]], k: int) -> list[int]:
    """k pair indices of one prompt length: a length drawn in proportion to how many pairs have it, then k of its
    pairs (without replacement when it has k, else with)."""
    lengths = sorted(buckets)
    sizes = np.array([len(buckets[n]) for n in lengths], dtype=float)
    pool = buckets[lengths[int(rng.choice(len(lengths), p=sizes / sizes.sum()))]]
    return [pool[i] for i in rng.choice(len(pool), size=k, replace=len(pool) < k)]


class _Watched:
    """A reward function that keeps the last batch it scored, so a step row can say what the policy wrote."""

    def __init__(self, fn):
        self.fn, self.responses, self.prompts = fn, [], []

    def __call__(self, responses: list[str], prompts: list[str]) -> torch.Tensor:
        self.responses, self.prompts = list(responses), list(prompts)
        return self.fn(responses, prompts)


def eval_row(step: int, ev: dict) -> dict:
    """The plotted numbers of one `form_eval` (responses and samples left out)."""
    g, s = ev["greedy"], ev["sampled"]
    return {"kind": "eval", "step": step, "adherence": g["adherence"], "sampled_adherence": s["adherence"],
            "by_form": g["by_form"], "sampled_by_form": s["by_form"], "distinct_ratio": s["distinct_ratio"],
            "greedy_distinct_ratio": g["distinct_ratio"], "unique_share": s["unique_share"],
            "greedy_unique_share": g["unique_share"], "heldout_loss": ev["heldout_loss"]}


def grpo_poet(sft_model: nn.Module, tok, corpus, cfg: GRPOPoetConfig | None = None, *, shaped: bool | None = None,
              beta: float | None = None, lr: float | None = None, steps: int | None = None,
              reward_fn: RewardFn | None = None) -> GRPOResult:
    """GRPO on the form reward from `sft_model` (the policy starts as a copy of it; a frozen copy is the KL
    reference; `sft_model` itself is unchanged). shaped / beta / lr / steps override cfg's (the hacking run);
    reward_fn replaces `form_reward(shaped)` (another verifiable reward, or a test's), with the same signature."""
    cfg = grpo_poet_config() if cfg is None else cfg
    shaped = cfg.shaped if shaped is None else shaped
    beta = cfg.beta if beta is None else beta
    lr = cfg.lr if lr is None else lr
    steps = cfg.steps if steps is None else steps
    device = resolve_device(cfg.device)
    template = ChatTemplate(tok)
    block = sft_model.config.block_size
    ecfg = cfg.evaluation
    eval_pairs, loss_pairs = heldout_eval_pairs(corpus, template, block, ecfg)
    # a prompt must leave room for the whole response budget: the update scores prompt + response in one pass
    train_pairs = leaving_room(instruction_pairs(corpus.poems_train), template, block, cfg.max_new_tokens)
    if not train_pairs:
        raise ValueError(f"no training prompt leaves room for max_new_tokens={cfg.max_new_tokens} within "
                         f"block_size={block}: lower max_new_tokens")
    buckets = prompt_buckets(template, train_pairs)
    memorised = {p.text for p in corpus.poems_train}
    reference = frozen_copy(sft_model).to(device)
    policy = frozen_copy(sft_model).to(device)
    for p in policy.parameters():  # frozen_copy freezes; the policy is the one model that trains
        p.requires_grad_(True)
    reward = _Watched(form_reward(shaped=shaped) if reward_fn is None else reward_fn)
    rl = GRPOConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, stop_tokens=tuple(stop_ids(tok)),
                    group_size=cfg.group_size, beta=beta)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, 92])
    reward_name = "form_reward" if reward_fn is None else getattr(reward_fn, "__name__", "custom")
    note(study="grpo_poet", steps=steps, prompts_per_step=cfg.prompts_per_step, group_size=cfg.group_size, lr=lr,
         beta=beta, shaped=shaped, reward=reward_name, temperature=cfg.temperature,
         max_new_tokens=cfg.max_new_tokens, train_prompts=len(train_pairs), n_eval=len(eval_pairs), seed=cfg.seed)
    before = form_eval(policy, tok, eval_pairs, ecfg, loss_pairs=loss_pairs)
    rows = [eval_row(0, before)]
    seconds, ev = 0.0, before
    for step in range(1, steps + 1):
        batch = draw_prompts(rng, buckets, cfg.prompts_per_step)
        ids = torch.tensor(np.stack([template.prompt_ids(pair_messages(train_pairs[i], False)) for i in batch]))
        t0 = time.perf_counter()
        st = grpo_step(policy, reference, opt, ids.to(device), tok, reward, rl, gen)  # (B, P) prompts
        seconds += time.perf_counter() - t0
        rs, forms = reward.responses, [form_of_prompt(p) for p in reward.prompts]
        rows.append({"kind": "step", "step": step, "reward": st["score"],
                     "follows": float(np.mean([follows_form(r, f) for r, f in zip(rs, forms)])), "kl": st["kl"],
                     "response_len": st["response_len"],
                     "distinct_ratio": float(np.mean([distinct_ratio(r) for r in rs])),
                     "unique_share": len(set(rs)) / len(rs),
                     "memorised_share": float(np.mean([r in memorised for r in rs])),
                     "zero_std_frac": st["zero_std_frac"]})
        if step % cfg.eval_every == 0 or step == steps:
            policy.eval()
            ev = form_eval(policy, tok, eval_pairs, ecfg, loss_pairs=loss_pairs)
            rows.append(eval_row(step, ev))
    policy.eval()
    return GRPOResult(model=policy, rows=rows, before=before, after=ev, seconds=seconds,
                      meta={"shaped": shaped, "beta": beta, "lr": lr, "steps": steps, "train_prompts": len(train_pairs),
                            "reward": reward_name})


def reward_hacking(sft_model: nn.Module, tok, corpus, cfg: GRPOPoetConfig | None = None) -> GRPOResult:
    """The same GRPO loop with the exploit's settings (cfg.hack_*: by default the shaped reward, no KL term, a
    higher lr) for cfg.hack_steps steps: compare its step rows' distinct_ratio / unique_share / memorised_share
    and its held-out evaluation with `grpo_poet`'s."""
    cfg = grpo_poet_config() if cfg is None else cfg
    return grpo_poet(sft_model, tok, corpus, replace(cfg, eval_every=cfg.hack_steps), shaped=cfg.hack_shaped,
                     beta=cfg.hack_beta, lr=cfg.hack_lr, steps=cfg.hack_steps)
