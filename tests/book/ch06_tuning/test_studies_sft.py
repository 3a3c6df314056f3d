"""The instruction-tuning studies (Survey §5.1) at size="ci": row shapes, knob validation, determinism, and the
properties that make each study mean what it says (disjoint people, no pretraining rows at share 0, equal
budgets, the requested phrasings)."""
import json

import pytest
import torch

from book.ch06_tuning import studies_knowledge as K
from book.ch06_tuning import studies_sft as S
from minillm.finetune.chat import ChatTemplate, chat_tokenizer


def _json_roundtrip(rows):
    assert rows and all(isinstance(r, dict) for r in rows)
    assert json.loads(json.dumps(rows)) == rows  # plain, JSON-serialisable values


def test_config_validation():
    with pytest.raises(ValueError, match="steps"):
        S.sft_study_config("ci", steps=0)
    with pytest.raises(ValueError, match="lr"):
        S.sft_study_config("ci", lr=2.0)
    with pytest.raises(ValueError, match="families"):
        S.sft_study_config("ci", families=("nope",))
    with pytest.raises(ValueError, match="size"):
        S.sft_study_config("huge")
    assert S.sft_study_config("ci", families="first").families == ("first",)
    with pytest.raises(ValueError, match="unknown"):
        S.mixing_study("ci", stepz=3)  # a misspelt knob is an error, not ignored
    for study in (S.diversity_vs_count, S.mixing_study, S.pretrain_mix_study, S.tuned_vs_untuned, K.knowledge_study):
        with pytest.raises(ValueError, match="seed"):
            study("ci", seed=-1)


def test_diversity_grid_equal_budgets_and_phrasings():
    rows = S.diversity_vs_count("ci", n_templates=(1, 2), n_examples=(16, 48), steps=8)
    _json_roundtrip(rows)
    assert [(r["n_templates"], r["n_examples"]) for r in rows] == [(1, 16), (1, 48), (2, 16), (2, 48)]
    assert len({(r["steps"], r["batch_size"]) for r in rows}) == 1  # one budget for every cell
    fams = len(S.sft_study_config("ci").families)
    for r in rows:
        assert set(r) >= {"n_templates", "n_examples", "heldout_accuracy", "seen_accuracy", "steps"}
        assert 0 <= r["heldout_accuracy"] <= 1 and 0 <= r["seen_accuracy"] <= 1
        assert r["n_phrasings"] <= r["n_templates"] * fams
    big = [r for r in rows if r["n_examples"] == 48]
    assert [r["n_phrasings"] for r in big] == [fams, 2 * fams]  # 48 draws cover 2 phrasings x 2 families


def test_diversity_validation():
    with pytest.raises(ValueError, match="n_templates"):
        S.diversity_vs_count("ci", n_templates=(0,))
    with pytest.raises(ValueError, match="n_templates"):
        S.diversity_vs_count("ci", n_templates=(7,))  # only 6 training phrasings per family
    with pytest.raises(ValueError, match="n_examples"):
        S.diversity_vs_count("ci", n_examples=())
    with pytest.raises(ValueError, match="n_examples"):
        S.diversity_vs_count("ci", n_examples=2.5)


def test_diversity_deterministic():
    kw = dict(n_templates=(2,), n_examples=(16,), steps=6)
    assert S.diversity_vs_count("ci", seed=3, **kw) == S.diversity_vs_count("ci", seed=3, **kw)


def test_mixing_rows_and_validation():
    mixes = ({"instructions": 1.0}, {"addition": 3, "kv_map": 1})
    rows = S.mixing_study("ci", mixes=mixes, steps=6, n_train=32, n_eval=8)
    _json_roundtrip(rows)
    assert rows[1]["mix"] == {"addition": 0.75, "kv_map": 0.25}
    assert rows[1]["counts"] == {"addition": 24, "kv_map": 8}  # the fixed total, split by the mix
    for r in rows:
        assert set(r["accuracy"]) == {"instructions", "addition", "kv_map"}  # every task scored in every row
        assert r["mean_accuracy"] == pytest.approx(sum(r["accuracy"].values()) / 3)
    for bad in ({"instructions": 1}, [{"bogus": 1}], [{"addition": 0}], [{"addition": -1}], []):
        with pytest.raises(ValueError, match="mix"):
            S.mixing_study("ci", mixes=bad)
    with pytest.raises(ValueError, match="eval_split"):
        S.mixing_study("ci", eval_split="test")


def test_pretrain_mix_data_shares():
    cfg = S.sft_study_config("ci")
    template = ChatTemplate(chat_tokenizer())
    x0, y0, pre0 = S.pretrain_mix_data(0.0, cfg, template, size="ci")
    assert not pre0.any() and len(x0) == len(pre0)  # share 0: no pretraining rows at all
    x, y, pre = S.pretrain_mix_data(0.5, cfg, template, size="ci")
    assert int(pre.sum()) == int((~pre).sum()) == len(x0)  # half the rows, the SFT rows unchanged
    assert torch.equal(x[~pre], x0) and torch.equal(y[~pre], y0)
    assert (y[pre] != -100).float().mean() > 0.95  # loss on (nearly) every pretraining token
    assert (y0 != -100).float().mean() < 0.5       # SFT rows: responses only
    for bad in (1.0, -0.1, "a"):
        with pytest.raises(ValueError, match="share"):
            S.pretrain_mix_data(bad, cfg, template, size="ci")


def test_pretrain_mix_study_rows():
    rows = S.pretrain_mix_study("ci", shares=(0.0, 0.5), steps=6)
    _json_roundtrip(rows)
    assert rows[0]["n_pretrain_rows"] == 0 and rows[1]["n_pretrain_rows"] == rows[1]["n_sft_rows"]
    for r in rows:
        assert r["forgetting"] == pytest.approx(r["pretrain_loss_after"] - r["pretrain_loss_base"])
        assert r["pretrain_loss_base"] == rows[0]["pretrain_loss_base"]  # one base for every share
    with pytest.raises(ValueError, match="shares"):
        S.pretrain_mix_study("ci", shares=())


def test_knowledge_people_are_disjoint_and_unknown_never_pretrained():
    world, g = K.knowledge_world(24, seed=0)
    sets = [set(v) for v in g.values()]
    assert all(len(s) == 6 for s in sets)
    assert len(set().union(*sets)) == 24  # four disjoint groups
    text = K.knowledge_text(world, g["known_sft"] + g["known_eval"], ("city",), 20_000, size="ci")
    assert all(n in text for n in g["known_sft"] + g["known_eval"])
    assert not any(n in text for n in g["unknown_sft"] + g["unknown_eval"])  # never seen in pretraining
    p = world.person(g["known_eval"][0])
    assert f"{p.city}." in text
    convs = K.fact_conversations(world, g["unknown_sft"], ("city",))
    assert [c.answer for c in convs] == [world.person(n).city for n in g["unknown_sft"]]
    with pytest.raises(ValueError, match="attributes"):
        K.fact_conversations(world, g["known_sft"], ("friend",))  # would name other people
    with pytest.raises(ValueError, match="n_people"):
        K.knowledge_world(4)


def test_knowledge_study_rows():
    rows = K.knowledge_study("ci", steps=6)
    _json_roundtrip(rows)
    assert [r["sft_on"] for r in rows] == ["known", "unknown"]
    for r in rows:
        for k in ("base_recall", "heldout_known_accuracy", "unknown_hallucination_rate", "train_accuracy"):
            assert 0 <= r[k] <= 1
        assert r["unknown_accuracy"] <= r["unknown_hallucination_rate"]  # a right answer is a well-formed one
        assert r["n_sft"] == r["n_eval_known"] == r["n_eval_unknown"]  # same count in both arms
    with pytest.raises(ValueError, match="arms"):
        K.knowledge_study("ci", arms=("maybe",))


def test_tuned_vs_untuned_rows():
    rows = S.tuned_vs_untuned("ci", splits="heldout", steps=6, n_eval=8)
    _json_roundtrip(rows)
    assert [(r["model"], r["tuned"], r["prompt_format"]) for r in rows] == [
        ("small", True, "chat"), ("big", False, "chat"), ("big", False, "plain"), ("small", False, "plain")]
    small, big = rows[0]["params"], rows[1]["params"]
    assert big > small
    with pytest.raises(ValueError, match="splits"):
        S.tuned_vs_untuned("ci", splits=("test",))


def test_cached_bases_untouched():
    base, _ = S.pretrain_base("ci")
    before = {k: v.clone() for k, v in base.state_dict().items()}
    S.pretrain_mix_study("ci", shares=(0.0,), steps=4)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert not any(p.requires_grad for p in base.parameters())
