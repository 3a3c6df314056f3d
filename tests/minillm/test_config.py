"""Config validation: every bad value fails at construction with a message naming the field."""
import pytest
import torch

from minillm import presets
from minillm.config import ModelConfig, TrainConfig
from minillm.device import autocast_dtype, resolve_device


@pytest.mark.parametrize("kw,match", [
    (dict(n_embd=30, n_head=4), "divisible by n_head"),
    (dict(n_head=4, n_kv_head=3), "n_kv_head"),
    (dict(norm="batchnorm"), "norm='batchnorm'.*layernorm, rmsnorm, deepnorm"),
    (dict(activation="tanh"), "activation"),
    (dict(position="rope", n_embd=12, n_head=4), "must be even"),
    (dict(n_layer=0), "n_layer"),
    (dict(dropout=1.0), "dropout"),
    (dict(attention_mask="bidirectional"), "attention_mask"),
])
def test_model_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kw)


def test_model_config_defaults_and_replace():
    cfg = ModelConfig(n_embd=64, n_head=8)
    assert cfg.n_kv_head == 8 and cfg.ffn_hidden == 256 and cfg.head_dim == 8
    assert ModelConfig(n_embd=96, n_head=4, activation="swiglu").ffn_hidden == 256
    c2 = cfg.replace(activation="swiglu", ffn_hidden=None)
    assert c2.ffn_hidden == 176 and cfg.activation == "gelu"
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_dict({"n_layers": 3})


@pytest.mark.parametrize("kw,match", [
    (dict(schedule="step"), "schedule"), (dict(lr=0), "lr"), (dict(min_lr=1.0, lr=0.1), "min_lr"),
    (dict(batch_size=0), "batch_size"), (dict(resume=True), "out_dir"), (dict(precision="fp8"), "precision"),
    (dict(beta2=1.0), "beta2"),
])
def test_train_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_size_profile(monkeypatch):
    monkeypatch.setenv("MINILLM_SIZE", "ci")
    assert presets.size_profile() == "ci"
    assert presets.by_size(ci=1, laptop=2, gpu=3) == 1
    monkeypatch.setenv("MINILLM_SIZE", "huge")
    with pytest.raises(ValueError, match="MINILLM_SIZE='huge'"):
        presets.size_profile()
    monkeypatch.delenv("MINILLM_SIZE")
    assert presets.size_profile() == ("gpu" if torch.cuda.is_available() else "laptop")


def test_presets_build():
    for name in presets.MODEL_PRESETS:
        assert isinstance(presets.model_preset(name), ModelConfig)
    assert presets.model_preset("small", vocab_size=65).vocab_size == 65
    with pytest.raises(ValueError, match="unknown model preset"):
        presets.model_preset("huge")
    assert presets.train_preset("ci").max_steps < presets.train_preset("laptop").max_steps


def test_device_errors():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")
        assert resolve_device("auto").type in ("cpu", "mps")
    with pytest.raises(ValueError, match="device='tpu'"):
        resolve_device("tpu")
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("auto", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        autocast_dtype("fp16", torch.device("cpu"))


def test_preset_comments_state_their_parameter_counts():
    """The comment above each small preset in presets.py gives its non-embedding parameter count exactly
    ("(100,096)"); a changed shape without a changed comment fails here."""
    import re
    from pathlib import Path

    from minillm import presets
    from minillm.model.transformer import GPT

    src = Path(presets.__file__).read_text(encoding="utf-8")
    stated = {name: int(count.replace(",", "")) for count, name in
              re.findall(r"#[^\n]*\(([\d,]+)\)[^\n]*\n\s*\"([\w-]+)\": dict", src)}
    assert set(stated) >= {"tiny", "small", "medium"}, stated
    for name, count in stated.items():
        assert GPT(presets.model_preset(name, vocab_size=256)).num_params() == count, name


def test_gpu_profile_turns_on_the_gpu_speedups_and_cpu_profiles_do_not():
    gpu = presets.train_preset("gpu")
    assert gpu.optimizer == "torch_adamw" and gpu.compile is True  # fused AdamW on CUDA (train/optim.py), compiled
    assert presets.model_preset("medium", size="gpu").pad_vocab_multiple == 64
    for size in ("ci", "laptop"):  # CPU runs stay exactly as they were
        cfg = presets.train_preset(size)
        assert (cfg.optimizer, cfg.compile) == ("adamw", False), size
        assert presets.model_preset("small", size=size).pad_vocab_multiple is None, size
    # an explicit override wins over the profile's default
    assert presets.model_preset("medium", size="gpu", pad_vocab_multiple=None).padded_vocab_size == 256
    assert presets.train_preset("gpu", compile=False).compile is False
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        presets.model_preset("small", size="huge")


def test_model_preset_follows_the_active_profile(monkeypatch):
    monkeypatch.setenv("MINILLM_SIZE", "gpu")
    assert presets.model_preset("gpt2-124m").padded_vocab_size == 50304  # 50257 -> 786 * 64, as nanoGPT
    monkeypatch.delenv("MINILLM_SIZE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a CUDA host: gpu is the default profile
    assert presets.model_preset("small").pad_vocab_multiple == 64 and presets.train_preset().compile is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert presets.model_preset("small").pad_vocab_multiple is None and presets.train_preset().compile is False


def test_tf32_is_set_on_cuda_only():
    from minillm.device import set_tf32

    matmul = torch.backends.cuda.matmul  # a process-wide switch: put it back afterwards
    before = matmul.allow_tf32
    try:
        matmul.allow_tf32 = False
        assert set_tf32(torch.device("cpu"), True) is False and matmul.allow_tf32 is False
        assert torch.backends.mkldnn.matmul.fp32_precision != "tf32"  # the CPU's matmuls stay exact fp32
        # the flag is only a setting: a CPU-only build takes it, so the CUDA branch is checked here too
        assert set_tf32(torch.device("cuda"), True) is True and matmul.allow_tf32 is True
        assert torch.get_float32_matmul_precision() == "high"  # still readable: torch.compile's inductor asks
        assert set_tf32(torch.device("cuda", 0), False) is True and matmul.allow_tf32 is False
    finally:
        matmul.allow_tf32 = before
    with pytest.raises(ValueError, match="TrainConfig.tf32=1 must be True or False"):
        TrainConfig(tf32=1)
    assert TrainConfig().tf32 is True
