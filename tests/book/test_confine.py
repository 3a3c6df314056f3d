"""book.confine: a confined command writes only beneath its --write folders and reaches no outside network.

Each test starts a real confined child (`python -m book.confine ... -- python -c ...`) and checks what the child
could and could not do from outside it: the files that exist afterwards, and whether a socket this test listens
on was ever reached. Tests of a mechanism this kernel lacks are skipped with the reason.
"""
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from book import confine

REPO = Path(__file__).resolve().parents[2]
SUPPORT = confine.available()
needs_landlock = pytest.mark.skipif(not SUPPORT.landlock, reason="Landlock is not available on this kernel")
needs_netns = pytest.mark.skipif(not SUPPORT.netns, reason="unprivileged network namespaces are disabled here")


def _run_confined(code: str, write: Path, net: str = "none") -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "book.confine", "--write", str(write), "--net", net, "--",
           sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=write,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def listener():
    """A TCP socket listening on the grader's 127.0.0.1: a confined child must never reach it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    s.settimeout(0.2)
    yield s
    s.close()


def _was_reached(s: socket.socket) -> bool:
    try:
        s.accept()[0].close()
        return True
    except (socket.timeout, BlockingIOError):
        return False


@needs_landlock
def test_writes_only_beneath_the_write_folders(tmp_path):
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("teacher's file")
    r = _run_confined(f"""
        import os, subprocess
        open("made.txt", "w").write("ok")                      # the working copy: allowed
        os.makedirs("sub/dir"); os.remove("made.txt")
        for attempt in (lambda: open({str(outside / 'new.txt')!r}, "w"),
                        lambda: open({str(outside / 'keep.txt')!r}, "a"),
                        lambda: os.remove({str(outside / 'keep.txt')!r}),
                        lambda: os.rename({str(outside / 'keep.txt')!r}, "stolen.txt"),
                        lambda: os.mkdir({str(outside / 'd')!r})):
            try:
                attempt()
                print("ESCAPED")
            except PermissionError:
                print("blocked")
        # a child process inherits the confinement
        print("touch", subprocess.run(["touch", {str(outside / 'touched')!r}], capture_output=True).returncode)
        open("/dev/null", "w").write("x")                     # always allowed
        print("oom", open("/proc/self/oom_score_adj").read().strip())  # the OOM killer's first choice
        """, inside)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:5] == ["blocked"] * 5 and "touch 1" in r.stdout and "oom 1000" in r.stdout
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "teacher's file"
    assert (inside / "sub" / "dir").is_dir()


@needs_landlock
@needs_netns
def test_network_namespace_keeps_only_its_own_loopback(tmp_path, listener):
    port = listener.getsockname()[1]
    r = _run_confined(f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2)   # the grader's loopback: another namespace
            print("ESCAPED")
        except OSError:
            print("grader unreachable")
        try:
            socket.create_connection(("192.0.2.1", 80), timeout=2)        # anything outside: no route
            print("ESCAPED")
        except OSError:
            print("outside unreachable")
        a = socket.socket(); a.bind(("127.0.0.1", 0)); a.listen()          # its own loopback works (torchrun, gloo)
        socket.create_connection(a.getsockname(), timeout=2)
        print("loopback ok")
        """, tmp_path, net="namespace")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["grader", "unreachable", "outside", "unreachable", "loopback", "ok"]
    assert not _was_reached(listener)


@pytest.mark.skipif(SUPPORT.landlock < 4, reason="Landlock TCP rules need ABI >= 4 (Linux >= 6.7)")
def test_landlock_tcp_mode_refuses_every_tcp_connect(tmp_path, listener):
    port = listener.getsockname()[1]
    r = _run_confined(f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2)
            print("ESCAPED")
        except PermissionError:
            print("refused")
        """, tmp_path, net="landlock-tcp")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["refused"]
    assert not _was_reached(listener)


@pytest.mark.skipif(SUPPORT.landlock < 6, reason="Landlock signal scoping needs ABI >= 6 (Linux >= 6.12)")
def test_cannot_signal_the_grader(tmp_path):
    r = _run_confined(f"""
        import os
        try:
            os.kill({os.getpid()}, 0)
            print("ESCAPED")
        except PermissionError:
            print("refused")
        """, tmp_path)
    assert r.stdout.split() == ["refused"], r.stderr


def test_support_describes_itself():
    assert confine.Support(7, True).network == "namespace"
    assert confine.Support(4, False).network == "landlock-tcp"
    assert confine.Support(3, False).network == ""
    assert "network NOT confined" in confine.Support(3, False).describe()
    assert confine.Support(0, True).describe().startswith("unconfined")
    assert "loopback only" in confine.Support(7, True).describe()


def test_cli_errors(tmp_path):
    base = [sys.executable, "-m", "book.confine"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([*base, "--write", str(tmp_path)], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "no command given" in r.stderr
    r = subprocess.run([*base, "--write", str(tmp_path / "missing"), "--", "true"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 2 and "must exist" in r.stderr
