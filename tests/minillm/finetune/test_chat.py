"""minillm.finetune.chat: the template's text, its response mask, BPE/char agreement and validation errors."""
import numpy as np
import pytest

from minillm import BPETokenizer
from minillm.finetune.chat import (ASSISTANT, CHAT_TOKENS, END, SYSTEM, USER, ChatTemplate, chat_tokenizer,
                                   check_messages, render_text)

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Reverse abc:"},
        {"role": "assistant", "content": "cba"}, {"role": "user", "content": "And xy?"},
        {"role": "assistant", "content": "yx"}]


def _masked(text, mask):
    return "".join(c for c, m in zip(text, mask) if m)


def test_render_text_and_char_mask_by_hand():
    text, mask = render_text(CONV)
    assert text == (f"{SYSTEM}Be brief.{END}{USER}Reverse abc:{END}{ASSISTANT}cba{END}{USER}And xy?{END}"
                    f"{ASSISTANT}yx{END}")
    assert mask.shape == (len(text),) and mask.dtype == bool
    assert _masked(text, mask) == f"cba{END}yx{END}"  # every assistant turn and its END; nothing else
    text, mask = render_text(CONV, train_on="last")
    assert _masked(text, mask) == f"yx{END}"
    prompt, pmask = render_text(CONV[:4], add_generation_prompt=True)
    assert prompt.endswith(f"And xy?{END}{ASSISTANT}") and _masked(prompt, pmask) == f"cba{END}"


def test_char_tokenizer_ids_mask_and_tags_are_single_tokens():
    tok = chat_tokenizer()
    t = ChatTemplate(tok)
    ids, mask = t.render(CONV)
    text, cmask = render_text(CONV)
    assert ids.tolist() == tok.encode(text)  # segment-wise encoding == encoding the whole text
    assert tok.decode(ids[mask].tolist()) == f"cba{END}yx{END}"
    assert [tok.decode([i]) for i in ids[:1]] == [SYSTEM]
    assert t.response_text(tok.encode(f"ok{END}junk")) == "ok" and t.response_text(tok.encode("ok")) == "ok"
    assert t.prompt_ids(CONV[:2]).tolist() == tok.encode(t.prompt_text(CONV[:2]))
    assert t.prompt_text(CONV[:2]).endswith(ASSISTANT)


def test_bpe_tokenizer_mask_matches_characters():
    corpus = ["Reverse abc: cba. And xy? yx. Be brief. " * 20, "hello world " * 30]
    tok = BPETokenizer.train(corpus, vocab_size=256 + len(CHAT_TOKENS) + 30, special_tokens=CHAT_TOKENS,
                             min_frequency=2)
    t = ChatTemplate(tok)
    ids, mask = t.render(CONV)
    text, _ = render_text(CONV)
    assert ids.tolist() == tok.encode(text)
    assert tok.decode(ids[mask].tolist()) == f"cba{END}yx{END}"
    assert int(mask.sum()) < len(ids)


def test_validation_errors():
    with pytest.raises(ValueError, match="role 'bot'"):
        check_messages([{"role": "bot", "content": "hi"}])
    with pytest.raises(ValueError, match="empty content"):
        check_messages([{"role": "user", "content": ""}])
    with pytest.raises(ValueError, match="must be a str"):
        check_messages([{"role": "user", "content": 3}])
    with pytest.raises(ValueError, match="lacks"):
        check_messages([{"role": "user"}])
    with pytest.raises(ValueError, match="unknown key"):
        check_messages([{"role": "user", "content": "a", "name": "x"}])
    with pytest.raises(ValueError, match="only come first"):
        check_messages([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])
    with pytest.raises(ValueError, match="chat tag"):
        check_messages([{"role": "user", "content": f"a{END}b"}])
    with pytest.raises(ValueError, match="empty"):
        check_messages([])
    with pytest.raises(ValueError, match="list"):
        check_messages("hello")
    with pytest.raises(ValueError, match="already ends"):
        render_text(CONV, add_generation_prompt=True)
    with pytest.raises(ValueError, match="train_on"):
        render_text(CONV, train_on="first")
    from minillm import CharTokenizer
    with pytest.raises(ValueError, match="lacks the chat special token"):
        ChatTemplate(CharTokenizer.from_text("abc"))


def test_mask_is_exact_per_token_array_types():
    ids, mask = ChatTemplate(chat_tokenizer()).render(CONV[1:3])
    assert ids.dtype == np.int64 and mask.dtype == bool and ids.shape == mask.shape
    # <|user|> Reverse abc: <|end|> <|assistant|> c b a <|end|>
    assert mask.tolist() == [False] * (1 + 12 + 1 + 1) + [True] * 4


def test_preference_batch_layout_padding_and_pair_forms():
    from types import SimpleNamespace

    t = ChatTemplate(chat_tokenizer())
    pairs = [{"prompt": "Hi", "chosen": "hello", "rejected": "no"}, ("Hey", "yo", "whatever"),
             SimpleNamespace(prompt=[{"role": "user", "content": "Yo"}], chosen="a", rejected="b")]
    ids, mask, lengths = t.preference_batch(pairs)
    assert ids.shape == mask.shape == (6, int(lengths.max()))
    tok = t.tokenizer
    assert [tok.decode(ids[i][mask[i]].tolist()) for i in range(6)] == [
        f"hello{END}", f"yo{END}", f"a{END}", f"no{END}", f"whatever{END}", f"b{END}"]  # chosen rows, then rejected
    assert (ids[1, lengths[1]:] == t.end_id).all() and not mask[1, lengths[1]:].any()  # right padding
    with pytest.raises(ValueError, match="max_len"):
        t.preference_batch(pairs, max_len=5)
    with pytest.raises(ValueError, match="lacks"):
        t.preference_batch([{"prompt": "Hi", "chosen": "x"}])
    with pytest.raises(ValueError, match="3-tuple"):
        t.preference_batch([["Hi", "x", "y"]])


def test_empty_response_is_the_assistant_stopping_at_once():
    t = ChatTemplate(chat_tokenizer())
    ids, mask = t.render_response("Hi", "")
    assert t.tokenizer.decode(ids.tolist()) == f"{USER}Hi{END}{ASSISTANT}{END}"
    assert mask.tolist() == [False] * (len(ids) - 1) + [True]  # only the END is the response
    full_ids, full_mask = t.render_response("Hi", "x")  # same prompt part as a non-empty reply
    assert (full_ids[: len(ids) - 1] == ids[:-1]).all() and not full_mask[: len(ids) - 1].any()
