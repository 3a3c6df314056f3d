"""minillm.model.hf: Llama-style GPT <-> Hugging Face Llama checkpoints (export, import, refusals).

The round-trip and layout tests need only safetensors; the ones comparing against `transformers`' own
LlamaForCausalLM skip where it is not installed (it is a dev dependency).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from minillm.model import hf as hf_mod
from minillm.config import ModelConfig
from minillm.model.hf import export_llama, import_llama
from minillm.model.position import apply_rope, rope_angles
from minillm.model.transformer import GPT

ATOL = 1e-5  # fp32: the two implementations order their float ops differently (measured max ~1e-6)


def llama_cfg(tie: bool, **changes) -> ModelConfig:
    base = dict(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=64, norm="rmsnorm",
                activation="swiglu", position="rope", bias=False, tie_embeddings=tie, rope_theta=500.0,
                norm_eps=1e-6)
    return ModelConfig(**{**base, **changes})


def jitter(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random offsets on every parameter: norm weights start at exactly 1 and would hide a mapping error."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def random_model(tie: bool, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return jitter(GPT(llama_cfg(tie)), seed)


def ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 97, (3, 32), generator=torch.Generator().manual_seed(seed))  # (B, T)


@torch.no_grad()
def logits(model, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out[0] if isinstance(out, tuple) else out.logits  # minillm (logits, loss) or a HF output


# --- without transformers ------------------------------------------------------------------------------


@pytest.mark.parametrize("tie", [True, False])
def test_round_trip_gives_identical_logits(tmp_path: Path, tie: bool) -> None:
    model = random_model(tie)
    out = export_llama(model, tmp_path / "ckpt")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name != "ckpt"], "the temporary directory was left behind"
    c = json.loads((out / "config.json").read_text())
    assert (c["model_type"], c["hidden_act"], c["architectures"]) == ("llama", "silu", ["LlamaForCausalLM"])
    assert (c["hidden_size"], c["num_key_value_heads"], c["tie_word_embeddings"]) == (64, 2, tie)
    assert c["rope_theta"] == 500.0 and c["rms_norm_eps"] == 1e-6 and c["torch_dtype"] == "float32"
    back = import_llama(out)
    assert back.config.tie_embeddings is tie and back.config.n_kv_head == 2
    assert torch.equal(logits(back, ids()), logits(model, ids()))


@pytest.mark.parametrize("tie", [True, False])
def test_a_gpu_padded_vocabulary_exports_its_real_rows(tmp_path: Path, tie: bool) -> None:
    """The gpu profile pads the vocabulary to a multiple of 64 (97 -> 128 rows): the export holds the 97 real rows
    under vocab_size 97, and the imported (unpadded) model gives the same logits."""
    torch.manual_seed(0)
    model = jitter(GPT(llama_cfg(tie, pad_vocab_multiple=64)))
    assert model.tok_emb.weight.shape[0] == 128
    out = export_llama(model, tmp_path / "ckpt")
    assert json.loads((out / "config.json").read_text())["vocab_size"] == 97
    back = import_llama(out)
    assert back.tok_emb.weight.shape[0] == 97
    assert torch.allclose(logits(back, ids()), logits(model, ids()), atol=ATOL)


def test_rope_permutation_turns_adjacent_pairs_into_halves() -> None:
    """minillm's RoPE on x equals HF's rotate-half RoPE on x with its dims reordered by _rope_perm."""
    D, T = 16, 7
    x = torch.randn(2, T, D)
    pos = torch.arange(T)
    perm = hf_mod._rope_perm(D)
    cos, sin = rope_angles(pos, D, 500.0)  # (T, D/2) each
    cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)  # HF repeats the angles over both halves
    xp = x[..., perm]
    rotate_half = torch.cat([-xp[..., D // 2:], xp[..., : D // 2]], -1)
    hf_rope = xp * cos + rotate_half * sin
    torch.testing.assert_close(hf_rope, apply_rope(x, pos, 500.0)[..., perm], atol=1e-6, rtol=0)
    assert not torch.equal(perm, torch.arange(D))


def test_export_refuses_non_llama_models_listing_every_difference(tmp_path: Path) -> None:
    gpt2 = GPT(ModelConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=32))  # layernorm, gelu...
    with pytest.raises(ValueError, match="not Llama-style") as e:
        export_llama(gpt2, tmp_path / "x")
    for item in ("norm='layernorm'", "activation='gelu'", "position='learned'", "bias=True"):
        assert item in str(e.value)
    with pytest.raises(ValueError, match=r"qk_norm=True.*n_expert=4|position='alibi'"):
        export_llama(GPT(llama_cfg(True, position="alibi", qk_norm=True, n_expert=4)), tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_export_replaces_an_old_export_but_never_foreign_files(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    export_llama(random_model(True, seed=1), target)
    export_llama(random_model(False, seed=2), target)  # over a previous export: replaced whole
    assert json.loads((target / "config.json").read_text())["tie_word_embeddings"] is False
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="would delete"):
        export_llama(random_model(True), target)
    assert (target / "notes.txt").read_text() == "mine"


def test_missing_or_corrupt_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        import_llama(tmp_path / "nowhere")
    ckpt = export_llama(random_model(True), tmp_path / "ckpt")
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated mid-tensor
    with pytest.raises(ValueError, match="not a readable safetensors"):
        import_llama(ckpt)
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        import_llama(ckpt)
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid UTF-8 JSON"):
        import_llama(ckpt)
    with pytest.raises(ValueError, match="checkpoint directory or a transformers"):
        import_llama(42)


def test_import_refuses_unsupported_config_features(tmp_path: Path) -> None:
    ckpt = export_llama(random_model(False), tmp_path / "ckpt")
    c = json.loads((ckpt / "config.json").read_text())
    bad = {**c, "rope_scaling": {"rope_type": "linear", "factor": 2.0}, "attention_bias": True,
           "sliding_window": 16}
    (ckpt / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError) as e:
        import_llama(ckpt)
    for item in ("rope_scaling", "attention_bias=True", "sliding_window=16"):
        assert item in str(e.value)
    (ckpt / "config.json").write_text(json.dumps({**c, "intermediate_size": c["intermediate_size"] + 8}))
    with pytest.raises(ValueError, match="config.json disagree"):
        import_llama(ckpt)


# --- against transformers' LlamaForCausalLM --------------------------------------------------------------


@pytest.mark.parametrize("tie", [True, False])
def test_transformers_loads_export_with_same_logits(tmp_path: Path, tie: bool) -> None:
    transformers = pytest.importorskip("transformers")
    model = random_model(tie)
    ckpt = export_llama(model, tmp_path / "ckpt")
    theirs = transformers.LlamaForCausalLM.from_pretrained(ckpt).float().eval()
    assert theirs.config.tie_word_embeddings is tie and theirs.config.num_key_value_heads == 2
    ours, hf_logits = logits(model, ids()), logits(theirs, ids())
    assert hf_logits.shape == ours.shape == (3, 32, 97)
    torch.testing.assert_close(hf_logits, ours, atol=ATOL, rtol=0)


def test_export_without_rope_permutation_would_differ(tmp_path: Path, monkeypatch) -> None:
    """The logit comparison above is sensitive to the q/k layout: skipping the permutation breaks it."""
    transformers = pytest.importorskip("transformers")
    model = random_model(False)
    monkeypatch.setattr(hf_mod, "_rope_perm", lambda d: torch.arange(d))
    theirs = transformers.LlamaForCausalLM.from_pretrained(export_llama(model, tmp_path / "c")).float().eval()
    assert (logits(theirs, ids()) - logits(model, ids())).abs().max() > 1e-3


@pytest.mark.parametrize("tie", [True, False])
def test_import_transformers_model_with_same_logits(tmp_path: Path, tie: bool) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                      rms_norm_eps=1e-6, tie_word_embeddings=tie)
    torch.manual_seed(3)
    theirs = jitter(transformers.LlamaForCausalLM(config).float(), seed=3)
    expected = logits(theirs, ids())
    from_memory = import_llama(theirs)
    assert from_memory.config.ffn_hidden == 176 and from_memory.config.tie_embeddings is tie
    torch.testing.assert_close(logits(from_memory, ids()), expected, atol=ATOL, rtol=0)
    theirs.save_pretrained(tmp_path / "saved")  # transformers' own files, read back with safetensors only
    torch.testing.assert_close(logits(import_llama(tmp_path / "saved"), ids()), expected, atol=ATOL, rtol=0)
