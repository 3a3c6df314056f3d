"""The reward model of RLHF (Survey §5.2.3, step 2 of InstructGPT's recipe: reward model training).

A reward model reads a prompt and a response and returns one number: how much a human (here: a synthetic judge
with a known hidden reward) would like it. It is the language model itself with the vocabulary projection
replaced by a scalar head on the final hidden state of the last real token (`<|end|>` with the chat template),
which has attended to the whole conversation. Trained on pairs (chosen y_w, rejected y_l) with the
Bradley-Terry model p(y_w > y_l) = sigmoid(r_w - r_l), i.e. the loss -log sigmoid(r_w - r_l): only reward
DIFFERENCES are learned, so the scale's zero is arbitrary (PPO normalises or uses a KL-penalised difference).

Hidden states come from `GPT.hidden_states` (the final-norm output the lm_head would read), so no (B, T, V)
logits are computed for a reward.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm.config import TrainConfig
from minillm.device import resolve_device
from minillm.finetune.chat import ChatTemplate

__all__ = ["RewardModel", "bradley_terry_loss", "reward_accuracy", "pair_rewards", "train_reward_model"]


class RewardModel(nn.Module):
    """A GPT backbone + a linear head: ids (B, T), lengths (B,) -> rewards (B,).

    Usually built from the SFT model: `RewardModel.from_lm(sft_model)` (a deep copy, so the LM is left as is).
    The backbone's lm_head is unused (no gradient reaches it, so AdamW leaves it alone).
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        if not hasattr(backbone, "hidden_states") or not hasattr(backbone, "config"):
            raise ValueError("RewardModel needs a minillm GPT backbone (with .hidden_states and .config); got "
                             f"{type(backbone).__name__}")
        self.backbone = backbone
        self.config = backbone.config
        self.head = nn.Linear(backbone.config.n_embd, 1)
        nn.init.normal_(self.head.weight, std=backbone.config.init_std)
        nn.init.zeros_(self.head.bias)  # rewards start near 0: no pair is preferred before training

    @classmethod
    def from_lm(cls, model: nn.Module) -> RewardModel:
        return cls(copy.deepcopy(model))

    def hidden_states(self, ids: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states (B, T, C) of the backbone for ids (B, T) (no vocabulary logits computed)."""
        return self.backbone.hidden_states(ids)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Reward of each row (B,) in float32, read at its last real token: position lengths-1 (right padding),
        or the last position when lengths is None."""
        if ids.dim() != 2:
            raise ValueError(f"ids must be (B, T), got shape {tuple(ids.shape)}")
        B, T = ids.shape
        if lengths is None:
            last = torch.full((B,), T - 1, device=ids.device)
        else:
            lengths = torch.as_tensor(lengths, device=ids.device)
            if lengths.shape != (B,) or bool(((lengths < 1) | (lengths > T)).any()):
                raise ValueError(f"lengths must be (B,)=({B},) with values in [1, T={T}], got {lengths.tolist()}")
            last = lengths - 1
        h = self.hidden_states(ids)                      # (B, T, C)
        h_last = h[torch.arange(B, device=ids.device), last]  # (B, C)
        return self.head(h_last).squeeze(-1).float()


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | float = 0.0):
    """-log sigmoid(r_chosen - r_rejected - margin), averaged: the negative log-likelihood of the preferences.
    margin (Llama 2): a per-pair margin for strongly preferred pairs; 0 is the plain Bradley-Terry model."""
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen {tuple(r_chosen.shape)} and r_rejected {tuple(r_rejected.shape)} must match")
    return -F.logsigmoid(r_chosen - r_rejected - margin).mean()


def reward_accuracy(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> float:
    """Share of pairs ranked right (r_chosen > r_rejected); a tie counts half (it is a coin flip)."""
    if r_chosen.shape != r_rejected.shape or r_chosen.numel() == 0:
        raise ValueError("r_chosen and r_rejected must be non-empty and of one shape")
    d = r_chosen.detach() - r_rejected.detach()
    return float(((d > 0).float() + 0.5 * (d == 0).float()).mean())


@torch.no_grad()
def pair_rewards(rm: RewardModel, template: ChatTemplate, pairs: Sequence,
                 batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of each pair's chosen and rejected response -> (r_chosen (N,), r_rejected (N,)) on the CPU."""
    was_training = rm.training
    rm.eval()
    device = next(rm.parameters()).device
    out_c, out_r = [], []
    try:
        for s in range(0, len(pairs), batch_size):
            ids, _, lengths = template.preference_batch(pairs[s:s + batch_size], max_len=rm.config.block_size)
            r = rm(ids.to(device), lengths.to(device)).cpu()  # (2b,)
            out_c.append(r[: len(r) // 2])
            out_r.append(r[len(r) // 2:])
    finally:
        rm.train(was_training)
    return torch.cat(out_c), torch.cat(out_r)


def train_reward_model(rm: RewardModel, template: ChatTemplate, pairs: Sequence, cfg: TrainConfig) -> list[dict]:
    """Fit `rm` to preference pairs ({"prompt", "chosen", "rejected"}) with the Bradley-Terry loss; logs the
    batch accuracy. Uses `sft.optimize` (TrainConfig's lr schedule, clipping, accumulation). Returns history."""
    from minillm.finetune.loop import epoch_sampler, optimize

    N = len(pairs)
    if N == 0:
        raise ValueError("no preference pairs to train on")
    if cfg.batch_size > N:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the {N} preference pairs")
    device = resolve_device(cfg.device)
    ids, _, lengths = template.preference_batch(pairs, max_len=rm.config.block_size)  # (2N, T), chosen first
    rm.to(device)
    draw = epoch_sampler(N, cfg.batch_size, cfg.seed)

    def pair_loss(model: RewardModel, idx: torch.Tensor):
        """loss_fn for the shared step: one micro-batch is the indices (b,) of b preference pairs."""
        rows = torch.cat([idx, idx + N])
        T = int(lengths[rows].max())  # crop the shared padding
        r = model(ids[rows, :T].to(device), lengths[rows].to(device))  # (2b,)
        rc, rr = r[: len(idx)], r[len(idx):]
        return bradley_terry_loss(rc, rr), {"acc": reward_accuracy(rc, rr)}

    return optimize(rm, cfg, batches=(draw() for _ in itertools.count()), loss_fn=pair_loss)
