"""Kernel tests run twice: on CPU in Triton's interpreter (CI) and on CUDA (marked `gpu`, for the lent device).

TRITON_INTERPRET must be set before a kernel module is imported (`@triton.jit` decides at decoration time),
so it is set here, at collection, when there is no GPU. With a GPU the kernels compile for it and the CPU
variants skip, unless the caller set TRITON_INTERPRET=1 themselves.
"""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton", reason="Triton is not installed (it is a Linux-only dependency)")

from minillm.kernels import runtime  # noqa: E402  (after the environment is settled)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request) -> str:
    """'cpu' (Triton interpreter) or 'cuda' (compiled kernels on the GPU)."""
    if request.param == "cpu" and not runtime.interpreter_requested():
        pytest.skip("CPU kernel tests need TRITON_INTERPRET=1 (set automatically only when there is no GPU)")
    return request.param
