"""Chapter 06's RL-with-a-verifiable-reward study (book/ch06_tuning/studies_verifiable.py) at ci size."""
import pytest
import torch

from book.ch06_tuning import studies_verifiable as sv
from minillm.finetune.verifiable import arithmetic_gold, exact_match_reward


def test_held_out_pairs_are_disjoint_from_training_pairs_and_seeded():
    train, held = sv.addition_pairs(500, seed=0)
    assert len(train) + len(held) == 90 * 90 and not set(train) & set(held)
    assert sv.addition_pairs(500, seed=0) == (train, held) and sv.addition_pairs(500, seed=1)[1] != held
    with pytest.raises(ValueError, match="n_heldout"):
        sv.addition_pairs(0)


def test_the_reward_the_study_trains_on_reads_the_prompts_it_builds():
    tok = sv.CharTokenizer(sv.ALPHABET)
    prompts = [tok.decode(row) for row in sv._prompts(tok, [(30, 38), (99, 99)]).tolist()]
    assert prompts == ["\n30+38=", "\n99+99="]
    reward = exact_match_reward(arithmetic_gold)
    got = reward(["68", "67", "198", ""], [prompts[0], prompts[0], prompts[1], prompts[1]])
    torch.testing.assert_close(got, torch.tensor([1.0, 0.0, 1.0, 0.0]))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="group_size"):
        sv.verifiable_config("ci", group_size=1)
    with pytest.raises(ValueError, match="grpo_steps"):
        sv.verifiable_config("ci", grpo_steps=0)


@pytest.fixture(scope="module")
def ci_run():
    cfg = sv.verifiable_config("ci")
    base = sv.pretrain_adder(cfg)
    before = {k: v.clone() for k, v in base[0].state_dict().items()}
    return cfg, base, before, sv.grpo_addition(cfg, base=base)


def test_ci_run_rows_and_the_base_model_is_untouched(ci_run):
    cfg, (model, _, _), before, rows = ci_run
    steps = [r for r in rows if r["kind"] == "step"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in steps] == list(range(1, cfg.grpo_steps + 1))
    assert [r["step"] for r in evals] == [0, 3, 6]
    for r in steps:
        assert 0.0 <= r["reward"] <= 1.0 and r["kl"] >= 0.0 and 1 <= r["response_len"] <= 4
    for r in evals:
        assert 0.0 <= r["greedy_exact_match"] <= 1.0 and r["n"] == cfg.n_heldout
        assert len(r["examples"]) == 4
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "GRPO trained the base model"


def test_accuracy_counts_exact_answers_only(monkeypatch):
    """A model that always answers "110": exact match is the share of pairs whose sum that is; "1+1" is not
    digits only (format_ok counts it out)."""
    tok = sv.CharTokenizer(sv.ALPHABET)
    answers = iter(["110\n", "110\n", "1+1\n"])

    def says(model, ids, max_new_tokens, **kw):  # stands in for minillm.generate
        assert kw["temperature"] == 0.0 and max_new_tokens == 4
        return torch.cat([ids, torch.tensor([tok.encode(next(answers)) for _ in range(len(ids))])], 1)

    monkeypatch.setattr(sv, "generate", says)
    got = sv.addition_accuracy(None, tok, [(55, 55), (10, 10), (60, 50)])
    assert got["exact_match"] == pytest.approx(1 / 3) and got["n"] == 3
