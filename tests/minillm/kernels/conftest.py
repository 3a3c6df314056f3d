"""The kernel tests need Triton (a Linux-only dependency); the `device` fixture and TRITON_INTERPRET are set up in
tests/conftest.py, shared with chapter 08's tests."""
import pytest

pytest.importorskip("triton", reason="Triton is not installed (it is a Linux-only dependency)")
