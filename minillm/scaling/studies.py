"""Two scaling studies beyond the Chinchilla sweep: data far past 20 tokens/param, and knowledge capacity.
Survey §2.1 (scaling laws; "LLaMA-style" over-training of small models) and §2.2 (knowledge as a capacity).

1. `data_scaling_curve`: one fixed small model trained on the story corpus (char level, the laptop sweep's
   data, context, batch and width-rule lr) for 5 to 320 tokens per parameter. Chinchilla's optimum is ~20;
   LLaMA-2 7B saw ~286. Each length is a *separate run with its own cosine schedule annealed to its end*
   (the Chinchilla lesson: a run evaluated half-way through a longer cosine has not yet annealed, so it looks
   worse than a run of that length would). For contrast, the longest run is also evaluated along the way
   (rows with schedule="mid_run"): the gap between the two curves is the schedule caveat, measured.
   `improvement_per_decade` then says how much loss each 10x of data still buys, and what share of the
   remaining gap to the corpus's exact entropy floor it closes.

2. `knowledge_capacity`: models of a few sizes trained on the "facts" corpus (a fixed `world_seed`), then
   asked every (person, attribute) fact. For a fact with K possible values the model's answer distribution q
   comes from log-likelihood scoring: log q(v) = log P(v + "." | "\\n<name><template>") normalized over the K
   values (as multiple-choice evaluation, Survey §7.1). Bits stored for that fact are

       bits = max(0, log2 K - CE),   CE = -log2 q(true value)

   i.e. how much the model's answer beats a uniform guess, clipped at 0 so that a confidently wrong fact does
   not cancel a known one. Uniform guessing stores 0 bits; a model certain of every value stores the world's
   total sum of log2 K. Allen-Zhu & Li 2024 ("Physics of Language Models: Part 3.3, Knowledge Capacity Scaling
   Laws") measured ~2 bits per parameter for GPT-2-style models given ~1000 exposures per fact, ~1 bit/param
   at 100 exposures. `bits_vs_prior` uses the world's value frequencies as the baseline instead of uniform
   (values such as cities are Zipf-distributed, so learning only the marginal already earns "bits" against
   uniform, without knowing anything about anyone): the stricter number. It is clipped per attribute, not per
   fact, since per fact even a uniform guess "beats" the prior on every rare value.

Both studies train with `torch.set_num_threads` left to the caller (bench/scaling_studies.py uses one thread).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig, TrainConfig

# Templates used as prompts: the first of each attribute that starts with the subject's name and is not
# possessive, so "\n<name><template>" is exactly how a document opens.
PROMPTS = {"city": " lives in ", "birth_year": " was born in ", "job": " works as ",
           "colour": " likes the colour ", "pet": " has a pet ", "friend": " is a friend of "}
BIRTH_YEARS = tuple(range(1940, 2006))  # FactWorld draws integers(1940, 2006)

ScoreFn = Callable[[list[str], list[str]], torch.Tensor]  # (prompts, candidates) -> (P, K) log-likelihoods


def _check_shape(n_layer: Any, n_embd: Any, n_head: Any) -> tuple[int, int, int]:
    for name, v in (("n_layer", n_layer), ("n_embd", n_embd), ("n_head", n_head)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name}={v!r} must be a positive int")
    if n_embd % n_head:
        raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
    return n_layer, n_embd, n_head


def _train(shape: tuple[int, int, int], splits, vocab_size: int, block_size: int, batch_size: int, steps: int,
           lr: float, seed: int, eval_batches: int, eval_interval: int = 0, hooks: Any = None,
           device: str = "auto"):
    """A GPT of `shape` and its Trainer (not yet fitted), with the sweep's recipe: warm-up 5%, cosine to lr/10."""
    from ..model.transformer import GPT
    from ..train.trainer import Trainer

    torch.manual_seed(seed)
    n_layer, n_embd, n_head = shape
    model = GPT(ModelConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_embd=n_embd,
                            n_head=n_head))
    tcfg = TrainConfig(batch_size=batch_size, max_steps=steps, lr=lr, min_lr=lr / 10,
                       warmup_steps=max(1, round(0.05 * steps)), schedule="cosine", eval_interval=eval_interval,
                       eval_batches=eval_batches, log_interval=max(1, steps // 16), seed=seed, device=device,
                       progress=False)
    return model, Trainer(model, tcfg, splits, hooks=hooks)


# ============================================================================================ 1. data scaling


def data_scaling_curve(n_layer: int = 1, n_embd: int = 48, n_head: int = 1,
                       tokens_per_param: Sequence[float] = (5, 10, 20, 40, 80, 160, 320), *, sweep=None,
                       mid_run: bool = True, progress: bool = False) -> list[dict]:
    """Held-out loss of one model shape trained for each `tokens_per_param` (× non-embedding N) tokens.

    `sweep` (a SweepConfig; default: the laptop sweep's) fixes the corpus, context, batch, lr rule, seed.
    Returns rows sorted by tokens: tokens, tokens_per_param, steps, val_loss, floor, excess (= val_loss -
    floor), seconds, schedule ("own_cosine": a run of exactly that length; "mid_run": the longest run
    evaluated part-way, if `mid_run`). The shape's n_params / n_params_total are in every row.
    """
    from ..sweep import _prepare_data, _shape_counts, default_sweep

    shape = _check_shape(n_layer, n_embd, n_head)
    tpp = sorted(float(t) for t in tokens_per_param)
    if not tpp or any(not (t > 0 and math.isfinite(t)) for t in tpp) or len(set(tpp)) != len(tpp):
        raise ValueError(f"tokens_per_param={tuple(tokens_per_param)!r} must be distinct positive numbers")
    cfg = sweep if sweep is not None else default_sweep("laptop")
    splits, vocab, floor = _prepare_data(cfg)
    n_params, n_total, _ = _shape_counts(shape, vocab, cfg.block_size)
    tps = cfg.tokens_per_step
    steps_of = [max(2, round(t * n_params / tps)) for t in tpp]
    if len(set(steps_of)) != len(steps_of):
        raise ValueError(f"tokens_per_param={tpp} round to repeated step counts {steps_of} for N={n_params}: "
                         f"space the values further apart or use a bigger model")
    if steps_of[-1] * tps > len(splits.train):
        # More than one epoch would measure repetition (Survey §4.1.3), not fresh data: say so, do not hide it.
        raise ValueError(f"the longest run needs {steps_of[-1] * tps:,} tokens but the corpus has "
                         f"{len(splits.train):,}: raise sweep.n_docs or lower max(tokens_per_param)")
    lr = cfg.lr_for_width(n_embd)
    base = dict(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_params=n_params, n_params_total=n_total,
                floor=floor, lr=lr)
    rows: list[dict] = []
    for i, steps in enumerate(steps_of):
        longest = i == len(steps_of) - 1
        mid: list[dict] = []
        hooks = {"on_eval": lambda tr, row: mid.append(dict(row))} if (longest and mid_run) else None
        eval_interval = max(1, steps // 48) if hooks else 0
        _, trainer = _train(shape, splits, vocab, cfg.block_size, cfg.batch_size, steps, lr, cfg.train_seed,
                            cfg.eval_batches, eval_interval, hooks, cfg.device)
        t0 = time.perf_counter()
        history = trainer.fit()
        seconds = time.perf_counter() - t0
        val = history[-1]["val_loss"]
        tokens = steps * tps
        rows.append({**base, "schedule": "own_cosine", "steps": steps, "tokens": tokens,
                     "tokens_per_param": tokens / n_params, "val_loss": val, "excess": val - floor,
                     "seconds": round(seconds, 2)})
        for r in mid[:-1]:  # the last eval is the run's own end, already a row above
            rows.append({**base, "schedule": "mid_run", "steps": r["step"], "tokens": r["tokens"],
                         "tokens_per_param": r["tokens"] / n_params, "val_loss": r["val_loss"],
                         "excess": r["val_loss"] - floor, "seconds": None})
        if progress:
            print(f"  data scaling: {tokens / n_params:6.1f} tok/param ({steps} steps): val {val:.4f} "
                  f"(floor {floor:.4f}) in {seconds:.1f} s", flush=True)
    return sorted(rows, key=lambda r: (r["schedule"], r["tokens"]))


def improvement_per_decade(rows: Sequence[dict], schedule: str = "own_cosine") -> list[dict]:
    """For consecutive runs, the loss bought per 10x of data: log-log slope turned into nats per decade, and the
    share of the gap to the floor closed per decade. A share near 0 means saturation at this model size."""
    pts = sorted((r["tokens"], r["val_loss"], r["floor"]) for r in rows if r.get("schedule") == schedule)
    if len(pts) < 2:
        raise ValueError(f"need at least two rows with schedule={schedule!r}, got {len(pts)}")
    out = []
    for (d0, l0, f), (d1, l1, _) in zip(pts, pts[1:]):
        decades = math.log10(d1 / d0)
        gap0, gap1 = l0 - f, l1 - f
        closed = 1 - (gap1 / gap0) ** (1 / decades) if gap0 > 0 and gap1 > 0 else float("nan")
        out.append({"tokens_from": d0, "tokens_to": d1, "nats_per_decade": (l0 - l1) / decades,
                    "gap_closed_per_decade": closed})
    return out


# ============================================================================================ 2. knowledge


def fact_candidates(world) -> dict[str, list[str]]:
    """Every possible value of each attribute, as written in documents (the multiple-choice options)."""
    from ..data.synthetic.lexicon import CITIES, COLOURS, JOBS, PETS

    return {"city": list(CITIES), "birth_year": [str(y) for y in BIRTH_YEARS], "job": list(JOBS),
            "colour": list(COLOURS), "pet": list(PETS), "friend": list(world.names)}


def knowledge_bits(world, score_fn: ScoreFn) -> dict:
    """Bits of `world`'s facts a scorer stores. score_fn(prompts, candidates) -> (P, K) log-likelihoods of each
    candidate after each prompt (any scale: they are normalized over the K candidates here).

    Returns bits (vs a uniform guess, clipped at 0 per fact), bits_vs_prior (vs the world's value frequencies),
    total_bits (= Σ log2 K: what an oracle stores), total_bits_vs_prior, accuracy (argmax = truth), n_facts,
    and per_attribute {attr: bits}.
    """
    cands = fact_candidates(world)
    res = {"bits": 0.0, "bits_vs_prior": 0.0, "total_bits": 0.0, "total_bits_vs_prior": 0.0, "correct": 0,
           "n_facts": 0, "per_attribute": {}}
    for attr, values in cands.items():
        index = {v: k for k, v in enumerate(values)}
        truth = torch.tensor([index[world.value(p.name, attr)] for p in world.people])  # (P,)
        prompts = ["\n" + p.name + PROMPTS[attr] for p in world.people]
        scores = torch.as_tensor(score_fn(prompts, [v + "." for v in values]), dtype=torch.float64)
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
        res["bits"] += float(bits.sum())
        # Summed over the attribute's facts before clipping: by Gibbs' inequality no person-independent answer
        # (uniform, or the marginal itself) beats the world's frequencies in total, so it scores exactly 0 here.
        res["bits_vs_prior"] += max(0.0, float((log2q_true - log2prior_true).sum()))
        res["total_bits"] += k_bits * len(truth)
        res["total_bits_vs_prior"] += float(-log2prior_true.sum())
        res["correct"] += int((scores.argmax(-1) == truth).sum())
        res["n_facts"] += len(truth)
        res["per_attribute"][attr] = float(bits.sum())
    res["accuracy"] = res.pop("correct") / res["n_facts"]
    return res


def model_scorer(model: torch.nn.Module, encode: Callable[[str], list[int]], max_sequences: int = 4096) -> ScoreFn:
    """A ScoreFn from a causal LM: Σ log P(candidate tokens | prompt), all (prompt, candidate) pairs batched."""
    device = next(model.parameters()).device
    block = model.config.block_size

    def pad(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = [encode(t) for t in texts]
        lens = torch.tensor([len(x) for x in ids])
        out = torch.zeros(len(ids), int(lens.max()), dtype=torch.long)
        for i, x in enumerate(ids):  # one row per string (not per token): builds the padded matrix
            out[i, :len(x)] = torch.tensor(x)
        return out, lens

    @torch.no_grad()
    def score(prompts: list[str], candidates: list[str]) -> torch.Tensor:
        P_ids, p_len = pad(prompts)        # (P, Lp), (P,)
        C_ids, c_len = pad(candidates)     # (K, Lc), (K,)
        K, L = len(candidates), int(p_len.max() + c_len.max())
        if L > block:
            raise ValueError(f"prompt + candidate is {L} tokens, longer than the model's block_size={block}")
        was_training = model.training
        model.eval()
        out = torch.empty(len(prompts), K)
        j = torch.arange(L)
        chunk = max(1, max_sequences // K)
        try:
            for s in range(0, len(prompts), chunk):
                pi, pl = P_ids[s:s + chunk], p_len[s:s + chunk]                    # (p, Lp), (p,)
                # Sequence (p, k): the prompt's tokens, then the candidate's, then padding (never scored).
                from_prompt = pi[:, j.clamp(max=pi.shape[1] - 1)]                 # (p, L)
                c_pos = (j[None, :] - pl[:, None]).clamp(0, C_ids.shape[1] - 1)    # (p, L)
                from_cand = C_ids[:, c_pos]                                        # (K, p, L)
                seq = torch.where(j[None, None, :] < pl[None, :, None], from_prompt[None], from_cand)
                seq = seq.transpose(0, 1).reshape(-1, L)                           # (p*K, L)
                logits, _ = model(seq.to(device))                                  # (p*K, L, V)
                logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, seq[:, 1:, None].to(device))
                logp = logp[..., 0].view(len(pi), K, L - 1).cpu()                  # (p, K, L-1): log P(seq[t+1])
                t = j[1:]  # position of the predicted token
                start = pl[:, None, None]                                          # (p, 1, 1)
                mask = (t >= start) & (t < start + c_len[None, :, None])           # (p, K, L-1)
                out[s:s + len(pi)] = (logp * mask).sum(-1)
        finally:
            model.train(was_training)
        return out

    return score


def expected_facts_per_doc(p_stop: float, max_facts: int) -> float:
    """Mean facts a "facts" document states: it stops after each fact with probability p_stop."""
    return sum((1 - p_stop) ** k for k in range(max_facts))


def knowledge_capacity(sizes: Sequence[tuple[int, int, int]], *, n_people: int = 400, world_seed: int = 0,
                       exposures: float = 100.0, popularity: float = 0.0, data_seed: int = 1,
                       block_size: int = 64, batch_size: int = 8, lr_ref: float = 2e-3, seed: int = 1337,
                       measure_at: Sequence[float] = (0.5, 1.0), eval_batches: int = 20, device: str = "auto",
                       progress: bool = False) -> list[dict]:
    """Train each (n_layer, n_embd, n_head) in `sizes` on the facts of one world for one pass over a corpus in
    which each fact appears ~`exposures` times, and measure the bits stored at each fraction in `measure_at`
    of training (two points show whether the model still learns or has saturated). popularity=0 mentions every
    person equally often (Allen-Zhu & Li's uniform setting); lr follows the sweep's width rule.

    Rows: n_layer, n_embd, n_head, n_params (non-embedding), n_params_total, steps, tokens, exposures (the
    share of the pass done × `exposures`), val_loss, floor, bits, bits_vs_prior, total_bits,
    total_bits_vs_prior, accuracy, bits_per_param, bits_per_param_total, per_attribute, seconds.
    """
    from ..data.loader import DataSplits
    from ..data.synthetic import FactWorld, corpus
    from ..data.synthetic.facts import FactsSource
    from ..data.tokenizer import CharTokenizer
    from ..sweep import _shape_counts

    if not sizes:
        raise ValueError("sizes is empty: give (n_layer, n_embd, n_head) tuples")
    shapes = [_check_shape(*map(int, s)) if len(s) == 3 else None for s in sizes]
    if any(s is None for s in shapes):
        raise ValueError(f"sizes={list(sizes)!r}: each entry must be (n_layer, n_embd, n_head)")
    if not (isinstance(exposures, (int, float)) and exposures > 0):
        raise ValueError(f"exposures={exposures!r} must be positive")
    fracs = sorted(float(f) for f in measure_at)
    if not fracs or fracs[-1] != 1.0 or fracs[0] <= 0:
        raise ValueError(f"measure_at={tuple(measure_at)!r} must be fractions in (0, 1] ending with 1.0")
    knobs = {**FactsSource.defaults, "n_people": n_people, "world_seed": world_seed, "popularity": popularity}
    world = FactWorld(world_seed, n_people)
    per_doc = expected_facts_per_doc(knobs["p_stop"], knobs["max_facts"])
    # A document is about one person (uniform at popularity 0) and states `per_doc` of their 6 facts.
    n_docs = math.ceil(exposures * n_people * len(PROMPTS) / per_doc / 0.95)  # /0.95: the val split
    c = corpus("facts", n_docs, data_seed, **knobs)
    text = c.text()
    # The vocabulary also covers every prompt and candidate, so scoring never meets an unknown character (a small
    # world's documents need not mention every city); an unseen character just gets a low probability.
    cands = fact_candidates(world)
    tok = CharTokenizer.from_text(text + "".join(PROMPTS.values()) + "".join(sum(cands.values(), [])) + ".")
    ids = torch.from_numpy(tok.encode_to_array(text, dtype=np.int64))
    splits = DataSplits.from_tokens(ids, val_fraction=0.05, vocab_size=tok.vocab_size)
    floor = c.entropy_per_token(tok)
    tps = batch_size * block_size
    steps = max(2, len(splits.train) // tps)  # one pass's worth of random windows
    rows = []
    for shape in shapes:
        n_params, n_total, _ = _shape_counts(shape, tok.vocab_size, block_size)
        lr = float(min(max(lr_ref * math.sqrt(128 / shape[1]), lr_ref / 4), 2 * lr_ref))
        model, trainer = _train(shape, splits, tok.vocab_size, block_size, batch_size, steps, lr, seed,
                                eval_batches, 0, None, device)
        scorer = model_scorer(model, tok.encode)
        t0 = time.perf_counter()
        for f in fracs:
            stop = max(1, round(f * steps))
            trainer.fit(stop_at=stop)
            seconds = time.perf_counter() - t0
            kb = knowledge_bits(world, scorer)
            row = {"n_layer": shape[0], "n_embd": shape[1], "n_head": shape[2], "n_params": n_params,
                   "n_params_total": n_total, "steps": stop, "tokens": stop * tps, "lr": lr,
                   "exposures": exposures * stop / steps, "val_loss": trainer.evaluate(), "floor": floor,
                   **kb, "bits_per_param": kb["bits"] / n_params, "bits_per_param_total": kb["bits"] / n_total,
                   "seconds": round(seconds, 2), "n_people": n_people, "world_seed": world_seed,
                   "popularity": popularity}
            rows.append(row)
            if progress:
                print(f"  knowledge: L{shape[0]} E{shape[1]} N={n_params:,} at {row['exposures']:.0f} exposures: "
                      f"{kb['bits']:.0f}/{kb['total_bits']:.0f} bits ({row['bits_per_param']:.3f} bits/param, "
                      f"acc {kb['accuracy']:.3f}, val {row['val_loss']:.4f} floor {floor:.4f}) {seconds:.0f} s",
                      flush=True)
    return rows
