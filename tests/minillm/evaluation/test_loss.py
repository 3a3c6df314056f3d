"""minillm.evaluation.loss.heldout_loss (the one held-out loss) against hand-computed cross-entropy, in both window
layouts and for all three model families; minillm.model.transformer.logits_of (the one output unwrapper)."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from minillm.config import ModelConfig
from minillm.data.tokenizer import CharTokenizer
from minillm.evaluation import heldout_loss as exported
from minillm.evaluation.harness import perplexity
from minillm.evaluation.loss import _full_windows, heldout_loss
from minillm.model.encdec import EncoderDecoder
from minillm.model.transformer import GPT, logits_of

V = 7


def tiny(**kw) -> ModelConfig:
    return ModelConfig(**{**dict(vocab_size=V, block_size=8, n_layer=2, n_head=2, n_embd=16), **kw})


def gpt(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(tiny(**kw))


def stream(n: int = 41, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(seed))


def hand_nll(model, ids: torch.Tensor, starts, L: int) -> torch.Tensor:
    """(len(starts), L) losses, one window at a time: target j of a window is ids[s + j + 1] given ids[s:s + j + 1]."""
    rows = []
    with torch.no_grad():
        for s in starts:
            logits = model(ids[s:s + L][None])[0][0]  # (L, V)
            rows.append(F.cross_entropy(logits.double(), ids[s + 1:s + L + 1], reduction="none"))
    return torch.stack(rows)


class Bigram(torch.nn.Module):
    """Logits are a fixed table row of the current token (bare logits, no config): the loss of a target does not
    depend on older context, so any layout that scores each target once gives the mean over all transitions."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.as_tensor(table, dtype=torch.float32))

    def forward(self, idx):
        return self.table[idx]  # (B, T, V)


# ---- sampled layout (the studies' number) ------------------------------------------------------------------


def test_sampled_layout_equals_hand_mean_cross_entropy():
    model, ids = gpt(), stream(41)  # 40 targets: 5 whole windows of 8 at 0, 8, ..., 32
    hand_all = hand_nll(model, ids, [0, 8, 16, 24, 32], 8).mean().item()
    assert heldout_loss(model, ids, max_windows=64, batch_size=2) == pytest.approx(hand_all, rel=1e-6)
    # 3 of the 5 slots, spread evenly: linspace(0, 4, 3) = 0, 2, 4 -> starts 0, 16, 32
    hand_3 = hand_nll(model, ids, [0, 16, 32], 8).mean().item()
    assert heldout_loss(model, ids, max_windows=3) == pytest.approx(hand_3, rel=1e-6)
    # length: shorter windows than the model's context; (1, T) ids are one sequence
    hand_4 = hand_nll(model, ids, range(0, 40, 4), 4).mean().item()
    assert heldout_loss(model, ids[None], length=4, batch_size=3) == pytest.approx(hand_4, rel=1e-6)
    assert model.training  # the mode is restored (eval() only during the call)
    assert exported is heldout_loss


def test_text_with_a_tokenizer_equals_its_ids():
    text = "the cat sat on the mat. " * 8
    tok = CharTokenizer.from_text(text)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=16))
    ids = torch.tensor(tok.encode(text))
    assert heldout_loss(model, text, tokenizer=tok) == heldout_loss(model, ids)
    assert heldout_loss(model, text, tokenizer=tok, max_windows=5) == heldout_loss(model, ids, max_windows=5)


def test_pure_cross_entropy_never_the_models_own_loss():
    model, ids = gpt(z_loss=1e-2), stream(41)  # the model's loss adds z_loss * log Z^2
    hand = hand_nll(model, ids, [0, 8, 16, 24, 32], 8).mean().item()
    with torch.no_grad():
        own = model(ids[:40].view(5, 8), ids[1:].view(5, 8))[1].item()
    assert heldout_loss(model, ids) == pytest.approx(hand, rel=1e-6) and own > hand + 1e-4


def test_per_position_is_n_by_length_and_its_mean_is_the_scalar():
    model, ids = gpt(), stream(81)  # 10 windows of 8
    per = heldout_loss(model, ids, max_windows=6, per_position=True, batch_size=4)
    assert per.shape == (6, 8) and per.dtype == torch.float32 and per.device.type == "cpu"
    assert per.mean().item() == pytest.approx(heldout_loss(model, ids, max_windows=6), rel=1e-6)
    starts = [round(x) * 8 for x in torch.linspace(0, 9, 6).tolist()]
    torch.testing.assert_close(per.double(), hand_nll(model, ids, starts, 8), rtol=1e-5, atol=1e-6)


def test_prefix_len_on_a_causal_model_drops_the_prefix_targets():
    model, ids, P = gpt(), stream(41), 4
    per = heldout_loss(model, ids, per_position=True)  # (5, 8)
    suffix = heldout_loss(model, ids, prefix_len=P)  # targets at window positions >= P - 1 only
    assert suffix == pytest.approx(per[:, P - 1:].double().mean().item(), rel=1e-6)
    assert suffix != pytest.approx(per.double().mean().item(), rel=1e-4)
    assert heldout_loss(model, ids, prefix_len=P, per_position=True).shape == (5, 8 - P + 1)
    assert heldout_loss(model, ids, prefix_len=1) == pytest.approx(per.double().mean().item(), rel=1e-6)


def test_prefix_decoder_needs_prefix_len_and_gets_it():
    model, ids, P = gpt(attention_mask="prefix"), stream(41), 4
    with pytest.raises(ValueError, match="prefix_len"):
        heldout_loss(model, ids)
    with torch.no_grad():  # hand: each window with its first P tokens visible to one another
        rows = [F.cross_entropy(model(ids[s:s + 8][None], prefix_len=P)[0][0, P - 1:].double(),
                                ids[s + P:s + 9], reduction="none") for s in range(0, 40, 8)]
    assert heldout_loss(model, ids, prefix_len=P) == pytest.approx(torch.cat(rows).mean().item(), rel=1e-6)


def test_encoder_decoder_reads_the_prefix_and_scores_the_rest():
    torch.manual_seed(0)
    model, ids, P = EncoderDecoder(tiny()), stream(41), 3
    with pytest.raises(ValueError, match="prefix_len"):
        heldout_loss(model, ids)
    with torch.no_grad():  # hand: encoder reads x[:P], decoder starts at x[P-1] and predicts y[P-1:]
        model.eval()
        rows = [F.cross_entropy(model(ids[s:s + P][None], ids[s + P - 1:s + 8][None])[0][0].double(),
                                ids[s + P:s + 9], reduction="none") for s in range(0, 40, 8)]
        model.train()
    got = heldout_loss(model, ids, prefix_len=P, batch_size=2)
    assert got == pytest.approx(torch.cat(rows).mean().item(), rel=1e-6) and math.isfinite(got)
    assert heldout_loss(model, ids, prefix_len=P, per_position=True).shape == (5, 8 - P + 1)


# ---- full layout (perplexity's number) -----------------------------------------------------------------------


@pytest.mark.parametrize("n,L,stride", [(40, 8, 8), (40, 8, 3), (40, 8, 1), (40, 40, 40), (41, 7, 5), (9, 8, 2)])
def test_full_layout_windows_cover_every_target_exactly_once(n, L, stride):
    starts, score = _full_windows(n, L, stride)
    targets = (starts[:, None] + torch.arange(L) + 1)[score]  # the target index each scored cell predicts
    assert sorted(targets.tolist()) == list(range(1, n + 1))
    assert int(starts[-1]) + L == n  # the last window ends at the stream's end: every window is full length


def test_full_layout_equals_hand_mean_and_perplexity():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(5, 5, generator=g) * 2
    ids = torch.randint(0, 5, (41,), generator=g)
    hand = -torch.log_softmax(table.double(), -1)[ids[:-1], ids[1:]].mean().item()  # each transition once
    for L, stride in [(8, 8), (8, 3), (8, 1), (40, 40), (7, 5)]:
        got = heldout_loss(Bigram(table), ids, length=L, max_windows=None, stride=stride, batch_size=3)
        assert got == pytest.approx(hand, rel=1e-6), (L, stride)  # double counting would change it
        assert got == perplexity(Bigram(table), ids, block_size=L, stride=stride)["loss"]
    assert heldout_loss(Bigram(table), ids, max_windows=None) == pytest.approx(hand, rel=1e-6)  # no config: L = n
    model, ids = gpt(), stream(30)
    for stride in (None, 3, 1):
        r = perplexity(model, ids, stride=stride)
        assert heldout_loss(model, ids, max_windows=None, stride=stride) == r["loss"] and r["tokens"] == 29


def test_a_parameter_free_model_runs_on_the_cpu():
    class Uniform(torch.nn.Module):
        config = SimpleNamespace(block_size=8)

        def forward(self, idx):
            return torch.zeros(*idx.shape, V), None

    ids = stream(41)
    assert heldout_loss(Uniform(), ids) == pytest.approx(math.log(V), rel=1e-6)
    assert heldout_loss(Uniform(), ids, max_windows=None, stride=5) == pytest.approx(math.log(V), rel=1e-6)


# ---- bad input ---------------------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors():
    model, ids = gpt(), stream(41)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        heldout_loss(model, torch.tensor([3]))
    with pytest.raises(ValueError, match=r"one sequence \(T,\) or \(1, T\)"):
        heldout_loss(model, ids.view(1, 41).repeat(2, 1))
    with pytest.raises(ValueError, match="tokenizer"):
        heldout_loss(model, "some text")
    with pytest.raises(ValueError, match="longer than the model's context"):
        heldout_loss(model, ids, length=9)
    with pytest.raises(ValueError, match="fewer than one window"):
        heldout_loss(model, ids[:8])
    with pytest.raises(ValueError, match="max_windows=None"):
        heldout_loss(model, ids, stride=4)
    with pytest.raises(ValueError, match="per_position and prefix_len"):
        heldout_loss(model, ids, max_windows=None, per_position=True)
    with pytest.raises(ValueError, match="stride"):
        heldout_loss(model, ids, max_windows=None, stride=9)
    with pytest.raises(ValueError, match="prefix_len"):
        heldout_loss(model, ids, prefix_len=9)
    with pytest.raises(ValueError, match="max_windows"):
        heldout_loss(model, ids, max_windows=0)
    with pytest.raises(ValueError, match="length"):
        heldout_loss(Bigram(torch.zeros(V, V)), ids)  # no config and the sampled layout: length is needed


# ---- logits_of -----------------------------------------------------------------------------------------------


def test_logits_of_every_output_form():
    x = torch.randn(2, 3, V)
    assert logits_of((x, torch.tensor(1.0))) is x  # minillm's (logits, loss)
    assert logits_of((x, None)) is x
    assert logits_of(x) is x  # bare logits
    assert logits_of(SimpleNamespace(logits=x, loss=None)) is x  # a Hugging Face ModelOutput
    with torch.no_grad():
        model, ids = gpt(), stream(8)[None]
        assert logits_of(model(ids)).shape == (1, 8, V)
    with pytest.raises(RuntimeError, match="no logits"):
        logits_of((None, torch.tensor(1.0)))  # a fused-loss forward given targets
    with pytest.raises(RuntimeError, match="no logits"):
        logits_of(SimpleNamespace(logits=None))
