"""Capstone sections 3: the data streams, bits per byte, both recipes, time-budgeted runs, exact resume, figures."""
import math
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch

from minillm import GPT, ModelConfig, load_run
from minillm.data.special_tokens import EOS_TOKEN
from minillm.evaluation.harness import perplexity
from book.ch09_capstone.studies_corpus import capstone_corpus
from book.ch09_capstone.plots_pretrain import plot_bits_per_byte, plot_loss_vs_time
from book.ch09_capstone.studies_pretrain import (bits_per_byte, capstone_data, compare_recipes, exact_resume,
                                                 pretrain, pretrain_base, pretrain_config, pretrain_modern)

matplotlib.use("Agg")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The test machine is shared: two threads per process on two busy cores spin and run ~10x slower than one.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data():
    return capstone_data("ci")


@pytest.fixture(scope="module")
def modern():
    return pretrain_modern("ci")


def test_data_streams_are_the_documents_with_eos(data):
    corpus = capstone_corpus("ci")
    eos = data.tok.token_to_id(EOS_TOKEN)
    assert data.vocab_size == 512 and int(data.train.max()) < 512
    # one EOS per training document: Shakespeare's part and each training poem
    assert int((data.train == eos).sum()) == 1 + len(corpus.poems_train)
    assert data.train[data.train_en_tokens - 1] == eos
    assert data.tok.decode(data.train[:data.train_en_tokens - 1].tolist()) == corpus.en_train
    assert data.heldout_bytes["en"] == len(corpus.en_val.encode()) + 1
    zh_docs = corpus.poem_documents("heldout")
    assert data.heldout_bytes["zh"] == sum(len(d.encode()) for d in zh_docs) + len(zh_docs)
    assert int((data.heldout["zh"] == eos).sum()) == len(zh_docs)
    s = data.summary()
    assert 0.7 < s["train_zh_share"] < 0.9  # measured 0.82 at ci: windows are mostly poems
    assert len(data.heldout_mix) == len(data.heldout["en"]) + len(data.heldout["zh"])
    assert capstone_data("ci") is data  # built once per process


def _uniform_model(vocab: int) -> GPT:
    """Tied embeddings all zero: every logit is 0, so every token costs exactly ln V nats."""
    m = GPT(ModelConfig(vocab_size=vocab, block_size=16, n_layer=1, n_head=1, n_embd=8, tie_embeddings=True))
    with torch.no_grad():
        m.tok_emb.weight.zero_()
    return m.eval()


def test_bits_per_byte_by_hand():
    ids = np.arange(100) % 50
    model = _uniform_model(64)
    # 99 predicted tokens x log2(64) = 6 bits each, over 300 bytes
    assert bits_per_byte(model, ids, 300) == pytest.approx(99 * 6 / 300, rel=1e-6)
    assert bits_per_byte(model, ids, 300, max_windows=2) == pytest.approx(99 * 6 / 300, rel=1e-6)
    with pytest.raises(ValueError, match="n_bytes"):
        bits_per_byte(model, ids, 0)


def test_bits_per_byte_matches_the_harness(data, modern):
    text = capstone_corpus("ci").en_val[:3000]
    ref = perplexity(modern.model, text=text, tokenizer=data.tok)
    ids = data.tok.encode(text)
    assert bits_per_byte(modern.model, ids, len(text.encode())) == pytest.approx(ref["bits_per_byte"], rel=1e-6)


def test_configs_validate_at_every_size():
    for size in ("ci", "laptop", "gpu"):
        cfg = pretrain_config(size)
        m, g = cfg.model_config("modern"), cfg.model_config("gpt2")
        assert (m.norm, m.position, m.activation, m.bias) == ("rmsnorm", "rope", "swiglu", False)
        assert (g.norm, g.position, g.activation, g.bias) == ("layernorm", "learned", "gelu", True)
        assert (m.n_layer, m.n_embd, m.n_head) == (g.n_layer, g.n_embd, g.n_head) == cfg.shape
        steps = cfg.steps()
        spent = steps * cfg.flops_per_token() * cfg.tokens_per_step
        assert abs(spent - cfg.flops_budget) <= cfg.flops_per_token() * cfg.tokens_per_step / 2
        t = cfg.train_config("gpt2", steps)
        assert (t.lr, t.min_lr, t.schedule) == (6e-4, pytest.approx(6e-5), "cosine")
    gpu = pretrain_config("gpu")
    assert gpu.model_config("modern").kernels == "triton" and gpu.precision == "bf16" and gpu.compile
    assert pretrain_config("laptop").model_config("modern").block_size == 128
    with pytest.raises(ValueError, match="recipe"):
        pretrain_config("ci").recipe("llama")
    with pytest.raises(ValueError, match="flops_budget"):
        pretrain_config("ci", flops_budget=0.0)


def test_pretrain_modern_learns_and_accounts(data, modern):
    cfg = pretrain_config("ci")
    assert modern.recipe == "modern" and modern.steps == cfg.steps()
    assert modern.tokens == modern.steps * cfg.tokens_per_step
    assert modern.flops == modern.flops_per_token * modern.tokens
    assert modern.n_params_total == modern.n_params + 512 * cfg.shape[1]  # + the tied table (RoPE: no positions)
    secs = [r["seconds"] for r in modern.rows]
    assert secs == sorted(secs) and modern.seconds >= secs[-1]
    assert modern.rows[-1]["val_loss"] is not None and modern.rows[-1]["step"] == modern.steps
    assert modern.heldout_loss < math.log(512) - 1  # far below a uniform guess
    uniform = bits_per_byte(_uniform_model(512), data.heldout["zh"], data.heldout_bytes["zh"], max_windows=8)
    assert 0 < modern.bits_per_byte["zh"] < uniform
    model, tok = pretrain_base("ci")
    assert model is modern.model and tok is data.tok and pretrain_modern("ci") is modern


def test_callbacks_see_every_row():
    seen = []
    hook = SimpleNamespace(on_step=lambda trainer, row: seen.append(row["step"]))
    res = pretrain("ci", "gpt2", steps=12, callbacks=[hook])
    assert seen == [r["step"] for r in res.rows] and seen[-1] == 12


def test_time_budgeted_baseline_and_comparison(modern):
    rows = compare_recipes("ci")
    assert [r["recipe"] for r in rows] == ["modern", "gpt2"]
    assert rows[0]["heldout_loss"] == modern.heldout_loss
    base = rows[1]
    assert base["calibration_s"] > 0 and base["steps"] >= 1
    assert base["budget_s"] == rows[0]["seconds"] and base["plans"][-1][2] == base["steps"]  # planned, then run
    assert set(rows[0]) <= set(base)
    with pytest.raises(ValueError, match="seconds"):
        pretrain("ci", "gpt2", seconds=-1.0)
    fig = plot_loss_vs_time(rows, predicted_loss=5.0)
    assert len(fig.axes[0].lines) == 2 * 3 + 1  # per recipe: train, held-out, final square; plus the star
    fig = plot_bits_per_byte(rows)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [rows[0]["bpb_en"], rows[0]["bpb_zh"], rows[1]["bpb_en"], rows[1]["bpb_zh"]]
    with pytest.raises(ValueError, match="compare_recipes"):
        plot_bits_per_byte([])


def test_exact_resume_on_this_data(tmp_path):
    out = exact_resume("ci", tmp_path, steps=16)
    assert out["identical"] and len(out["whole"]) == 16 and out["stop_at"] == 8
    # the run folder is a user's: load_run gives back the trained model and the tokenizer
    model, tok = load_run(tmp_path / "whole")
    assert tok.vocab_size == 512 and model.config.position == "rope"
    with pytest.raises(ValueError, match="resume"):
        pretrain("ci", out=tmp_path / "nothing", resume=True)
    with pytest.raises(ValueError, match="step count"):
        pretrain("ci", out=tmp_path / "whole", resume=True, seconds=3.0)
