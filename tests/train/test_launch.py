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


def test_ddp_vs_single_process_through_the_cli(tmp_path):
    import torch

    from minillm.__main__ import main
    from minillm.train.launch import ddp_vs_single

    assert main(["prepare", "--source", "story", "--n_docs", "200", "--out", str(tmp_path / "data")]) == 0
    torch.rand(7)  # global RNG used before training: the CLI must seed the initial weights itself
    r = ddp_vs_single(tmp_path / "data", tmp_path / "runs", steps=3, batch_size=4,
                      model_args=("--n_layer", "1", "--n_embd", "16", "--block_size", "16"))
    assert len(r["single"]) == len(r["ddp"]) == 3
    assert r["max_loss_diff"] < 1e-5, f"DDP vs one process: max |Δloss| = {r['max_loss_diff']:.3g}"
