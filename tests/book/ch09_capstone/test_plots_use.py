"""book.ch09_capstone.plots_use.SamplingWidget: renders at once, every control moves the sample, and its text is the
one minillm.textgen.generate_text gives for the same settings (tiny Llama-style GPT on the ci corpus)."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("ipywidgets")

from minillm.data.tokenizer import CharTokenizer
from minillm.textgen import generate_text
from book.ch09_capstone.studies_corpus import capstone_corpus, capstone_tokenizer, encode_documents
from book.ch09_capstone.studies_poems import FORMS, follows_form, form_prompt
from book.ch09_capstone.plots_use import MODES, SamplingWidget
from book.runs import Run, train

torch.set_num_threads(1)  # two cores shared with other tests: one thread each is faster than two contending

KEYS = {"mode", "prompt", "title", "form", "temperature", "top_p", "max_new_tokens", "seed", "text", "follows_form",
        "new_tokens", "seconds", "tokens_per_s"}


@pytest.fixture(scope="module")
def poet():
    """(model, tok): a 2-layer Llama-style GPT, 30 steps on the ci corpus (~3 s)."""
    tok = capstone_tokenizer(capstone_corpus("ci"), 512)
    ids = torch.from_numpy(encode_documents(tok, capstone_corpus("ci").documents("train")).astype("int64"))
    run = Run(n_layer=2, n_head=2, n_embd=32, block_size=64, batch_size=8, steps=30, lr=3e-3, warmup=3, seed=0,
              eval_windows=4, model_fields={"norm": "rmsnorm", "activation": "swiglu", "position": "rope",
                                            "bias": False})
    return train(run, ids, tokenizer=tok).model.eval(), tok


def expected(model, tok, r: dict) -> str:
    """What generate_text writes for the widget's settings (the poet's prompt as a chat user turn)."""
    chat = r["mode"] == "poet"
    return generate_text(model, tok, r["prompt"], r["max_new_tokens"], temperature=r["temperature"],
                         top_p=r["top_p"] if r["top_p"] < 1.0 else None, seed=r["seed"], chat=chat)


def test_builds_renders_and_matches_generate_text(poet) -> None:
    model, tok = poet
    w = SamplingWidget(model, tok, max_new_tokens=12)
    assert set(w.result) == KEYS  # the construction drew one sample already
    r = w.render()
    assert r == {**w.result} and r["mode"] == "poet" and r["prompt"] == form_prompt("春曉", "五言絕句")
    assert r["text"] == expected(model, tok, r)
    assert r["follows_form"] is follows_form(r["text"], "五言絕句")
    assert 1 <= r["new_tokens"] <= 12 and r["tokens_per_s"] == pytest.approx(r["new_tokens"] / r["seconds"])
    assert "tokens/s" in w.summary.value and "五言絕句：春曉" in w.sample.value
    assert w.controls["prompt"].layout.display == "none" and w.controls["title"].layout.display is None


def test_every_control_moves_the_sample(poet) -> None:
    model, tok = poet
    w = SamplingWidget(model, tok, max_new_tokens=10, temperature=1.5, top_p=1.0)
    c = w.controls
    c["mode"].value = "free text"  # an observer samples again: w.result follows each move
    assert w.result["mode"] == "free text" and w.result["follows_form"] is None and w.result["form"] is None
    assert c["prompt"].layout.display is None and c["title"].layout.display == "none"
    assert w.result["text"] == expected(model, tok, w.result)
    c["prompt"].value = "First Citizen:\n"
    assert w.result["prompt"] == "First Citizen:\n" and w.result["text"] == expected(model, tok, w.result)
    texts = set()
    for seed in range(4):
        c["seed"].value = seed
        assert w.result["seed"] == seed
        texts.add(w.result["text"])
    assert len(texts) > 1  # at temperature 1.5 the seed decides the sample
    c["temperature"].value = 0.0
    greedy = w.result["text"]
    c["seed"].value = 7
    assert w.result["text"] == greedy == expected(model, tok, w.result)  # greedy: the seed no longer matters
    c["temperature"].value = 1.0
    c["top_p"].value = 0.5
    assert (w.result["temperature"], w.result["top_p"]) == (1.0, 0.5)
    assert w.result["text"] == expected(model, tok, w.result)
    c["max_new_tokens"].value = 3
    assert w.result["new_tokens"] <= 3
    c["mode"].value = "poet"
    c["title"].value = "秋夜"
    c["form"].value = "七言律詩"
    assert (w.result["title"], w.result["form"], w.result["prompt"]) == ("秋夜", "七言律詩", "七言律詩：秋夜")
    assert w.result["text"] == expected(model, tok, w.result)


def test_a_poem_that_follows_the_form_says_so(poet, monkeypatch) -> None:
    """The verdict path with a known answer: the generator replaced by one that writes a real 五言絕句."""
    model, tok = poet
    w = SamplingWidget(model, tok, max_new_tokens=40)
    poem = "春眠不覺曉\n處處聞啼鳥\n夜來風雨聲\n花落知多少"
    end = tok.token_to_id("<|end|>")
    monkeypatch.setattr(w, "_generate", lambda ids: (tok.encode(poem) + [end], 0.5))
    r = w.render()
    assert r["text"] == poem and r["follows_form"] is True and r["new_tokens"] == len(tok.encode(poem)) + 1
    assert "follows 五言絕句" in w.summary.value and "does not" not in w.summary.value
    w.controls["form"].value = "七言絕句"
    assert w.result["follows_form"] is False and "does not follow 七言絕句" in w.summary.value


def test_bad_input_is_refused_or_shown(poet) -> None:
    model, tok = poet
    with pytest.raises(ValueError, match="mode="):
        SamplingWidget(model, tok, mode="chat")
    with pytest.raises(ValueError, match="form="):
        SamplingWidget(model, tok, form="絕句")
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingWidget(model, tok, max_new_tokens=64)  # the context is 64 and must hold the prompt too
    with pytest.raises(ValueError, match="seed"):
        SamplingWidget(model, tok, seed=-1)
    with pytest.raises(ValueError, match="chat tags"):
        SamplingWidget(model, CharTokenizer.from_text("abc"), mode="poet")
    w = SamplingWidget(model, tok, mode="free text", max_new_tokens=4)
    w.controls["prompt"].value = ""  # typed away in the box: the widget says so instead of a sample
    assert "cannot sample" in w.summary.value and "prompt is empty" in w.summary.value
    with pytest.raises(ValueError, match="prompt is empty"):
        w.render()
    assert MODES == ("free text", "poet") and list(w.controls["form"].options) == list(FORMS)
