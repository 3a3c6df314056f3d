"""Tests of book.runs, book.ch04_architectures.studies and book.ch04_architectures.plots (chapter 04 studies)."""
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minillm.config import ModelConfig  # noqa: E402
from book.ch04_architectures.studies import (STUCK_MARGIN, ArchRun, activation_study, bias_param_share, position_extrapolation, stability_map, stability_summary, study_data, train_config, unigram_loss)
from book.ch04_architectures.plots import plot_activation, plot_extrapolation, plot_stability_map  # noqa: E402
from minillm.model.transformer import GPT  # noqa: E402

TINY = ArchRun(n_layer=1, n_embd=16, n_head=2, block_size=16, batch_size=4, steps=8, warmup=1, eval_windows=4,
               n_docs=60)


def _json_ok(obj):
    json.dumps(obj, allow_nan=False)  # raises on NaN/inf: rows must be strict JSON


# ------------------------------------------------------------------------------------------- ArchRun / data


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_layer=0), "n_layer"), (dict(steps=True), "steps"), (dict(n_embd=30, n_head=4), "divisible"),
    (dict(lr=0.0), "lr"), (dict(lr=math.inf), "lr"), (dict(warmup=-1), "warmup"),
    (dict(warmup=500, steps=10), "exceeds steps"), (dict(device="tpu"), "device"), (dict(corpus="nope"), "corpus"),
    (dict(n_docs=0), "n_docs"),
])
def test_arch_run_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ArchRun(**kwargs)


def test_arch_run_presets_tokens_and_frozen():
    ci = ArchRun.for_size("ci")
    assert (ci.n_embd, ci.steps, ci.block_size) == (32, 60, 32)
    assert ArchRun.for_size("laptop") == ArchRun()
    assert ArchRun.for_size("ci", steps=7).steps == 7
    assert TINY.tokens == 8 * 4 * 16
    assert ArchRun(lr=50.0).lr == 50.0  # absurd lrs are allowed: the stability study needs them
    with pytest.raises(AttributeError):
        TINY.steps = 3  # frozen
    with pytest.raises(ValueError, match="size"):
        ArchRun.for_size("huge")


def test_study_data_is_cached_and_consistent():
    splits, vocab, tok, floor = study_data(TINY)
    again = study_data(TINY.replace(seed=5, lr=1e-2))  # training settings do not change the data
    assert all(a is b for a, b in zip(again, (splits, vocab, tok, floor)))
    other = study_data(TINY.replace(n_docs=61))
    assert other[0] is not splits and len(other[0].train) > len(splits.train)
    assert vocab == tok.vocab_size == splits.vocab_size
    n = len(splits.train) + len(splits.val)
    assert len(splits.val) == round(0.1 * n)
    # exact entropy of the text < entropy of its character frequencies < uniform over the vocabulary
    assert 0 < floor < unigram_loss(TINY) < math.log(vocab)
    with pytest.raises(TypeError, match="ArchRun"):
        study_data({"n_docs": 60})


# ------------------------------------------------------------------------------------------- train_config


def test_train_config_sane_run_learns():
    run = TINY.replace(steps=30, lr=1e-2, warmup=2)
    _, vocab, _, _ = study_data(run)
    res = train_config(run.model_config(vocab), run)
    assert res["diverged"] is False and res["diverged_at"] is None
    assert res["final_loss"] < res["initial_loss"] - 0.3  # loss went down
    assert res["initial_loss"] == pytest.approx(math.log(vocab), abs=0.3)  # step 1: a near-uniform guess
    assert len(res["history"]) == 30  # a row per step
    assert res["status"] == ("stuck" if res["final_loss"] > res["unigram_loss"] - STUCK_MARGIN else "trained")
    assert res["params"] == res["model"].num_params() and res["params_total"] > res["params"]
    _json_ok({k: v for k, v in res.items() if k != "model"})


def test_train_config_reports_divergence_instead_of_raising():
    _, vocab, _, _ = study_data(TINY)
    res = train_config(TINY.model_config(vocab), TINY.replace(steps=40), lr=50.0)
    assert res["diverged"] is True and res["status"] == "diverged"
    if res["diverged_at"] is not None:  # stopped at the first NaN step: no losses to report
        assert res["final_loss"] is None and res["val_loss"] is None
        assert 1 <= res["diverged_at"] <= 40 and len(res["history"]) == res["diverged_at"]
    else:  # finite but worse than the untrained model
        assert res["final_loss"] > res["initial_loss"]
    _json_ok({k: v for k, v in res.items() if k not in ("model", "history")})


def test_train_config_short_windows_leave_later_positions_untrained():
    _, vocab, _, _ = study_data(TINY)
    cfg = TINY.model_config(vocab, block_size=16, position="learned")
    res = train_config(cfg, TINY, train_len=8)
    assert res["history"][-1]["tokens"] == TINY.steps * TINY.batch_size * 8  # windows of train_len tokens
    torch.manual_seed(TINY.seed)
    init = GPT(cfg).pos_emb.weight.detach()
    trained = res["model"].pos_emb.weight.detach()
    assert torch.equal(trained[8:], init[8:])  # positions 8..15: no gradient, so AdamW never moved them
    assert not torch.equal(trained[:8], init[:8])


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(log_interval=5), ValueError, "log_interval"), (dict(on_nan="raise"), ValueError, "on_nan"),
    (dict(train_len=17), ValueError, "train_len"), (dict(warmup_stepz=1), ValueError, "unknown TrainConfig"),
])
def test_train_config_rejects_bad_arguments(kwargs, err, match):
    _, vocab, _, _ = study_data(TINY)
    with pytest.raises(err, match=match):
        train_config(TINY.model_config(vocab), TINY, **kwargs)


def test_train_config_rejects_small_vocab():
    with pytest.raises(ValueError, match="vocab_size"):
        train_config(TINY.model_config(3), TINY)


# ------------------------------------------------------------------------------------------- studies


def test_stability_map_rows_for_a_2x1x2x1_grid():
    rows = stability_map(("post_ln", "rmsnorm"), (1,), (1e-3, 50.0), (False,), run=TINY.replace(steps=20))
    assert [(r["norm"], r["n_layer"], r["lr"], r["bias"]) for r in rows] == [
        ("post_ln", 1, 1e-3, False), ("post_ln", 1, 50.0, False), ("rmsnorm", 1, 1e-3, False),
        ("rmsnorm", 1, 50.0, False)]
    assert all(r["status"] in ("trained", "stuck", "diverged") and r["warmup"] == 1 for r in rows)
    assert rows[1]["diverged"] and rows[3]["diverged"]  # lr 50: both blow up
    _json_ok(rows)
    summary = stability_summary(rows)
    assert [(s["norm"], s["n_lrs"]) for s in summary] == [("post_ln", 2), ("rmsnorm", 2)]
    assert all(s["max_stable_lr"] in (None, 1e-3) for s in summary)
    with pytest.raises(ValueError, match="norms"):
        stability_map(("layernorm",), run=TINY)
    with pytest.raises(ValueError, match="lrs"):
        stability_map(lrs=(), run=TINY)


def test_stability_summary_by_hand():
    def row(lr, status, loss):
        return {"norm": "pre_ln", "n_layer": 2, "bias": True, "lr": lr, "status": status, "final_loss": loss}

    rows = [row(1e-3, "trained", 2.0), row(3e-3, "trained", 1.5), row(1e-2, "stuck", 3.0), row(3e-2, "diverged", None)]
    (s,) = stability_summary(rows)
    assert (s["max_stable_lr"], s["n_stable"], s["n_lrs"], s["best_lr"], s["best_loss"]) == (3e-3, 2, 4, 3e-3, 1.5)
    (s,) = stability_summary([row(1e-2, "stuck", 3.0)])
    assert s["max_stable_lr"] is None and s["best_lr"] is None


def test_activation_study_matches_parameters():
    rows = activation_study(run=TINY.replace(steps=4))
    assert [r["activation"] for r in rows] == ["relu", "gelu", "swiglu", "geglu"]
    by = {r["activation"]: r for r in rows}
    C, h = 16, round(8 * 16 / 3)  # 43
    assert by["swiglu"]["ffn_hidden"] == by["geglu"]["ffn_hidden"] == h and by["relu"]["ffn_hidden"] == 4 * C
    # MLP per layer with biases: GLU 3·C·h + 2h + C vs 2·C·4C + 4C + C; everything else is identical
    assert by["swiglu"]["params"] - by["relu"]["params"] == (3 * C * h + 2 * h + C) - (8 * C * C + 4 * C + C)
    assert by["relu"]["params"] == by["gelu"]["params"] and by["swiglu"]["params"] == by["geglu"]["params"]
    assert max(r["params"] for r in rows) <= 1.02 * min(r["params"] for r in rows)
    assert all(r["val_loss"] is not None and r["val_loss"] > r["floor"] for r in rows)
    _json_ok(rows)


def test_position_extrapolation_rows():
    rows = position_extrapolation(("learned", "alibi"), train_len=8, eval_lens=(16, 8), run=TINY.replace(steps=4))
    assert [(r["position"], r["eval_len"]) for r in rows] == [("learned", 8), ("learned", 16), ("alibi", 8),
                                                               ("alibi", 16)]
    for r in rows:
        assert math.isfinite(r["loss"]) and r["train_len"] == 8
        assert (r["loss_beyond_train"] is None) == (r["eval_len"] == 8)
    _json_ok(rows)
    with pytest.raises(ValueError, match="train_len"):
        position_extrapolation(("learned",), train_len=32, eval_lens=(8, 16), run=TINY)


def test_bias_param_share_by_hand():
    C, L, V, T = 8, 2, 10, 4
    cfg = ModelConfig(vocab_size=V, block_size=T, n_layer=L, n_embd=C, n_head=2)
    # per block: q, k, v, o biases (4C) + MLP biases (4C + C) + two LayerNorm biases (2C); final norm: C
    biases = L * (4 * C + 5 * C + 2 * C) + C
    total = GPT(cfg).num_params(non_embedding=False)
    assert bias_param_share(cfg) == pytest.approx(biases / total)
    assert bias_param_share(cfg.replace(bias=False)) == 0.0


# ------------------------------------------------------------------------------------------- plots


def test_plot_stability_map_has_a_cell_per_row():
    rows = [{"norm": n, "n_layer": d, "lr": lr, "bias": b, "status": s, "final_loss": 2.0 + lr}
            for n in ("post_ln", "pre_ln", "deepnorm") for d in (2, 4) for lr in (1e-3, 1e-2) for b in (True, False)
            for s in ["trained" if n != "post_ln" or lr < 1e-2 else "stuck"]]
    rows[-1]["status"] = "diverged"
    fig = plot_stability_map(rows)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 6  # 3 norms × 2 bias settings (plus the colour bar)
    texts = [t.get_text() for ax in panels for t in ax.texts]
    assert len(texts) == len(rows) and texts.count("stuck") == 4 and texts.count("diverged") == 1
    plt.close(fig)


def test_plot_activation_and_extrapolation():
    rows = [{"activation": a, "params": 100, "val_loss": 2.0 + i / 10, "floor": 0.3}
            for i, a in enumerate(("relu", "gelu", "swiglu"))]
    fig = plot_activation(rows)
    assert len(fig.axes[0].patches) == 3
    plt.close(fig)
    rows = [{"position": p, "train_len": 8, "eval_len": L, "loss": 2.0, "loss_beyond_train": None if L == 8 else 2.1}
            for p in ("learned", "rope") for L in (8, 16, 32)]
    fig = plot_extrapolation(rows)
    for ax, n_points in zip(fig.axes, (3, 2)):
        lines = [ln for ln in ax.lines if ln.get_label() in ("learned", "rope")]
        assert len(lines) == 2 and all(len(ln.get_xdata()) == n_points for ln in lines)
    plt.close(fig)
    with pytest.raises(ValueError, match="no rows"):
        plot_activation([])
