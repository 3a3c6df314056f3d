"""minillm.train.launch.torchrun: runs N processes, reports failures and timeouts instead of hanging."""
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
