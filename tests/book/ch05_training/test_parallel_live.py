"""ZeRO-1, tensor and pipeline parallelism live on 2 gloo processes: equal to one process, memory and bytes as
predicted (book/ch05_training/studies_parallel_live.py and its worker)."""
from __future__ import annotations

import pytest
import torch

from book.ch05_training.studies_parallel_live import FORMS, find, format_table, live_config, parallel_live
from book.ch05_training.studies_parallel_worker import CommCounter, tensor_bytes

CI = live_config("ci")  # vocab 64, seq 16, 2 layers, 2 heads, C 32, batch 4, 2 micro-batches


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return parallel_live(CI)  # one torchrun job for every test below


def test_every_form_equals_one_process(rows):
    ref = find(rows, "single")
    for r in rows:
        assert r["loss"] == pytest.approx(ref["loss"], abs=1e-6), r["form"]
        assert r["max_grad_diff"] < 1e-6, (r["form"], r["max_grad_diff"])  # gradients: exact up to rounding
        assert r["max_diff"] < 1e-5, (r["form"], r["max_diff"])  # weights after one AdamW step
    tp_torch = find(rows, "tp_torch")
    assert tp_torch["max_logit_diff_vs_tp"] == 0.0  # minillm's tensor_parallel is this same DTensor plan
    assert tp_torch["max_logit_diff_vs_single"] < 1e-5


def test_memory_per_rank_against_hand_counts(rows):
    C, V, L, T = CI["n_embd"], CI["vocab"], CI["n_layer"], CI["seq"]
    block = 4 * C * C + 2 * 4 * C * C + 2 * C  # q, k, v, o; w1, w2 (gelu, 4C); two LayerNorm weights, no bias
    P = V * C + T * C + L * block + C  # tied tok_emb/lm_head, learned positions, blocks, final norm
    single = find(rows, "single")
    assert single["n_params"] == P and single["param_bytes"] == 4 * P == single["grad_bytes"]
    n_tensors = 2 + 8 * L + 1  # tok_emb (= lm_head), pos_emb; 8 per block; final norm
    assert single["state_bytes"] == 2 * 4 * P + 4 * n_tensors  # Adam's m and v, one fp32 step count per tensor
    zero = find(rows, "zero1")
    assert zero["param_bytes"] == 4 * P and zero["state_bytes"] == 2 * 4 * ((P + 1) // 2) + 4  # 1/2 of the state
    tp = find(rows, "tp")  # each rank: half of every block matrix, the rest replicated
    assert tp["param_bytes"] == 4 * (P - L * 12 * C * C // 2)
    pp0, pp1 = find(rows, "pp", 0), find(rows, "pp", 1)  # stage 0: embeddings + block 0; stage 1: block 1 + head
    assert pp0["param_bytes"] == 4 * (V * C + T * C + block)
    assert pp1["param_bytes"] == 4 * (block + C + V * C)  # the tied table is a second copy on the last stage


def test_bytes_sent_measured_against_formulas(rows):
    C, V, L, T, B, N = CI["n_embd"], CI["vocab"], CI["n_layer"], CI["seq"], CI["batch"], 2
    P = find(rows, "single")["n_params"]
    zero = find(rows, "zero1")  # all-reduce of the gradient (P floats) + all-gather of the weights
    assert zero["sent_bytes"] == zero["predicted_sent_bytes"] == 4 * P * (2 * (N - 1) / N + (N - 1) / N)
    act = B * T * C * 4  # one (B, T, C) fp32 activation
    for form in ("tp", "tp_torch"):
        r = find(rows, form)
        assert r["predicted_sent_bytes"] == L * 4 * act  # Megatron: 2 all-reduces forward, 2 backward per layer
        # torch's ColwiseParallel all-reduces the input gradient of wq, wk and wv separately: 3, not 1
        assert r["sent_bytes"] == L * 6 * act
    assert find(rows, "tp")["forward_sent_bytes"] == L * 2 * act
    for rank in range(N):  # one boundary: rank 0 sends activations, rank 1 their gradients; + tied-table sum
        assert find(rows, "pp", rank)["sent_bytes"] == act + V * C * 4 == find(rows, "pp", rank)["predicted_sent_bytes"]


def test_table_and_forms(rows):
    assert {r["form"] for r in rows} == set(FORMS) and len(rows) == 2 * len(FORMS)
    text = format_table(rows)
    assert text.count("\n") == 2 + 2 * (len(FORMS) - 1)  # header, rule, single once, four forms on two ranks
    with pytest.raises(KeyError, match="no row"):
        find(rows, "fsdp")


def test_counter_and_bytes_without_processes():
    c = CommCounter(world=4)
    c._count("allreduce_", ([torch.zeros(10)],))
    c._count("all_gather_into_tensor", (torch.zeros(5), 4, "g"))
    c._count("send", ([torch.zeros(3, dtype=torch.float64)], 1, 0))
    assert c.payload == 40 + 20 + 24
    assert c.sent == pytest.approx(40 * 2 * 3 / 4 + 20 * 3 + 24)
    with pytest.raises(RuntimeError, match="no byte rule"):
        c._count("alltoall_", ([torch.zeros(1)],))
    assert tensor_bytes([torch.zeros(2, 3), None, torch.zeros(4, dtype=torch.float16)]) == 24 + 8


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown settings"):
        parallel_live({"n_layers": 2})


def test_plot_draws_held_and_sent_bytes(rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from book.ch05_training.plots_parallel_live import plot_parallel_live

    fig = plot_parallel_live(rows)
    held, sent = fig.axes[0], fig.axes[1]
    assert len(held.patches) == 3 * (1 + 2 * (len(FORMS) - 1))  # 3 stacked bars per (form, rank), single once
    zero_state = held.patches[2 * 9 + 1].get_height()  # Adam state of zero1 rank 0 (bars: 9 per kind)
    assert zero_state == pytest.approx(find(rows, "zero1")["state_bytes"] / 1e6)
    assert [p.get_height() for p in sent.patches[:1]] == [pytest.approx(find(rows, "zero1")["sent_bytes"] / 1e6)]
    plt.close(fig)
    with pytest.raises(ValueError, match="no rows to plot"):
        plot_parallel_live([])
