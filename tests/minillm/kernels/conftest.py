"""The kernel tests need Triton (a Linux-only dependency); the `device` fixture and TRITON_INTERPRET are set up in
tests/conftest.py, shared with chapter 08's tests. `no_host_sync` is shared by the kernels' backward tests."""
import contextlib

import pytest
import torch

pytest.importorskip("triton", reason="Triton is not installed (it is a Linux-only dependency)")


@pytest.fixture
def no_host_sync(monkeypatch):
    """A context for one backward: torch.equal raises (the old `grad_output == 1` check was a host sync every
    step) and, on a GPU, CUDA's sync debug mode turns any sync into an error."""

    @contextlib.contextmanager
    def guard(device: str):
        def no_equal(*args, **kwargs):
            raise AssertionError("backward compared tensors with torch.equal (a host sync)")

        with monkeypatch.context() as m:
            m.setattr(torch, "equal", no_equal)
            if device == "cuda":
                torch.cuda.set_sync_debug_mode("error")
            try:
                yield
            finally:
                if device == "cuda":
                    torch.cuda.set_sync_debug_mode("default")

    return guard
