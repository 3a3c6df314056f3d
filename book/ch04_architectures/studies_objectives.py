"""Pre-training objectives, and what a mask lets attention see. Survey §4.2.3 (objectives), §4.3 (how the
architectures are pre-trained), §4.2.2 (position embeddings).

Two studies on the chapter's one small-run recipe (`book.runs.ArchRun`):

- `objectives_study`: the same data and token budget (the same run.steps batches of run.batch_size windows
  of run.block_size characters, drawn from one seeded stream) trained with three objectives:
    causal LM       a causal decoder, next-token loss on every position (GPT);
    prefix LM       the same stack with a prefix mask; each window is split at a random point P per row, the
                    first P tokens are read bidirectionally and the loss is on the rest only (UniLM, T5's
                    "prefix LM" objective; a random split so that every position is sometimes predicted);
    span corruption an encoder-decoder (`minillm.model.encdec`) on T5's objective: 15% of each window hidden in
                    spans of mean length 3, each replaced by a sentinel id; the decoder emits each sentinel and
                    the tokens it hid (`span_corruption`, Raffel et al. 2020).
  The same input tokens give span corruption about a fifth of the causal LM's supervised tokens, so a fourth
  arm trains it until it has as many (budget="targets", about five times the steps).
  Every model has the same vocabulary (characters + sentinels), n_layer blocks in all and (nearly) the same
  non-embedding parameters (the encoder-decoder's cross-attention paid for with a narrower MLP,
  `matched_encdec_ffn`). Then the same three probes on the same held-out windows, each model used the way its
  architecture can be (all losses in nats per character, on exactly the same target characters):
    next_token  every character of a window from the ones before it. Decoders: plain next-token prediction
                (the prefix LM with a one-token prefix, i.e. causally). Encoder-decoder: the whole window as
                one hidden span: source = [sentinel 0], decoder = sentinel 0 then the text.
    span_fill   T5's own task: the characters of the corrupted windows' hidden spans. Encoder-decoder: its
                training input (both sides of every span, in the source). Decoders, by conditioning on what
                they can read: the left context of each span (the prefix LM reads it bidirectionally, as its
                prefix); a decoder never sees the right context, which is the difference being measured.
    suffix      the conditional task: the second half of a window given the first (the chapter's
                architecture comparison). Decoders: the suffix after a prefix (bidirectional for the prefix LM).
                Encoder-decoder: source = first half + sentinel 0, decoder writes the rest (the span at the end
                of the text that T5's corruption always hides).

- `permutation_study`: why attention needs positions. Without position information and without a mask, a
  transformer is permutation-equivariant: shuffle the tokens and every output row moves with its token,
  unchanged. RoPE or learned positions break that; a causal mask breaks it too, so a causal model without
  positions still sees order, through the mask only. Run in float64, so "unchanged" means to rounding.

Rows are plain dicts (JSON-ready). Figures: `plots_objectives.py`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from book.ch04_architectures.studies_arch import _build, matched_encdec_ffn
from book.ch04_architectures.studies_attention import _check_run, _positive_int
from book.runs import ArchRun, study_data

__all__ = ["OBJECTIVES", "PROBES", "n_sentinels", "span_layout", "objectives_study", "arm_label", "objectives_table",
           "permutation_study"]

OBJECTIVES = ("causal LM", "prefix LM", "span corruption")
PROBES = ("next_token", "span_fill", "suffix")
NOISE_DENSITY, MEAN_SPAN = 0.15, 3.0  # T5's defaults (Raffel et al. 2020, §3.3)


# ============================================================================================ helpers


def n_sentinels(block_size: int) -> int:
    """How many sentinel ids span_corruption uses on windows of block_size tokens (its span count; at least 1,
    which the probes' one-span sources need)."""
    from minillm.model.encdec import span_corruption

    src, _, _ = span_corruption(torch.zeros(1, block_size, dtype=torch.long), NOISE_DENSITY, MEAN_SPAN,
                                sentinel_start=1)
    return max(1, int((src >= 1).sum()))


def span_layout(ids: torch.Tensor, src: torch.Tensor, dec_in: torch.Tensor, targets: torch.Tensor,
                sentinel_start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where span_corruption hid tokens: (noise (B, L) bool, starts (B, k) first position of each span).

    Rebuilt from its outputs (the decoder sequence lists each sentinel then its span's tokens), then checked:
    the rebuilt text must equal `ids`, else a RuntimeError (the outputs do not come from these ids)."""
    B, L = ids.shape
    seq = torch.cat([dec_in[:, :1], targets], dim=1)  # (B, n_noise + k): sentinel, hidden tokens, sentinel, ...
    noise = torch.zeros(B, L, dtype=torch.bool)
    starts = []
    for b in range(B):  # a loop over at most a few dozen rows of ~64 tokens: clearer than a scatter
        spans: list[list[int]] = []
        for t in seq[b].tolist():
            if t >= sentinel_start:
                spans.append([])
            else:
                spans[-1].append(t)
        rebuilt, row_starts = [], []
        for t in src[b].tolist():
            if t >= sentinel_start:
                row_starts.append(len(rebuilt))
                rebuilt.extend(spans[t - sentinel_start])
            else:
                rebuilt.append(t)
        if rebuilt != ids[b].tolist():
            raise RuntimeError(f"row {b}: src/dec_in/targets do not rebuild ids; pass span_corruption's outputs "
                               "for these very ids and its sentinel_start")
        for s, span in zip(row_starts, spans):
            noise[b, s:s + len(span)] = True
        starts.append(row_starts)
    return noise, torch.tensor(starts, dtype=torch.long)


def _nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token loss (B, T) of logits (B, T, V) against targets (B, T)."""
    return F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")


def _eval_windows(val: torch.Tensor, L: int, n: int) -> torch.Tensor:
    """n held-out windows of L tokens spread evenly over the split: (n, L)."""
    if len(val) < L + 1:
        raise ValueError(f"the held-out split has {len(val)} tokens, fewer than one window of {L}; use more n_docs")
    starts = torch.linspace(0, len(val) - L, n).long()
    return torch.stack([val[s:s + L] for s in starts.tolist()])


# ============================================================================================ training


def _batch(objective: str, x: torch.Tensor, y: torch.Tensor, vocab: int, gen: torch.Generator) -> tuple:
    """One training batch of `objective` from a next-token batch x, y (B, L): what its loss needs."""
    from minillm.model.encdec import span_corruption

    if objective == "causal LM":
        return (x, y)
    if objective == "prefix LM":
        B, L = x.shape
        P = torch.randint(1, L, (B,), generator=gen)  # (B,) a split point per row, 1..L-1
        tgt = y.clone()
        tgt[torch.arange(L)[None, :] < (P[:, None] - 1)] = -100  # positions < P-1 see their own target
        return (x, tgt, P)
    return span_corruption(x, NOISE_DENSITY, MEAN_SPAN, sentinel_start=vocab, generator=gen)  # src, dec_in, tgt


def _loss(model: nn.Module, batch: tuple) -> torch.Tensor:
    """loss_fn for train_step: each objective's batch through its model (mean over the supervised targets)."""
    if len(batch) == 2:
        return model(*batch)[1]
    if isinstance(batch[2], torch.Tensor) and batch[2].dim() == 1:  # prefix LM: (x, targets, P)
        return model(batch[0], batch[1], prefix_len=batch[2])[1]
    return model(*batch)[1]  # encoder-decoder: (src, dec_in, targets)


def _train(model: nn.Module, objective: str, run: ArchRun, vocab: int, steps: int) -> dict:
    """`steps` steps of `objective` (minillm's AdamW, warmup + cosine to `steps`, clip 1.0, fp32: fit_lm's
    recipe) on the batch stream seeded with run.seed, the one every objective sees (a longer run sees the same
    first run.steps batches, then more). Returns train_loss (mean of the last 10% of steps) and
    targets_per_step (supervised tokens per step, mean)."""
    from minillm.data.loader import get_batch
    from minillm.device import resolve_device
    from minillm.train.optim import build_optimizer, lr_at
    from minillm.train.step import train_step

    splits = study_data(run)[0]
    device = resolve_device(run.device)
    model.to(device)
    tcfg = run.train_config(max_steps=steps, warmup_steps=min(run.warmup_steps, steps))
    opt = build_optimizer(model, tcfg, device)
    params = [p for p in model.parameters() if p.requires_grad]
    stream = torch.Generator().manual_seed(run.seed)  # the same windows for every objective
    noise = torch.Generator().manual_seed(run.seed + 1)  # split points / spans: the objective's own draws
    tail = max(1, steps // 10)
    losses, targets = [], 0
    model.train()
    for step in range(steps):
        x, y = get_batch(splits.train, run.batch_size, run.block_size, device, stream)  # (B, L) each
        batch = tuple(t.to(device) if isinstance(t, torch.Tensor) else t
                      for t in _batch(objective, x.cpu(), y.cpu(), vocab, noise))
        res = train_step(model, opt, [batch], loss_fn=_loss, lr=lr_at(step, tcfg), grad_clip=tcfg.grad_clip,
                         params=params)
        targets += int((batch[-1 if objective != "prefix LM" else 1] != -100).sum())
        if step >= steps - tail:
            losses.append(float(res.loss))
    model.eval()
    return {"train_loss": sum(losses) / len(losses), "targets_per_step": targets / steps}


# ============================================================================================ probes


@torch.no_grad()
def _probe(model: nn.Module, objective: str, w: torch.Tensor, corrupted: tuple, vocab: int) -> dict[str, float]:
    """The three probes' mean losses for one model on held-out windows w (n, L) and their corruption."""
    n, L = w.shape
    P = L // 2
    s0 = torch.full((n, 1), vocab, dtype=torch.long)  # sentinel 0
    src, dec_in, tgt = corrupted
    noise, starts = span_layout(w, src, dec_in, tgt, vocab)  # (n, L), (n, k)
    if objective == "span corruption":
        nt = _nll(model(s0, torch.cat([s0, w[:, :-1]], 1))[0], w)[:, 1:]  # (n, L-1): w1.. as the decoders
        span = _nll(model(src, dec_in)[0], tgt)[tgt < vocab]  # the hidden characters, not the sentinels
        suffix = _nll(model(torch.cat([w[:, :P], s0], 1), torch.cat([s0, w[:, P:-1]], 1))[0], w[:, P:])
        return {"next_token": nt.mean().item(), "span_fill": span.mean().item(), "suffix": suffix.mean().item()}
    x, y = w[:, :-1], w[:, 1:]  # (n, L-1): target j is w[j+1]
    prefix = objective == "prefix LM"
    kw = (lambda p: {"prefix_len": p}) if prefix else (lambda p: {})  # noqa: E731
    nt = _nll(model(x, **kw(1))[0], y)  # (n, L-1); a one-token prefix = causal
    suffix = _nll(model(x, **kw(P))[0], y)[:, P - 1:]  # targets w[P:]
    hit = noise[:, 1:]  # (n, L-1) which targets are hidden characters (position 0 never is: a gap comes first)
    if prefix:  # each span read after its left context as a bidirectional prefix
        span_nll = torch.zeros(n, L - 1)
        span_id = torch.cumsum((torch.arange(L)[None, :] == starts[:, :, None]).any(1).long(), 1)[:, 1:] - 1
        for i in range(starts.size(1)):
            nll_i = _nll(model(x, prefix_len=starts[:, i])[0], y)  # (n, L-1)
            span_nll = torch.where(span_id == i, nll_i, span_nll)
    else:
        span_nll = nt
    return {"next_token": nt.mean().item(), "span_fill": span_nll[hit].mean().item(), "suffix": suffix.mean().item()}


def objectives_study(run: ArchRun | None = None, n_layer: int = 4, equal_targets: bool = True) -> list[dict]:
    """Causal LM, prefix LM and T5 span corruption on the same windows and steps; the three probes on each.

    With equal_targets, a fourth arm trains span corruption for as many steps as it takes to put a loss on as
    many tokens as the causal LM did in run.steps (about L / (0.15 L + spans) times more steps): whether
    span corruption falls behind per input token or per supervised token.

    Rows (OBJECTIVES order, then the equal-targets arm): objective, budget ("tokens": run.steps steps, the same
    input tokens for all; "targets": the causal LM's number of supervised tokens), arch, params
    (non-embedding), params_total, ffn_hidden, n_layer, train_loss (its own objective, last 10% of steps),
    targets_per_step (supervised tokens per step: every token for the causal LM, about half for the prefix
    LM, 15% plus sentinels for T5), targets (all steps), next_token, span_fill, suffix (probe losses,
    nats/char, on the same held-out characters for every row), steps, tokens (input tokens seen), n_sentinels,
    floor (the corpus's entropy, nats/char)."""
    from minillm.model.encdec import EncoderDecoder, span_corruption
    from minillm.model.transformer import GPT

    run = _check_run(run)
    _positive_int("n_layer", n_layer)
    if n_layer < 2:
        raise ValueError(f"n_layer={n_layer} must be >= 2: the encoder-decoder needs a block on each side")
    if not isinstance(equal_targets, bool):
        raise TypeError(f"equal_targets={equal_targets!r} must be a bool")
    splits, chars, _, floor = study_data(run)
    k = n_sentinels(run.block_size)
    vocab = chars + k  # sentinels are the ids chars .. chars + k - 1, for every model (equal embeddings)
    cfg = run.model_config(vocab, n_layer=n_layer)
    n_enc = n_layer // 2
    makers = {"causal LM": ("causal decoder", lambda: _build(GPT, cfg, run.seed)),
              "prefix LM": ("prefix decoder", lambda: _build(GPT, cfg.replace(attention_mask="prefix"), run.seed)),
              "span corruption": ("encoder-decoder", lambda: _build(
                  EncoderDecoder, cfg.replace(ffn_hidden=matched_encdec_ffn(cfg, n_enc)), run.seed,
                  n_encoder_layer=n_enc))}
    w = _eval_windows(torch.as_tensor(splits.val, dtype=torch.long), run.block_size, run.eval_windows)  # (n, L)
    corrupted = span_corruption(w, NOISE_DENSITY, MEAN_SPAN, sentinel_start=chars,
                                generator=torch.Generator().manual_seed(run.seed + 2))
    # decoder targets per window of span corruption: the same count in every window (n_noise + spans - 1)
    per_window = span_corruption(w[:1], NOISE_DENSITY, MEAN_SPAN, sentinel_start=chars)[2].size(1)
    arms = [(o, "tokens", run.steps) for o in OBJECTIVES]
    if equal_targets:
        arms.append(("span corruption", "targets", -(-run.steps * run.block_size // per_window)))  # ceil
    rows = []
    for objective, budget, steps in arms:
        arch, make = makers[objective]
        model = make()
        trained = _train(model, objective, run, chars, steps)
        model.cpu()
        rows.append({"objective": objective, "budget": budget, "arch": arch, "params": model.num_params(),
                     "params_total": model.num_params(False), "ffn_hidden": model.config.ffn_hidden,
                     "n_layer": n_layer, **trained, "targets": round(trained["targets_per_step"] * steps),
                     **_probe(model, objective, w, corrupted, chars), "steps": steps,
                     "tokens": steps * run.batch_size * run.block_size, "n_sentinels": k, "floor": floor})
    return rows


def arm_label(row: dict) -> str:
    """'causal LM', ..., and 'span corruption, equal targets' for the longer arm."""
    return row["objective"] + (", equal targets" if row.get("budget") == "targets" else "")


def objectives_table(rows: Sequence[dict]) -> str:
    """The rows as a fixed-width table: one line per objective, its probe losses and its targets per step."""
    head = f"{'objective':32s} {'next_token':>10s} {'span_fill':>10s} {'suffix':>8s} {'targets/step':>13s}"
    lines = [head] + [f"{arm_label(r):32s} {r['next_token']:10.3f} {r['span_fill']:10.3f} {r['suffix']:8.3f} "
                      f"{r['targets_per_step']:13.0f}" for r in rows]
    return "\n".join(lines)


# ============================================================================================ positions


def permutation_study(T: int = 8, *, seed: int = 0, n_layer: int = 2, n_embd: int = 32, n_head: int = 4,
                      vocab_size: int = 16) -> list[dict]:
    """Shuffle a sequence's tokens and compare each model's outputs with its unshuffled outputs, shuffled.

    Untrained GPTs (float64, eval mode) whose only differences are the position scheme and the mask: every arm
    is built with attention_mask="prefix" and called with prefix_len=T (every token sees every token:
    bidirectional) or None (causal). Arms with the same position scheme and seed have the same weights, so
    ("none", "bidirectional") and ("none", "causal") are one model under two masks.
    Rows: position, mask, max_abs_diff (max |h(x[perm]) - h(x)[perm]| over the final hidden states (1, T, C),
    which the final norm keeps of order 1), equivariant (torch.allclose of the two)."""
    from minillm.config import ModelConfig
    from minillm.model.transformer import GPT

    for name, v in (("T", T), ("n_layer", n_layer), ("n_embd", n_embd), ("n_head", n_head),
                    ("vocab_size", vocab_size)):
        _positive_int(name, v)
    if T < 2:
        raise ValueError(f"T={T} must be >= 2: one token cannot be shuffled")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(vocab_size, (1, T), generator=gen)  # (1, T)
    perm = torch.randperm(T, generator=gen)
    while torch.equal(perm, torch.arange(T)):  # the identity would prove nothing
        perm = torch.randperm(T, generator=gen)
    rows = []
    for position, mask in (("none", "bidirectional"), ("learned", "bidirectional"), ("rope", "bidirectional"),
                           ("none", "causal"), ("rope", "causal")):
        cfg = ModelConfig(vocab_size=vocab_size, block_size=T, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                          position=position, attention_mask="prefix", dropout=0.0)
        torch.manual_seed(seed)
        model = GPT(cfg).double().eval()
        P = T if mask == "bidirectional" else None
        with torch.no_grad():
            h = model.hidden_states(idx, prefix_len=P)  # (1, T, C)
            h_shuffled = model.hidden_states(idx[:, perm], prefix_len=P)  # (1, T, C)
        rows.append({"position": position, "mask": mask,
                     "max_abs_diff": float((h_shuffled - h[:, perm]).abs().max()),
                     "equivariant": bool(torch.allclose(h_shuffled, h[:, perm])), "T": T, "perm": perm.tolist()})
    return rows
