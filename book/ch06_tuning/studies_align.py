"""Alignment studies on a synthetic judge with a known reward (Survey §5.2: RLHF = SFT -> reward model -> PPO;
DPO as the RL-free alternative). Each function returns plain-dict rows for the chapter's tables and plots.

    setup = prepare_alignment(seed=0)            # SFT model, reward model (learned from judged pairs), prompts
    rows  = sft_then_align(setup=setup)          # sft / dpo / grpo (/ ppo) rows, each judged by the HIDDEN reward
    rows  = kl_sweep(betas=(0.0, 0.1), setup=setup)   # reward hacking: learned reward up, hidden reward down at 0

The pipeline: a tiny GPT is SFT-ed on instruction conversations whose answers are plain and, for a share
`harm_rate` of them, end in the harmful "!!" (noisy web-like data); so the SFT model is correct-ish, never
polite and sometimes harmful. A reward model (from the SFT model) learns the judge's preferences from pairs
labelled by `preferences.HiddenReward` (with label noise); DPO learns from the same pairs; GRPO / PPO maximise
the LEARNED reward under a KL penalty to the SFT model. Every policy is measured on held-out phrasings by the
hidden reward (and its components), exact-match accuracy (the correctness component: the core equals the
answer), the learned reward, and the KL to the SFT reference (mean over sampled responses of the summed
log pi - log pi_ref). Sizes come from `minillm.presets.by_size` (ci: seconds each).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from minillm.config import TrainConfig
from minillm.presets import by_size, model_preset
from minillm.finetune.chat import END, ChatTemplate, chat_tokenizer
from minillm.finetune.preferences import HARMFUL, HiddenReward, make_preference_pairs, reward_model_agreement, user_text
from book.results import note
from book.runs import Run, train

__all__ = ["AlignSetup", "prepare_alignment", "learned_reward_fn", "evaluate_policy", "run_rl", "sft_then_align",
           "kl_sweep"]

FAMILIES = ("first", "last", "upper")  # short answers a tiny model learns in seconds
# laptop (one CPU core, ~10 min for the whole study): two families a 0.8M model learns in a few hundred steps
# ("upper" needs far more); evaluation there is on unseen words in the training phrasings (see prepare_alignment).
LAPTOP_FAMILIES = ("first", "last")


@dataclass
class AlignSetup:
    """What every alignment method starts from (built once by `prepare_alignment`, shared by the studies)."""

    template: ChatTemplate
    sft: torch.nn.Module
    rm: torch.nn.Module
    judge: HiddenReward
    pairs: list[dict]
    eval_convs: list
    train_convs: list
    max_new_tokens: int
    seed: int
    info: dict = field(default_factory=dict)


def _run(steps: int, lr: float, seed: int) -> Run:
    """Every alignment phase's recipe (book.runs.Run): 16 rows per step, warmup 10% of the steps, cosine to lr/10."""
    return Run(steps=steps, batch_size=16, lr=lr, warmup=0.1, seed=seed)


def _tcfg(steps: int, lr: float, seed: int) -> TrainConfig:
    """_run's TrainConfig for the phases `book.runs.train` does not drive (reward model, DPO): one history row."""
    return _run(steps, lr, seed).train_config(log_interval=steps)


def prepare_alignment(model: torch.nn.Module | None = None, *, seed: int = 0, size: str | None = None,
                      families: tuple[str, ...] | None = None, harm_rate: float = 0.2, noise: float = 0.1,
                      sft_steps: int | None = None, rm_steps: int | None = None,
                      pretrain_steps: int | None = None, eval_split: str | None = None) -> AlignSetup:
    """SFT a model (given, or a fresh `tiny`/`small` GPT with the chat vocabulary) on instruction conversations
    (a share harm_rate of answers end in "!!"), then fit a reward model on judged pairs with label noise.
    pretrain_steps (default by size; 0 = none) first trains the base on the same conversations with the loss on
    EVERY token (a stand-in for pretraining on task text): response tokens alone are ~10 per 128-token row, too
    little signal for a fresh model to learn the prompt format within a laptop budget.
    eval_split: the evaluation prompts' phrasings, always on words not trained on: "heldout" (unseen phrasings,
    default at ci / gpu) or "train" (default at laptop: a 0.8M model trained for minutes answers ~0.1 of the
    unseen phrasings, too few for the alignment effects on correct answers to show)."""
    from minillm.model.transformer import GPT
    from minillm.finetune.reward import RewardModel, train_reward_model
    from minillm.finetune.sft import instruction_data, pack

    if not 0.0 <= harm_rate <= 1.0:
        raise ValueError(f"harm_rate={harm_rate!r} must be a share in [0, 1]")
    template = ChatTemplate(chat_tokenizer())
    torch.manual_seed(seed)
    if model is None:
        name = by_size("tiny", "small", "small", size)
        model = GPT(model_preset(name, vocab_size=template.vocab_size, block_size=128, dropout=0.0))
    families = by_size(FAMILIES, LAPTOP_FAMILIES, FAMILIES, size) if families is None else families
    knobs = {"instructions": {"families": tuple(families), "word_len": (3, 4)}}
    n_sft = by_size(400, 3000, 20000, size)
    train_convs = instruction_data(n_sft, seed, knobs=knobs)
    eval_split = by_size("heldout", "train", "heldout", size) if eval_split is None else eval_split
    eval_convs = instruction_data(by_size(32, 128, 256, size), seed + 1, split=eval_split, knobs=knobs,
                                  exclude=train_convs)
    rng = np.random.default_rng([seed, 11])
    harmful = rng.random(len(train_convs)) < harm_rate
    sft_data = [[*c.prompt, {"role": "assistant", "content": c.answer + (HARMFUL[0] if h else "")}]
                for c, h in zip(train_convs, harmful)]  # noisy "web" answers: some end in the harmful "!!"
    x, y = pack(sft_data, 128, template)
    pre = by_size(0, 300, 1000, size) if pretrain_steps is None else pretrain_steps
    if pre:
        y_all = torch.full_like(y, -100)  # (N, T): next token everywhere (padding included: harmless, learned fast)
        y_all[:, :-1], y_all[:, -1] = x[:, 1:], y[:, -1]
        train(_run(pre, 3e-3, seed), (x, y_all), model=model)
    sft_hist = train(_run(sft_steps or by_size(60, 400, 3000, size), 3e-3, seed), (x, y), model=model).history
    judge = HiddenReward().register(train_convs).register(eval_convs)
    pairs = make_preference_pairs(by_size(256, 2000, 8000, size), seed + 2, noise=noise, knobs=knobs, judge=judge,
                                  exclude=eval_convs)
    rm = RewardModel.from_lm(model)
    rm_hist = train_reward_model(rm, template, pairs, _tcfg(rm_steps or by_size(60, 400, 2000, size), 3e-3, seed))
    held = make_preference_pairs(64, seed + 3, knobs=knobs, split="heldout", judge=judge)
    note(setup="alignment", families=families, n_sft=n_sft, eval_split=eval_split, n_eval=len(eval_convs),
         preference_pairs=len(pairs), label_noise=noise, harm_rate=harm_rate, reward_model_heldout_pairs=len(held))
    info = {"families": tuple(families), "eval_split": eval_split, "pretrain_steps": pre,
            "sft_loss": sft_hist[-1]["loss"], "rm_loss": rm_hist[-1]["loss"],
            "rm_agreement": reward_model_agreement(rm, held, template, judge)}
    return AlignSetup(template, model.eval(), rm.eval(), judge, pairs, eval_convs, train_convs,
                      max_new_tokens=12, seed=seed, info=info)


def learned_reward_fn(rm: torch.nn.Module, template: ChatTemplate):
    """The reward model as a rollout RewardFn: (responses, prompts as decoded chat text) -> rewards (N,).
    An empty response is scored too (prompt + END), which check_messages would refuse as a message."""
    tok = template.tokenizer
    block = rm.config.block_size

    @torch.no_grad()
    def reward(responses: list[str], prompts: list[str]) -> torch.Tensor:
        from minillm.finetune.chat import pad_batch

        seqs = []
        for r, p in zip(responses, prompts):  # a loop over responses (each encoded once)
            ids = np.concatenate([template.prompt_ids([{"role": "user", "content": user_text(p)}]),
                                  np.asarray(tok.encode(r), dtype=np.int64), [template.end_id]])[-block:]
            seqs.append((ids, np.ones(len(ids), dtype=bool)))
        ids, _, lengths = pad_batch(seqs, template.end_id)
        device = next(rm.parameters()).device
        return rm(ids.to(device), lengths.to(device)).float().cpu()

    return reward


def _prompt_groups(template: ChatTemplate, convs: list) -> dict[int, torch.Tensor]:
    """Prompt ids grouped by length -> {P: (n, P)}: rollouts need prompts of one length per batch."""
    groups: dict[int, list[np.ndarray]] = {}
    for c in convs:
        ids = template.prompt_ids(c.prompt)
        groups.setdefault(len(ids), []).append(ids)
    return {P: torch.from_numpy(np.stack(v)) for P, v in groups.items()}


@torch.no_grad()
def evaluate_policy(policy: torch.nn.Module, setup: AlignSetup, name: str, **extra: Any) -> dict:
    """One row: hidden reward (mean and components) and exact match of greedy answers on the held-out prompts,
    the learned reward of those answers, and the KL to the SFT model over sampled responses."""
    from minillm.evaluation.scoring import greedy_complete
    from minillm.finetune.rollout import RolloutConfig, sample_rollout

    t, convs = setup.template, setup.eval_convs
    prompts = [t.prompt_text(c.prompt) for c in convs]
    replies = greedy_complete(policy, t.tokenizer, prompts, setup.max_new_tokens, stop=END)
    comp = setup.judge.components(replies, prompts)
    learned = learned_reward_fn(setup.rm, t)(replies, prompts)
    cfg = RolloutConfig(max_new_tokens=setup.max_new_tokens, stop_tokens=(t.end_id,))
    g = torch.Generator().manual_seed(setup.seed)
    kls, lrn_s, sampled = [], [], {"total": [], "correctness": [], "style": [], "harm": []}
    for ids in _prompt_groups(t, convs).values():  # a loop over prompt lengths
        ro = sample_rollout(policy, setup.sft, ids, cfg, g)
        kls.append((ro.old_logp - ro.ref_logp).sum(1))  # (n,) sequence KL estimate per sampled response
        resp, pr = ro.texts(t.tokenizer, cfg.stop_tokens)
        for k, v in setup.judge.components(resp, pr).items():
            sampled[k].append(np.asarray(v, dtype=float))
        lrn_s.append(learned_reward_fn(setup.rm, t)(resp, pr))
    s = {k: float(np.concatenate(v).mean()) for k, v in sampled.items()}
    return {"method": name, "hidden": float(comp["total"].mean()), "correctness": float(comp["correctness"].mean()),
            "style": float(comp["style"].mean()), "harm": float(comp["harm"].mean()),
            "exact_match": float(comp["correctness"].mean() / 1.0), "learned": float(learned.mean()),
            "empty": float(np.mean([r == "" for r in replies])),  # share of greedy replies that stop at once
            "kl": float(torch.cat(kls).mean()), "hidden_sampled": s["total"],
            "correctness_sampled": s["correctness"], "style_sampled": s["style"], "harm_sampled": s["harm"],
            "learned_sampled": float(torch.cat(lrn_s).mean()),
            "examples": [[user_text(p), r] for p, r in zip(prompts[:4], replies[:4])], **extra}


def run_rl(setup: AlignSetup, method: str = "grpo", *, beta: float = 0.04, steps: int | None = None,
           lr: float | None = None, prompts_per_step: int = 8, size: str | None = None) -> torch.nn.Module:
    """GRPO or PPO from the SFT model against the LEARNED reward model, KL coefficient beta; returns the policy.
    lr defaults by size: 1e-3 moves the ci model at all; at laptop it wrecked the answers within 80 steps in a
    trial run (not a shipped record), 1e-4 keeps them while the reward model is exploited."""
    from minillm.finetune.grpo import GRPOConfig, grpo_step
    from minillm.finetune.ppo import PPOConfig, ValueModel, ppo_step
    from minillm.finetune.rollout import frozen_copy

    if method not in ("grpo", "ppo"):
        raise ValueError(f"method={method!r} is not valid; choose 'grpo' or 'ppo'")
    t = setup.template
    policy, ref = copy.deepcopy(setup.sft).train(), frozen_copy(setup.sft)
    reward = learned_reward_fn(setup.rm, t)
    groups = [g for g in _prompt_groups(t, setup.train_convs[:512]).values()]
    lr = by_size(1e-3, 1e-4, 1e-4, size) if lr is None else lr
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(setup.seed)
    rng = np.random.default_rng(setup.seed)
    common = dict(max_new_tokens=setup.max_new_tokens, stop_tokens=(t.end_id,), beta=beta)
    if method == "grpo":
        cfg = GRPOConfig(group_size=4, **common)
    else:
        cfg = PPOConfig(epochs=2, **common)
        critic = ValueModel(setup.sft)
        copt = torch.optim.AdamW(critic.parameters(), lr=lr)
    weights = np.array([len(g) for g in groups], dtype=float)
    steps = steps or by_size(15, 80, 600, size)
    note(method=method, steps=steps, lr=lr, beta=beta, prompts_per_step=prompts_per_step,
         **({"group_size": cfg.group_size} if method == "grpo" else {"epochs": cfg.epochs}))
    for _ in range(steps):  # a loop over RL iterations
        g = groups[int(rng.choice(len(groups), p=weights / weights.sum()))]
        ids = g[torch.from_numpy(rng.choice(len(g), size=min(prompts_per_step, len(g)), replace=False))]
        if method == "grpo":
            grpo_step(policy, ref, opt, ids, t.tokenizer, reward, cfg, gen)
        else:
            ppo_step(policy, critic, ref, opt, copt, ids, t.tokenizer, reward, cfg, gen)
    return policy.eval()


def sft_then_align(model: torch.nn.Module | None = None, *, setup: AlignSetup | None = None, seed: int = 0,
                   methods: tuple[str, ...] = ("dpo", "grpo"), size: str | None = None, dpo_beta: float = 0.1,
                   rl_beta: float = 0.04, **prepare_kw: Any) -> list[dict]:
    """Rows for the SFT model and each method in `methods` ("dpo", "grpo", "ppo"), all from one SFT model and
    one reward model; each row as `evaluate_policy` (hidden reward, components, exact match, learned, KL)."""
    from minillm.finetune.dpo import train_dpo
    from minillm.finetune.rollout import frozen_copy

    unknown = [m for m in methods if m not in ("dpo", "grpo", "ppo")]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from 'dpo', 'grpo', 'ppo'")
    setup = setup or prepare_alignment(model, seed=seed, size=size, **prepare_kw)
    rows = [evaluate_policy(setup.sft, setup, "sft", rm_agreement=setup.info["rm_agreement"])]
    for m in methods:
        if m == "dpo":
            policy = copy.deepcopy(setup.sft)
            steps, lr = by_size(40, 300, 1500, size), by_size(1e-3, 1e-4, 1e-4, size)
            note(method="dpo", steps=steps, lr=lr, beta=dpo_beta, pairs=len(setup.pairs))
            train_dpo(policy, frozen_copy(setup.sft), setup.pairs, setup.template, _tcfg(steps, lr, setup.seed),
                      beta=dpo_beta)
            rows.append(evaluate_policy(policy.eval(), setup, "dpo", beta=dpo_beta))
        else:
            rows.append(evaluate_policy(run_rl(setup, m, beta=rl_beta, size=size), setup, m, beta=rl_beta))
    return rows


def kl_sweep(betas: tuple[float, ...] = (0.0, 0.04, 0.2), *, method: str = "grpo", setup: AlignSetup | None = None,
             seed: int = 0, size: str | None = None, steps: int | None = None, **prepare_kw: Any) -> list[dict]:
    """RL against the learned reward with each KL coefficient -> rows (beta, hidden, learned, kl, ...). Reward
    hacking shows as the learned reward rising while the hidden one falls, most at beta = 0."""
    setup = setup or prepare_alignment(seed=seed, size=size, **prepare_kw)
    rows = [evaluate_policy(setup.sft, setup, "sft", beta=None)]
    for b in betas:
        rows.append(evaluate_policy(run_rl(setup, method, beta=b, steps=steps, size=size), setup, method, beta=b))
    return rows
