"""The poet's instruction tuning (book/ch09_capstone/studies_poet.py) and its figures, at ci size: mechanics
(pairs, masks, decoding, rows), not adherence numbers."""
import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minillm import GPT, ModelConfig
from minillm.finetune.chat import ChatTemplate
from minillm.finetune.sft import IGNORE, pack
from minillm.generate import generate
from book.ch09_capstone.studies_corpus import capstone_corpus, capstone_tokenizer
from book.ch09_capstone.studies_poems import FORMS, form_adherence, instruction_pairs
from book.ch09_capstone.studies_poet import (PoetConfig, balanced_pairs, decode_responses, decoding_stats,
                                             fitting_pairs, form_eval, heldout_eval_pairs, pair_messages,
                                             poet_config, response_loss, sft_poet)

torch.set_num_threads(1)  # two cores shared with other tests: one thread each is faster than two contending

QUATRAIN5 = "春眠不覺曉，處處聞啼鳥。\n夜來風雨聲，花落知多少。"  # 五言絕句


@pytest.fixture(scope="module")
def setup():
    """The ci corpus, a 512-id BPE over it and a small untrained llama-style GPT (the mechanics need no skill)."""
    corpus = capstone_corpus("ci")
    tok = capstone_tokenizer(corpus, 512)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=1, n_head=2, n_embd=32,
                            norm="rmsnorm", activation="swiglu", position="rope", bias=False,
                            tie_embeddings=False)).eval()
    return corpus, tok, model


def _pair(form, prompt="p", response="r"):
    return {"prompt": prompt, "response": response, "form": form, "title": prompt}


def test_balanced_pairs_one_of_each_form_first_then_round_robin():
    pairs = [_pair(f, prompt=f"{f}{i}") for f in FORMS for i in range(5 if f == "七言律詩" else 20)]
    got = balanced_pairs(pairs, 12, seed=0)
    assert [p["form"] for p in got[:4]] == list(FORMS)
    assert [sum(p["form"] == f for p in got) for f in FORMS] == [3, 3, 3, 3]
    many = balanced_pairs(pairs, 40, seed=0)  # 七言律詩 has only 5: the others fill the remaining 35 evenly
    counts = [sum(p["form"] == f for p in many) for f in FORMS]
    assert counts[3] == 5 and sum(counts) == 40 and max(counts[:3]) - min(counts[:3]) <= 1
    assert len({p["prompt"] for p in many}) == 40  # no pair twice
    assert balanced_pairs(pairs, 12, seed=0) == got and balanced_pairs(pairs, 12, seed=1) != got
    with pytest.raises(ValueError, match="no instruction pairs"):
        balanced_pairs([], 4, seed=0)


def test_fitting_pairs_keeps_exactly_those_that_fit(setup):
    _, tok, _ = setup
    t = ChatTemplate(tok)
    pairs = [_pair("五言絕句", "五言絕句：春曉", QUATRAIN5), _pair("五言絕句", "五言絕句：春曉", QUATRAIN5 * 6)]
    n = [len(t.render(pair_messages(p))[0]) for p in pairs]
    assert fitting_pairs(pairs, t, n[0] - 1) == pairs[:1] and fitting_pairs(pairs, t, n[0] - 2) == []
    assert fitting_pairs(pairs, t, n[1] - 1) == pairs


def test_sft_rows_target_only_the_poem_and_its_end(setup):
    """The packed rows sft_poet trains on: targets are the response's ids then <|end|>, everything else -100."""
    _, tok, _ = setup
    t = ChatTemplate(tok)
    x, y = pack([pair_messages(_pair("五言絕句", "五言絕句：春曉", QUATRAIN5))], 64, t, one_per_row=True)
    prompt = t.prompt_ids([{"role": "user", "content": "五言絕句：春曉"}])
    want = tok.encode(QUATRAIN5) + [t.end_id]
    assert y[0][y[0] != IGNORE].tolist() == want
    assert (y[0, : len(prompt) - 1] == IGNORE).all()  # no prompt token is predicted
    assert x[0, : len(prompt)].tolist() == prompt.tolist()


def test_response_loss_matches_a_per_pair_reference(setup):
    corpus, tok, model = setup
    t = ChatTemplate(tok)
    pairs = fitting_pairs(instruction_pairs(corpus.poems_heldout), t, 128)[:5]
    nll, count = 0.0, 0
    with torch.no_grad():
        for p in pairs:  # reference: each pair alone, log-softmax at the response positions
            ids, mask = t.render(pair_messages(p))
            logp = F.log_softmax(model(torch.tensor(ids)[None])[0][0].float(), -1)  # (L, V)
            tgt = torch.tensor(ids[1:])
            keep = torch.tensor(mask[1:])
            nll -= float(logp[:-1].gather(1, tgt[:, None])[:, 0][keep].sum())
            count += int(keep.sum())
    assert response_loss(model, t, pairs, batch_size=2) == pytest.approx(nll / count, rel=1e-5)


def test_decode_batched_greedy_equals_one_prompt_at_a_time(setup):
    corpus, tok, model = setup
    t = ChatTemplate(tok)
    cfg = poet_config("ci", eval_batch=3)
    prompts = [p["prompt"] for p in balanced_pairs(instruction_pairs(corpus.poems_heldout), 4, seed=0)]
    got = decode_responses(model, t, prompts, cfg, greedy=True)
    stops = [t.end_id, tok.token_to_id("<|endoftext|>")]
    for p, r in zip(prompts, got):
        ids = torch.tensor(t.prompt_ids([{"role": "user", "content": p}]))[None]
        new = generate(model, ids, cfg.max_new_tokens, temperature=0.0, stop_tokens=stops)[0, ids.size(1):]
        assert r == tok.decode([i for i in new.tolist() if i not in stops])
    g = torch.Generator().manual_seed(3)
    a = decode_responses(model, t, prompts, cfg, greedy=False, generator=g)
    b = decode_responses(model, t, prompts, cfg, greedy=False, generator=torch.Generator().manual_seed(3))
    assert a == b  # seeded sampling repeats
    with pytest.raises(ValueError, match="block_size"):
        decode_responses(model, t, prompts, poet_config("ci", max_new_tokens=125), greedy=True)


def test_decoding_stats_by_hand():
    responses = [QUATRAIN5, "春眠不覺曉", QUATRAIN5, "一一一一一，一一一一一。\n一一一一一，一一一一一。"]
    forms = ["五言絕句", "五言絕句", "七言絕句", "五言絕句"]
    s = decoding_stats(responses, forms)
    assert s["adherence"] == 0.5 and s["follows"] == [True, False, False, True]
    assert s["by_form"] == {"五言絕句": 2 / 3, "七言絕句": 0.0}
    assert s["unique_share"] == 0.75
    assert s["distinct_ratio"] == pytest.approx((19 / 20 + 1.0 + 19 / 20 + 1 / 20) / 4)  # 處處 repeats; junk: 1 of 20


def test_form_eval_adherence_is_that_of_its_own_samples(setup):
    corpus, tok, model = setup
    cfg = poet_config("ci")
    eval_pairs, loss_pairs = heldout_eval_pairs(corpus, ChatTemplate(tok), 128, cfg)
    ev = form_eval(model, tok, eval_pairs, cfg, loss_pairs=loss_pairs)
    forms = [p["form"] for p in eval_pairs]
    assert ev["n"] == len(eval_pairs) == cfg.n_eval and ev["forms"] == forms
    for d in ("greedy", "sampled"):
        assert len(ev[d]["responses"]) == len(forms)
        assert ev[d]["adherence"] == form_adherence(ev[d]["responses"], forms)
        assert set(ev[d]["by_form"]) == set(forms)
    assert [s["decoding"] for s in ev["samples"]] == ["greedy"] * cfg.n_shown + ["sampled"] * cfg.n_shown
    assert [s["form"] for s in ev["samples"][: cfg.n_shown]] == list(FORMS)[: cfg.n_shown]
    assert ev["heldout_loss"] == pytest.approx(response_loss(model, ChatTemplate(tok), loss_pairs))
    assert form_eval(model, tok, eval_pairs, cfg, loss_pairs=loss_pairs)["sampled"] == ev["sampled"]  # seeded


def test_sft_poet_lowers_heldout_loss_and_leaves_the_base_alone(setup):
    corpus, tok, model = setup
    before = copy.deepcopy(model.state_dict())
    cfg = poet_config("ci", steps=12, eval_every=4, lr=3e-3)
    res = sft_poet(model, tok, corpus, cfg)
    assert [r["step"] for r in res.rows] == [0, 4, 8, 12]
    assert res.rows[0]["loss"] is None and all(np.isfinite(r["loss"]) for r in res.rows[1:])
    assert res.rows[-1]["heldout_loss"] == res.after["heldout_loss"] < res.before["heldout_loss"]
    assert res.rows[0]["heldout_loss"] == res.before["heldout_loss"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the base is untouched
    assert any(not torch.equal(v, res.model.state_dict()[k]) for k, v in before.items())
    assert res.n_pairs == cfg.n_train - res.meta["pairs_too_long"] and res.n_rows < res.n_pairs  # packed rows
    alone = sft_poet(model, tok, corpus, replace(cfg, one_per_row=True, steps=2, eval_every=2))
    assert alone.n_rows == alone.n_pairs == res.n_pairs  # one pair per row


def test_configs_validate():
    for size in ("ci", "laptop", "gpu"):
        assert isinstance(poet_config(size), PoetConfig)
    with pytest.raises(ValueError, match="warmup"):
        PoetConfig(steps=10, warmup=20)
    with pytest.raises(ValueError, match="top_p"):
        PoetConfig(top_p=0.0)
    with pytest.raises(ValueError, match="n_train"):
        PoetConfig(n_train=0)


def test_plots_and_table(setup):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from book.ch09_capstone.plots_poet import adherence_of, plot_adherence, plot_sft_curves, samples_table

    corpus, tok, model = setup
    cfg = poet_config("ci")
    ev = form_eval(model, tok, heldout_eval_pairs(corpus, ChatTemplate(tok), 128, cfg)[0], cfg)
    row = {"kind": "eval", "step": 0, "adherence": 0.25, "sampled_adherence": 0.5, "by_form": {"五言絕句": 0.25},
           "sampled_by_form": {"五言絕句": 0.5}}
    assert adherence_of(row, "sampled") == (0.5, {"五言絕句": 0.5})
    assert adherence_of(ev) == (ev["greedy"]["adherence"], ev["greedy"]["by_form"])
    fig = plot_adherence({"base": ev, "row": row})
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == 2 * (len(FORMS) + 1)
    plt.close(fig)
    fig = plot_sft_curves([{"step": 0, "loss": None, "heldout_loss": 3.0}, {"step": 5, "loss": 2.0,
                                                                           "heldout_loss": 2.5}])
    assert len(fig.axes[0].lines) == 2
    plt.close(fig)
    table = samples_table({"base": ev})
    assert table.count("\n") == 1 + cfg.n_shown and "| base |" in table
    with pytest.raises(ValueError, match="samples"):
        samples_table({"row": row})
