"""minillm.finetune.sft: train_sft / optimize honour out_dir, checkpoint_interval and resume (issue #22, item 6).

The resume tests follow the Trainer's (tests/minillm/train/test_trainer.py): a run interrupted between checkpoints
and resumed in a fresh model must give the same losses and weights as one run straight through.
"""
import pytest
import torch

from minillm import GPT, ModelConfig, TrainConfig
from minillm.finetune.sft import optimize, sft_batches, train_sft
from minillm.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, load_checkpoint_state
from minillm.train.history import read_history

V, T = 40, 16


def tiny_gpt(seed: int = 0, dropout: float = 0.0) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=V, block_size=T, n_layer=1, n_head=2, n_embd=16, dropout=dropout))


def sft_rows(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, T) packed rows: next-token targets with the first half masked (-100), as `pack` makes them."""
    x = torch.randint(0, V, (n, T), generator=torch.Generator().manual_seed(0))
    y = torch.roll(x, -1, dims=1)
    y[:, : T // 2] = -100
    return x, y


def cfg(**kw) -> TrainConfig:
    base = dict(max_steps=10, batch_size=4, lr=1e-2, warmup_steps=2, log_interval=1, device="cpu", progress=False)
    return TrainConfig(**{**base, **kw})


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


class Crash:
    """A forward pre-hook that interrupts training at the `at`-th forward call (a killed run)."""

    def __init__(self, at: int):
        self.calls, self.at = 0, at

    def __call__(self, module, args):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt


def test_out_dir_gets_history_and_the_final_checkpoint(tmp_path):
    x, y = sft_rows()
    model = tiny_gpt()
    run = tmp_path / "run"
    history = train_sft(model, x, y, cfg(max_steps=6, log_interval=2, checkpoint_interval=4, out_dir=str(run)))
    assert [r["step"] for r in history] == [2, 4, 6]
    assert read_history(run) == history  # every returned row is on disk, in order
    # Saved at 4 and at the end (6); only the newest is kept, as the Trainer does.
    assert [p.name for p in list_checkpoints(run)] == ["step_00000006"]
    state = load_checkpoint_state(latest_checkpoint(run))
    assert state["step"] == 6 and state["optimizer"] is not None and state["extra"]["history"] == history
    assert state["train_config"]["checkpoint_interval"] == 4
    fresh = tiny_gpt(seed=1)
    assert load_checkpoint(latest_checkpoint(run), fresh) == 6
    assert all(torch.equal(a, b) for a, b in zip(weights(fresh), weights(model)))


def test_checkpoint_interval_zero_saves_only_at_the_end(tmp_path, monkeypatch):
    import minillm.finetune.loop as loop

    saved = []
    real = loop.save_checkpoint
    monkeypatch.setattr(loop, "save_checkpoint", lambda path, *a, **k: saved.append(a[2]) or real(path, *a, **k))
    x, y = sft_rows()
    train_sft(tiny_gpt(), x, y, cfg(max_steps=5, checkpoint_interval=0, out_dir=str(tmp_path / "a")))
    assert saved == [5]
    saved.clear()
    train_sft(tiny_gpt(), x, y, cfg(max_steps=5, checkpoint_interval=2, out_dir=str(tmp_path / "b")))
    assert saved == [2, 4, 5]


@pytest.mark.parametrize("accum", [1, 2])
def test_resume_after_a_crash_reproduces_the_uninterrupted_run(tmp_path, accum):
    x, y = sft_rows()
    settings = dict(max_steps=10, checkpoint_interval=4, grad_accum_steps=accum)
    # Dropout on, so the restored RNG state matters; 12 rows / batch 4 = 3 batches per epoch, so the resumed
    # stream must also land mid-epoch in the right permutation.
    full_model = tiny_gpt(dropout=0.1)
    full = train_sft(full_model, x, y, cfg(**settings))

    run = str(tmp_path / "run")
    crashed = tiny_gpt(dropout=0.1)
    handle = crashed.register_forward_pre_hook(Crash(at=6 * accum + 1))  # dies inside step 7
    with pytest.raises(KeyboardInterrupt):
        train_sft(crashed, x, y, cfg(**settings, out_dir=run))
    handle.remove()
    assert latest_checkpoint(run).name == "step_00000004"
    assert [r["step"] for r in read_history(run)] == [1, 2, 3, 4, 5, 6]  # logged past the checkpoint

    resumed_model = tiny_gpt(seed=123, dropout=0.1)  # a new process builds a fresh model
    history = train_sft(resumed_model, x, y, cfg(**settings, out_dir=run, resume=True))
    assert [r["loss"] for r in history] == [r["loss"] for r in full]  # bit-identical, as the Trainer's resume
    assert history == full
    assert [r["step"] for r in read_history(run)] == list(range(1, 11))  # rows 5, 6 of the crash not doubled
    assert all(torch.equal(a, b) for a, b in zip(weights(resumed_model), weights(full_model)))
    assert latest_checkpoint(run).name == "step_00000010"


def test_resume_of_a_finished_run_returns_its_history_and_changes_nothing(tmp_path):
    x, y = sft_rows()
    run = str(tmp_path)
    model = tiny_gpt()
    full = train_sft(model, x, y, cfg(max_steps=3, out_dir=run))
    again = tiny_gpt(seed=5)
    assert train_sft(again, x, y, cfg(max_steps=3, out_dir=run, resume=True)) == full
    assert all(torch.equal(a, b) for a, b in zip(weights(again), weights(model)))


def test_optimize_with_loss_fn_extras_checkpoints_and_resumes(tmp_path):
    """The loop DPO and the reward model share: extras are logged, and a resumed run lands on the same rows."""
    x, y = sft_rows()

    def with_extras(model, b):
        return model(*b)[1], {"targets": (b[1] != -100).sum()}

    settings = dict(max_steps=6, checkpoint_interval=3)
    full = optimize(tiny_gpt(), cfg(**settings), batches=sft_batches(x, y, 4, seed=0), loss_fn=with_extras)
    run = str(tmp_path)
    crashed = tiny_gpt()
    crashed.register_forward_pre_hook(Crash(at=5))
    with pytest.raises(KeyboardInterrupt):
        optimize(crashed, cfg(**settings, out_dir=run), batches=sft_batches(x, y, 4, seed=0), loss_fn=with_extras)
    assert latest_checkpoint(run).name == "step_00000003"
    history = optimize(tiny_gpt(seed=9), cfg(**settings, out_dir=run, resume=True),
                       batches=sft_batches(x, y, 4, seed=0), loss_fn=with_extras)
    assert history == full and read_history(run) == full
    assert full[0]["targets"] == 4 * (T - T // 2)


def test_guards(tmp_path):
    x, y = sft_rows()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_sft(tiny_gpt(), x, y, cfg(out_dir=str(tmp_path / "empty"), resume=True))
    run = str(tmp_path / "run")
    train_sft(tiny_gpt(), x, y, cfg(max_steps=4, out_dir=run))
    with pytest.raises(ValueError, match="already holds checkpoints.*resume=True"):
        train_sft(tiny_gpt(), x, y, cfg(max_steps=4, out_dir=run))
    with pytest.raises(ValueError, match="step 4, past max_steps=2"):
        train_sft(tiny_gpt(), x, y, cfg(max_steps=2, out_dir=run, resume=True))
    model = tiny_gpt()
    stream = sft_batches(x, y, 4, seed=0)
    with pytest.raises(ValueError, match="resume=True needs batches="):
        optimize(model, cfg(max_steps=6, out_dir=run, resume=True), lambda: model(*next(stream))[1])
    # The closure form still writes checkpoints (only resuming it is impossible).
    closure_run = str(tmp_path / "closure")
    optimize(model, cfg(max_steps=2, out_dir=closure_run), lambda: model(*next(stream))[1])
    assert latest_checkpoint(closure_run).name == "step_00000002"
    with pytest.raises(ValueError, match="batches ran out after 1 of the 2 micro-batches"):
        optimize(tiny_gpt(), cfg(max_steps=6, out_dir=closure_run, resume=True), batches=[next(stream)])
