"""The library works with only the library's dependencies: no notebook tools, no `book`.

`pip install minillm` brings torch, numpy, einops, regex, tokenizers, safetensors, tqdm, scipy and triton (see
pyproject's [project].dependencies); JupyterLab, ipywidgets, matplotlib and nbformat are the textbook's extra
`[book]`. This test builds what a clean virtual environment with only those would hold: a directory with links to
the installed packages of minillm's runtime requirements and their own requirements (read from the installed
metadata), nothing else. A fresh interpreter without site-packages (`python -S`) gets that directory and the
repository on its path (with the `book` package refused), imports minillm, trains a model for 20 steps and
generates. A module-level import of a notebook tool anywhere on that path fails it.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]

# Must stay unimported even if some dependency could reach them; `book` sits beside minillm in the repository.
BLOCKED = ("book", "matplotlib", "ipywidgets", "IPython", "ipykernel", "jupyterlab", "nbformat")


def runtime_closure() -> dict[str, md.Distribution]:
    """minillm's runtime requirements (no extras) and, recursively, theirs: what `pip install minillm` installs."""
    todo = [r for r in md.distribution("minillm").requires or [] if "extra ==" not in r]
    found: dict[str, md.Distribution] = {}
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = req.name.lower().replace("_", "-")
        if key in found:
            continue
        found[key] = md.distribution(req.name)
        todo += found[key].requires or []
    return found


def minimal_site(dest: Path) -> Path:
    """A directory of links to each runtime distribution's top-level packages and its .dist-info."""
    dest.mkdir()
    for dist in runtime_closure().values():
        if dist.metadata["Name"].lower() == "minillm":
            continue
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src = Path(dist.locate_file(top))
            if src.exists() and not (dest / top).exists() and top not in ("bin", "__pycache__"):
                os.symlink(src, dest / top)
    return dest

SCRIPT = textwrap.dedent('''
    import sys
    sys.path[:0] = [%r, %r]

    class Block:  # a meta-path finder that refuses the packages of the extras, as if they were not installed
        blocked = set(%r)

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.blocked:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: not a library dependency)")
            return None

    sys.meta_path.insert(0, Block())

    import torch
    from minillm import CharTokenizer, DataSplits, GPT, ModelConfig, TrainConfig, Trainer, corpus, generate
    import minillm.evaluation, minillm.finetune, minillm.scaling, minillm.data.crawl, minillm.data.clean
    import minillm.data.dedup, minillm.accounting, minillm.tools, minillm.__main__

    text = corpus("story", n_docs=200, seed=0).text()
    tok = CharTokenizer.from_text(text)
    data = DataSplits.from_tokens(tok.encode_to_array(text), val_fraction=0.1, vocab_size=tok.vocab_size)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32))
    cfg = TrainConfig(max_steps=20, batch_size=8, lr=3e-3, eval_interval=10, device="cpu", precision="fp32")
    history = Trainer(model, cfg, data, hooks=[]).fit()
    out = generate(model, torch.tensor([tok.encode("Mia ")]), max_new_tokens=16, temperature=0.8)
    assert history[-1]["step"] == 20 and out.shape == (1, 4 + 16), (history[-1], out.shape)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in Block.blocked)
    assert not loaded, loaded
    print("OK", round(history[-1]["val_loss"], 3))
''')


def test_the_runtime_requirements_exclude_notebook_tools():
    names = set(runtime_closure())
    assert {"torch", "numpy", "tokenizers", "safetensors", "tqdm"} <= names
    assert not names & {"matplotlib", "ipywidgets", "jupyterlab", "ipykernel", "nbformat", "notebook"}, names


def test_import_train_and_generate_with_only_the_runtime_requirements(tmp_path):
    site = minimal_site(tmp_path / "site-packages")
    script = SCRIPT % (str(site), str(REPO), BLOCKED)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 0, f"minillm needs a package outside its dependencies:\n{proc.stderr[-3000:]}"
    assert proc.stdout.startswith("OK"), proc.stdout
