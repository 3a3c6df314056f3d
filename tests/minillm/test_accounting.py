"""Training accounting: compute against published runs, memory and communication per GPU by hand."""
import pytest

from minillm.accounting import GPU_SPECS, ParallelPlan, plan_comm, plan_memory, training_compute
from minillm.scaling.laws import NAMED_BUDGETS
from minillm.train.parallel.pipeline import bubble_fraction
from minillm.train.precision import memory_estimate

GiB = 2**30


def seven_b(**kw) -> ParallelPlan:
    """A LLaMA-7B-shaped plan: 32 layers, h = 4096, 32 heads, 2048 tokens, one sequence per micro-batch."""
    base = dict(n_params=7_000_000_000, n_layer=32, hidden=4096, n_head=32, seq_len=2048, micro_batch=1,
                n_gpus=8, dp=8)
    return ParallelPlan(**{**base, **kw})


def test_gpu_specs_are_the_datasheet_dense_numbers():
    assert {k: v.peak_tflops for k, v in GPU_SPECS.items()} == {"A100": 312.0, "H100": 989.0, "V100": 125.0}


def test_gpt3_compute_matches_brown_et_al():
    res = training_compute(175e9, 300e9)
    assert res["flops"] == pytest.approx(3.14e23, rel=0.01)  # Brown et al. 2020, Table D.1
    assert res["pf_days"] == pytest.approx(3.64e3, rel=0.01)  # ibid.: 3.64e3 PF-days
    gpt3 = next(b for b in NAMED_BUDGETS if b.name == "GPT-3 175B")
    assert res["flops"] == pytest.approx(gpt3.flops, rel=0.01)


def test_llama_65b_gpu_hours_and_days_in_range_at_mfu_half():
    # Touvron et al. 2023: 65B on 1.4T tokens, 2048 A100-80GB, "approximately 21 days" at 380 tokens/s/GPU;
    # Table 15: 1,022,362 GPU-hours. 6ND at MFU 0.5 must land within 10% of both.
    res = training_compute(65e9, 1.4e12, gpu="A100", n_gpus=2048, mfu=0.5)
    assert res["gpu_days"] * 24 == pytest.approx(1_022_362, rel=0.10), res
    assert res["wall_days"] == pytest.approx(21, rel=0.10), res
    implied_mfu = 6 * 65e9 * 380 / (GPU_SPECS["A100"].peak_tflops * 1e12)  # the reported throughput, as MFU
    assert 0.45 < implied_mfu < 0.5


def test_training_compute_by_hand_and_validation():
    res = training_compute(1e9, 1e10, gpu="H100", n_gpus=8, mfu=0.5)
    gpu_days = 6e19 / (989e12 * 0.5) / 86_400
    assert res == pytest.approx({"flops": 6e19, "pf_days": 6e19 / 8.64e19, "gpu_days": gpu_days,
                                 "wall_days": gpu_days / 8}, rel=1e-12)
    for kw, match in ((dict(mfu=0.0), "mfu"), (dict(mfu=1.5), "mfu"), (dict(gpu="TPU"), "gpu='TPU'"),
                      (dict(n_gpus=0), "n_gpus"), (dict(n_gpus=2.0), "n_gpus")):
        with pytest.raises(ValueError, match=match):
            training_compute(1e9, 1e10, **kw)
    with pytest.raises(ValueError, match="n_params"):
        training_compute(-1, 1e10)


def test_zero_stages_for_7b_on_8_gpus_by_hand():
    # bf16 mixed precision: weights 2 B, grads 2 B, optimizer 12 B per parameter; dp = 8.
    expected = {0: (14e9, 14e9, 84e9),        # nothing sharded: 16 B x 7e9 = 112 GB per GPU
                1: (14e9, 14e9, 10.5e9),      # optimizer states / 8
                2: (14e9, 1.75e9, 10.5e9),    # + grads / 8
                3: (1.75e9, 1.75e9, 10.5e9)}  # + weights / 8: 112e9 / 8 = 14e9
    for stage, (w, g, o) in expected.items():
        mem = plan_memory(seven_b(zero_stage=stage))
        assert (mem["weights"], mem["grads"], mem["optimizer"]) == (w, g, o), stage
        assert mem["total"] == w + g + o + mem["activations"]
    assert sum(expected[3]) == 14e9


def test_activations_korthikanti_by_hand():
    # per layer s b h (34 + 5 a s / h) = 2048 * 4096 * (34 + 5 * 32 * 2048 / 4096) = 8,388,608 * 114
    per_layer = 2048 * 4096 * 114
    assert plan_memory(seven_b())["activations"] == 32 * per_layer == 30_601_641_984
    # checkpointing: each layer's input 2 s b h, plus one layer recomputed in full
    assert plan_memory(seven_b(activation_checkpointing=True))["activations"] == 32 * 2 * 2048 * 4096 + per_layer
    # tp = 2 (with sequence parallelism) halves everything; pp = 4: 8 layers per stage, 4 micro-batches in flight
    assert plan_memory(seven_b(dp=4, tp=2))["activations"] == 32 * per_layer / 2
    mem = plan_memory(seven_b(dp=2, pp=4, n_micro=8))
    assert mem["activations"] == 8 * 4 * per_layer and mem["weights"] == 2 * 7e9 / 4
    assert plan_memory(seven_b(dp=2, pp=4, n_micro=2))["activations"] == 8 * 2 * per_layer  # only 2 in flight
    assert plan_memory(seven_b(precision="fp32"))["activations"] == 2 * 32 * per_layer


def test_sixteen_bytes_per_param_and_agreement_with_memory_estimate():
    for precision in ("bf16", "fp16", "fp32"):
        for n in (124_000_000, 7_000_000_000):
            plan = ParallelPlan(n_params=n, n_layer=12, hidden=768, n_head=12, seq_len=1024, precision=precision)
            mem, est = plan_memory(plan), memory_estimate(n, precision)
            assert mem["weights"] + mem["grads"] + mem["optimizer"] == 16 * n == est["total"]
            assert (mem["weights"], mem["grads"]) == (est["weights"], est["grads"])
            assert mem["optimizer"] == est["master_weights"] + est["optimizer"]
    # tensor and pipeline parallelism split the model state like ZeRO-3 does: 7B on tp=2 x pp=4 -> 14 GB
    mem = plan_memory(seven_b(dp=1, tp=2, pp=4))
    assert mem["weights"] + mem["grads"] + mem["optimizer"] == 16 * 7e9 / 8


def test_plan_validation():
    cases = ((dict(dp=4), "must equal n_gpus=8"), (dict(tp=3, dp=1, n_gpus=3), "tp=3 must divide n_head"),
             (dict(pp=8, dp=1, n_layer=12), "pp=8 must divide n_layer=12"), (dict(zero_stage=4), "zero_stage"),
             (dict(zero_stage=True), "zero_stage"), (dict(precision="int8"), "precision"),
             (dict(micro_batch=0), "micro_batch"), (dict(n_params=7e9), "n_params"),
             (dict(hidden=4100), "n_head must divide"))
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            seven_b(**kw)
    with pytest.raises(TypeError, match="activation_checkpointing"):
        seven_b(activation_checkpointing=1)
    with pytest.raises(TypeError, match="ParallelPlan"):
        plan_memory({"n_params": 7})


def test_comm_by_hand():
    M = 7e9 * 2  # bf16 gradients of the whole model (no tp, pp)
    f = 7 / 8  # ring over 8 ranks
    assert plan_comm(seven_b(zero_stage=0))["grad_sync"] == 2 * f * M == 24.5e9
    for stage in (1, 2):  # ZeRO-1/2: reduce-scatter + all-gather, the same volume as an all-reduce
        c = plan_comm(seven_b(zero_stage=stage))
        assert c["grad_sync"] + c["param_gather"] == 2 * f * M
    assert plan_comm(seven_b(zero_stage=3))["total"] == 3 * f * M  # 1.5x data parallelism (ZeRO paper)
    # gradient accumulation: ZeRO-2/3 reduce-scatter every micro-batch, ZeRO-3 also gathers twice per micro-batch
    assert plan_comm(seven_b(zero_stage=2, n_micro=4))["grad_sync"] == 4 * f * M
    assert plan_comm(seven_b(zero_stage=3, n_micro=4))["param_gather"] == 4 * 2 * f * M
    assert plan_comm(seven_b(zero_stage=0, n_micro=4))["grad_sync"] == 2 * f * M
    # tp = 2, dp = 4: model bytes halve; 4 all-reduces per layer of s b h * 2 bytes, ring factor 2 * (1/2)
    c = plan_comm(seven_b(dp=4, tp=2))
    act = 2048 * 4096 * 2
    assert c["grad_sync"] == 2 * (3 / 4) * (M / 2)
    assert c["tensor_parallel"] == 4 * 32 * 1 * act
    assert plan_comm(seven_b(dp=4, tp=2, activation_checkpointing=True))["tensor_parallel"] == 6 * 32 * act
    # pp = 4 with 8 micro-batches: a middle stage sends activations forward and gradients back, 8 times
    c = plan_comm(seven_b(dp=2, pp=4, n_micro=8))
    assert c["pipeline"] == 8 * 2 * act and c["tensor_parallel"] == 0
    assert plan_comm(seven_b(dp=1, tp=1, n_gpus=1))["total"] == 0  # one GPU talks to nobody


def test_bubble_fraction():
    assert bubble_fraction(1, 1) == 0
    assert bubble_fraction(4, 4) == 3 / 7
    assert bubble_fraction(4, 1) == 3 / 4
    assert bubble_fraction(8, 1024) < 0.01  # many micro-batches hide the fill and drain
    with pytest.raises(ValueError, match="n_micro"):
        bubble_fraction(4, 0)
