"""Architecture studies: causal vs prefix decoder vs encoder-decoder, prefix continuation, mixture of experts.

Survey §4.2.1 (mainstream architectures) names three families, the causal decoder (GPT), the prefix decoder
(GLM, U-PaLM) and the encoder-decoder (T5, BART), plus mixture-of-experts layers that any of them may use.
Survey §4.2.4 (analysis) reports what comparisons found: causal decoders are the default because their
next-token objective trains on every position; a prefix decoder can be obtained cheaply by continuing a
trained causal decoder with the prefix mask (U-PaLM) instead of training one from scratch. Small experiments
on the book's one small-run recipe (`book.runs`):

- `fit_lm`: one training loop (minillm's AdamW, warmup + cosine, grad clip 1.0) for all three families, so
  they are compared fairly: same batches (a generator seeded with run.seed), same steps, same schedule.
  Each step is minillm's shared `train.step.train_step` (the Trainer's and fine-tuning's) with a loss_fn
  that knows the three families: decoder-only models get targets before the prefix end set to -100; the
  encoder-decoder gets the same prediction problem through `split_prefix_batch`. The Trainer itself cannot
  be used here: it calls model(x, y) without prefix_len, and knows neither the encoder-decoder's inputs nor
  continuing a batch stream.
- held-out loss on the targets at positions >= prefix_len - 1 only (all three families predict exactly those;
  prefix positions are context, and a prefix decoder sees them bidirectionally): the library's
  `minillm.evaluation.loss.heldout_loss(..., prefix_len=P)`.
- `prefix_continuation`: causal decoder trained, then continued as a prefix decoder, vs a prefix decoder from
  scratch on the same total tokens.
- `architecture_comparison`: the three families at (nearly) equal parameter counts.
- `moe_study`: top-k MoE at fixed active parameters vs a dense model, with and without the load-balancing loss,
  with the experts' load recorded during training (router collapse without balancing).

Losses here are always pure next-token cross-entropy from the logits, so an MoE's auxiliary losses never leak
into a comparison. Rows are plain dicts (JSON-ready). Figures: `plots_attention.py`.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from minillm.config import ModelConfig
from minillm.evaluation.loss import heldout_loss
from book.runs import ArchRun, study_data
from book.ch04_architectures.studies_attention import _check_run, _distinct, _positive_int


def _is_encdec(model: nn.Module) -> bool:
    from minillm.model.encdec import EncoderDecoder

    return isinstance(model, EncoderDecoder)


def _check_prefix(run: ArchRun, prefix_len: int | None) -> int:
    P = run.block_size // 2 if prefix_len is None else prefix_len
    if not isinstance(P, int) or isinstance(P, bool) or not 1 <= P < run.block_size:
        raise ValueError(f"prefix_len={P!r} must be an int in [1, run.block_size - 1 = {run.block_size - 1}]: "
                         f"some suffix must be left to predict")
    return P


def _lm_logits_targets(model: nn.Module, x: torch.Tensor, y: torch.Tensor, prefix_len: int | None,
                       suffix_only: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(logits, targets, model's own loss) for a next-token batch x, y (B, L), in any of the three families.

    The targets are the suffix's (positions >= prefix_len - 1) when suffix_only, else all of y. The model's
    loss includes an MoE's auxiliary terms (what training minimises); the logits give the pure LM loss."""
    if _is_encdec(model):
        from minillm.model.encdec import split_prefix_batch

        if prefix_len is None:
            raise ValueError("an encoder-decoder needs prefix_len: the encoder reads x[:, :prefix_len]")
        src, dec_in, tgt = split_prefix_batch(x, y, prefix_len)  # (B, P), (B, L-P+1), (B, L-P+1)
        logits, loss = model(src, dec_in, tgt)
        return logits, tgt, loss
    if model.config.attention_mask == "prefix" and (prefix_len is None or not suffix_only):
        raise ValueError("a prefix decoder needs prefix_len and suffix_only=True: it sees its prefix "
                         "bidirectionally, so a loss on prefix positions would be copying the next token")
    start = 0 if prefix_len is None else prefix_len - 1
    tgt = y
    if suffix_only and start:
        tgt = y.clone()
        tgt[:, :start] = -100  # the prefix is context: no loss there
    kwargs = {"prefix_len": prefix_len} if model.config.attention_mask == "prefix" else {}
    logits, loss = model(x, tgt, **kwargs)
    return logits, tgt, loss


def _suffix_val(model: nn.Module, run: ArchRun, ids: torch.Tensor, prefix_len: int | None) -> float:
    """Held-out loss on the suffix targets (window positions >= prefix_len - 1; all when prefix_len is None) of
    run.eval_windows windows of run.block_size tokens: the library's heldout_loss with prefix_len."""
    return heldout_loss(model, ids, length=run.block_size, max_windows=run.eval_windows, prefix_len=prefix_len)


def _fit_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], *, prefix_len: int | None,
              suffix_only: bool) -> torch.Tensor:
    """loss_fn for train_step: the model's own loss (MoE auxiliary terms included) in any of the families."""
    return _lm_logits_targets(model, *batch, prefix_len, suffix_only)[2]


def fit_lm(model: nn.Module, run: ArchRun, steps: int, *, prefix_len: int | None = None, suffix_only: bool = True,
           generator: torch.Generator | None = None, eval_every: int | None = None,
           on_step: Callable[[int, nn.Module], None] | None = None) -> list[dict]:
    """Train `model` for `steps` steps on study_data(run); returns the history rows.

    Recipe (run.train_config's, as train_config's): minillm's AdamW with weight decay on matrices, peak run.lr
    after min(run.warmup_steps, steps) warmup steps, cosine to lr/10 at `steps`, grad-norm clip 1.0, batches of
    run.batch_size windows of run.block_size tokens drawn with `generator` (default: seeded with run.seed;
    pass one generator to consecutive calls to continue the same batch stream). prefix_len: the prefix
    decoder's mask (attention_mask="prefix"), the encoder's input length, and where the loss starts when
    suffix_only. on_step(step, model) runs after each optimizer step (e.g. to read the router stats of that
    step's forward pass; the gradients are already zeroed by then).

    Rows every eval_every steps (default steps // 8) and at the end: step, loss (mean training loss of the
    interval, as minimised: MoE auxiliary terms included), val_loss (heldout_loss with prefix_len, so on the
    suffix whenever prefix_len is given, even for a model trained on every position; run.eval_windows windows)."""
    from minillm.data.loader import get_batch
    from minillm.device import resolve_device
    from minillm.train.optim import build_optimizer, lr_at
    from minillm.train.step import train_step

    _positive_int("steps", steps)
    splits, vocab, _, _ = study_data(run)
    device = resolve_device(run.device)
    model.to(device)
    tcfg = run.train_config(max_steps=steps, warmup_steps=min(run.warmup_steps, steps))
    opt = build_optimizer(model, tcfg, device)
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(run.seed) if generator is None else generator
    every = max(1, steps // 8) if eval_every is None else _positive_int("eval_every", eval_every)
    history, loss_sum, n = [], torch.zeros((), device=device), 0
    loss_fn = functools.partial(_fit_loss, prefix_len=prefix_len, suffix_only=suffix_only)
    model.train()
    for step in range(steps):
        batch = get_batch(splits.train, run.batch_size, run.block_size, device, gen)  # (x, y), (B, L) each
        # fp32 (policy=None) even on CUDA, as the shipped gpu-size records were made; a non-finite step is
        # dropped (weights kept) and its interval's row shows nan instead of every later row
        res = train_step(model, opt, [batch], loss_fn=loss_fn, lr=lr_at(step, tcfg), grad_clip=tcfg.grad_clip,
                         params=params)
        if on_step is not None:
            on_step(step + 1, model)
        loss_sum += res.loss
        n += 1
        if (step + 1) % every == 0 or step + 1 == steps:
            val = _suffix_val(model, run, splits.val, prefix_len)
            history.append({"step": step + 1, "loss": (loss_sum / n).item(), "val_loss": val})
            loss_sum.zero_()
            n = 0
    return history


def _build(cls, cfg: ModelConfig, seed: int, **kwargs) -> nn.Module:
    torch.manual_seed(seed)  # every arm starts from the same random stream
    return cls(cfg, **kwargs)


# ============================================================================================ 1. prefix LM


def prefix_continuation(run: ArchRun | None = None, prefix_len: int | None = None,
                        continue_steps: int | None = None) -> list[dict]:
    """U-PaLM's recipe in miniature: does a causal decoder, continued briefly with the prefix mask, match a
    prefix decoder trained from scratch on the same tokens?

    Phase 1: a causal decoder, run.steps steps, next-token loss on every position (its own objective).
    Then, from that checkpoint, S2 = continue_steps (default run.steps // 4) more steps with a fresh schedule
    on the batches that follow in the same stream, either as a prefix decoder (attention_mask="prefix",
    loss on the suffix only: the weights move over with load_state_dict, shapes are equal) or still causal.
    Baseline: a prefix decoder from scratch for run.steps + S2 steps on that very stream. prefix_len defaults
    to run.block_size // 2. All are scored on the suffix of the held-out split (prefix models with the mask).

    Rows: arm ("causal", "causal+causal", "causal->prefix", "prefix scratch"), mask, steps, tokens (inputs
    seen: steps × batch × block_size), suffix_val_loss, history (fit_lm rows; a continued arm's include
    phase 1's, steps offset), prefix_len, params, floor (the corpus's entropy, nats/char)."""
    from minillm.model.transformer import GPT

    run = _check_run(run)
    P = _check_prefix(run, prefix_len)
    S2 = max(1, run.steps // 4) if continue_steps is None else _positive_int("continue_steps", continue_steps)
    splits, vocab, _, floor = study_data(run)
    causal_cfg = run.model_config(vocab)
    prefix_cfg = causal_cfg.replace(attention_mask="prefix")
    score = lambda m: _suffix_val(m, run, splits.val, P)  # noqa: E731
    tokens = lambda s: s * run.batch_size * run.block_size  # noqa: E731

    gen = torch.Generator().manual_seed(run.seed)
    causal = _build(GPT, causal_cfg, run.seed)
    hist1 = fit_lm(causal, run, run.steps, prefix_len=P, suffix_only=False, generator=gen)
    stream_state = gen.get_state()  # both continuations draw the batches that follow phase 1's
    rows = [{"arm": "causal", "mask": "causal", "steps": run.steps, "tokens": tokens(run.steps),
             "suffix_val_loss": score(causal), "history": hist1}]
    shifted = lambda h: [{**r, "step": r["step"] + run.steps} for r in h]  # noqa: E731
    for arm, cfg in (("causal+causal", causal_cfg), ("causal->prefix", prefix_cfg)):
        model = GPT(cfg)
        model.load_state_dict(causal.state_dict())  # same parameter shapes: only the mask differs
        gen.set_state(stream_state)
        hist2 = fit_lm(model, run, S2, prefix_len=P, suffix_only=cfg.attention_mask == "prefix", generator=gen)
        rows.append({"arm": arm, "mask": cfg.attention_mask, "steps": run.steps + S2,
                     "tokens": tokens(run.steps + S2), "suffix_val_loss": score(model),
                     "history": hist1 + shifted(hist2)})
    scratch = _build(GPT, prefix_cfg, run.seed)
    hist = fit_lm(scratch, run, run.steps + S2, prefix_len=P, suffix_only=True)
    rows.append({"arm": "prefix scratch", "mask": "prefix", "steps": run.steps + S2, "tokens": tokens(run.steps + S2),
                 "suffix_val_loss": score(scratch), "history": hist})
    for r in rows:
        r.update(prefix_len=P, params=causal.num_params(), floor=floor)
    return rows


# ============================================================================================ 2. three families


def matched_encdec_ffn(cfg: ModelConfig, n_encoder_layer: int) -> int:
    """ffn_hidden for EncoderDecoder(cfg, n_encoder_layer) whose non-embedding parameters match GPT(cfg)'s.

    Cross-attention adds ~4·C² per decoder layer; the MLPs are the knob that pays for it. Parameters are
    linear in ffn_hidden, so two models built on the meta device (no memory) give the slope and intercept,
    and the rounded solution is returned (at least 1)."""
    from minillm.model.encdec import EncoderDecoder
    from minillm.model.transformer import GPT

    with torch.device("meta"):
        target = GPT(cfg).num_params()
        a = EncoderDecoder(cfg.replace(ffn_hidden=8), n_encoder_layer).num_params()
        b = EncoderDecoder(cfg.replace(ffn_hidden=16), n_encoder_layer).num_params()
    return max(1, round(8 + (target - a) * 8 / (b - a)))


def architecture_comparison(run: ArchRun | None = None, prefix_len: int | None = None,
                            n_layer: int = 4) -> list[dict]:
    """Causal decoder, prefix decoder and encoder-decoder on the same prediction problem: the suffix of each
    window given its prefix (prefix_len default run.block_size // 2).

    All three: run's width and heads, n_layer blocks in all (the encoder-decoder: n_layer // 2 encoder and the
    rest decoder blocks), trained by fit_lm on the same batches for run.steps steps with loss on the suffix
    only. The encoder-decoder's cross-attention would add ~15% parameters, so its ffn_hidden is shrunk to
    `matched_encdec_ffn` (e.g. 3·C instead of 4·C): non-embedding counts then agree within a few %.

    Rows: arch, params (non-embedding), params_total, ffn_hidden, n_layer, suffix_val_loss, history (rows
    with val_loss = held-out suffix loss during training), prefix_len, steps, tokens, floor."""
    from minillm.model.encdec import EncoderDecoder
    from minillm.model.transformer import GPT

    run = _check_run(run)
    P = _check_prefix(run, prefix_len)
    if not isinstance(n_layer, int) or isinstance(n_layer, bool) or n_layer < 2:
        raise ValueError(f"n_layer={n_layer!r} must be an int >= 2 (the encoder-decoder needs a block on each side)")
    splits, vocab, _, floor = study_data(run)
    cfg = run.model_config(vocab, n_layer=n_layer)
    n_enc = n_layer // 2
    enc_cfg = cfg.replace(ffn_hidden=matched_encdec_ffn(cfg, n_enc))
    arms = (("causal decoder", lambda: _build(GPT, cfg, run.seed)),
            ("prefix decoder", lambda: _build(GPT, cfg.replace(attention_mask="prefix"), run.seed)),
            ("encoder-decoder", lambda: _build(EncoderDecoder, enc_cfg, run.seed, n_encoder_layer=n_enc)))
    rows = []
    for arch, make in arms:
        model = make()
        hist = fit_lm(model, run, run.steps, prefix_len=P, suffix_only=True)
        rows.append({"arch": arch, "params": model.num_params(), "params_total": model.num_params(False),
                     "ffn_hidden": model.config.ffn_hidden, "n_layer": n_layer,
                     "suffix_val_loss": _suffix_val(model, run, splits.val, P),
                     "history": hist, "prefix_len": P, "steps": run.steps, "tokens": run.tokens, "floor": floor})
    return rows


# ============================================================================================ 3. MoE


def moe_study(n_experts: Sequence[int] = (1, 2, 4, 8), top_k: int = 1, *, run: ArchRun | None = None,
              balance: Sequence[bool] = (True, False), aux_weight: float = 0.01,
              capacity_factor: float | None = 1.25, load_every: int | None = None) -> list[dict]:
    """Mixture of experts at fixed active parameters, with and without the load-balancing loss.

    Each expert is as wide as the dense MLP (ffn_hidden unchanged) and each token uses top_k of them, so with
    top_k=1 every model computes what the dense one does per token (plus a tiny router) while holding E times
    the MLP parameters. The first row is the dense baseline (n_expert=0). For each E and each b in balance:
    moe_aux_weight = aux_weight if b else 0 (router z-loss left at its default). Trained by fit_lm on full
    windows (the same batches for every arm); every load_every steps (default max(1, run.steps // 50)) each
    layer's expert load (fraction of token-slots routed to each expert, `model.moe_stats()`) is recorded.

    Rows: n_expert, top_k, balance, aux_weight, val_loss (pure next-token loss), params_total (non-embedding),
    params_active (the top_k experts a token uses, not all E), load_steps, load_history (first layer: one (E,)
    list per recorded step, rows sum to 1: the heatmap), max_share (largest expert's share at the end, max
    over layers; 1/E is perfect balance, 1 is collapse onto one expert), dropped (token-slots over capacity at
    the last step, mean over layers), floor, history. Dense rows carry None for the MoE-only fields. With
    E = 1 the balancing loss is a constant (no gradient), so its two rows coincide: a check, not a result."""
    from minillm.model.transformer import GPT

    run = _check_run(run)
    n_experts = _distinct("n_experts", n_experts, _positive_int)
    _positive_int("top_k", top_k)
    if top_k > min(n_experts):
        raise ValueError(f"top_k={top_k} exceeds the smallest n_experts={min(n_experts)}: a token cannot use "
                         f"more experts than exist")
    balance = list(balance)
    if not balance or any(not isinstance(b, bool) for b in balance) or len(set(balance)) != len(balance):
        raise ValueError(f"balance={balance!r} must hold True and/or False, each once")
    every = max(1, run.steps // 50) if load_every is None else _positive_int("load_every", load_every)
    splits, vocab, _, floor = study_data(run)
    dense = run.model_config(vocab)
    arms = [(0, None)] + [(E, b) for E in n_experts for b in balance]
    rows = []
    for E, b in arms:
        cfg = dense if E == 0 else dense.replace(n_expert=E, expert_top_k=top_k, capacity_factor=capacity_factor,
                                                 moe_aux_weight=aux_weight if b else 0.0)
        model = _build(GPT, cfg, run.seed)
        loads: list[tuple[int, list[dict]]] = []

        def record(step, m, E=E, loads=loads):
            if E and (step % every == 0 or step == run.steps):
                loads.append((step, m.moe_stats()))
        hist = fit_lm(model, run, run.steps, on_step=record)
        row = {"n_expert": E, "top_k": top_k if E else None, "balance": b,
               "aux_weight": (aux_weight if b else 0.0) if E else None,
               "val_loss": _suffix_val(model, run, splits.val, None), "floor": floor,
               "params_total": model.num_params(), "params_active": model.num_active_params(),
               "load_steps": None, "load_history": None, "max_share": None, "dropped": None, "history": hist}
        if E:
            last = loads[-1][1]
            row.update(load_steps=[s for s, _ in loads],
                       load_history=[stats[0]["load"].tolist() for _, stats in loads],
                       max_share=max(float(layer["load"].max()) for layer in last),
                       dropped=sum(layer["dropped"] for layer in last) / len(last))
        rows.append(row)
    return rows
