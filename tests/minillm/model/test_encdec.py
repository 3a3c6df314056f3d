"""The encoder-decoder model: masks (bidirectional encoder, causal decoder, cross-attention), the prefix
split, T5 span corruption, counting, a copy task, errors."""
import math

import pytest
import torch

from minillm.config import ModelConfig
from minillm.model.attention import causal_mask, scaled_dot_product_attention
from minillm.model.encdec import EncoderDecoder, span_corruption, split_prefix_batch

V = 29


def tiny(**kw):
    base = dict(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32)
    return ModelConfig(**{**base, **kw})


def model_for(seed=0, n_encoder_layer=None, **kw):
    torch.manual_seed(seed)
    return EncoderDecoder(tiny(**kw), n_encoder_layer).eval()


@pytest.mark.parametrize("norm,norm_position,activation,position", [
    ("layernorm", "pre", "gelu", "learned"), ("rmsnorm", "pre", "swiglu", "rope"),
    ("layernorm", "post", "relu", "sinusoidal"), ("rmsnorm", "sandwich", "geglu", "none"),
    ("deepnorm", "post", "gelu", "rope")])
def test_configurations_train_a_step(norm, norm_position, activation, position):
    torch.manual_seed(0)
    model = EncoderDecoder(tiny(norm=norm, norm_position=norm_position, activation=activation, position=position,
                                n_kv_head=2, n_layer=3))
    assert (model.n_encoder_layer, model.n_decoder_layer) == (1, 2)
    src, dec_in, tgt = torch.randint(0, V, (2, 11)), torch.randint(0, V, (2, 7)), torch.randint(0, V, (2, 7))
    logits, loss = model(src, dec_in, tgt)
    assert logits.shape == (2, 7, V)
    assert abs(loss.item() - math.log(V)) < 0.5  # small init: near-uniform predictions
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model(src, dec_in)[1] is None


@pytest.mark.parametrize("position", ["learned", "rope", "none"])
def test_decoder_is_causal_encoder_is_bidirectional_and_cross_attention_reads_src(position):
    model = model_for(position=position)
    src, dec_in = torch.randint(0, V, (1, 9)), torch.randint(0, V, (1, 8))
    ref, _ = model(src, dec_in)
    dec2 = dec_in.clone()
    dec2[0, 5] = (dec_in[0, 5] + 1) % V
    out, _ = model(src, dec2)
    torch.testing.assert_close(out[:, :5], ref[:, :5])  # positions before 5 do not see position 5
    assert not torch.allclose(out[:, 5], ref[:, 5])
    src2 = src.clone()
    src2[0, -1] = (src[0, -1] + 1) % V
    out, _ = model(src2, dec_in)
    assert (out - ref).abs().amax(dim=-1).min() > 1e-6  # the last source token reaches every target position


def test_masks_seen_by_each_attention():
    model = model_for(n_layer=3)
    seen = []

    def spy(q, k, v, mask):
        seen.append(mask.clone())
        return scaled_dot_product_attention(q, k, v, mask=mask)

    src, dec_in = torch.randint(0, V, (2, 6)), torch.randint(0, V, (2, 4))
    ref, _ = model(src, dec_in)
    model.set_attention_fn(spy)
    out, _ = model(src, dec_in)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    full_enc, full_cross = torch.ones(6, 6, dtype=torch.bool), torch.ones(4, 6, dtype=torch.bool)
    causal_dec = causal_mask(4)
    assert len(seen) == 1 + 2 * 2  # one encoder layer; self + cross in each of two decoder layers
    assert torch.equal(seen[0], full_enc)
    for self_mask, cross_mask in zip(seen[1::2], seen[2::2]):
        assert torch.equal(self_mask, causal_dec) and torch.equal(cross_mask, full_cross)
    model.set_attention_fn(None)
    torch.testing.assert_close(model(src, dec_in)[0], ref)


def test_math_path_equals_sdpa():
    sdpa = model_for(n_kv_head=1)
    math_model = EncoderDecoder(tiny(n_kv_head=1, attn_impl="math")).eval()
    math_model.load_state_dict(sdpa.state_dict())
    src, dec_in = torch.randint(0, V, (2, 10)), torch.randint(0, V, (2, 6))
    torch.testing.assert_close(math_model(src, dec_in)[0], sdpa(src, dec_in)[0], atol=1e-5, rtol=1e-5)


def test_split_prefix_batch_slices_and_targets():
    seq = torch.arange(2 * 11).view(2, 11)
    x, y = seq[:, :-1], seq[:, 1:]  # the loader's next-token batch, L = 10
    src, dec_in, dec_targets = split_prefix_batch(x, y, 4)
    assert src.tolist() == [[0, 1, 2, 3], [11, 12, 13, 14]]
    assert dec_in.tolist() == [[3, 4, 5, 6, 7, 8, 9], [14, 15, 16, 17, 18, 19, 20]]
    assert dec_targets.tolist() == [[4, 5, 6, 7, 8, 9, 10], [15, 16, 17, 18, 19, 20, 21]]
    # exactly the targets a decoder-only model predicts from positions P-1..L-1
    assert torch.equal(dec_targets, y[:, 3:]) and torch.equal(dec_in[:, 1:], dec_targets[:, :-1])
    assert split_prefix_batch(x, y, 10)[1].shape == (2, 1)
    for bad in (0, 11, 2.0):
        with pytest.raises(ValueError, match="prefix_len"):
            split_prefix_batch(x, y, bad)
    with pytest.raises(ValueError, match="must both be"):
        split_prefix_batch(x, y[:, :-1], 4)


def rebuild(src_row, seq_row, sentinel_start):
    """Undo span corruption: each sentinel in src becomes the tokens that follow it in the decoder sequence."""
    spans, cur = {}, None
    for t in seq_row:
        if t >= sentinel_start:
            cur = t
            spans[cur] = []
        else:
            spans[cur].append(t)
    out = []
    for t in src_row:
        out += spans[t] if t >= sentinel_start else [t]
    return out


def test_span_corruption_round_trip():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (64, 40), generator=g)
    src, dec_in, tgt = span_corruption(ids, 0.15, 3, sentinel_start=20, generator=g)
    n_noise, n_spans = 6, 2  # round(40 * 0.15), round(6 / 3)
    assert src.shape == (64, 40 - n_noise + n_spans) and dec_in.shape == tgt.shape == (64, n_noise + n_spans - 1)
    assert torch.equal(dec_in[:, 1:], tgt[:, :-1])  # next-token shift of one decoder sequence
    assert (dec_in[:, 0] == 20).all()  # the first sentinel starts every decoder sequence
    for b in range(64):
        s, seq = src[b].tolist(), [dec_in[b, 0].item()] + tgt[b].tolist()
        assert [t for t in s if t >= 20] == [20, 21]  # sentinels numbered in order
        assert [t for t in seq if t >= 20] == [20, 21]
        assert rebuild(s, seq, 20) == ids[b].tolist()


def test_span_corruption_statistics_and_determinism():
    ids = torch.randint(0, 50, (400, 100), generator=torch.Generator().manual_seed(1))
    src, dec_in, tgt = span_corruption(ids, 0.2, 4, sentinel_start=50, generator=torch.Generator().manual_seed(2))
    seq = torch.cat([dec_in[:, :1], tgt], dim=1)
    is_noise = seq < 50
    assert is_noise.sum(1).eq(20).all()  # noise share 20 / 100 = noise_density in every row
    assert (src >= 50).sum(1).eq(5).all()  # 20 / 4 spans
    # span lengths are random (not all equal) with the requested mean
    starts = (seq >= 50).int().cumsum(1)
    lengths = torch.stack([(is_noise & (starts == i)).sum(1) for i in range(1, 6)], dim=1)  # (400, 5)
    assert lengths.min() >= 1 and lengths.float().std() > 1.0 and lengths.float().mean() == 4.0
    hidden_first = (src[:, 0] >= 50).float().mean()
    assert hidden_first == 0.0  # T5 layout: a gap first, so the first token is never hidden
    again = span_corruption(ids, 0.2, 4, sentinel_start=50, generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(a, b) for a, b in zip(again, (src, dec_in, tgt)))


def test_span_corruption_errors():
    ids = torch.randint(0, 10, (2, 12))
    with pytest.raises(ValueError, match="sentinel_start"):
        span_corruption(ids, sentinel_start=5)
    with pytest.raises(ValueError, match="noise_density"):
        span_corruption(ids, 1.0, sentinel_start=10)
    with pytest.raises(ValueError, match="mean_span"):
        span_corruption(ids, mean_span=0.5, sentinel_start=10)
    with pytest.raises(ValueError, match="L >= 2"):
        span_corruption(ids[:, :1], sentinel_start=10)


def test_learns_to_copy():
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=10, block_size=6, n_layer=2, n_head=2, n_embd=32))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(80):
        src = torch.randint(1, 10, (32, 6), generator=g)
        dec_in = torch.cat([torch.zeros(32, 1, dtype=torch.long), src[:, :-1]], dim=1)  # 0 = start token
        _, loss = model(src, dec_in, src)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # without the source the best possible loss is ln 9 = 2.20 (uniform tokens 1..9): going well below it
    # means the decoder reads the source through cross-attention
    assert sum(losses[:5]) / 5 > 2.1 and sum(losses[-5:]) / 5 < 1.5


def test_num_params_and_tying():
    C, H = 32, 128
    m = EncoderDecoder(tiny(n_layer=3), n_encoder_layer=2)
    assert m.lm_head.weight is m.tok_emb.weight
    attn, mlp, ln = 4 * (C * C + C), (C * H + H) + (H * C + C), 2 * C
    enc_block, dec_block = attn + mlp + 2 * ln, 2 * attn + mlp + 3 * ln
    assert m.num_params() == 2 * enc_block + 1 * dec_block + 2 * ln  # + final norm of each stack
    manual = sum(p.numel() for n, p in m.named_parameters() if "emb" not in n)
    assert m.num_params() == manual
    assert m.num_params(non_embedding=False) == m.num_params() + V * C + 2 * 16 * C  # two position tables
    untied = EncoderDecoder(tiny(n_layer=3, tie_embeddings=False), 2)
    assert untied.num_params() == m.num_params() + V * C
    assert EncoderDecoder(tiny(n_layer=5)).n_encoder_layer == 2  # default n_layer // 2


def test_flops_per_token_formula():
    C, H, L, S = 32, 128, 16, 8
    m = EncoderDecoder(tiny(n_layer=2))
    T = L - S + 1
    attn, mlp, ln = 4 * (C * C + C), (C * H + H) + (H * C + C), 2 * C
    enc = attn + mlp + 2 * ln + ln
    cross_kv = 2 * (C * C + C)
    dec = 2 * attn + mlp + 3 * ln + ln - cross_kv
    total = 6 * ((enc + cross_kv) * S + (dec + V * C) * T) + 12 * C * (S * S + T * T + T * S)
    assert m.flops_per_token() == round(total / L)
    # a decoder layer costs more than an encoder layer, so moving the split towards the decoder costs more
    assert m.flops_per_token(prefix_len=2) > m.flops_per_token() > m.flops_per_token(prefix_len=14)


def test_init_scales_residual_projections_and_deepnorm_constants():
    torch.manual_seed(0)
    m = EncoderDecoder(tiny(n_layer=8, n_embd=128, n_head=4))
    assert abs(m.decoder[0].cross_attn.wq.weight.std().item() - 0.02) < 0.002
    for lin in (m.encoder[0].attn.wo, m.decoder[0].cross_attn.wo, m.decoder[0].mlp.w2):
        assert abs(lin.weight.std().item() - 0.02 / 4) < 0.001  # 1 / sqrt(2 * 8)
    d = EncoderDecoder(tiny(n_layer=6, norm="deepnorm"), n_encoder_layer=2)  # N = 2, M = 4
    assert d.encoder[0].alpha == pytest.approx(0.81 * (2 ** 4 * 4) ** (1 / 16))
    assert d.decoder[0].alpha == pytest.approx(12 ** 0.25)


def test_errors_are_clear():
    for n_enc in (0, 2, 3, True):
        with pytest.raises(ValueError, match="n_encoder_layer"):
            EncoderDecoder(tiny(n_layer=2), n_encoder_layer=n_enc)
    with pytest.raises(ValueError, match="n_encoder_layer"):
        EncoderDecoder(tiny(n_layer=1))
    with pytest.raises(ValueError, match="alibi"):
        EncoderDecoder(tiny(position="alibi"))
    with pytest.raises(ValueError, match="attention_mask"):
        EncoderDecoder(tiny(attention_mask="prefix"))
    m = model_for()
    with pytest.raises(ValueError, match="block_size"):
        m(torch.zeros(1, 17, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab_size"):
        m(torch.full((1, 3), V), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="same batch size"):
        m(torch.zeros(2, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        m(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))
