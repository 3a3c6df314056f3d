"""Special tokens added to a trained tokenizer (minillm/data/vocab.py, CharTokenizer's version-2 file format)."""
from __future__ import annotations

import hashlib
import json
import warnings

import pytest

from minillm.data.bpe import ByteBPE
from minillm.data.bpe_train import train_bpe
from minillm.data.tokenizer import BPETokenizer, CharTokenizer, load_tokenizer
from minillm.data.vocab import add_special_tokens
from minillm.finetune.chat import CHAT_TOKENS, END, USER, ChatTemplate

EOT = "<|endoftext|>"
TEXT = "the cat sat on the mat.\nthe dog ran.\n"


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny corpus stops BPE training early: fine here
        return BPETokenizer.train([TEXT] * 20, 300, special_tokens=(EOT,))


def _all_ids_kept(old, new) -> None:
    assert [new.id_to_token(i) for i in range(old.vocab_size)] == [old.id_to_token(i) for i in range(old.vocab_size)]


# ---- CharTokenizer -------------------------------------------------------------------------------------------

def test_char_new_tokens_get_the_next_ids_and_old_ids_keep_their_meaning():
    old = CharTokenizer.from_text(TEXT, special_tokens=(EOT,))  # EOT at id 0, then 15 characters
    assert old.vocab_size == 16
    new = add_special_tokens(old, [USER, END, EOT, USER])  # EOT present, USER repeated: neither duplicated
    assert new.vocab_size == 18 and old.vocab_size == 16  # the original is untouched
    assert new.token_to_id(USER) == 16 and new.token_to_id(END) == 17
    assert new.special_tokens == (EOT, USER, END)
    _all_ids_kept(old, new)
    text = "the cat" + USER + "sat" + END + EOT
    assert new.encode(text) == old.encode("the cat") + [16] + old.encode("sat") + [17, 0]
    assert new.decode(new.encode(text)) == text
    assert add_special_tokens(new, [USER, END]) is new  # nothing new: the same tokenizer back


def test_char_save_load_round_trip_keeps_ids_and_hash(tmp_path):
    new = add_special_tokens(CharTokenizer.from_text(TEXT, special_tokens=(EOT,)), CHAT_TOKENS)
    new.save(tmp_path / "tok.json")
    saved = json.loads((tmp_path / "tok.json").read_text(encoding="utf-8"))
    assert saved["version"] == 2
    assert saved["added_tokens"] == [{"id": 16 + i, "content": t, "special": True} for i, t in enumerate(CHAT_TOKENS)]
    back = load_tokenizer(tmp_path / "tok.json")
    assert isinstance(back, CharTokenizer) and back.hash == new.hash and back.special_tokens == new.special_tokens
    _all_ids_kept(new, back)
    assert ChatTemplate(back).tag_ids == {t: 16 + i for i, t in enumerate(CHAT_TOKENS)}


def test_char_version_1_files_still_load_and_hash_as_before(tmp_path):
    # A file as minillm wrote it before tokens could be added (version 1, no added_tokens).
    payload = {"kind": "char", "version": 1, "special_tokens": [EOT], "chars": ["\n", " ", "a", "b"]}
    (tmp_path / "old.json").write_text(json.dumps(payload), encoding="utf-8")
    tok = load_tokenizer(tmp_path / "old.json")
    assert [tok.id_to_token(i) for i in range(5)] == [EOT, "\n", " ", "a", "b"]
    blob = json.dumps({"kind": "char", "special_tokens": [EOT], "chars": ["\n", " ", "a", "b"]}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    assert tok.hash == hashlib.sha256(blob.encode()).hexdigest()  # the hash token shards already carry
    tok.save(tmp_path / "again.json")  # no added tokens: still written as version 1
    assert json.loads((tmp_path / "again.json").read_text(encoding="utf-8")) == payload
    assert add_special_tokens(tok, [USER]).hash != tok.hash  # a grown vocabulary is a different tokenization


def test_char_refuses_ordinary_characters_and_renumbered_files(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    with pytest.raises(ValueError, match="already holds it as an ordinary token"):
        add_special_tokens(tok, ["a"])
    with pytest.raises(ValueError, match="non-empty strings"):
        add_special_tokens(tok, [USER, ""])
    grown = add_special_tokens(tok, [USER])
    grown.save(tmp_path / "t.json")
    data = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    data["added_tokens"][0]["id"] = 3  # a hand edit that would move an old id
    (tmp_path / "t.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match="saved with id 3 but would get id 15"):
        load_tokenizer(tmp_path / "t.json")
    with pytest.raises(TypeError, match="CharTokenizer, BPETokenizer and ByteBPE"):
        add_special_tokens(object(), [USER])


# ---- BPETokenizer and ByteBPE -------------------------------------------------------------------------------

def test_bpe_new_tokens_appended_encode_as_one_id_and_round_trip(bpe, tmp_path):
    new = add_special_tokens(bpe, CHAT_TOKENS)
    V = bpe.vocab_size
    assert new.vocab_size == V + 4 and bpe.vocab_size == V
    assert [new.token_to_id(t) for t in CHAT_TOKENS] == [V, V + 1, V + 2, V + 3]
    assert new.special_tokens == (EOT, *CHAT_TOKENS)
    _all_ids_kept(bpe, new)
    text = USER + "the cat sat" + END
    assert new.encode(text) == [V + 1] + bpe.encode("the cat sat") + [V + 3]
    assert new.decode(new.encode(text)) == text
    new.save(tmp_path / "bpe.json")
    back = load_tokenizer(tmp_path / "bpe.json")
    assert back.hash == new.hash != bpe.hash
    assert back.encode(text) == new.encode(text)
    assert add_special_tokens(new, [EOT, END]) is new
    with pytest.raises(ValueError, match="ordinary token"):
        add_special_tokens(bpe, ["the"])  # a learned merge of this corpus


def test_byte_bpe_new_tokens_appended(tmp_path):
    vocab, merges = train_bpe(TEXT * 5, 270, [EOT])
    tok = ByteBPE(vocab, merges, [EOT])
    new = add_special_tokens(tok, [USER, END])
    assert [new.token_to_id(t) for t in (USER, END)] == [tok.vocab_size, tok.vocab_size + 1]
    assert new.encode("the" + END) == tok.encode("the") + [tok.vocab_size + 1]
    new.save(tmp_path / "b.json")
    assert load_tokenizer(tmp_path / "b.json").encode("a" + USER) == new.encode("a" + USER)
