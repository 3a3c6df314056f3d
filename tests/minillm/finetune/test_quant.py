"""Weight-only quantization (minillm.finetune.quant): error bounds, groups vs outliers, packing, bytes."""
import copy

import pytest
import torch
import torch.nn as nn

from minillm.config import ModelConfig
from minillm.finetune.quant import (QuantEmbedding, QuantLinear, dequantize, model_bytes, pack_int4, quantize_model,
                                    quantize_tensor, unpack_int4)
from minillm.model.transformer import GPT


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**{**dict(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=64), **kw}))


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_absmax_hand_case():
    w = torch.tensor([1.4, -0.6, 0.25, 0.0])
    q, s = quantize_tensor(w, bits=8)  # scale = max|w| / 127
    assert s.dim() == 0 and s.item() == pytest.approx(1.4 / 127)
    assert q.dtype == torch.int8 and q.tolist() == [127, -54, 23, 0]  # -0.6 / s = -54.4, 0.25 / s = 22.7
    q4, s4 = quantize_tensor(w, bits=4)  # scale = 1.4 / 7 = 0.2
    assert s4.item() == pytest.approx(0.2) and q4.tolist() == [7, -3, 1, 0]  # 0.25 / 0.2 = 1.25 -> 1
    torch.testing.assert_close(dequantize(q4, s4), torch.tensor([1.4, -0.6, 0.2, 0.0]))
    qg, sg = quantize_tensor(torch.tensor([[2.0, -1.0, 0.0, 0.0]]), bits=8, group_size=2)
    assert sg.shape == (1, 2) and sg[0, 0].item() == pytest.approx(2 / 127) and sg[0, 1].item() == 1.0  # zeros
    assert qg.tolist() == [[127, -64, 0, 0]]


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("group_size", [None, 16, 64])
def test_round_trip_error_is_at_most_half_a_step(bits, group_size):
    w = randn(8, 64)
    q, s = quantize_tensor(w, bits, group_size)
    assert q.shape == w.shape and int(q.min()) >= -(2 ** (bits - 1)) and int(q.max()) <= 2 ** (bits - 1) - 1
    err = (w - dequantize(q, s)).abs()
    step = s if group_size is None else s.repeat_interleave(group_size, dim=-1)  # each element's own scale
    assert (err <= step / 2 * (1 + 1e-5)).all()


def test_per_group_beats_per_tensor_with_an_outlier_row():
    w = randn(8, 64)
    w[0] *= 100  # one outlier row: a single per-tensor scale is 100x too coarse for the other rows
    per_tensor = (w - dequantize(*quantize_tensor(w, 8))).abs()[1:].mean()
    per_group = (w - dequantize(*quantize_tensor(w, 8, group_size=16))).abs()[1:].mean()
    assert per_group < per_tensor / 20


def test_int4_error_exceeds_int8_error():
    w = randn(16, 64)
    for g in (None, 16):
        e8 = (w - dequantize(*quantize_tensor(w, 8, g))).abs().mean()
        e4 = (w - dequantize(*quantize_tensor(w, 4, g))).abs().mean()
        assert e4 > 10 * e8  # 127 vs 7 levels per side: ~18x coarser


def test_int4_pack_round_trip():
    q = torch.arange(-8, 8, dtype=torch.int8).repeat(3, 1)[:, :15]  # odd width: padded, then cropped
    p = pack_int4(q)
    assert p.dtype == torch.uint8 and p.shape == (3, 8)
    assert p[0, 0].item() == (-8 & 0xF) | ((-7 & 0xF) << 4)  # low nibble first
    assert torch.equal(unpack_int4(p, 15), q)


@pytest.mark.parametrize("kw, msg", [(dict(bits=3), "bits"), (dict(group_size=0), "group_size"),
                                     (dict(group_size=5), "divide"), (dict(scheme="zeropoint"), "scheme")])
def test_quantize_tensor_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        quantize_tensor(randn(4, 8), **kw)


def test_model_bytes_hand_case():
    assert model_bytes(nn.Linear(3, 4)) == (12 + 4) * 4
    model = tiny()  # tied embeddings: the shared matrix counts once
    assert model_bytes(model) == 4 * model.num_params(non_embedding=False) + 0  # no buffers in this config


@pytest.mark.parametrize("bits, group_size, ratio", [(8, None, 4.0), (4, None, 8.0), (8, 32, 4 / (1 + 4 / 32)),
                                                     (4, 32, 4 / (0.5 + 4 / 32))])
def test_weight_bytes_shrink_honestly(bits, group_size, ratio):
    model = tiny(bias=False)
    report = quantize_model(model, bits, group_size)
    assert len(report.quantized) == 2 * 6  # wq wk wv wo w1 w2 per block; the tied head follows the embedding
    assert report.skipped == ["tok_emb", "pos_emb", "lm_head"]
    # int8 is 1 byte, int4 half a byte (packed), plus one fp32 scale per group (per tensor: ~0)
    assert report.weight_ratio == pytest.approx(ratio, rel=1e-3)
    assert report.model_bytes_after == model_bytes(model) < report.model_bytes_before
    assert all(p.requires_grad for p in model.parameters())  # what is left in float is untouched


@pytest.mark.parametrize("bits, group_size, tol", [(8, None, 0.02), (8, 16, 0.01), (4, 16, 0.15)])
def test_quantized_model_logits_stay_close(bits, group_size, tol):
    model = tiny()
    x = torch.randint(32, (2, 12), generator=torch.Generator().manual_seed(0))
    want = model(x)[0]
    q = copy.deepcopy(model)
    quantize_model(q, bits, group_size)
    assert isinstance(q.blocks[0].attn.wq, QuantLinear)
    got = q(x)[0]
    rel = (got - want).abs().max() / want.abs().max()
    assert 0 < rel < tol


def test_tied_embeddings_are_quantized_once_and_shared():
    model = tiny()
    x = torch.randint(32, (2, 12), generator=torch.Generator().manual_seed(0))
    want = model(x)[0]
    report = quantize_model(model, 8, group_size=16, embeddings=True)
    assert isinstance(model.tok_emb, QuantEmbedding) and isinstance(model.lm_head, QuantLinear)
    assert model.lm_head.qweight is model.tok_emb.qweight  # one table for both
    assert "lm_head" in report.quantized and report.skipped == []
    emb = 32 * 64
    assert report.weight_bytes_before == 4 * (emb + 16 * 64 + 2 * (4 * 64 * 64 + 2 * 64 * 256))  # tok, pos, 2 blocks
    torch.testing.assert_close(model.tok_emb(x), model.tok_emb.weight[x])  # row lookup == full dequantize
    assert (model(x)[0] - want).abs().max() < 0.02 * want.abs().max()


def test_skip_patterns_and_state_dict_round_trip():
    model = tiny()
    report = quantize_model(model, 4, 16, skip=(r"blocks\.1\..*",))
    assert all(n.startswith("blocks.0.") for n in report.quantized)
    assert type(model.blocks[1].attn.wq) is nn.Linear
    other = tiny(bias=True)
    quantize_model(other, 4, 16, skip=(r"blocks\.1\..*",))
    other.load_state_dict(model.state_dict())
    x = torch.randint(32, (1, 8), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(other(x)[0], model(x)[0])
    with pytest.raises(ValueError, match="one string"):
        quantize_model(tiny(), 8, skip="lm_head")
    with pytest.raises(ValueError, match="does not divide"):
        quantize_model(tiny(), 8, group_size=48)
