"""Decoding strategies (Survey §4.2.4): sampling filters, repetition penalty, stop sequences, beam search,
left-padded batches, streaming and the KV cache (§4.2.2)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from minillm.config import ModelConfig
from minillm.generate import (
    BeamResult,
    apply_repetition_penalty,
    beam_search,
    filter_logits,
    generate,
    generate_batch,
    sample_next,
    stream,
)
from minillm.model.transformer import GPT

V = 23


def _gpt(position: str, block_size: int = 16, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=V, block_size=block_size, n_layer=2, n_head=2, n_embd=32, position=position))


@pytest.fixture(scope="module")
def model():
    return _gpt("rope", block_size=24)


def _logits(rows: int = 500, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, V, generator=torch.Generator().manual_seed(seed)) * 2  # (rows, V)


def test_greedy_is_argmax_at_every_step(model):
    out = generate(model, torch.tensor([[3, 1, 4]]), 8, temperature=0)
    for t in range(3, out.size(1)):
        logits, _ = model(out[:, :t])
        assert out[0, t].item() == logits[0, -1].argmax().item()


def test_top_k_never_samples_outside_the_k():
    logits = _logits()
    allowed = logits.topk(3, dim=-1).indices  # (rows, 3)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        draws = sample_next(logits, 1.5, top_k=3, generator=g)  # (rows,)
        assert (allowed == draws[:, None]).any(dim=-1).all()


@pytest.mark.parametrize("p", [0.3, 0.75, 0.95])
def test_top_p_samples_lie_in_the_smallest_nucleus_reaching_p(p):
    logits = _logits(200, seed=2)
    kept = ~torch.isinf(filter_logits(logits, top_p=p))  # (rows, V)
    probs = F.softmax(logits, dim=-1)
    mass = (probs * kept).sum(-1)
    assert (mass >= p - 1e-6).all()
    # minimal: dropping the least likely kept token falls below p
    smallest = probs.masked_fill(~kept, float("inf")).min(dim=-1).values
    assert (mass - smallest < p).all()
    g = torch.Generator().manual_seed(3)
    for _ in range(10):
        draws = sample_next(logits, 1.0, top_p=p, generator=g)
        assert kept.gather(1, draws[:, None]).all()


def test_temperature_to_zero_approaches_greedy(model):
    logits = _logits()
    cold = sample_next(logits, 1e-4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cold, logits.argmax(-1))
    hot = sample_next(logits, 5.0, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(hot, logits.argmax(-1))  # the limit is not trivially reached at any temperature
    prompt = torch.tensor([[5, 6]])
    near = generate(model, prompt, 6, temperature=1e-4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(near, generate(model, prompt, 6, temperature=0))


def test_repetition_penalty_hand_case():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0], [2.0, -1.0, 0.5, 3.0]])
    idx = torch.tensor([[0, 1, 1], [3, 3, 3]])
    out = apply_repetition_penalty(logits, idx, 2.0)
    assert torch.allclose(out, torch.tensor([[1.0, -2.0, 0.5, 3.0], [2.0, -1.0, 0.5, 1.5]]))
    assert torch.equal(apply_repetition_penalty(logits, idx, 1.0), logits)
    with pytest.raises(ValueError, match="repetition_penalty"):
        apply_repetition_penalty(logits, idx, 0.0)


def test_generate_applies_the_penalty_to_the_whole_row(model):
    prompt = torch.tensor([[2, 7, 2, 9]])
    logits, _ = model(prompt)
    want = apply_repetition_penalty(logits[:, -1], prompt, 3.0).argmax(-1)
    got = generate(model, prompt, 1, temperature=0, repetition_penalty=3.0)[0, -1]
    assert got.item() == want.item()
    # a strong penalty makes greedy decoding repeat far less than plain greedy
    plain = generate(model, prompt, 16, temperature=0)[0, 4:]
    strong = generate(model, prompt, 16, temperature=0, repetition_penalty=50.0)[0, 4:]
    assert len(set(strong.tolist())) > len(set(plain.tolist()))


def test_stop_sequences_end_rows_and_pad_like_stop_tokens(model):
    prompt = torch.tensor([[1, 2], [4, 5]])
    free = generate(model, prompt, 10, temperature=0)
    seq = free[0, 4:6].tolist()  # row 0 generates it as tokens 3-4 (or earlier)
    out = generate(model, prompt, 10, temperature=0, stop_sequences=[seq])
    gen = out[0, 2:].tolist()
    end = next(i + 2 for i in range(len(gen) - 1) if gen[i:i + 2] == seq)
    assert end <= 4 and gen[:end] == free[0, 2:2 + end].tolist()
    assert all(t == seq[-1] for t in gen[end:])  # padded by repeating the last token
    # a sequence that spans prompt and output does not count: only generated tokens are matched
    span = [prompt[0, -1].item(), free[0, 2].item()]
    assert generate(model, prompt[:1], 3, temperature=0, stop_sequences=[span]).size(1) >= 4
    with pytest.raises(ValueError, match="empty sequence"):
        generate(model, prompt, 2, stop_sequences=[[]])


class MyopicToy(nn.Module):
    """Next-token logits depend on the last token only. From 0: token 1 (p=.6) then a flat spread (best .3),
    or token 2 (p=.4) then almost surely 3. Greedy takes 1 (total log-prob ln .6 + ln .3 = -1.71); the best
    two-token path is 2, 3 (ln .4 + ln .99 = -0.93)."""

    def __init__(self):
        super().__init__()
        self.config = ModelConfig(vocab_size=4, block_size=8, n_layer=1, n_head=1, n_embd=4)
        p = torch.full((4, 4), 1e-6)
        p[0, 1], p[0, 2] = 0.6, 0.4
        p[1] = torch.tensor([0.3, 0.25, 0.25, 0.2])
        p[2, 0], p[2, 2], p[2, 3] = 0.005, 0.005, 0.99
        p[3, 0] = 1.0
        self.register_buffer("table", (p / p.sum(-1, keepdim=True)).log())

    def forward(self, idx, targets=None, cache=None):
        return self.table[idx], None  # (B, T, V)


def test_beam_search_beats_myopic_greedy():
    toy, prompt = MyopicToy(), torch.tensor([[0]])
    greedy = generate(toy, prompt, 2, temperature=0, use_cache=False)[0]
    res = beam_search(toy, prompt, 2, beam_width=2, length_penalty=0.0, use_cache=False)
    assert greedy[1].item() == 1 and res.sequences[0].tolist() == [0, 2, 3]
    assert res.scores[0] == pytest.approx(math.log(0.4) + math.log(0.99), abs=1e-4)
    assert res.scores[0] > math.log(0.6) + math.log(0.3) + 1e-3
    one = beam_search(toy, prompt, 2, beam_width=1, length_penalty=0.0, use_cache=False)
    assert torch.equal(one.sequences[0], greedy)


def test_beam_width_one_is_greedy(model):
    prompt = torch.tensor([[3, 8, 1]])
    greedy = generate(model, prompt, 10, temperature=0)[0]
    assert torch.equal(beam_search(model, prompt, 10, beam_width=1).sequences[0], greedy)
    stop = greedy[6].item()  # with a stop token: greedy ends there, and so must the single beam
    want = generate(model, prompt, 10, temperature=0, stop_tokens=[stop])[0]
    cut = (want[3:] == stop).nonzero()[0, 0].item() + 4
    assert torch.equal(beam_search(model, prompt, 10, beam_width=1, stop_tokens=[stop]).sequences[0], want[:cut])


def _score(model, seq: torch.Tensor, prompt_len: int, length_penalty: float) -> float:
    logits, _ = model(seq[None, :-1])
    lp = F.log_softmax(logits[0].float(), -1).gather(1, seq[1:, None])[prompt_len - 1:].sum().item()
    return lp / (len(seq) - prompt_len) ** length_penalty


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_scores_sorted_and_equal_recomputed_logprobs(model, length_penalty):
    prompt = torch.tensor([[4, 4, 2]])
    res = beam_search(model, prompt, 7, beam_width=4, length_penalty=length_penalty, stop_tokens=[0, 5])
    assert isinstance(res, BeamResult) and len(res.sequences) == len(res.scores) == 4
    assert res.scores == sorted(res.scores, reverse=True)
    assert len({tuple(s.tolist()) for s in res.sequences}) == 4
    for seq, score in zip(res.sequences, res.scores):
        assert torch.equal(seq[:3], prompt[0])
        assert score == pytest.approx(_score(model, seq, 3, length_penalty), abs=1e-4)


def test_cached_beams_equal_uncached_even_past_block_size():
    m = _gpt("learned", block_size=10)
    prompt = torch.tensor([[1, 2, 3, 4]])
    a = beam_search(m, prompt, 12, beam_width=3, use_cache=True)
    b = beam_search(m, prompt, 12, beam_width=3, use_cache=False)
    assert [s.tolist() for s in a.sequences] == [s.tolist() for s in b.sequences]
    assert a.scores == pytest.approx(b.scores, abs=1e-4)
    assert len(a.sequences[0]) == 16


@pytest.mark.parametrize("position", ["learned", "rope"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_left_padded_batch_equals_per_prompt(position, use_cache):
    m = _gpt(position)
    prompts = [[1, 2, 3, 4, 5, 6], [7], [3, 3, 9]]
    got = generate_batch(m, prompts, 13, pad_id=0, temperature=0, use_cache=use_cache)  # passes block_size 16
    want = [generate(m, torch.tensor([p]), 13, temperature=0, use_cache=use_cache)[0, len(p):].tolist()
            for p in prompts]
    assert got == want
    stop = want[1][4]  # stop tokens cut each row after its own first stop token
    got = generate_batch(m, [torch.tensor(p) for p in prompts], 13, pad_id=0, temperature=0,
                         use_cache=use_cache, stop_tokens=[stop])
    assert got == [w[:w.index(stop) + 1] if stop in w else w for w in want]


def test_pad_mask_hides_pads_and_keeps_positions():
    m = _gpt("learned").eval()
    real = torch.tensor([[5, 6, 7]])
    padded = torch.tensor([[9, 9, 5, 6, 7]])  # the pads are real-looking ids: only the mask hides them
    mask = torch.tensor([[False, False, True, True, True]])
    want, _ = m(real)
    got, _ = m(padded, pad_mask=mask)
    assert torch.allclose(got[:, 2:], want, atol=1e-5)
    unmasked, _ = m(padded)
    assert not torch.allclose(unmasked[:, 2:], want, atol=1e-3)
    with pytest.raises(ValueError, match="pad_mask"):
        m(padded, pad_mask=mask[:, 1:])


def test_stream_equals_generate(model):
    prompt = torch.tensor([[2, 3]])
    kw = dict(temperature=0.9, top_k=10)
    full = generate(model, prompt, 12, generator=torch.Generator().manual_seed(4), **kw)[0, 2:].tolist()
    it = stream(model, prompt, 12, generator=torch.Generator().manual_seed(4), **kw)
    assert next(it) == full[0]  # tokens arrive one at a time
    assert [full[0], *it] == full
    stop = full[5]
    cut = full[:full.index(stop) + 1]
    assert list(stream(model, prompt, 12, generator=torch.Generator().manual_seed(4), stop_tokens=[stop], **kw)) == cut
    with pytest.raises(ValueError, match=r"\(1, T\)"):
        stream(model, torch.tensor([[1], [2]]), 3)
