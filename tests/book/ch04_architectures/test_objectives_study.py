"""Chapter 04's pre-training objectives and permutation studies (book.ch04_architectures.studies_objectives) and
their figures (plots_objectives, plots_norms): span layouts against hand-built cases, the three facts about
positions against PyTorch's own attention, the objectives' training signal counted by hand on a tiny run."""
import json
import math

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from book.ch04_architectures.plots_norms import RESIDUAL_PATHS, SETUPS, plot_residual_paths
from book.ch04_architectures.plots_objectives import plot_objectives
from book.ch04_architectures.studies import NORM_SETUPS
from book.ch04_architectures.studies_objectives import (OBJECTIVES, PROBES, arm_label, n_sentinels, objectives_study,
                                                        objectives_table, permutation_study, span_layout)
from book.runs import ArchRun
from minillm.config import ModelConfig
from minillm.model.encdec import span_corruption
from minillm.model.transformer import GPT

matplotlib.use("Agg")


# ------------------------------------------------------------------------------------------- span layouts


def test_n_sentinels_by_hand():
    # L = 32: round(4.8) = 5 hidden tokens in round(5 / 3) = 2 spans; L = 64: 10 in round(3.33) = 3
    assert n_sentinels(32) == 2 and n_sentinels(64) == 3 and n_sentinels(2) == 1


def test_span_layout_of_a_hand_built_corruption():
    S = 10  # sentinels 10, 11
    ids = torch.arange(10)[None, :]  # (1, 10): 0 .. 9
    src = torch.tensor([[0, 1, S, 4, 5, 6, S + 1]])  # spans [2, 3] and [7, 8, 9]
    seq = torch.tensor([[S, 2, 3, S + 1, 7, 8, 9]])
    noise, starts = span_layout(ids, src, seq[:, :-1], seq[:, 1:], S)
    assert noise[0].tolist() == [False, False, True, True, False, False, False, True, True, True]
    assert starts.tolist() == [[2, 7]]
    with pytest.raises(RuntimeError, match="do not rebuild ids"):
        span_layout(ids.flip(1), src, seq[:, :-1], seq[:, 1:], S)


def test_span_layout_matches_span_corruption():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 20, (6, 40), generator=g)
    src, dec_in, tgt = span_corruption(ids, sentinel_start=20, generator=g)
    noise, starts = span_layout(ids, src, dec_in, tgt, 20)
    assert noise.sum(1).tolist() == [6] * 6  # round(40 * 0.15) hidden per row
    assert starts.shape == (6, 2) and bool(noise[:, -1].all())  # T5's layout always hides the last token
    for b in range(6):  # the visible tokens, in order, are src without its sentinels
        assert ids[b][~noise[b]].tolist() == [t for t in src[b].tolist() if t < 20]
        assert ids[b][noise[b]].tolist() == [t for t in tgt[b].tolist() if t < 20]


# ------------------------------------------------------------------------------------------- positions


def test_permutation_three_facts():
    rows = {(r["position"], r["mask"]): r for r in permutation_study(T=8)}
    # 1. no positions, no mask: shuffling the tokens shuffles the outputs, exactly (float64)
    assert rows[("none", "bidirectional")]["equivariant"] and rows[("none", "bidirectional")]["max_abs_diff"] < 1e-12
    # 2. learned positions or RoPE break it
    for pos in ("learned", "rope"):
        assert not rows[(pos, "bidirectional")]["equivariant"] and rows[(pos, "bidirectional")]["max_abs_diff"] > 1e-4
    # 3. the causal mask alone breaks it: the same weights as fact 1, only the mask differs
    assert not rows[("none", "causal")]["equivariant"] and rows[("none", "causal")]["max_abs_diff"] > 1e-2
    assert json.loads(json.dumps(list(rows.values()))) == list(rows.values())
    with pytest.raises(ValueError, match="T=1"):
        permutation_study(T=1)


def test_permutation_facts_hold_for_pytorchs_attention():
    torch.manual_seed(0)
    attn = torch.nn.MultiheadAttention(16, 4, batch_first=True).double().eval()
    x = torch.randn(1, 7, 16, dtype=torch.float64)
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    out = lambda h, mask=None: attn(h, h, h, attn_mask=mask, need_weights=False)[0]  # noqa: E731
    assert torch.allclose(out(x[:, perm]), out(x)[:, perm])
    causal = torch.triu(torch.ones(7, 7, dtype=torch.bool), 1)  # True = may NOT attend (PyTorch's convention)
    assert not torch.allclose(out(x[:, perm], causal), out(x, causal)[:, perm])


def test_a_one_token_prefix_is_causal():
    # the probes use a prefix decoder with prefix_len=1 as a causal model: same weights, same logits
    cfg = ModelConfig(vocab_size=11, block_size=9, n_layer=2, n_head=2, n_embd=16)
    torch.manual_seed(0)
    causal = GPT(cfg).eval()
    prefix = GPT(cfg.replace(attention_mask="prefix")).eval()
    prefix.load_state_dict(causal.state_dict())
    idx = torch.randint(11, (3, 9))
    assert torch.allclose(prefix(idx, prefix_len=1)[0], causal(idx)[0], atol=1e-6)
    assert not torch.allclose(prefix(idx, prefix_len=5)[0], causal(idx)[0], atol=1e-6)


# ------------------------------------------------------------------------------------------- objectives


@pytest.fixture(scope="module")
def rows():
    run = ArchRun.for_size("ci", n_embd=16, n_head=2, block_size=20, batch_size=4, steps=6, warmup=1, eval_windows=4)
    return run, objectives_study(run=run)


def test_objectives_rows(rows):
    run, rows = rows
    assert json.loads(json.dumps(rows)) == rows
    assert [(r["objective"], r["budget"]) for r in rows] == [(o, "tokens") for o in OBJECTIVES] + [
        ("span corruption", "targets")]
    causal, prefix, t5, t5_long = rows
    B, L = run.batch_size, run.block_size
    # L = 20: 3 hidden tokens in 1 span -> decoder targets per window: sentinel + 3 tokens - 1 = 3
    assert n_sentinels(L) == 1 and t5["targets_per_step"] == B * 3
    assert causal["targets_per_step"] == B * L  # every position
    assert B * 1 <= prefix["targets_per_step"] <= B * L  # the suffix after a random split: 1 .. L-1 (+1) targets
    assert t5_long["steps"] == math.ceil(run.steps * L / 3) and t5_long["targets"] == causal["targets"]
    assert {r["tokens"] for r in rows[:3]} == {run.steps * B * L} and rows[0]["steps"] == run.steps
    assert causal["params"] == prefix["params"] and abs(t5["params"] / causal["params"] - 1) < 0.05
    for r in rows:
        assert all(math.isfinite(r[p]) and r[p] > r["floor"] for p in PROBES)
        assert r["next_token"] < 1.5 * math.log(r["n_sentinels"] + 40)  # no worse than a wide guess
    assert "span corruption, equal targets" in objectives_table(rows) and arm_label(t5_long).endswith("targets")


def test_objectives_study_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_layer=1"):
        objectives_study(run=ArchRun.for_size("ci"), n_layer=1)
    with pytest.raises(TypeError, match="equal_targets"):
        objectives_study(run=ArchRun.for_size("ci"), equal_targets="yes")


def test_plot_objectives(rows):
    fig = plot_objectives(rows[1])
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert len(fig.axes[0].patches) == len(rows[1]) * len(PROBES) and len(fig.axes[1].patches) == len(rows[1])
    with pytest.raises(ValueError, match="objectives_study"):
        plot_objectives([{"objective": "causal LM"}])


# ------------------------------------------------------------------------------------------- residual paths


def test_residual_diagram_draws_the_four():
    fig = plot_residual_paths()
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split("\n")[0] for t in titles] == ["post-LN", "pre-LN", "sandwich-LN", "DeepNorm"]
    assert r"\alpha" in titles[3] and titles[2].count(r"\mathrm{LN}") == 2
    texts = [[t.get_text() for t in ax.texts] for ax in fig.axes]
    assert [sum(t == "LN" for t in tx) for tx in texts] == [1, 1, 2, 1]  # one norm per path, two in sandwich
    with pytest.raises(ValueError, match="names="):
        plot_residual_paths(("rmsnorm",))


def test_residual_setups_are_the_stability_maps():
    # each diagram names a setup the stability map trains, and builds the residual placement it draws
    assert set(SETUPS) == set(RESIDUAL_PATHS) <= set(NORM_SETUPS)
    for name, fields in SETUPS.items():
        block = GPT(ModelConfig(vocab_size=5, block_size=4, n_layer=2, n_head=2, n_embd=8, **fields)).blocks[0]
        assert block.position == {"post_ln": "post", "pre_ln": "pre", "sandwich": "sandwich", "deepnorm": "post"}[name]
        assert block.alpha == (pytest.approx(4 ** 0.25) if name == "deepnorm" else 1.0)  # (2N)^(1/4), N = 2


def test_shipped_objectives_record_is_consistent():
    from book import results

    rec = results.latest("arch_studies.jsonl")["objectives"]
    rows = {arm_label(r): r for r in rec["rows"]}
    assert list(rows) == [*OBJECTIVES, "span corruption, equal targets"]
    causal, long = rows["causal LM"], rows["span corruption, equal targets"]
    L, B = rec["run"]["block_size"], rec["run"]["batch_size"]
    assert causal["targets_per_step"] == B * L and causal["steps"] == rec["run"]["steps"]
    # the longer run matches the causal LM's supervised tokens to within one step's worth
    assert 0 <= long["targets"] - causal["targets"] < long["targets_per_step"]
    assert rec["summary"]["span corruption, equal targets"]["span_fill"] == round(long["span_fill"], 4)
