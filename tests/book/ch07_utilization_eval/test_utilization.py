"""book.ch07_utilization_eval.studies (chapter 07's studies) and book.ch07_utilization_eval.plots, at size ci."""
import math

import matplotlib
import matplotlib.pyplot  # noqa: F401  (matplotlib.pyplot.close below)
import pytest

from book.ch07_utilization_eval import studies as ut
from book.ch07_utilization_eval import plots as up

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def models():
    return ut.chapter_models("ci")


def test_chapter_text_has_its_three_sources_at_their_shares():
    text = ut.chapter_text(60_000, seed=0, fact_share=0.3, addition_share=0.25)
    lines = text.splitlines()
    facts = sum(len(s) + 1 for s in lines if " lives in " in s or " was born in " in s or " works as " in s)
    sums = sum(len(s) + 1 for s in lines if "+" in s and "=" in s)
    assert 0.15 < facts / len(text) < 0.45 and 0.15 < sums / len(text) < 0.35
    assert ut.chapter_text(60_000, seed=0) == text and ut.chapter_text(60_000, seed=1) != text
    with pytest.raises(ValueError, match="room for stories"):
        ut.chapter_text(1000, fact_share=0.6, addition_share=0.5)


def test_decode_beam_one_is_greedy_and_stops_at_newline(models):
    cm = models[-1]
    prompt = ut.story_prompts(1)[0]
    greedy = ut.decode(cm, prompt, 40, temperature=0.0)
    assert ut.decode(cm, prompt, 40, beam=1) == greedy
    assert "\n" not in greedy


def test_decoding_sweep_rows_judge_validity_with_the_grammar(models):
    rows = ut.decoding_sweep(models[-1], settings=(("greedy", {"temperature": 0.0}), ("T=1", {"temperature": 1.0})),
                             n_prompts=2, samples=2, max_new_tokens=30)
    assert [r["label"] for r in rows] == ["greedy", "T=1"]
    assert rows[0]["unique"] == 0.5  # a deterministic strategy repeats itself: 2 distinct of 4 samples
    for r in rows:
        assert 0 <= r["valid"] <= 1 and 0 <= r["distinct_2"] <= 1
        assert r["logprob_per_char"] is None or (math.isfinite(r["logprob_per_char"]) and r["logprob_per_char"] < 0)


def test_prompting_and_ppl_rows(models):
    rows = ut.prompting_study(models, n=8, shots=(0, 1))
    assert {(r["task"], r["shots"], r["cot"]) for r in rows} == {
        ("facts_mc", 0, False), ("facts_mc", 1, False), ("story_cloze", 0, False), ("story_cloze", 1, False),
        ("arithmetic", 0, False), ("arithmetic", 0, True)}
    ppl = ut.ppl_vs_accuracy(models, n=8)
    assert len(ppl) == len(models) and all(r["bits_per_byte"] > 0 for r in ppl)
    for fn, rs in ((up.plot_prompting, rows), (up.plot_ppl_vs_accuracy, ppl)):
        matplotlib.pyplot.close(fn(rs))


def test_plots_draw_and_name_missing_keys():
    dec = [{"label": "greedy", "distinct_2": 0.1, "valid": 0.9}, {"label": "T=1", "distinct_2": 0.8, "valid": 0.4}]
    tools = [{"size": "L1", "arm": a, "digits": d, "exact_match": 0.5} for a in ("tool", "no_tool") for d in (1, 2)]
    cont = [{"model": m, "split": s, "accuracy": 0.5, "chance": 0.25} for m in ("clean", "contaminated")
            for s in ("leaked", "clean")]
    for fn, rs in ((up.plot_decoding, dec), (up.plot_tools, tools), (up.plot_contamination, cont)):
        matplotlib.pyplot.close(fn(rs))
    with pytest.raises(ValueError, match="valid"):
        up.plot_decoding([{"label": "x", "distinct_2": 0.1}])


def test_decoding_widget_regenerates_when_a_slider_moves(models):
    w = up.DecodingWidget(models[-1], ut.story_prompts(1)[0], max_new_tokens=30)
    w.controls["temperature"].value = 0.0
    greedy = w.result["text"]
    w.controls["beam"].value = 1
    assert w.result["beam"] == 1 and w.result["text"] == greedy  # width-1 beam search is greedy
    assert "valid" in w.summary.value or "not a story" in w.summary.value
