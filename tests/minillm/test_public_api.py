"""The public API named in the design is importable from the top level (chapters and homework rely on it)."""
import subprocess
import sys

import minillm

PUBLIC = """ModelConfig TrainConfig GPT generate rmsnorm layer_norm gelu silu swiglu softmax scaled_dot_product_attention
apply_rope alibi_bias cross_entropy Trainer AdamW lr_at clip_grad_norm_ get_batch save_checkpoint load_checkpoint
CharTokenizer BPETokenizer train_bpe ByteBPE synthetic entropy_per_token write_shard read_shard size_profile""".split()


def test_public_names_exist():
    missing = [n for n in PUBLIC if not hasattr(minillm, n)]
    assert not missing, f"missing from minillm/__init__.py: {missing}"
    assert callable(minillm.synthetic.corpus)


def test_import_does_no_work(tmp_path):
    # importing must not generate data, touch the disk or start threads beyond torch's own
    code = "import os, minillm; print(sorted(os.listdir('.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
