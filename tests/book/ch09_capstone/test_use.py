"""book.ch09_capstone.studies_use: KV-cache rows, the Hugging Face export (weights + tokenizer) and the greedy check
against transformers' LlamaForCausalLM, on a tiny Llama-style GPT trained a few dozen steps on the ci corpus."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch

from minillm.config import ModelConfig
from minillm.data.tokenizer import CharTokenizer
from minillm.finetune.chat import ChatTemplate, as_messages
from minillm.generate import generate
from minillm.model.hf import import_llama
from minillm.model.transformer import GPT
from book.ch09_capstone.studies_corpus import capstone_corpus, capstone_tokenizer, encode_documents
from book.ch09_capstone.studies_poems import form_prompt
from book.ch09_capstone.studies_use import (HF_FILES, UseConfig, export_hf, hf_greedy_check, kv_cache_rows,
                                            poet_prompt_text, use_config, use_prompts)
from book.runs import Run, train

torch.set_num_threads(1)  # two cores shared with other tests: one thread each is faster than two contending

LLAMA = {"norm": "rmsnorm", "activation": "swiglu", "position": "rope", "bias": False, "n_kv_head": 2}
CHECK_TOKENS = 12


@pytest.fixture(scope="module")
def poet():
    """(model, tok): 2 layers, 64 wide, GQA 4:2, 40 steps on the ci corpus (~4 s): past uniform noise."""
    tok = capstone_tokenizer(capstone_corpus("ci"), 512)
    ids = torch.from_numpy(encode_documents(tok, capstone_corpus("ci").documents("train")).astype("int64"))
    run = Run(n_layer=2, n_head=4, n_embd=64, block_size=64, batch_size=8, steps=40, lr=3e-3, warmup=4, seed=0,
              eval_windows=4, model_fields=LLAMA)
    out = train(run, ids, tokenizer=tok)
    assert out.final_loss < out.initial_loss - 0.5  # it learned something: generation is not uniform noise
    return out.model.eval(), tok


@pytest.fixture(scope="module")
def prompts(poet):
    _, tok = poet
    return ["ROMEO:\n", poet_prompt_text(tok, "春曉", "五言絕句")]


@pytest.fixture(scope="module")
def exported(poet, tmp_path_factory):
    model, tok = poet
    return export_hf(model, tok, tmp_path_factory.mktemp("hf") / "poet")


@torch.no_grad()
def reference_greedy(model: GPT, ids: list[int], n: int) -> list[int]:
    """Greedy decoding the slow, obvious way: the whole sequence through the model, argmax of the last logits."""
    seq = list(ids)
    for _ in range(n):
        logits, _ = model(torch.tensor([seq]))
        seq.append(int(logits[0, -1].argmax()))
    return seq[len(ids):]


# ---------------------------------------------------------------------------------------------------- sizes


def test_use_config_validates_every_profile() -> None:
    for size in ("ci", "laptop", "gpu"):
        cfg = use_config(size)
        assert cfg.new_tokens >= 1 and cfg.repeats >= 1 and cfg.free_prompts and cfg.poet_requests
    assert use_config("ci").new_tokens < use_config("laptop").new_tokens < use_config("gpu").new_tokens
    assert use_config("ci", new_tokens=5).new_tokens == 5
    with pytest.raises(ValueError, match="new_tokens"):
        UseConfig(new_tokens=0)
    with pytest.raises(ValueError, match="unknown form"):
        UseConfig(poet_requests=(("春曉", "五言"),))
    with pytest.raises(ValueError, match="at least one"):
        UseConfig(free_prompts=(), poet_requests=())


def test_poet_prompt_text_encodes_to_the_chat_template_ids(poet) -> None:
    _, tok = poet
    text = poet_prompt_text(tok, "春曉", "五言絕句")
    assert text == "<|user|>五言絕句：春曉<|end|><|assistant|>"
    want = ChatTemplate(tok).prompt_ids(as_messages(form_prompt("春曉", "五言絕句"))).tolist()
    assert tok.encode(text) == want  # each tag one id: the rows' prompts are exactly what the poet was tuned on
    assert use_prompts(use_config("ci"), tok)[-1] == poet_prompt_text(tok, "秋夜", "七言律詩")


# ---------------------------------------------------------------------------------------------------- KV cache


def test_kv_cache_rows_same_tokens_as_the_slow_reference(poet, prompts) -> None:
    model, tok = poet
    rows = kv_cache_rows(model, tok, prompts, 10, repeats=2)
    assert [r["prompt"] for r in rows] == prompts
    for r, p in zip(rows, prompts):
        ids = tok.encode(p)
        assert r["prompt_tokens"] == len(ids) and r["new_tokens"] == 10 and r["same_tokens"] is True
        assert r["cached_tps"] == pytest.approx(10 / r["cached_s"]) and r["uncached_tps"] == pytest.approx(
            10 / r["uncached_s"])
        assert r["speedup"] == pytest.approx(r["uncached_s"] / r["cached_s"])
    ids = tok.encode(prompts[1])
    cached = generate(model, torch.tensor([ids]), 10, temperature=0, use_cache=True)[0, len(ids):].tolist()
    assert cached == reference_greedy(model, ids, 10)


def test_kv_cache_rows_refuse_bad_arguments(poet) -> None:
    model, tok = poet
    with pytest.raises(ValueError, match="block_size=64"):
        kv_cache_rows(model, tok, ["ROMEO:"], 64)  # the prompt plus 64 new tokens cannot fit 64 positions
    with pytest.raises(ValueError, match="non-empty list"):
        kv_cache_rows(model, tok, "ROMEO:", 4)
    with pytest.raises(ValueError, match="non-empty str"):
        kv_cache_rows(model, tok, [""], 4)
    with pytest.raises(ValueError, match="repeats"):
        kv_cache_rows(model, tok, ["ROMEO:"], 4, repeats=0)
    with pytest.raises(TypeError, match="minillm GPT"):
        kv_cache_rows(torch.nn.Linear(2, 2), tok, ["ROMEO:"], 4)


# ---------------------------------------------------------------------------------------------------- export


def test_export_writes_every_file_and_round_trips(poet, exported: Path) -> None:
    model, tok = poet
    assert sorted(p.name for p in exported.iterdir()) == sorted(HF_FILES)
    assert not [p for p in exported.parent.iterdir() if p != exported], "a temporary folder was left behind"
    eos, end = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|end|>")
    config = json.loads((exported / "config.json").read_text())
    assert (config["eos_token_id"], config["pad_token_id"], config["bos_token_id"]) == ([eos, end], eos, None)
    assert json.loads((exported / "generation_config.json").read_text())["eos_token_id"] == [eos, end]
    assert (exported / "tokenizer.json").read_text() == tok.hf_tokenizer.to_str(pretty=True)
    x = torch.tensor([tok.encode("ROMEO:\n春眠不覺曉")])
    assert torch.equal(import_llama(exported)(x)[0], model(x)[0])  # the weights are the model's


def test_export_replaces_an_old_export_but_never_foreign_files(poet, tmp_path: Path) -> None:
    model, tok = poet
    target = export_hf(model, tok, tmp_path / "poet")
    export_hf(model, tok, target)  # over a previous export: fine
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="would delete"):
        export_hf(model, tok, target)
    assert (target / "notes.txt").read_text() == "mine"


def test_export_refusals(poet, tmp_path: Path) -> None:
    model, tok = poet
    with pytest.raises(TypeError, match="BPETokenizer"):
        export_hf(model, CharTokenizer.from_text("abc"), tmp_path / "a")
    small = capstone_tokenizer(capstone_corpus("ci"), 400)
    with pytest.raises(ValueError, match="400 ids but the model's vocab_size is 512"):
        export_hf(model, small, tmp_path / "b")
    gpt2 = GPT(ModelConfig(vocab_size=512, block_size=16, n_layer=1, n_head=2, n_embd=32))
    with pytest.raises(ValueError, match="not Llama-style"):
        export_hf(gpt2, tok, tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a refused export left files behind"


def test_transformers_tokenizer_matches_minillm(poet, exported: Path) -> None:
    transformers = pytest.importorskip("transformers")
    _, tok = poet
    hf_tok = transformers.AutoTokenizer.from_pretrained(exported)
    for text in ("First Citizen:\nBefore we proceed", "春眠不覺曉，處處聞啼鳥。", "a<|endoftext|>秋夜<|end|>", "  x \n\n"):
        ids = tok.encode(text)
        assert hf_tok(text, add_special_tokens=False)["input_ids"] == ids
        assert hf_tok.decode(ids) == tok.decode(ids) == text
    msgs = as_messages(form_prompt("秋夜", "七言律詩"))
    chat = hf_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    chat = chat["input_ids"] if isinstance(chat, dict) or hasattr(chat, "keys") else chat
    assert list(chat) == ChatTemplate(tok).prompt_ids(msgs).tolist()
    assert hf_tok.eos_token == "<|endoftext|>"


# ---------------------------------------------------------------------------------------------------- transformers


def test_hf_greedy_check_gives_the_same_tokens(poet, prompts, exported: Path) -> None:
    pytest.importorskip("transformers")
    model, tok = poet
    rows = hf_greedy_check(model, tok, exported, prompts, CHECK_TOKENS)
    assert len(rows) == 2
    for r, p in zip(rows, prompts):
        ids = tok.encode(p)
        assert r["equal"] is True and r["tokenizer_equal"] is True and r["prompt_tokens"] == len(ids)
        assert r["max_logit_diff"] < 1e-4  # fp32, the same math in a different order (measured ~1e-6)
        assert r["minillm_ids"] == r["hf_ids"] and 1 <= len(r["hf_ids"]) <= CHECK_TOKENS
        slow = reference_greedy(model, ids, len(r["minillm_ids"]))
        assert r["minillm_ids"] == slow  # and both equal the obvious greedy loop
        assert r["text"] == tok.decode(r["minillm_ids"]) and r["minillm_s"] > 0 and r["hf_s"] > 0


def test_hf_greedy_check_sees_a_different_model(poet, prompts, tmp_path: Path) -> None:
    """The check is not vacuous: an export of other weights (queries x1.5, output layer x1.01) gives logits that
    differ far beyond fp32 noise."""
    pytest.importorskip("transformers")
    model, tok = poet
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.blocks[0].attn.wq.weight.mul_(1.5)
        other.lm_head.weight.mul_(1.01)
    out = export_hf(other, tok, tmp_path / "other")
    rows = hf_greedy_check(model, tok, out, prompts[:1], 4)
    assert rows[0]["max_logit_diff"] > 1e-3


def test_hf_greedy_check_errors(poet, tmp_path: Path, monkeypatch) -> None:
    model, tok = poet
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="export_hf"):
        hf_greedy_check(model, tok, tmp_path / "half", ["ROMEO:"], 4)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install transformers"):
        hf_greedy_check(model, tok, tmp_path / "half", ["ROMEO:"], 4)
