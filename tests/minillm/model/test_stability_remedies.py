"""QK-norm and the output z-loss (ModelConfig.qk_norm, ModelConfig.z_loss): Survey §4.3.2 stabilizers."""
import pytest
import torch

from minillm import GPT, ModelConfig
from minillm.model.calculator import arch_stats

BASE = dict(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=16)


def test_qk_norm_normalises_queries_and_keys():
    torch.manual_seed(0)
    model = GPT(ModelConfig(**BASE, qk_norm=True))
    seen = {}
    def capture(q, k, v, mask):
        seen["q"], seen["k"] = q, k
        return torch.softmax((q @ k.transpose(-2, -1)).masked_fill(~mask, float("-inf")) / q.size(-1) ** 0.5, -1) @ v
    model.set_attention_fn(capture)
    with torch.no_grad():  # raw q, k far larger than the norm's eps, so a normalised vector has RMS 1
        for block in model.blocks:
            block.attn.wq.weight.mul_(100)
            block.attn.wk.weight.mul_(100)
    model(torch.randint(0, 32, (2, 16)))
    for t in (seen["q"], seen["k"]):  # RMS over the head dimension is 1 (weights start at 1)
        torch.testing.assert_close(t.pow(2).mean(-1).sqrt(), torch.ones(t.shape[:-1]), atol=1e-3, rtol=0)


def test_qk_norm_counts_its_parameters():
    cfg = ModelConfig(**BASE, qk_norm=True)
    plain = GPT(ModelConfig(**BASE)).num_params(non_embedding=False)
    model = GPT(cfg)
    assert model.num_params(non_embedding=False) - plain == BASE["n_layer"] * 2 * (BASE["n_embd"] // BASE["n_head"])
    assert arch_stats(cfg)["params_total"] == model.num_params(non_embedding=False)


def test_z_loss_adds_mean_log_z_squared():
    torch.manual_seed(0)
    x = torch.randint(0, 32, (2, 16))
    y = x.clone()
    y[0, :4] = -100  # ignored positions do not count
    plain = GPT(ModelConfig(**BASE))
    with_z = GPT(ModelConfig(**BASE, z_loss=1e-2))
    with_z.load_state_dict(plain.state_dict())
    logits, base_loss = plain(x, y)
    _, loss = with_z(x, y)
    log_z = torch.logsumexp(logits.float(), -1)[y != -100]
    torch.testing.assert_close(loss, base_loss + 1e-2 * log_z.pow(2).mean())


@pytest.mark.parametrize("kwargs, match", [(dict(qk_norm=1), "qk_norm"), (dict(z_loss=-1e-4), "z_loss"),
                                           (dict(z_loss=True), "z_loss")])
def test_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**BASE, **kwargs)
