"""GRPO on form adherence (book/ch09_capstone/studies_grpo.py) and its curves, at ci size: mechanics (prompt
batches, rows, that the policy moves and the KL shows it, the reference and the SFT model untouched)."""
import copy

import numpy as np
import pytest
import torch

from minillm import GPT, ModelConfig
from minillm.finetune.chat import ChatTemplate
from book.ch09_capstone.studies_corpus import capstone_corpus, capstone_tokenizer
from book.ch09_capstone.studies_poems import instruction_pairs
from book.ch09_capstone.studies_grpo import (GRPOPoetConfig, draw_prompts, eval_row, grpo_poet, grpo_poet_config,
                                             prompt_buckets, reward_hacking)
from book.ch09_capstone.studies_poet import pair_messages

torch.set_num_threads(1)  # two cores shared with other tests: one thread each is faster than two contending


@pytest.fixture(scope="module")
def setup():
    """The ci corpus, a 512-id BPE and a small untrained llama-style GPT (the mechanics need no skill)."""
    corpus = capstone_corpus("ci")
    tok = capstone_tokenizer(corpus, 512)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=1, n_head=2, n_embd=32,
                            norm="rmsnorm", activation="swiglu", position="rope", bias=False,
                            tie_embeddings=False)).eval()
    return corpus, tok, model


def test_prompt_buckets_and_draws_have_one_length(setup):
    corpus, tok, _ = setup
    t = ChatTemplate(tok)
    pairs = instruction_pairs(corpus.poems_train)[:200]
    buckets = prompt_buckets(t, pairs)
    assert sorted(i for ix in buckets.values() for i in ix) == list(range(len(pairs)))
    for n, ix in buckets.items():
        assert all(len(t.prompt_ids(pair_messages(pairs[i], False))) == n for i in ix)
    rng = np.random.default_rng(0)
    for _ in range(20):
        got = draw_prompts(rng, buckets, 4)
        lens = {len(t.prompt_ids(pair_messages(pairs[i], False))) for i in got}
        assert len(got) == 4 and len(lens) == 1
    assert draw_prompts(np.random.default_rng(5), buckets, 4) == draw_prompts(np.random.default_rng(5), buckets, 4)
    small = {7: [3]}
    assert draw_prompts(rng, small, 3) == [3, 3, 3]  # a bucket smaller than k repeats (with replacement)
    big = {7: list(range(10))}
    assert len(set(draw_prompts(rng, big, 10))) == 10  # without replacement when it has enough


def test_grpo_moves_the_policy_with_kl_and_leaves_the_sft_model(setup):
    corpus, tok, model = setup
    sft_state = copy.deepcopy(model.state_dict())
    cfg = grpo_poet_config("ci", steps=3, eval_every=3, lr=3e-3)

    def han_count(responses, prompts):  # an untrained model never writes a form: reward the length instead
        return torch.tensor([sum("\u4e00" <= c <= "\u9fff" for c in r) / 20 for r in responses])

    res = grpo_poet(model, tok, corpus, cfg, reward_fn=han_count)
    steps = [r for r in res.rows if r["kind"] == "step"]
    evals = [r for r in res.rows if r["kind"] == "eval"]
    assert [r["step"] for r in steps] == [1, 2, 3] and [r["step"] for r in evals] == [0, 3]
    assert steps[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the first rollouts come from the reference itself
    assert steps[-1]["kl"] > 0  # after an update the policy differs from the reference
    for r in steps:
        assert 0 <= r["follows"] <= 1 and r["zero_std_frac"] < 1  # groups differ: every step has a signal
        assert 0 < r["unique_share"] <= 1 and 0 <= r["distinct_ratio"] <= 1 and 0 <= r["memorised_share"] <= 1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in sft_state.items())  # SFT model untouched
    assert any(not torch.equal(v, res.model.state_dict()[k]) for k, v in sft_state.items())
    assert evals[0] == eval_row(0, res.before) and evals[-1] == eval_row(3, res.after)
    assert res.meta["reward"] == "han_count" and res.meta["beta"] == cfg.beta


def test_binary_reward_is_the_share_that_follows(setup):
    corpus, tok, model = setup
    res = grpo_poet(model, tok, corpus, grpo_poet_config("ci", steps=2, eval_every=2))
    for r in (r for r in res.rows if r["kind"] == "step"):
        assert r["reward"] == pytest.approx(r["follows"])


def test_reward_hacking_runs_the_exploit_settings(setup):
    corpus, tok, model = setup
    cfg = grpo_poet_config("ci", hack_steps=2)
    res = reward_hacking(model, tok, corpus, cfg)
    assert res.meta == {"shaped": cfg.hack_shaped, "beta": cfg.hack_beta, "lr": cfg.hack_lr, "steps": 2,
                        "train_prompts": res.meta["train_prompts"], "reward": "form_reward"}
    assert [r["step"] for r in res.rows if r["kind"] == "eval"] == [0, 2]


def test_configs_validate_and_plot(setup):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from book.ch09_capstone.plots_poet import plot_grpo_curves

    for size in ("ci", "laptop", "gpu"):
        assert isinstance(grpo_poet_config(size), GRPOPoetConfig)
    with pytest.raises(ValueError, match="group_size"):
        GRPOPoetConfig(group_size=1)
    with pytest.raises(ValueError, match="beta"):
        GRPOPoetConfig(beta=-0.1)
    with pytest.raises(TypeError, match="PoetConfig"):
        GRPOPoetConfig(evaluation={})
    rows = [{"kind": "eval", "step": 0}] + [{"kind": "step", "step": s, "reward": 0.5, "follows": 0.4, "kl": 0.01 * s,
                                             "distinct_ratio": 0.9} for s in (1, 2, 3)]
    fig = plot_grpo_curves(rows, rows, smooth=2)
    assert len(fig.axes) == 4 and all(len(ax.lines) == 4 for ax in fig.axes)  # raw and trailing mean per run
    assert list(fig.axes[2].lines[0].get_ydata()) == [0.01, 0.02, 0.03]
    assert list(fig.axes[2].lines[1].get_ydata()) == pytest.approx([0.01, 0.015, 0.025])
    plt.close(fig)
    fig = plot_grpo_curves(rows, smooth=1)
    assert [len(ax.lines) for ax in fig.axes] == [1, 1, 1, 1]
    plt.close(fig)
    with pytest.raises(ValueError, match="grpo_poet"):
        plot_grpo_curves([{"kind": "step", "step": 1}])
