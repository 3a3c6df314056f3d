"""Fixtures shared by the textbook's tests."""
import pytest
import torch

from minillm import GPT, CharTokenizer, ModelConfig


@pytest.fixture(scope="module")
def tiny_lm():
    """A 1-layer char GPT with sharpened logits, untrained: enough for widgets that sample."""
    tok = CharTokenizer.from_text("abcdefgh once upon a time")
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16,
                            tie_embeddings=False))
    with torch.no_grad():
        model.lm_head.weight.mul_(25)  # logits with std ~2 (not ~0.1): the temperature visibly matters
    return model, tok


@pytest.fixture
def assert_shipped_with_settings():
    """The check below, for the chapters' shipped-record tests (a fixture: tests are not a package)."""
    return _assert_shipped_with_settings


def _assert_shipped_with_settings(got: dict, names, script: str) -> None:
    """Every study in `names` has a newest shipped record (`got`: {study: record}) made at laptop size from a known
    commit, with the "settings" book.results.recording() collects; records from before settings existed fail,
    listed, until `python bench/<script> --only ...` makes them again."""
    missing = [n for n in names if n not in got]
    assert not missing, f"no shipped record of {missing}"
    stale = {n: got[n]["provenance"]["date"] for n in names if not got[n].get("settings")}
    assert not stale, f"records without 'settings' (made before they were recorded; re-run python " \
                      f"bench/{script} --only ...): {stale}"
    for n in names:
        rec = got[n]
        assert rec["size"] == "laptop" and rec["provenance"]["git"]["commit"], n
        assert all(isinstance(e, dict) and e for e in rec["settings"]), n
