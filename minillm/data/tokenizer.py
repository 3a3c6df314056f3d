"""Tokenizers: text <-> integer ids (Survey §4.1.2, data preprocessing: tokenization).

A language model never sees characters, only integer ids. The tokenizer fixes that mapping, and with it
the vocabulary size (the width of the embedding and output layers) and how many tokens a text costs.
This file holds the two tokenizers the course trains with:

- `CharTokenizer`: one id per character seen in a text (nanoGPT's Shakespeare setting). Tiny vocabulary,
  no training, but long sequences and no way to spell a character it has not seen.
- `BPETokenizer`: byte-level BPE (GPT-2 style) trained with Hugging Face `tokenizers` (fast, Rust).
  Any Unicode text can be encoded, because every byte is in the vocabulary. The same algorithm in plain,
  readable Python lives in `minillm.data.bpe` / `minillm.data.bpe_train`.

All of them share the small `Tokenizer` interface below, save to one JSON file, and expose `hash`: a
sha256 of everything that decides the ids, written into token shards so that data tokenized with one
vocabulary is never silently fed to a model built for another. `load_tokenizer(path)` reads any of them.
The special-token and id helpers they all use live in `minillm.data.special_tokens`.
"""

from __future__ import annotations

import abc
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from minillm.data.special_tokens import (
    as_id_array,
    check_no_surrogates,
    check_special_tokens,
    check_vocab_size,
    sha256_of,
    special_token_pattern,
    split_on_special_tokens,
)
from minillm.io import atomic_write_text, read_json

# ---- The common interface --------------------------------------------------------------------


class Tokenizer(abc.ABC):
    """What the data pipeline needs from any tokenizer: ids in, text out, a size, a fingerprint, a file."""

    kind: ClassVar[str]  # written into the saved JSON so load_tokenizer() knows which class to build

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abc.abstractmethod
    def decode(self, ids: Iterable[int]) -> str: ...

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int: ...

    @property
    @abc.abstractmethod
    def special_tokens(self) -> tuple[str, ...]: ...

    @property
    @abc.abstractmethod
    def hash(self) -> str:
        """sha256 hex of everything that decides the ids; equal hashes mean identical tokenization."""

    @abc.abstractmethod
    def token_to_id(self, token: str) -> int: ...

    @abc.abstractmethod
    def save(self, path: str | os.PathLike) -> None: ...

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, special_tokens={self.special_tokens})"


# ---- Character-level tokenizer ---------------------------------------------------------------


class CharTokenizer(Tokenizer):
    """One id per character: ids 0..S-1 are the special tokens, then the text's characters in sorted order, then
    any special tokens added later (`minillm.data.vocab.add_special_tokens`), so every earlier id keeps its meaning."""

    kind = "char"

    def __init__(self, chars: Iterable[str], special_tokens: Iterable[str] = (), *,
                 added_special_tokens: Iterable[str] = ()):
        self._specials = check_special_tokens(special_tokens)
        self._added = check_special_tokens(added_special_tokens)  # ids after the characters (grown vocabulary)
        check_special_tokens(self._specials + self._added)  # distinct across both groups
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"CharTokenizer vocabulary entries must be single characters, got {c!r}")
            check_no_surrogates(c, "vocabulary")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer vocabulary has repeated characters; build it with CharTokenizer.from_text")
        # A one-character special would be ambiguous with the same ordinary character: the special wins.
        self._chars = tuple(c for c in chars if c not in self._specials)
        clash = [t for t in self._added if t in self._chars]
        if clash:  # taking it over would change what the text's character means (its id)
            raise ValueError(f"cannot add special token {clash[0]!r}: it is an ordinary character of this "
                             f"vocabulary; choose a token text spelling no single character, e.g. '<|...|>'")
        if not self._chars and not self._specials and not self._added:
            raise ValueError("CharTokenizer needs at least one character or special token")
        self._itos: tuple[str, ...] = self._specials + self._chars + self._added  # id -> token
        self._stoi: dict[str, int] = {s: i for i, s in enumerate(self._itos)}  # token -> id
        self._special_re = special_token_pattern(self._specials + self._added)

    @classmethod
    def from_text(cls, text: str, special_tokens: Iterable[str] = ()) -> CharTokenizer:
        """Vocabulary = the sorted set of characters in `text` (sorting makes ids independent of order)."""
        if not isinstance(text, str):
            raise ValueError(f"CharTokenizer.from_text needs a str, got {type(text).__name__}")
        specials = check_special_tokens(special_tokens)
        if not text and not specials:
            raise ValueError("cannot build a CharTokenizer from empty text: pass the training text")
        check_no_surrogates(text)
        # Remove the special tokens first so their characters only enter the vocabulary if used elsewhere.
        plain = "".join(piece for piece, special in split_on_special_tokens(text, special_token_pattern(specials))
                        if not special)
        return cls(sorted(set(plain)), specials)

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return self._specials + self._added

    @cached_property
    def hash(self) -> str:
        payload = {"kind": self.kind, "special_tokens": list(self._specials), "chars": list(self._chars)}
        if self._added:  # only when present: a tokenizer without added tokens keeps the hash its shards carry
            payload["added_special_tokens"] = list(self._added)
        return sha256_of(payload)

    def token_to_id(self, token: str) -> int:
        if token not in self._stoi:
            raise ValueError(f"{token!r} is not in this CharTokenizer's vocabulary ({self.vocab_size} tokens)")
        return self._stoi[token]

    def id_to_token(self, i: int) -> str:
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        return self._itos[i]

    @cached_property
    def _lookup(self) -> np.ndarray:
        """Code point -> id table (-1 = unknown); one extra slot at the end catches every larger code point."""
        max_cp = max((ord(c) for c in self._chars), default=0)
        table = np.full(max_cp + 2, -1, dtype=np.int64)
        for c in self._chars:  # a loop over the vocabulary, once
            table[ord(c)] = self._stoi[c]
        return table

    def _encode_plain(self, text: str) -> np.ndarray:
        """Vectorised: UTF-32 bytes are the code points, so one np.frombuffer and one gather do the work."""
        check_no_surrogates(text)
        code_points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (N,)
        table = self._lookup
        ids = table[np.minimum(code_points, len(table) - 1)]  # (N,) -1 where unknown
        bad = np.flatnonzero(ids < 0)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"character {text[i]!r} (U+{ord(text[i]):04X}) at index {i} is not in this CharTokenizer's "
                f"vocabulary; rebuild the tokenizer with CharTokenizer.from_text on text that contains it"
            )
        return ids

    def encode_to_array(self, text: str, dtype: Any = np.int64) -> np.ndarray:
        """Encode to a 1-D numpy array without a per-character Python loop (for whole corpora)."""
        if not isinstance(text, str):
            raise ValueError(f"encode needs a str, got {type(text).__name__}")
        dtype = np.dtype(dtype)
        if dtype.kind not in "iu" or np.iinfo(dtype).max < self.vocab_size - 1:
            raise ValueError(f"dtype {dtype} cannot hold ids up to {self.vocab_size - 1}; use np.int64 or a wider int")
        pieces = []
        for piece, special in split_on_special_tokens(text, self._special_re):  # loops over documents, not chars
            pieces.append(np.array([self._stoi[piece]]) if special else self._encode_plain(piece))
        if not pieces:
            return np.zeros(0, dtype=dtype)
        return np.concatenate(pieces).astype(dtype, copy=False)

    def encode(self, text: str) -> list[int]:
        return self.encode_to_array(text).tolist()

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self._itos_array[as_id_array(ids, self.vocab_size)].tolist())

    @cached_property
    def _itos_array(self) -> np.ndarray:
        return np.array(self._itos, dtype=object)

    def save(self, path: str | os.PathLike) -> None:
        payload = {"kind": self.kind, "version": 1, "special_tokens": list(self._specials), "chars": list(self._chars)}
        if self._added:  # version 2: tokens added after training, with their explicit ids
            first = len(self._specials) + len(self._chars)
            payload["version"] = 2
            payload["added_tokens"] = [{"id": first + i, "content": t, "special": True}
                                       for i, t in enumerate(self._added)]
        atomic_write_text(path, json.dumps(payload, ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        data = read_json(path, "CharTokenizer")
        if data.get("kind") != cls.kind or not isinstance(data.get("chars"), list):
            raise ValueError(f"{path} is not a saved CharTokenizer (kind={data.get('kind')!r}); "
                             "use load_tokenizer() to read any tokenizer file")
        added = data.get("added_tokens", [])
        if not isinstance(added, list) or not all(isinstance(t, dict) and {"id", "content"} <= set(t)
                                                  and t.get("special", True) is True for t in added):
            raise ValueError(f"{path}: added_tokens must be a list of {{'id', 'content', 'special': true}} objects "
                             "(a CharTokenizer adds special tokens only); re-create the file with CharTokenizer.save")
        tok = cls(data["chars"], data.get("special_tokens", []), added_special_tokens=[t["content"] for t in added])
        wrong = [t for t in added if tok._stoi[t["content"]] != t["id"]]
        if wrong:  # ids are positional; a hand-edited file must not silently renumber them
            raise ValueError(f"{path}: added token {wrong[0]['content']!r} is saved with id {wrong[0]['id']} but "
                             f"would get id {tok._stoi[wrong[0]['content']]}; added ids follow the characters in "
                             "order: re-create the file with CharTokenizer.save")
        return tok


# ---- Byte-level BPE through Hugging Face `tokenizers` ----------------------------------------


class BPETokenizer(Tokenizer):
    """Byte-level BPE (GPT-2 pre-tokenization) trained and run by Hugging Face `tokenizers`.

    Id layout (chosen by `tokenizers`): special tokens first (0..S-1), then the 256 byte symbols,
    then one id per learned merge. The saved file is a standard `tokenizer.json`, so
    `tokenizers.Tokenizer.from_file` (and `transformers`) can read it too.
    """

    kind = "bpe"

    def __init__(self, hf_tokenizer: Any):
        self._tok = hf_tokenizer  # a tokenizers.Tokenizer
        data = json.loads(hf_tokenizer.to_str())
        model = data.get("model") or {}
        if model.get("type") != "BPE":
            raise ValueError(f"BPETokenizer wraps a BPE model, got model type {model.get('type')!r}")
        self._specials = tuple(t["content"] for t in data.get("added_tokens", []) if t.get("special"))
        # Merges are stored as "a b" strings by older `tokenizers` and as ["a", "b"] pairs by newer ones;
        # normalise so the hash does not depend on the library version.
        merges = [m.split(" ", 1) if isinstance(m, str) else list(m) for m in model.get("merges", [])]
        vocab = hf_tokenizer.get_vocab(with_added_tokens=True)
        self._hash = sha256_of({
            "kind": self.kind,
            "vocab": sorted(vocab.items(), key=lambda kv: kv[1]),
            "merges": merges,
            "special_tokens": list(self._specials),
            "pre_tokenizer": (data.get("pre_tokenizer") or {}).get("type"),  # type only: options vary by version
        })

    @classmethod
    def train(
        cls,
        texts: Iterable[str] | str,
        vocab_size: int,
        special_tokens: Sequence[str] = ("<|endoftext|>",),
        min_frequency: int = 2,
    ) -> BPETokenizer:
        """Learn a byte-level BPE vocabulary of `vocab_size` ids from `texts` (one str or an iterable of str).

        min_frequency: a pair must occur at least this often to be merged; training stops early (with a
        warning) when no pair qualifies, so the result may be smaller than `vocab_size`.
        """

        specials = check_special_tokens(special_tokens)
        check_vocab_size(vocab_size, len(specials))
        if not isinstance(min_frequency, int) or min_frequency < 1:
            raise ValueError(f"min_frequency must be an int >= 1, got {min_frequency!r}")
        if isinstance(texts, str):
            texts = [texts]
        seen_chars = 0

        def checked(it: Iterable[str]) -> Iterator[str]:  # streams; counts so an empty corpus is caught
            nonlocal seen_chars
            for t in it:
                if not isinstance(t, str):
                    raise ValueError(f"BPETokenizer.train needs str texts, got {type(t).__name__}")
                seen_chars += len(t)
                yield t

        tok = HFTokenizer(models.BPE())
        # add_prefix_space=False: encode(decode(ids)) must give back exactly the input text.
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(specials),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, even unseen ones
            show_progress=False,
        )
        tok.train_from_iterator(checked(texts), trainer=trainer)
        if seen_chars == 0:
            raise ValueError("cannot train a BPE tokenizer on an empty corpus: pass non-empty text")
        result = cls(tok)
        if result.vocab_size < vocab_size:
            warnings.warn(f"BPE training stopped at {result.vocab_size} < vocab_size={vocab_size} tokens: no pair "
                          f"left with frequency >= {min_frequency}; use more text or a lower min_frequency",
                          stacklevel=2)
        return result

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return self._specials

    @property
    def hash(self) -> str:
        return self._hash

    @property
    def hf_tokenizer(self) -> Any:
        """The underlying `tokenizers.Tokenizer` (for offsets, padding, or export)."""
        return self._tok

    def token_to_id(self, token: str) -> int:
        i = self._tok.token_to_id(token)
        if i is None:
            raise ValueError(f"{token!r} is not a token of this BPETokenizer (byte-level tokens spell a space "
                             "as 'Ġ'; see id_to_token)")
        return i

    def id_to_token(self, i: int) -> str:
        token = self._tok.id_to_token(i) if 0 <= i < self.vocab_size else None
        if token is None:
            raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        return token

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"encode needs a str, got {type(text).__name__}")
        check_no_surrogates(text)
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """Encodes in parallel on all cores (the Rust side releases the GIL)."""
        texts = list(texts)
        for t in texts:  # a loop over documents, for clear errors before the Rust side sees them
            if not isinstance(t, str):
                raise ValueError(f"encode_batch needs str texts, got {type(t).__name__}")
            check_no_surrogates(t)
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(as_id_array(ids, self.vocab_size).tolist(), skip_special_tokens=False)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self._tok.to_str(pretty=True))

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        read_json(path, "BPETokenizer")  # clear errors for a missing or non-JSON file
        try:
            tok = HFTokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception on malformed files
            raise ValueError(f"{path} is not a valid tokenizers JSON file ({e}); re-create it with .save()") from None
        return cls(tok)


def encode_array(tokenizer: Any, text: str, dtype: Any = np.int64) -> np.ndarray:
    """`text` as a 1-D id array with any tokenizer: vectorised where the tokenizer can (`encode_to_array`, the
    same ids as `encode`), else its `encode`."""
    enc = getattr(tokenizer, "encode_to_array", None)
    return enc(text, dtype=dtype) if enc is not None else np.asarray(tokenizer.encode(text), dtype=dtype)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load any tokenizer saved by this package; the kind is read from the JSON itself."""
    data = read_json(path, "tokenizer")
    kind = data.get("kind")
    if kind == CharTokenizer.kind:
        return CharTokenizer.load(path)
    if kind == "byte_bpe":
        from minillm.data.bpe import ByteBPE  # here: bpe.py subclasses this module's Tokenizer

        return ByteBPE.load(path)
    if isinstance(data.get("model"), dict) and data["model"].get("type") == "BPE":  # a tokenizers JSON
        return BPETokenizer.load(path)
    raise ValueError(f"{path}: unknown tokenizer file (kind={kind!r}); expected one written by "
                     "CharTokenizer.save, BPETokenizer.save or ByteBPE.save")
