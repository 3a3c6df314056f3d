"""The capstone's corpora and tokenizer (book/ch09_capstone/studies_corpus.py), on the shipped data at ci size."""
from __future__ import annotations

import numpy as np
import pytest

from book.ch09_capstone import studies_corpus as C
from minillm.data.special_tokens import EOS_TOKEN


def test_ci_corpus_splits_like_nanogpt_and_by_title():
    c = C.capstone_corpus("ci")
    assert len(c.en_train) == 108_000 and len(c.en_val) == 12_000  # the first 90% of the 120,000-char slice
    assert c.en_train.startswith("First Citizen:")
    assert len(c.poems_train) + len(c.poems_heldout) == 3000
    assert not {p.title for p in c.poems_train} & {p.title for p in c.poems_heldout}
    docs = c.documents("heldout")
    assert docs[0] == c.en_val and docs[1] == f"{c.poems_heldout[0].title}\n{c.poems_heldout[0].text}"
    s = c.summary()
    assert s["train"]["poems"] == len(c.poems_train) and s["heldout"]["zh_bytes"] > 2.5 * s["heldout"]["zh_chars"]
    assert C.capstone_corpus("ci") is c  # built once per process
    with pytest.raises(ValueError, match="'train' or 'heldout'"):
        c.poem_documents("val")


def test_tokenizer_has_the_special_tokens_and_documents_end_with_eos():
    c = C.capstone_corpus("ci")
    tok = C.capstone_tokenizer(c, 400)
    assert tok.vocab_size == 400 and set(C.SPECIAL_TOKENS) <= set(tok.special_tokens)
    docs = ["春眠不覺曉", "To be, or not to be"]
    ids = C.encode_documents(tok, docs)
    eos = tok.token_to_id(EOS_TOKEN)
    assert ids.dtype == np.int32 and np.flatnonzero(ids == eos).tolist() == [len(tok.encode(docs[0])), len(ids) - 1]
    assert tok.decode(ids.tolist()).replace(EOS_TOKEN, "|") in ("春眠不覺曉|To be, or not to be|",
                                                                 "春眠不覺曉To be, or not to be")


def test_data_path_env_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(C.DATA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="has no tinyshakespeare.txt"):
        C.data_path(C.SHAKESPEARE)
    (tmp_path / C.SHAKESPEARE).write_text("x", encoding="utf-8")
    assert C.data_path(C.SHAKESPEARE) == tmp_path / C.SHAKESPEARE
    monkeypatch.delenv(C.DATA_ENV)
    assert C.data_path(C.TANG).name == C.TANG
