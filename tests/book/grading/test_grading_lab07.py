"""Lab 07 checks (Survey §4.2.4 decoding, §7.3 evaluation approaches): minillm's references and independently
written right answers pass; each typical mistake (top-p: cumulative sum including the token, no sort, unsorted
probabilities, '>' at ties, probabilities returned; beam search: greedy, no length normalisation, the prompt in the
length, expanding past EOS; choice scores: mean not sum, tokens for chars, the context included) fails with the hint
that names it. The grading module's own beam search and choice scorer equal minillm.generate / minillm.evaluation.harness."""
import pytest
import torch

from book import grading
from minillm.config import ModelConfig
from minillm.data.tokenizer import CharTokenizer
from minillm.evaluation.harness import score_choices
from book.grading.lab07 import _beam, _beam_reference, _choice_reference, _toy_lm, _top_p_reference
from minillm.model.transformer import GPT


# ------------------------------------------------------------------------------------------------ top-p answers


def _top_p(logits, p, *, inclusive=False, sort=True, unsorted_probs=False, strict=False, probs_out=False, fill=None):
    """A student's top-p written without the reference's helpers (shifted cumsum), one switch per mistake."""
    if sort:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
    else:
        sorted_logits, order = logits, torch.arange(logits.size(-1)).repeat(logits.size(0), 1)
    probs = torch.softmax(logits if unsorted_probs else sorted_logits, dim=-1)
    cum = probs.cumsum(-1)
    above = cum if inclusive else torch.cat([torch.zeros_like(cum[:, :1]), cum[:, :-1]], dim=-1)
    drop_sorted = above > p if strict else above >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    out = logits.masked_fill(drop, float("-inf") if fill is None else fill)
    return torch.softmax(out, -1) if probs_out else out


def _top_p_hf_style(logits, p):
    """Hugging Face's TopPLogitsWarper: sort ascending, drop tokens whose cumulative mass (from the bottom, themselves
    included) is at most 1 - p, never the top token. Another right answer."""
    sorted_logits, order = logits.sort(dim=-1)
    drop_sorted = torch.softmax(sorted_logits, -1).cumsum(-1) <= 1 - p
    drop_sorted[:, -1] = False
    return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))


def _top_p_in_place(logits, p):
    drop = torch.isinf(_top_p(logits, p))
    logits[drop] = float("-inf")
    return logits


# ------------------------------------------------------------------------------------------------ beam answers


def _py_beam(fn, start, k, max_len, eos, lp, *, with_prompt=False, eos_special=True):
    """Beam search over Python lists (a different code path from lab07._beam), one switch per mistake."""
    extra = len(start) if with_prompt else 0
    live, done = [(0.0, start.tolist())], []
    for step in range(1, max_len + 1):
        logp = fn(torch.tensor([s for _, s in live]))  # (n, V)
        cands = sorted(((sc + float(logp[i, t]), s + [t]) for i, (sc, s) in enumerate(live)
                        for t in range(logp.size(1))), key=lambda c: -c[0])
        ends = [c for c in cands[:k] if eos_special and c[1][-1] == eos]
        done += [(sc / (step + extra) ** lp, s) for sc, s in ends]
        if len(done) >= k:
            break
        live = [c for c in cands if not (eos_special and c[1][-1] == eos)][:k]
    else:
        done += [(sc / (max_len + extra) ** lp, s) for sc, s in live]
    score, seq = max(done, key=lambda h: h[0])
    return torch.tensor(seq), score


# ------------------------------------------------------------------------------------------------ choice answers


def _choices(lps, n_tok, n_chars, normalize, *, mean=False, chars_by_tokens=False, context=False, no_norm=False):
    parts = [lp if context else lp[-n:] for lp, n in zip(lps, n_tok)]
    raw = torch.stack([p.mean() if mean else p.sum() for p in parts])
    if normalize == "none" or no_norm:
        return raw
    by = n_tok if normalize == "tokens" or chars_by_tokens else n_chars
    return raw / torch.tensor(by, dtype=raw.dtype)


RIGHT = [("top_p_filter", _top_p_reference), ("top_p_filter", _top_p), ("top_p_filter", _top_p_hf_style),
         ("beam_search", _beam_reference), ("beam_search", _beam), ("beam_search", _py_beam),
         ("choice_scores", _choice_reference), ("choice_scores", _choices)]

WRONG = [
    ("top_p_filter", lambda x, p: _top_p(x, p, inclusive=True), "includes the token itself"),
    ("top_p_filter", lambda x, p: _top_p(x, p, inclusive=True, strict=True), "includes the token itself"),
    ("top_p_filter", lambda x, p: _top_p(x, p, sort=False), "You did not sort"),
    ("top_p_filter", lambda x, p: _top_p(x, p, unsorted_probs=True), "UNSORTED logits"),
    ("top_p_filter", lambda x, p: _top_p(x, p, strict=True), "Use >= not >"),
    ("top_p_filter", lambda x, p: _top_p(x, p, probs_out=True), "You returned probabilities"),
    ("top_p_filter", lambda x, p: _top_p(x, p, fill=0.0), "must be -inf, not 0"),
    ("top_p_filter", _top_p_in_place, "modified its input tensor in place"),
    ("beam_search", lambda f, s, k, n, e, lp: _py_beam(f, s, 1, n, e, lp), "GREEDY search"),
    ("beam_search", lambda f, s, k, n, e, lp: _py_beam(f, s, k, n, e, 0.0), "No length normalisation"),
    ("beam_search", lambda *a: _py_beam(*a, with_prompt=True), "normalised by the full length"),
    ("beam_search", lambda *a: _py_beam(*a, eos_special=False), "expanding past EOS"),
    ("beam_search", lambda *a: _py_beam(*a)[0], "expected (sequence, score)"),
    ("choice_scores", lambda *a: _choices(*a, mean=True), "not their mean"),
    ("choice_scores", lambda *a: _choices(*a, chars_by_tokens=True), "not its tokens"),
    ("choice_scores", lambda *a: _choices(*a, context=True), "included the context's tokens"),
    ("choice_scores", lambda *a: _choices(*a, no_norm=True), "normalisation is missing"),
]


@pytest.mark.parametrize("name, fn", RIGHT, ids=[f"{n}-{i}" for i, (n, _) in enumerate(RIGHT)])
def test_lab07_right_answers_pass(name, fn, capsys):
    grading.check(name, fn)
    assert f"PASS {name}" in capsys.readouterr().out


@pytest.mark.parametrize("name, fn, message", WRONG, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WRONG)])
def test_lab07_wrong_answers_fail_with_the_right_hint(name, fn, message, capsys):
    with pytest.raises(AssertionError):
        grading.check(name, fn)
    out = capsys.readouterr().out
    assert f"FAIL {name}" in out and message in out, out


def test_lab07_stub_reports_not_implemented():
    def stub(*args):
        raise NotImplementedError("write it")

    for name in ("top_p_filter", "beam_search", "choice_scores"):
        with pytest.raises(NotImplementedError, match=f"not implemented yet: {name}"):
            grading.check(name, stub)


@pytest.mark.parametrize("seed, V, width, max_len, lp, prompt", [
    (0, 5, 2, 6, 1.0, 1), (1, 6, 3, 8, 0.0, 3), (2, 8, 4, 7, 0.6, 2), (3, 4, 3, 10, 1.5, 4), (4, 12, 1, 6, 1.0, 2),
])
def test_lab07_beam_equals_minillm_beam_search(seed, V, width, max_len, lp, prompt):
    """The grading module's pure beam search (the one its mistakes are switches of) is minillm's, step for step."""
    fn = _toy_lm(seed, V, 2.0)
    start = torch.randint(1, V, (prompt,), generator=torch.Generator().manual_seed(seed))
    seq, score = _beam(fn, start, width, max_len, 0, lp)
    ref_seq, ref_score = _beam_reference(fn, start, width, max_len, 0, lp)
    assert seq.tolist() == ref_seq.tolist() and score == pytest.approx(ref_score, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("normalize", ["none", "tokens", "chars"])
def test_lab07_choice_reference_equals_score_choices(normalize):
    """Per-token log-probs of context + choice from a GPT, scored by the lab's rule, equal evaluate.score_choices."""
    tok = CharTokenizer(sorted(set("abcdefghij ,.")))
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)).eval()
    context, choices = "ab cd, ef", [" ghij", " a", " bad cafe."]
    lps = []
    with torch.no_grad():
        for c in choices:
            ids = torch.tensor(tok.encode(context + c))
            logp = torch.log_softmax(model(ids[None, :-1])[0][0], -1)        # (L-1, V)
            lps.append(logp.gather(-1, ids[1:, None])[:, 0])                  # (L-1,) log p(token j | before j)
    ours = _choice_reference(lps, [len(tok.encode(c)) for c in choices], [len(c) for c in choices], normalize)
    want = score_choices(model, tok, context, choices, normalize=normalize)
    assert torch.allclose(ours.double(), torch.from_numpy(want), atol=1e-5)
