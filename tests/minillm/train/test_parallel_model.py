"""Tensor and pipeline parallelism equal one process on the same global batch (minillm/train/parallel/tensor.py,
pipeline.py). CPU, gloo, 2 processes; each rank compares itself with a single-process reference it builds locally
from the same seed, and the parent asserts on the max abs differences the ranks send back."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from minillm.config import ModelConfig
from minillm.model.transformer import GPT
from minillm.train.parallel.group import spawn
from minillm.train.parallel.pipeline import bubble_fraction, gpipe_step, schedule_table, split_stages
from minillm.train.parallel.tensor import tp_comm_bytes

TOL = 1e-5
TINY = dict(vocab_size=48, block_size=16, n_layer=2, n_head=2, n_embd=16)
GPT2 = dict(TINY)  # layernorm, gelu, learned positions, biases, tied embeddings
LLAMA = dict(TINY, n_layer=2, n_head=4, n_kv_head=2, norm="rmsnorm", activation="swiglu", position="rope",
             bias=False, tie_embeddings=False)


def tiny_gpt(kw: dict) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**kw))


def batch(kw: dict, B: int = 4, T: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, kw["vocab_size"], (B, T), generator=g)
    y = x.roll(-1, dims=1)
    y[0, :3] = -100  # some ignored targets: the loss is a mean over the tokens that count
    return x, y


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t  # a DTensor shard -> the whole tensor


def max_diff(a, b) -> float:
    return max((full(p).detach() - q.detach()).abs().max().item() for p, q in zip(a, b))


def make_opt(name: str, params):
    # AdamW only on bias-free models: the key bias has an exactly-zero gradient (softmax ignores a shift shared by
    # all keys), and Adam's g / sqrt(v) would blow its 1e-11 rounding noise up to a full lr-sized step.
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.5)
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1)


# ----------------------------------------------------------------------------- tensor parallelism


def _tp_worker(rank: int, world: int, cases: list[tuple[dict, str]]) -> dict:
    from torch.distributed.device_mesh import init_device_mesh

    from minillm.train.parallel.tensor import tensor_parallel
    torch.set_num_threads(1)
    mesh = init_device_mesh("cpu", (world,))
    out = {}
    for kw, opt_name in cases:
        ref, model = tiny_gpt(kw), tensor_parallel(tiny_gpt(kw), mesh)
        x, y = batch(kw)
        opt_ref, opt = make_opt(opt_name, ref.parameters()), make_opt(opt_name, model.parameters())
        d_logits = d_loss = 0.0
        for _ in range(2):
            (lr_, loss_r), (l_, loss) = ref(x, y), model(x, y)
            d_logits, d_loss = max(d_logits, max_diff([l_], [lr_])), max(d_loss, abs(loss.item() - loss_r.item()))
            for o, lo in ((opt_ref, loss_r), (opt, loss)):
                o.zero_grad()
                lo.backward()
                o.step()
        sharded = sum(hasattr(p, "full_tensor") for p in model.parameters())
        out[kw.get("activation", "gelu")] = dict(logits=d_logits, loss=d_loss, params=max_diff(model.parameters(),
                                                                                   ref.parameters()), sharded=sharded)
    try:  # MQA: one K/V head cannot be split over 2 ranks
        tensor_parallel(tiny_gpt(dict(TINY, n_head=2, n_kv_head=1)), mesh)
        out["mqa_error"] = None
    except ValueError as e:
        out["mqa_error"] = str(e)
    return out


def test_tensor_parallel_equals_single_process_forward_and_two_steps():
    results = spawn(_tp_worker, 2, [(GPT2, "sgd"), (LLAMA, "adamw")], timeout_s=120)
    for rank, res in enumerate(results):
        for name, n_sharded in (("gelu", 12 * 2), ("swiglu", 7 * 2)):  # Linear weights (and biases) of 2 blocks
            d = res[name]
            assert d["logits"] <= TOL and d["loss"] <= TOL, f"rank {rank} {name}: forward differs: {d}"
            assert d["params"] <= TOL, f"rank {rank} {name}: parameters after 2 steps differ by {d['params']:.2e}"
            assert d["sharded"] == n_sharded, f"rank {rank} {name}: {d['sharded']} DTensor parameters"
        assert res["mqa_error"] and "n_kv_head=1" in res["mqa_error"], res["mqa_error"]


def test_tp_comm_bytes_hand_value():
    cfg = ModelConfig(**TINY)  # 2 layers, C = 16
    # 2 layers * 4 all-reduces * 2 (tp-1)/tp (= 1 for tp=2) * (B=4 * T=8 * C=16 * 2 bytes = 1024)
    assert tp_comm_bytes(cfg, 4, 8, 2) == 2 * 4 * 1 * 1024
    assert tp_comm_bytes(cfg, 4, 8, 2, backward=False) == 2 * 2 * 1 * 1024
    assert tp_comm_bytes(cfg, 4, 8, 4, bytes_per_elem=4) == 2 * 4 * 1.5 * 2048
    with pytest.raises(ValueError, match="tp"):
        tp_comm_bytes(cfg, 4, 8, 0)


# ----------------------------------------------------------------------------- pipeline parallelism


def _pp_worker(rank: int, world: int, cases: list[tuple[dict, str]]) -> dict:
    torch.set_num_threads(1)
    out = {}
    for kw, opt_name in cases:
        ref, model = tiny_gpt(kw), tiny_gpt(kw)
        stage = split_stages(model, world)[rank]
        x, y = batch(kw)
        opt_ref, opt = make_opt(opt_name, ref.parameters()), make_opt(opt_name, stage.parameters())
        opt_ref.zero_grad()
        _, loss_r = ref(x, y)
        loss_r.backward()
        opt.zero_grad()
        loss = gpipe_step(stage, rank, world, list(x.chunk(4)), list(y.chunk(4)))  # 4 micro-batches of 1
        ref_params, in_stage = dict(ref.named_parameters()), {id(p) for p in stage.parameters()}
        mine = {n: p for n, p in model.named_parameters() if id(p) in in_stage}  # this rank's share, by name
        theirs = [ref_params[n] for n in mine]
        d_grad = max_diff([p.grad for p in mine.values()], [q.grad for q in theirs])
        opt_ref.step()
        opt.step()
        d_loss = None if loss is None else abs(loss.item() - loss_r.item())
        out[kw.get("activation", "gelu")] = dict(loss=d_loss, grad=d_grad, params=max_diff(mine.values(), theirs),
                                                 n_params=len(mine))
    return out


def test_pipeline_two_stages_four_micro_batches_equals_full_batch():
    results = spawn(_pp_worker, 2, [(GPT2, "sgd"), (LLAMA, "adamw")], timeout_s=120)
    for name in ("gelu", "swiglu"):
        first, last = results[0][name], results[1][name]
        assert first["loss"] is None and last["loss"] <= TOL, f"{name}: loss differs by {last['loss']}"
        for rank, d in enumerate((first, last)):
            assert d["grad"] <= TOL, f"{name} stage {rank}: gradients differ by {d['grad']:.2e}"
            assert d["params"] <= TOL, f"{name} stage {rank}: parameters after the step differ by {d['params']:.2e}"
    # GPT-2 (tied): stage 0 = tok_emb, pos_emb, block 0 (16 tensors); stage 1 = block 1, norm_f (2), lm_head (the
    # tied matrix: its own copy on this rank)
    assert (results[0]["gelu"]["n_params"], results[1]["gelu"]["n_params"]) == (18, 19)


def test_gpipe_one_stage_is_gradient_accumulation():
    ref, model = tiny_gpt(GPT2), tiny_gpt(GPT2)
    x, y = batch(GPT2)
    _, loss_r = ref(x, y)
    loss_r.backward()
    (stage,) = split_stages(model, 1)
    loss = gpipe_step(stage, 0, 1, list(x.chunk(2)), list(y.chunk(2)))
    assert abs(loss.item() - loss_r.item()) <= TOL
    d = max_diff([p.grad for p in model.parameters()], [q.grad for q in ref.parameters()])
    assert d <= TOL, f"gradients differ by {d:.2e}"


def test_split_stages_partitions_blocks_and_rejects_bad_input():
    model = tiny_gpt(dict(TINY, n_layer=5))
    stages = split_stages(model, 3)
    assert [len(s.blocks) for s in stages] == [2, 2, 1]
    assert hasattr(stages[0], "tok_emb") and not hasattr(stages[1], "tok_emb") and hasattr(stages[2], "lm_head")
    with pytest.raises(ValueError, match="n_stages"):
        split_stages(model, 6)
    with pytest.raises(ValueError, match="stage 1 of 3"):
        gpipe_step(stages[1], 0, 3, [torch.zeros(1, 4, dtype=torch.long)], [torch.zeros(1, 4, dtype=torch.long)])


def test_bubble_fraction_hand_values():
    assert bubble_fraction(2, 4) == pytest.approx(1 / 5)
    assert bubble_fraction(4, 8) == pytest.approx(3 / 11)
    assert bubble_fraction(1, 7) == 0.0
    with pytest.raises(ValueError, match="n_micro"):
        bubble_fraction(2, 0)


def test_schedule_table_shape_and_idle_fraction():
    t = schedule_table(2, 4)
    assert t.shape == (2, 10)
    assert t[0, :5].tolist() == [0, 1, 2, 3, -1] and t[1, :5].tolist() == [-1, 0, 1, 2, 3]  # forward staircase
    assert t[1, 5:].tolist() == [3, 2, 1, 0, -1] and t[0, 5:].tolist() == [-1, 3, 2, 1, 0]  # backward, reversed
    for p, m in ((2, 4), (4, 8), (3, 1)):
        t = schedule_table(p, m)
        assert Fraction(int((t == -1).sum()), t.numel()) == Fraction(p - 1, m + p - 1)
        for s in range(p):  # every stage runs each micro-batch once forward, once backward
            assert sorted(t[s][t[s] >= 0].tolist()) == sorted(list(range(m)) * 2)
