"""Knowledge capacity: how many bits of facts a model of N parameters can store. Survey §2.1 (scaling laws)
and §7.1.2 (knowledge utilization; closed-book QA).

`knowledge_capacity` trains models of a few sizes on the "facts" corpus of one fixed world (`FactWorld`),
then asks every (person, attribute) fact. For a fact with K possible values the model's answer distribution q
comes from log-likelihood scoring, as in multiple-choice evaluation (Survey §7.1):

    log q(v) = log P(" " + v | "\\n<name><template>")   normalized over the K values

Bits stored for that fact are

    bits = max(0, log2 K - CE),   CE = -log2 q(true value)

i.e. how much the model's answer beats a uniform guess, clipped at 0 so that a confidently wrong fact does not
cancel a known one. Uniform guessing stores 0 bits; a model certain of every value stores the world's total
Σ log2 K. Allen-Zhu & Li 2024 ("Physics of Language Models: Part 3.3, Knowledge Capacity Scaling Laws")
measured ~2 bits per parameter for GPT-2-style models given ~1000 exposures per fact, ~1 bit/param at 100.

`bits_vs_prior` is the stricter number: the baseline is the world's own value frequencies instead of uniform.
Cities, jobs, colours and pets are Zipf-distributed, so a model that learned only "most people live in the
biggest city" already beats uniform without knowing anything about anyone. It is summed per attribute before
clipping: per fact, even a uniform guess "beats" the prior on every rare value.

The default tokenizer is a byte-level BPE trained on the corpus: its tokens are whole words, so a fact is a few
tokens (as in the paper's GPT-2 setup) and a name is two. `tokenizer="char"` spells everything out letter by
letter, which costs ~6x more tokens per fact and makes recall a much harder compositional job for a tiny model.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from minillm.data.synthetic.lexicon import CITIES, COLOURS, JOBS, PETS

# Templates used as prompts: the first of each attribute that starts with the subject's name and is not
# possessive, so "\n<name><template>" is exactly how a document opens. No trailing space: the value's leading
# space belongs to the value, as a byte-level BPE pre-tokenizer splits it (" Ashford" is one token).
PROMPTS = {"city": " lives in", "birth_year": " was born in", "job": " works as",
           "colour": " likes the colour", "pet": " has a pet", "friend": " is a friend of"}
BIRTH_YEARS = tuple(range(1940, 2006))  # FactWorld draws integers(1940, 2006)

ScoreFn = Callable[[list[str], list[str]], torch.Tensor]  # (prompts, candidates) -> (P, K) log-likelihoods


def fact_candidates(world) -> dict[str, list[str]]:
    """Every possible value of each attribute, as written in documents (the multiple-choice options)."""

    return {"city": list(CITIES), "birth_year": [str(y) for y in BIRTH_YEARS], "job": list(JOBS),
            "colour": list(COLOURS), "pet": list(PETS), "friend": list(world.names)}


def knowledge_bits(world, score_fn: ScoreFn) -> dict:
    """Bits of `world`'s facts a scorer stores. score_fn(prompts, candidates) -> (P, K) log-likelihoods of each
    candidate (" " + value) after each prompt (any scale: they are normalized over the K candidates here).

    Returns bits (vs a uniform guess, clipped at 0 per fact), bits_vs_prior (vs the world's value frequencies),
    total_bits (= Σ log2 K: what an oracle stores), total_bits_vs_prior, accuracy (argmax = truth), n_facts,
    per_attribute {attr: bits} and per_attribute_vs_prior.
    """
    cands = fact_candidates(world)
    res = {"bits": 0.0, "bits_vs_prior": 0.0, "total_bits": 0.0, "total_bits_vs_prior": 0.0, "correct": 0,
           "n_facts": 0, "per_attribute": {}, "per_attribute_vs_prior": {}}
    for attr, values in cands.items():
        index = {v: k for k, v in enumerate(values)}
        truth = torch.tensor([index[world.value(p.name, attr)] for p in world.people])  # (P,)
        prompts = ["\n" + p.name + PROMPTS[attr] for p in world.people]
        scores = torch.as_tensor(score_fn(prompts, [" " + v for v in values]), dtype=torch.float64)
        if scores.shape != (len(prompts), len(values)):
            raise ValueError(f"score_fn returned shape {tuple(scores.shape)} for {attr}; expected "
                             f"({len(prompts)}, {len(values)}) = (prompts, candidates)")
        logq = torch.log_softmax(scores, dim=-1)                              # (P, K), normalized over values
        log2q_true = logq.gather(1, truth[:, None])[:, 0] / math.log(2)       # (P,) = -CE in bits
        k_bits = math.log2(len(values))
        # Baseline 2: the world's own value frequencies (what a model knows without knowing anyone).
        freq = torch.bincount(truth, minlength=len(values)).double() / len(truth)
        log2prior_true = torch.log2(freq[truth])                              # (P,)
        bits = (k_bits + log2q_true).clamp(min=0)
        # Summed over the attribute's facts before clipping: by Gibbs' inequality no person-independent answer
        # (uniform, or the marginal itself) beats the world's frequencies in total, so it scores exactly 0 here.
        vs_prior = max(0.0, float((log2q_true - log2prior_true).sum()))
        res["bits"] += float(bits.sum())
        res["bits_vs_prior"] += vs_prior
        res["total_bits"] += k_bits * len(truth)
        res["total_bits_vs_prior"] += float(-log2prior_true.sum())
        res["correct"] += int((scores.argmax(-1) == truth).sum())
        res["n_facts"] += len(truth)
        res["per_attribute"][attr] = float(bits.sum())
        res["per_attribute_vs_prior"][attr] = vs_prior
    res["accuracy"] = res.pop("correct") / res["n_facts"]
    return res


def _pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (R, max(1, longest)) id matrix and the (R,) lengths."""
    lens = torch.tensor([len(x) for x in rows])
    out = torch.zeros(len(rows), max(1, int(lens.max()) if rows else 1), dtype=torch.long)
    for i, x in enumerate(rows):  # one row per string (not per token): builds the padded matrix
        out[i, :len(x)] = torch.tensor(x, dtype=torch.long)
    return out, lens


def model_scorer(model: torch.nn.Module, encode: Callable[[str], list[int]], max_sequences: int = 4096) -> ScoreFn:
    """A ScoreFn from a causal LM: Σ log P(candidate tokens | prompt) for every (prompt, candidate) pair.

    Candidates that share all tokens but the last share one forward pass: the pass over prompt + shared prefix
    gives the prefix's log-probabilities along the way and the whole next-token distribution at its end, which
    scores every last token at once. With whole-word tokens the 1000 names "First Last" of a big world cost 40
    passes per prompt (one per first name), not 1000.
    """
    device = next(model.parameters()).device
    block = model.config.block_size

    @torch.no_grad()
    def score(prompts: list[str], candidates: list[str]) -> torch.Tensor:
        c_tokens = [encode(c) for c in candidates]
        if any(len(t) == 0 for t in c_tokens):
            raise ValueError("a candidate encodes to no tokens; candidates must be non-empty strings")
        groups: dict[tuple[int, ...], int] = {}
        group_of = torch.tensor([groups.setdefault(tuple(t[:-1]), len(groups)) for t in c_tokens])   # (K,)
        last_tok = torch.tensor([t[-1] for t in c_tokens])                                          # (K,)
        P_ids, p_len = _pad([encode(p) for p in prompts])                                           # (P, Lp)
        G_ids, g_len = _pad([list(g) for g in groups])                                              # (G, Lg)
        G, L = len(groups), int(p_len.max() + g_len.max())
        if int(p_len.max()) + max(len(t) for t in c_tokens) > block:
            raise ValueError(f"prompt + candidate is longer than the model's block_size={block} tokens")
        was_training = model.training
        model.eval()
        out = torch.empty(len(prompts), len(candidates))
        j = torch.arange(L)
        chunk = max(1, max_sequences // G)
        try:
            for s in range(0, len(prompts), chunk):
                pi, pl = P_ids[s:s + chunk], p_len[s:s + chunk]                    # (p, Lp), (p,)
                # Sequence (p, g): the prompt's tokens, then the group's shared prefix, then padding.
                from_prompt = pi[:, j.clamp(max=pi.shape[1] - 1)]                 # (p, L)
                g_pos = (j[None, :] - pl[:, None]).clamp(0, G_ids.shape[1] - 1)    # (p, L)
                from_group = G_ids[:, g_pos]                                       # (G, p, L)
                seq = torch.where(j[None, None, :] < pl[None, :, None], from_prompt[None], from_group)
                seq = seq.transpose(0, 1).reshape(-1, L)                           # (p*G, L)
                logits, _ = model(seq.to(device))                                  # (p*G, L, V)
                logp = torch.log_softmax(logits.float(), -1).view(len(pi), G, L, -1)  # (p, G, L, V)
                # Prefix tokens: log P(seq[t] | seq[<t]) read at position t-1, for t in [pl, pl + g_len).
                nxt = seq.view(len(pi), G, L)[:, :, 1:].to(device)                 # (p, G, L-1)
                tok_lp = logp[:, :, :-1].gather(-1, nxt[..., None])[..., 0].cpu()   # (p, G, L-1)
                t = j[1:]
                start = pl[:, None, None]                                          # (p, 1, 1)
                mask = (t >= start) & (t < start + g_len[None, :, None])           # (p, G, L-1)
                prefix = (tok_lp * mask).sum(-1)                                   # (p, G)
                # Last token: the distribution at the final position of prompt + prefix.
                end = (pl[:, None] + g_len[None, :] - 1).to(device)                # (p, G)
                last = logp.gather(2, end[:, :, None, None].expand(-1, -1, 1, logp.shape[-1]))[:, :, 0].cpu()
                out[s:s + len(pi)] = prefix[:, group_of] + last[:, group_of, last_tok]   # (p, K)
        finally:
            model.train(was_training)
        return out

    return score
