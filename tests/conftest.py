"""Shared pytest setup for minillm's tests.

- MINILLM_SIZE defaults to "ci", so anything that reads the size profile stays small and fast.
- Tests marked `gpu` are skipped when CUDA is absent, with the reason in the summary (-ra).
- `shared_data`: the real public text kept beside the repo (<repo>/../shared/data), or a skip.
- `lab_server`: a JupyterLab started with exactly the command `make lab` runs (tests/test_make_lab.py
  and the browser test in tests/e2e use it).
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Real text for tests only; it lives beside the repo and is never copied into it.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
LAB_START_TIMEOUT_S = 90.0


def _interpret_kernels_without_a_gpu() -> None:
    """Kernel tests run twice: on CPU in Triton's interpreter (CI) and on CUDA (marked `gpu`, for a lent device).
    TRITON_INTERPRET must be set before triton or a kernel module is imported (`@triton.jit` decides at
    decoration time), so it is set when this conftest is imported: before pytest_configure and before any deeper
    conftest (tests/minillm/kernels/conftest.py imports triton), also when one test file is run by its path. With
    a GPU the kernels compile for it and the CPU variants skip, unless the caller set TRITON_INTERPRET=1."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


_interpret_kernels_without_a_gpu()


def pytest_configure(config: pytest.Config) -> None:
    # setdefault: whoever runs `MINILLM_SIZE=laptop pytest` on purpose keeps their choice.
    os.environ.setdefault("MINILLM_SIZE", "ci")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu_items:
        return  # don't pay for importing torch when nothing asks for a GPU
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marked `gpu`); none is available here")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Directory of real public text beside the repo; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real text not available: {SHARED_DATA} does not exist")
    return SHARED_DATA


# ----------------------------------------------------------------------------- JupyterLab server


@dataclass(frozen=True)
class LabServer:
    root: Path  # the server's root directory; notebooks copied here can be opened in the browser
    port: int
    token: str
    log: Path  # the server's stdout and stderr

    def url(self, path: str) -> str:
        """Full URL of `path` (e.g. "/lab") on this server, with the login token."""
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}{path}{sep}token={self.token}"

    def log_tail(self, n_chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n_chars:]


def lab_command() -> list[str]:
    """The command `make lab` runs (Makefile LAB_CMD), with this interpreter's bin/ as the venv."""
    if shutil.which("make") is None:
        pytest.skip("`make` is not on PATH")
    bin_dir = Path(sys.executable).parent  # not resolved: a venv's bin/python is a symlink
    # Drop the flags an outer `make test` passes down (-n, -j, directory messages): they would change
    # what this make prints.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "print-lab-cmd", f"BIN={bin_dir}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()
    return shlex.split(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server (it shuts its kernels down), then anything left in the session we created."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # our own process group only (start_new_session=True)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab running `make lab`'s command in a temporary root, ready to serve /lab."""
    cmd = lab_command()
    root = tmp_path_factory.mktemp("lab_root")
    state = tmp_path_factory.mktemp("lab_state")
    server = LabServer(root=root, port=_free_port(), token=secrets.token_hex(16), log=state / "server.log")
    env = dict(os.environ, MINILLM_SIZE="ci")
    # Keep the user's Jupyter settings and workspaces out of the test, and the test's out of them.
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "JUPYTER_RUNTIME_DIR"):
        env[var] = str(state / var.lower())
    # Browser tests read every cell's prompt from the page: keep all cells in the DOM (no windowing);
    # and no "Jupyter news?" prompt, which would ask for the network.
    settings = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / "@jupyterlab"
    for plugin, text in [("notebook-extension/tracker", '{"windowingMode": "none"}'),
                         ("apputils-extension/notification", '{"fetchNews": "false"}')]:
        (settings / f"{plugin}.jupyterlab-settings").parent.mkdir(parents=True, exist_ok=True)
        (settings / f"{plugin}.jupyterlab-settings").write_text(text + "\n")
    cmd += [
        "--no-browser", "--ServerApp.open_browser=False", "--ServerApp.ip=127.0.0.1",
        f"--port={server.port}", f"--IdentityProvider.token={server.token}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",  # no network here
    ]
    with open(server.log, "wb") as log:
        # cwd=root: LAB_CMD serves the current directory, as `make lab` serves the repo.
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + LAB_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {proc.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(server.url("/api/status"), timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {LAB_START_TIMEOUT_S:.0f} s:\n{server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def crawl():
    """A 300-page synthetic crawl (seed 0) with ground truth: the input of the data-cleaning tests."""
    from minillm.data.crawl import generate_crawl

    return generate_crawl(300, seed=0)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request) -> str:
    """'cpu' (Triton interpreter) or 'cuda' (compiled kernels on the GPU), for the kernel tests."""
    pytest.importorskip("triton", reason="Triton is not installed (it is a Linux-only dependency)")
    from minillm.kernels import runtime

    if request.param == "cpu" and not runtime.interpreter_requested():
        pytest.skip("CPU kernel tests need TRITON_INTERPRET=1 (set automatically only when there is no GPU)")
    return request.param
