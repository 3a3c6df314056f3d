"""Chapter 05: a 2-process DDP run through the CLI equals one process (book.ch05_training.studies_parallel)."""


def test_ddp_vs_single_process_through_the_cli(tmp_path):
    import torch

    from minillm.__main__ import main
    from book.ch05_training.studies_parallel import ddp_vs_single

    assert main(["prepare", "--source", "story", "--n_docs", "200", "--out", str(tmp_path / "data")]) == 0
    torch.rand(7)  # global RNG used before training: the CLI must seed the initial weights itself
    r = ddp_vs_single(tmp_path / "data", tmp_path / "runs", steps=3, batch_size=4,
                      model_args=("--n_layer", "1", "--n_embd", "16", "--block_size", "16"))
    assert len(r["single"]) == len(r["ddp"]) == 3
    assert r["max_loss_diff"] < 1e-5, f"DDP vs one process: max |Δloss| = {r['max_loss_diff']:.3g}"
