"""minillm.train.launch.torchrun: runs N processes, reports failures and timeouts instead of hanging."""
from pathlib import Path

import pytest

from minillm.train.launch import torchrun


def test_torchrun_runs_every_rank(tmp_path):
    script = tmp_path / "hello.py"
    # one write per rank: print() with several arguments writes piece by piece, and two ranks share one pipe
    script.write_text("import os, sys\nsys.stdout.write(f\"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}\\n\")\n")
    res = torchrun([str(script)], nproc=2, timeout_s=60)
    assert res.returncode == 0
    assert "rank 0 of 2" in res.stdout and "rank 1 of 2" in res.stdout


def test_torchrun_failure_and_timeout_are_clear(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nif os.environ['RANK'] == '1':\n    raise SystemExit('rank one broke')\n")
    with pytest.raises(RuntimeError, match="failed"):
        torchrun([str(bad)], nproc=2, timeout_s=60)
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ntime.sleep(60)\n")
    with pytest.raises(RuntimeError, match="did not finish within 3 s"):
        torchrun([str(slow)], nproc=2, timeout_s=3)
    with pytest.raises(ValueError, match="nproc"):
        torchrun([str(slow)], nproc=0)


def test_timeout_kills_the_workers_too(tmp_path):
    """torchrun starts each worker in a session of its own: killing the launcher's process group alone would
    leave them sleeping, holding the output pipe, and the call would return only when they finished."""
    import os
    import time

    slow = tmp_path / "slow.py"
    slow.write_text("import os, pathlib, time\n"
                    "pathlib.Path(os.environ['PIDS'], os.environ['RANK']).write_text(str(os.getpid()))\n"
                    "time.sleep(120)\n")
    pids = tmp_path / "pids"
    pids.mkdir()
    os.environ["PIDS"] = str(pids)
    try:
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="did not finish within 12 s"):
            torchrun([str(slow)], nproc=2, timeout_s=12)
        assert time.monotonic() - start < 60, "the call waited for the workers instead of killing them"
    finally:
        del os.environ["PIDS"]
    started = [int(p.read_text()) for p in pids.iterdir()]
    assert started, "the workers never started: raise timeout_s"
    for pid in started:
        status = Path(f"/proc/{pid}/status")
        state = status.read_text().split("State:")[1].split()[0] if status.exists() else "gone"
        assert state in ("gone", "Z", "X"), f"worker {pid} still running ({state})"
