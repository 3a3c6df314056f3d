"""Lab 07 checks: nucleus (top-p) filtering, beam search with a length penalty, and length-normalised
multiple-choice scores (Survey §4.2.4 decoding strategy, §6 utilization, §7.3 evaluation approaches).

- `top_p_filter(logits (B, V), p)` is compared with `minillm.generate.filter_logits(logits, top_p=p)`.
- `beam_search(log_probs_fn, start, beam_width, max_len, eos_id, length_penalty)` works on a pure scoring
  interface (next-token log-probs of a batch of same-length sequences), so it is testable without a model. The
  reference wraps `minillm.generate.beam_search` around a toy model that returns those log-probs; `_beam`, a
  flagged re-implementation (tested equal to it), produces the usual mistakes.
- `choice_scores(token_logprobs, n_choice_tokens, n_chars, normalize)` turns per-token log-probs of context +
  choice into the scores `minillm.evaluation.harness.score_choices` ranks by (lm-eval's acc / acc_norm).

On a mismatch the compare functions recompute the usual MISTAKES on the same inputs and name the one the student's
output equals (cumulative sum including the current token, no sort, ">" at ties, probabilities returned; greedy,
no length normalisation, prompt counted in the length, beams expanding past EOS; mean instead of sum, tokens
instead of characters, the context's tokens included).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from types import SimpleNamespace
from typing import Any, Callable

import torch

from book.grading.core import Case, Check, _compare, _Mismatch, compare_numbers, register_check
from book.grading.diagnose import Mistake, diagnosing

NORMALIZE = ("none", "tokens", "chars")


def _same_tensors(got: Any, wrong: Any) -> bool:
    """Equal tensors (shape and values; -inf matches -inf)."""
    if not (torch.is_tensor(got) and torch.is_tensor(wrong)) or got.shape != wrong.shape:
        return False
    return bool(torch.allclose(got.detach().double(), wrong.detach().double(), rtol=1e-5, atol=1e-7, equal_nan=True))


# ------------------------------------------------------------------------------------------------ 1. top-p


def _top_p_reference(logits: torch.Tensor, p: float) -> torch.Tensor:
    from minillm.generate import filter_logits

    return filter_logits(logits, top_p=p)


def _top_p_variant(logits, p, *, inclusive=False, sort=True, sorted_probs=True, strict=False, fill=float("-inf")):
    """top-p with one switch per classic mistake (the defaults give the reference's answer)."""
    order = torch.sort(logits, dim=-1, descending=True).indices if sort else torch.arange(logits.size(-1)).expand_as(
        logits)
    ranked = logits.gather(-1, order)                                        # (B, V) best first (if sorted)
    probs = torch.softmax(ranked if sorted_probs else logits, dim=-1)       # (B, V)
    before = probs.cumsum(-1) if inclusive else probs.cumsum(-1) - probs     # mass ranked above (or up to) each token
    drop_ranked = before > p if strict else before >= p
    drop = drop_ranked.scatter(-1, order, drop_ranked)                      # back to vocabulary order
    return logits.masked_fill(drop, fill)


_TOP_P_MISTAKES: tuple[Mistake, ...] = (
    (partial(_top_p_variant, inclusive=True),
     "Your cumulative sum includes the token itself, so the token that crosses p is dropped (and at a small p even "
     "the top token). Drop a token when the mass ranked ABOVE it already reaches p: cumsum - probs >= p."),
    # before the inclusive '>' variant: at p = 1 the two agree, and this one is what such an output means
    (partial(_top_p_variant, strict=True),
     "Use >= not >: a token is not needed once the tokens above it reach p exactly (the smallest set whose "
     "probability reaches p; tokens of probability 0 are never needed)."),
    (partial(_top_p_variant, inclusive=True, strict=True),
     "Your cumulative sum includes the token itself, so the token that crosses p is dropped. Drop a token when the "
     "mass ranked ABOVE it already reaches p: (cumsum - probs) >= p."),
    (partial(_top_p_variant, sort=False),
     "You did not sort: the cumulative sum runs in vocabulary order. Sort the logits descending first, then "
     "scatter the drop mask back with the sort's indices."),
    (partial(_top_p_variant, sorted_probs=False),
     "Your probabilities are those of the UNSORTED logits, so probs[i] is not the probability of the i-th ranked "
     "token: take the softmax of the sorted logits."),
    (lambda logits, p: torch.softmax(_top_p_reference(logits, p), dim=-1),
     "You returned probabilities: return the LOGITS with the dropped entries set to -inf (sampling applies the "
     "softmax afterwards)."),
    (partial(_top_p_variant, fill=0.0),
     "Dropped tokens must be -inf, not 0: a logit of 0 still has probability exp(0) / Z > 0."),
    (partial(_top_p_variant, fill=-1e9),
     "Set the dropped logits to float('-inf') exactly (a large negative number is not what the reference gives)."),
)


def _logits_case(seed: int, B: int = 4, V: int = 50, scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, V, generator=g) * torch.linspace(0.5, 2.0, B)[:, None] * scale  # rows of varied sharpness


def _top_p_hand() -> tuple[torch.Tensor, float]:
    """probs 0.5, 0.25, 0.15, 0.1 (in scrambled vocabulary order) at p = 0.7: keep 0.5 and 0.25 (0.5 < 0.7 <= 0.75)."""
    return torch.tensor([[0.15, 0.5, 0.1, 0.25]]).log(), 0.7


def _top_p_zero_mass() -> tuple[torch.Tensor, float]:
    """p = 1 with tokens whose probability underflows to exactly 0: the two tied top tokens already hold all
    the mass, so the rest are dropped (a '>' comparison keeps them)."""
    return torch.tensor([[-200.0, 0.0, -300.0, 0.0, -250.0], [0.0, 0.0, -200.0, -220.0, -240.0]]), 1.0


def _top_p_masked(seed: int) -> tuple[torch.Tensor, float]:
    """Rows already top-k filtered (some logits -inf), p = 0.8."""
    logits = _logits_case(seed, 3, 20)
    kth = logits.topk(6, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf")), 0.8


def _compare_filtered(got: Any, expected: torch.Tensor, spec: Check, case: Case) -> float:
    """core's tensor comparison, but a wrong nucleus is reported as the token ids kept (a row's -inf pattern)."""
    if torch.is_tensor(got) and got.shape == expected.shape:
        kept, want = torch.isfinite(got.detach()), torch.isfinite(expected)
        rows = (kept != want).any(-1).nonzero().flatten().tolist()
        if rows:
            r = rows[0]
            ids = lambda m: m[r].nonzero().flatten().tolist()  # noqa: E731
            raise _Mismatch(f"row {r}: you keep token ids {ids(kept)} but the nucleus is {ids(want)} "
                            f"({len(rows)} of {len(got)} rows differ)", case.hint)
    return _compare(got, expected, spec, case)


# ------------------------------------------------------------------------------------------------ 2. beam search


@dataclass(frozen=True)
class _TrigramLM:
    """A trigram 'language model': next-token log-probs (N, V) from the last two tokens of seqs (N, t). A class
    with value equality (not a closure), so two builds of the same case compare equal."""

    seed: int
    V: int = 6
    sharpness: float = 2.0
    table: torch.Tensor = field(init=False, compare=False, repr=False)  # (V*V, V) log-probs

    def __post_init__(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        table = torch.log_softmax(torch.randn(self.V * self.V, self.V, generator=g) * self.sharpness, dim=-1)
        object.__setattr__(self, "table", table)

    def __call__(self, seqs: torch.Tensor) -> torch.Tensor:
        prev2 = seqs[:, -2] if seqs.size(1) > 1 else seqs[:, -1]
        return self.table[prev2 * self.V + seqs[:, -1]]  # (N, V)


def _toy_lm(seed: int, V: int = 6, sharpness: float = 2.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A seeded log_probs_fn over V tokens; larger sharpness = more peaked next-token distributions."""
    return _TrigramLM(seed, V, sharpness)


class _ToyModel(torch.nn.Module):
    """What minillm.generate.beam_search needs: .config.block_size and forward(idx, cache=None) -> (logits, None)."""

    def __init__(self, log_probs_fn, block_size: int = 4096):
        super().__init__()
        self.fn, self.config = log_probs_fn, SimpleNamespace(block_size=block_size)

    def forward(self, idx, cache=None):
        return self.fn(idx)[:, None, :], None  # (N, 1, V): only the last position is read


def _beam_reference(log_probs_fn, start, beam_width, max_len, eos_id, length_penalty):
    """minillm.generate.beam_search's best hypothesis: (sequence (T + n,), score)."""
    from minillm.generate import beam_search

    out = beam_search(_ToyModel(log_probs_fn), start[None, :], max_len, beam_width, length_penalty,
                      stop_tokens=None if eos_id is None else [eos_id], use_cache=False)
    return out.sequences[0], out.scores[0]


def _beam(log_probs_fn, start, beam_width, max_len, eos_id, length_penalty, *, count_prompt=False):
    """The algorithm students write, with the prompt-length mistake as a switch (eos_id None: EOS not special)."""
    beams, sums, finished = start[None, :], torch.zeros(1), []  # (n, t) live beams, (n,) summed log-probs
    extra = len(start) if count_prompt else 0
    for step in range(1, max_len + 1):
        cand = sums[:, None] + log_probs_fn(beams)                              # (n, V)
        V = cand.size(1)
        top, flat = cand.flatten().topk(min(beam_width + 1, cand.numel()))
        parent, token = flat // V, flat % V
        is_eos = token == eos_id if eos_id is not None else torch.zeros_like(token, dtype=torch.bool)
        for j in is_eos[:beam_width].nonzero().flatten().tolist():
            seq = torch.cat([beams[parent[j]], token[j:j + 1]])
            finished.append((float(top[j]) / (step + extra) ** length_penalty, seq))
        if len(finished) >= beam_width:
            break
        keep = (~is_eos).nonzero().flatten()[:beam_width]
        beams, sums = torch.cat([beams[parent[keep]], token[keep, None]], dim=1), top[keep]
    else:
        finished += [(float(s) / (max_len + extra) ** length_penalty, b) for s, b in zip(sums, beams)]
    score, seq = max(finished, key=lambda h: h[0])
    return seq, score


_BEAM_MISTAKES: tuple[Mistake, ...] = (
    (lambda fn, s, k, n, e, lp: _beam(fn, s, 1, n, e, lp),
     "Your answer is GREEDY search (beam width 1): keep the beam_width best candidates at every step, over all live "
     "beams and all tokens (topk on the flattened (n_beams, V) scores), not just the best one."),
    (lambda fn, s, k, n, e, lp: _beam(fn, s, k, n, e, 0.0),
     "No length normalisation: the score is sum of log-probs / n_generated ** length_penalty; raw sums favour short "
     "hypotheses, since every token adds a negative term."),
    (partial(_beam, count_prompt=True),
     "You normalised by the full length: divide by the number of GENERATED tokens (EOS included), not by the "
     "sequence length with the prompt."),
    (lambda fn, s, k, n, e, lp: _beam(fn, s, k, n, None, lp),
     "Finished beams keep expanding past EOS: a candidate ending in eos_id is finished (scored, set aside, "
     "never extended); stop once beam_width hypotheses have finished."),
)


def _beam_args(seed: int, V: int = 6, width: int = 3, max_len: int = 6, lp: float = 1.0, prompt: int = 2,
               sharpness: float = 2.0, eos: int | None = 0) -> tuple:
    """(log_probs_fn, start (prompt,), beam_width, max_len, eos_id, length_penalty)."""
    g = torch.Generator().manual_seed(seed + 1000)
    start = torch.randint(1, V, (prompt,), generator=g)
    return _toy_lm(seed, V, sharpness), start, width, max_len, eos, lp


def _compare_beam(got: Any, expected: tuple, spec: Check, case: Case) -> float:
    """(sequence, score): the sequence exactly (prompt included), the score within tolerance."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise _Mismatch(f"expected (sequence, score), got {type(got).__name__}",
                        "Return a tuple: the best sequence (1-D LongTensor, start included) and its score (float).")
    seq, score = got
    want_seq, want_score = expected
    seq = seq.tolist() if torch.is_tensor(seq) else list(seq) if isinstance(seq, (list, tuple)) else seq
    if seq != want_seq.tolist():
        raise _Mismatch(f"best sequence {seq} but expected {want_seq.tolist()} (score {want_score:.4f})", case.hint)
    try:
        score = float(score)
    except (TypeError, ValueError):
        raise _Mismatch(f"the score must be a number, got {type(score).__name__}") from None
    if abs(score - want_score) > spec.atol + spec.rtol * abs(want_score):
        raise _Mismatch(f"right sequence, but score {score:.6g} and expected {want_score:.6g}",
                        "score = sum of the generated tokens' log-probs / n_generated ** length_penalty.")
    return abs(score - want_score)


def _same_beam(got: Any, wrong: Any) -> bool:
    try:
        seq = got[0].tolist() if torch.is_tensor(got[0]) else list(got[0])
        return seq == wrong[0].tolist() and abs(float(got[1]) - wrong[1]) < 1e-4 * (1 + abs(wrong[1]))
    except (TypeError, ValueError, IndexError, KeyError):
        return False


# ------------------------------------------------------------------------------------------------ 3. choice scores


def _choice_reference(token_logprobs, n_choice_tokens, n_chars, normalize):
    """score_choices's rule: the summed log-prob of the choice's own tokens (the last n_choice_tokens entries), as is
    ("none", lm-eval's acc) or divided by its token count ("tokens") or character count ("chars", acc_norm)."""
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize={normalize!r}; choose one of {NORMALIZE}")
    raw = torch.stack([lp[len(lp) - n:].sum() for lp, n in zip(token_logprobs, n_choice_tokens)])  # (C,)
    length = {"none": torch.ones(len(raw)), "tokens": torch.tensor(n_choice_tokens, dtype=raw.dtype),
              "chars": torch.tensor(n_chars, dtype=raw.dtype)}[normalize]
    return raw / length


def _choice_variant(lps, n_tok, n_chars, normalize, *, reduce="sum", divide=None, context=False, off=0):
    """A mistaken scorer: `divide` maps the asked normalisation to the one actually applied ("all" = the full
    length); `context` sums every token; `off` takes that many context tokens too."""
    parts = [lp if context else lp[len(lp) - n - off:] for lp, n in zip(lps, n_tok)]
    raw = torch.stack([p.mean() if reduce == "mean" else p.sum() for p in parts])
    by = {"none": [1] * len(raw), "tokens": n_tok, "chars": n_chars, "all": [len(lp) for lp in lps]}
    return raw / torch.tensor(by[(divide or {}).get(normalize, normalize)], dtype=raw.dtype)


_CHOICE_MISTAKES: tuple[Mistake, ...] = (
    (partial(_choice_variant, reduce="mean"),
     "The raw score is the SUM of the choice's token log-probs (the log-probability of the whole continuation), "
     "not their mean; normalisation is a separate, explicit step."),
    (partial(_choice_variant, divide={"chars": "tokens"}),
     "normalize='chars' divides by the number of CHARACTERS of the choice (lm-eval's acc_norm), not its tokens: "
     "character counts do not depend on the tokenizer."),
    (partial(_choice_variant, divide={"tokens": "chars"}),
     "normalize='tokens' divides by the number of the choice's TOKENS, not its characters."),
    (partial(_choice_variant, divide={"tokens": "none", "chars": "none"}),
     "The normalisation is missing: divide the sum by the token count ('tokens') or the character count ('chars')."),
    (partial(_choice_variant, context=True),
     "You included the context's tokens: only the last n_choice_tokens entries are the choice's own; the context is "
     "the same for every choice and only adds noise (and its length) to the score."),
    (partial(_choice_variant, context=True, divide={"tokens": "all"}),
     "You included the context's tokens (and divided by the full length): only the last n_choice_tokens entries "
     "belong to the choice."),
    (partial(_choice_variant, off=1),
     "Off by one: you took one context token too many; the choice's tokens are lp[-n_choice_tokens:]."),
)


def _choice_args(seed: int, normalize: str, C: int = 4, n_ctx: int = 7) -> tuple:
    """Per choice: (n_ctx - 1 + n_tok,) log-probs (the context's first token has none); token counts 1..5 and
    2-4 characters per token, so tokens and characters rank differently."""
    g = torch.Generator().manual_seed(seed)
    n_tok = torch.randint(1, 6, (C,), generator=g).tolist()
    n_chars = [n + int(torch.randint(n, 3 * n + 1, (1,), generator=g)) for n in n_tok]
    lps = [-torch.rand(n_ctx - 1 + n, generator=g) * 4 for n in n_tok]
    return lps, n_tok, n_chars, normalize


def _choice_hand(normalize: str) -> tuple:
    """A short choice (1 token, 3 chars, log-prob -2) against a long one (4 tokens, 12 chars, -1 each): raw sums
    prefer the short one, both normalisations the long one."""
    ctx = [-3.0, -3.0]
    return ([torch.tensor(ctx + [-2.0]), torch.tensor(ctx + [-1.0] * 4)], [1, 4], [3, 12], normalize)


# ------------------------------------------------------------------------------------------------ registration


def _register_lab07() -> None:
    register_check(Check(
        name="top_p_filter",
        shortcuts=("minillm.generate.filter_logits",),
        summary="top_p_filter(logits (B, V), p) -> (B, V): logits outside the nucleus (smallest top set reaching p) "
                "set to -inf",
        hint="Sort descending, probs = softmax(sorted), drop where cumsum(probs) - probs >= p (the mass ABOVE the "
             "token already reaches p), scatter the mask back with the sort indices, masked_fill(-inf).",
        reference=_top_p_reference, compare=diagnosing(_TOP_P_MISTAKES, _compare_filtered, same=_same_tensors),
        atol=0.0, rtol=0.0,
        cases=(
            Case("hand case: probs .5 .25 .15 .1 in scrambled order, p = 0.7 (keep .5 and .25)", _top_p_hand),
            Case("4 rows of 50 random logits, p = 0.9", lambda: (_logits_case(0), 0.9)),
            Case("p = 0.5, sharp and flat rows", lambda: (_logits_case(1, 6, 30, 4.0), 0.5)),
            Case("p = 0.01: only the top token survives", lambda: (_logits_case(2), 0.01),
                 "The top token is always kept (the mass above it is 0 < p)."),
            Case("already top-k filtered rows (some logits -inf), p = 0.8", partial(_top_p_masked, 3)),
            Case("p = 1 with probabilities that underflow to exactly 0", _top_p_zero_mass),
        ),
    ))
    register_check(Check(
        name="beam_search",
        shortcuts=("minillm.generate.beam_search",),
        summary="beam_search(log_probs_fn, start (T,), beam_width, max_len, eos_id, length_penalty) -> (best "
                "sequence (T + n,), score = sum log-prob / n_generated ** length_penalty)",
        hint="Each step: cand = sums[:, None] + log_probs_fn(beams) (n, V); top beam_width + 1 of cand.flatten(); "
             "EOS candidates among the first beam_width finish; the beam_width best others live on; stop when "
             "beam_width have finished, else score the live beams at max_len too; return the best score.",
        reference=_beam_reference,
        compare=diagnosing(_BEAM_MISTAKES, _compare_beam, same=_same_beam), atol=1e-5, rtol=1e-4,
        cases=(
            # the first two cases separate every mistake: each gives a different best sequence there
            Case("vocabulary 6, width 3, up to 6 tokens, length_penalty 1", partial(_beam_args, 133)),
            Case("vocabulary 8, width 4, up to 8 tokens, prompt of 3", partial(_beam_args, 63, 8, 4, 8, 1.0, 3)),
            Case("length_penalty 0 (raw sums)", partial(_beam_args, 2, 6, 3, 6, 0.0)),
            Case("length_penalty 0.6, prompt of 5 tokens", partial(_beam_args, 5, 7, 3, 7, 0.6, 5)),
            Case("flat distributions, width 2, length_penalty 1, prompt of 4", partial(_beam_args, 6, 6, 2, 6, 1.0, 4,
                                                                                      1.0)),
            Case("width 5, vocabulary 10, up to 5 tokens", partial(_beam_args, 7, 10, 5, 5, 1.0, 3, 3.0)),
        ),
    ))
    register_check(Check(
        name="choice_scores",
        shortcuts=("minillm.evaluation.harness.score_choices",),
        summary="choice_scores(token_logprobs: list of (L_i,), n_choice_tokens, n_chars, normalize) -> (C,) summed "
                "log-prob of each choice's tokens, raw / per token / per char",
        hint="raw[i] = token_logprobs[i][-n_choice_tokens[i]:].sum(); 'tokens' divides by n_choice_tokens[i], "
             "'chars' by n_chars[i], 'none' returns raw.",
        reference=_choice_reference, compare=diagnosing(_CHOICE_MISTAKES, compare_numbers), atol=1e-5, rtol=1e-5,
        cases=(
            Case("hand case, normalize='none' (raw sums prefer the short choice)", partial(_choice_hand, "none")),
            Case("hand case, normalize='chars'", partial(_choice_hand, "chars")),
            Case("random, normalize='none'", partial(_choice_args, 0, "none")),
            Case("random, normalize='tokens'", partial(_choice_args, 1, "tokens")),
            Case("random, normalize='chars'", partial(_choice_args, 2, "chars")),
            Case("one choice of one token, long context, normalize='chars'", partial(_choice_args, 3, "chars", 1, 20)),
        ),
    ))


_register_lab07()  # cheap: builds Check objects only
