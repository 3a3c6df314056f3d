"""Tests of book.ch05_training.studies_optim and plots_optim (chapter 05's optimizer comparison, decay and clipping)."""
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from book.runs import ArchRun  # noqa: E402
from book.ch05_training.plots_optim import (decay_clip_table, optimizer_table, plot_decay_clip,  # noqa: E402
                                            plot_optimizers)
from book.ch05_training.studies_optim import (COMPARED, LR_GRIDS, best_rows, decay_clip_study,  # noqa: E402
                                              measure_state, optimizer_state_bytes, optimizer_study)
from minillm.train.lion import Lion  # noqa: E402
from minillm.train.optim import SGDW, AdamW  # noqa: E402

TINY = ArchRun(n_layer=1, n_embd=16, n_head=2, block_size=16, batch_size=4, steps=8, warmup=1, eval_windows=4,
               n_docs=60)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _stepped(opt_cls, shape=(3, 4), **kw):
    p = torch.nn.Parameter(torch.ones(shape))
    opt = opt_cls([p], **kw)
    p.grad = torch.full(shape, 0.5)
    opt.step()
    return opt


def test_state_bytes_counted_by_hand():
    # (3, 4) fp32 = 48 bytes of parameter. AdamW: m and v (96) + a float32 step counter (4).
    assert optimizer_state_bytes(_stepped(AdamW)) == 2 * 48 + 4
    assert optimizer_state_bytes(_stepped(SGDW)) == 48  # one momentum buffer
    assert optimizer_state_bytes(_stepped(Lion)) == 48  # one momentum buffer, no counter
    # Adafactor: a row of 3 and a column of 4 second moments, plus its step counter: 28 + 4 bytes, not 48.
    assert optimizer_state_bytes(_stepped(torch.optim.Adafactor)) == (3 + 4) * 4 + 4


def test_state_bytes_refuses_before_the_first_step_and_non_optimizers():
    with pytest.raises(ValueError, match="first step"):
        optimizer_state_bytes(AdamW([torch.nn.Parameter(torch.ones(2))]))
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        optimizer_state_bytes({"state": {}})


def test_measure_state_ratios_on_the_run_model():
    ratio = {name: measure_state(name, TINY)["state_ratio"] for name in COMPARED}
    assert ratio["adamw"] == pytest.approx(2.0, abs=0.01) and ratio["adam"] == pytest.approx(2.0, abs=0.01)
    assert ratio["sgd"] == 1.0 and ratio["lion"] == 1.0
    assert 1.0 < ratio["muon"] < 2.0  # 1x on the hidden matrices, 2x on embeddings, head and vectors
    assert ratio["adafactor"] < 0.25  # factored: ~m + n numbers per m x n matrix
    with pytest.raises(ValueError, match="choose one of"):
        measure_state("adagrad", TINY)


@pytest.fixture(scope="module")
def study():
    return optimizer_study({"adamw": (3e-3, 1e3), "sgd": (0.3, 1.0)}, TINY, n_evals=2)


def test_optimizer_study_rows_and_one_best_per_optimizer(study):
    json.dumps(study, allow_nan=False)
    assert [(r["optimizer"], r["lr"]) for r in study] == [("adamw", 3e-3), ("adamw", 1e3), ("sgd", 0.3), ("sgd", 1.0)]
    for name in ("adamw", "sgd"):
        arm = [r for r in study if r["optimizer"] == name]
        ok = [r for r in arm if not r["diverged"]]
        assert sum(r["best"] for r in arm) == 1
        assert next(r for r in arm if r["best"])["val_loss"] == min(r["val_loss"] for r in ok)
    absurd = study[1]
    assert absurd["diverged"] and not absurd["best"]  # lr 1000 for AdamW: never the best
    assert all(len(r["losses"]) == TINY.steps for r in study if not r["diverged"])
    assert study[0]["val_steps"] == [4, 8]
    assert [r["optimizer"] for r in best_rows(study)] == ["adamw", "sgd"]


def test_optimizer_study_rejects_unknown_optimizers_and_bad_lrs():
    with pytest.raises(ValueError, match="adagrad"):
        optimizer_study({"adagrad": (1e-3,)}, TINY)
    with pytest.raises(ValueError, match="lrs\\['sgd'\\]"):
        optimizer_study({"sgd": (0.1, -1.0)}, TINY)
    assert set(LR_GRIDS) == set(COMPARED)


@pytest.fixture(scope="module")
def decay_clip():
    return decay_clip_study((0.0, 30.0), (None, 1e-9, 1e9), TINY)


def test_decay_clip_norms_and_clip_rate(decay_clip):
    json.dumps(decay_clip, allow_nan=False)
    assert [(r["knob"], r["value"]) for r in decay_clip] == [("weight_decay", 0.0), ("weight_decay", 30.0),
                                                              ("grad_clip", None), ("grad_clip", 1e-9),
                                                              ("grad_clip", 1e9)]
    for r in decay_clip:
        assert len(r["weight_norms"]) == len(r["update_norms"]) == len(r["grad_norms"]) == TINY.steps
        assert all(u > 0 for u in r["update_norms"])
    none, heavy = decay_clip[0], decay_clip[1]
    # λ = 30 at lr 3e-3 shrinks the matrices by 9% a step: far below the undecayed run's norm after 8 steps.
    assert heavy["weight_norm"] < 0.7 * none["weight_norm"]
    assert decay_clip[2]["clip_rate"] is None
    assert decay_clip[3]["clip_rate"] == 1.0 and decay_clip[4]["clip_rate"] == 0.0  # every step / no step
    assert none["clip_rate"] == sum(n > 1.0 for n in none["grad_norms"]) / TINY.steps  # the recipe's clip at 1.0
    assert decay_clip[2]["lr"] == pytest.approx(10 * TINY.lr) and none["lr"] == TINY.lr


def test_weight_norm_trace_starts_from_the_init_shrunk_by_the_decay(decay_clip):
    """After step 1 the λ=30 run's matrices are the init times (1 − lr·λ) plus one Adam step of ~lr per entry."""
    from minillm.model.transformer import GPT
    from minillm.train.optim import param_groups
    from book.runs import study_data

    _, vocab, _, _ = study_data(TINY)
    torch.manual_seed(TINY.seed)
    init = param_groups(GPT(TINY.model_config(vocab)), 1.0)[0]["params"]
    n0 = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in init))
    n_params = sum(p.numel() for p in init)
    lr1 = TINY.lr / TINY.warmup_steps  # step 1 of the warmup
    shrunk = n0 * (1 - lr1 * 30.0)
    assert abs(decay_clip[1]["weight_norms"][0] - shrunk) <= lr1 * math.sqrt(n_params) * 1.01


def test_plots_and_table(study, decay_clip):
    fig = plot_optimizers(study)
    assert len(fig.axes) == 3
    lines = optimizer_table(study)
    assert lines[0].strip().startswith("adamw: best lr 0.003") and "2.00x" in lines[0]
    fig = plot_decay_clip(decay_clip)
    table = decay_clip_table(decay_clip)
    assert table[0].startswith("weight_decay=0.0 at lr 0.003: held-out ") and "clipped" in table[0]
    assert "clipped 100%" in table[3] and "clipped" not in table[2]
    assert len(fig.axes) == 4
    with pytest.raises(ValueError, match="decay_clip_study"):
        plot_decay_clip([{"knob": "weight_decay"}])
