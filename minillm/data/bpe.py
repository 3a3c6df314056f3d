"""Byte-level BPE in plain Python: pre-tokenization, encoding, decoding (Survey §4.1.2, tokenization).

Byte-pair encoding (Sennrich et al. 2016; byte-level form from GPT-2) starts from the 256 possible bytes,
so *any* text can be encoded, and learns merges "a b -> ab" of frequent neighbours. Training is in
`minillm.data.bpe_train.train_bpe`; this file turns a learned (vocab, merges) pair into a tokenizer.

Conventions (as in GPT-2 and the Stanford CS336 assignment):

- ids 0..255 are the single bytes, then the special tokens, then one id per merge in the order learned;
- text is first split on special tokens (longest match first), which are emitted whole and never take
  part in a merge;
- each remaining piece is split into *pre-tokens* by the GPT-2 regex below (words with their leading
  space, numbers, punctuation runs, whitespace); merges never cross a pre-token boundary;
- a pre-token is encoded by repeatedly merging the adjacent pair whose merge was learned *earliest*.

The per-byte loop in `_encode_pretoken` is the lesson, so it stays readable Python; a cache makes
repeated words free. The fast path for real corpora is `BPETokenizer` (Rust) in `tokenizer.py`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np

from minillm.data.special_tokens import (
    as_id_array,
    check_no_surrogates,
    check_special_tokens,
    sha256_of,
    special_token_pattern,
    split_on_special_tokens,
)
from minillm.data.tokenizer import Tokenizer
from minillm.io import atomic_write_text, read_json

# GPT-2's pre-tokenizer: contractions, optional-space + letters, optional-space + digits, optional-space +
# other symbols, whitespace not followed by a non-space (so " word" keeps its space), remaining whitespace.
GPT2_PRETOKENIZE_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@cache
def _pretokenize_regex() -> Any:
    """Compiled lazily (no work at import time). Needs the `regex` package for \\p{L} / \\p{N}."""
    try:
        import regex
    except ImportError:
        raise RuntimeError("byte-level BPE needs the 'regex' package for Unicode classes: pip install regex") from None
    return regex.compile(GPT2_PRETOKENIZE_PATTERN)


def pretokenize(text: str) -> list[str]:
    """Split special-token-free text into GPT-2 pre-tokens: "Hi  there!" -> ["Hi", " ", " there", "!"]."""
    return _pretokenize_regex().findall(text)


@cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, used by its vocab.json / merges.txt files.

    Printable Latin-1 bytes map to themselves; the other 68 (control bytes, space, ...) are shifted to
    code points 256, 257, ... in byte order, so every token prints as visible text (space -> 'Ġ').
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    shifted = (b for b in range(256) if b not in mapping)
    for n, b in enumerate(shifted):
        mapping[b] = chr(256 + n)
    return dict(sorted(mapping.items()))


def _to_printable(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def _from_printable(token: str, where: str) -> bytes:
    inverse = {c: b for b, c in bytes_to_unicode().items()}
    try:
        return bytes(inverse[c] for c in token)
    except KeyError as e:
        raise ValueError(f"{where}: {token!r} contains {e.args[0]!r}, which is not a GPT-2 byte symbol") from None


class ByteBPE(Tokenizer):
    """A byte-level BPE tokenizer from a vocabulary {id: bytes} and an ordered list of merges.

    vocab: ids must be 0..N-1 with distinct byte strings, and every single byte must be present.
    merges: (left, right) byte pairs in the order they were learned (earlier = applied first).
    special_tokens: matched before pre-tokenization and emitted as one id each. A special token whose
        bytes are not in `vocab` is appended with the next free id (so GPT-2 files can gain new specials).
    """

    kind = "byte_bpe"
    CACHE_SIZE = 1 << 16  # pre-token -> ids entries kept; cleared when full, so memory stays bounded

    def __init__(self, vocab: Mapping[int, bytes], merges: Sequence[tuple[bytes, bytes]],
                 special_tokens: Iterable[str] = ()):
        self._specials = check_special_tokens(special_tokens)
        vocab = dict(vocab)
        if sorted(vocab) != list(range(len(vocab))):
            raise ValueError("vocab ids must be exactly 0..N-1 (one embedding row per id)")
        for i, b in vocab.items():
            if not isinstance(b, bytes) or not b:
                raise ValueError(f"vocab[{i}] must be non-empty bytes, got {b!r}")
        self._bytes_to_id = {b: i for i, b in vocab.items()}
        if len(self._bytes_to_id) != len(vocab):
            raise ValueError("vocab has repeated byte strings; each token must spell a different byte string")
        missing = [b for b in range(256) if bytes([b]) not in self._bytes_to_id]
        if missing:
            raise ValueError(f"byte-level BPE needs all 256 single bytes in vocab; missing {len(missing)}, "
                             f"e.g. byte 0x{missing[0]:02x}")
        for s in self._specials:
            if s.encode("utf-8") not in self._bytes_to_id:
                vocab[len(vocab)] = s.encode("utf-8")
                self._bytes_to_id[vocab[len(vocab) - 1]] = len(vocab) - 1
        self._vocab = vocab
        self._special_ids = {s: self._bytes_to_id[s.encode("utf-8")] for s in self._specials}
        self._special_re = special_token_pattern(self._specials)
        self._max_special_len = max((len(s) for s in self._specials), default=0)

        # (left id, right id) -> (rank, merged id). Ranks are positions in `merges`: lower merges first.
        self._merges = [(bytes(a), bytes(b)) for a, b in merges]
        self._ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (a, b) in enumerate(self._merges):
            ids = [self._bytes_to_id.get(x) for x in (a, b, a + b)]
            if None in ids:
                raise ValueError(f"merge #{rank} ({a!r}, {b!r}) uses or makes a token missing from vocab")
            self._ranks.setdefault((ids[0], ids[1]), (rank, ids[2]))
        self._byte_ids = [self._bytes_to_id[bytes([b])] for b in range(256)]  # byte value -> id
        self._cache: dict[str, tuple[int, ...]] = {}

    # -- properties -------------------------------------------------------------------------------------

    @property
    def vocab(self) -> dict[int, bytes]:
        return dict(self._vocab)

    @property
    def merges(self) -> list[tuple[bytes, bytes]]:
        return list(self._merges)

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return self._specials

    @cached_property
    def hash(self) -> str:
        return sha256_of({
            "kind": self.kind,
            "pattern": GPT2_PRETOKENIZE_PATTERN,
            "vocab": [self._vocab[i].hex() for i in range(len(self._vocab))],
            "merges": [[a.hex(), b.hex()] for a, b in self._merges],
            "special_tokens": list(self._specials),
        })

    def token_to_id(self, token: str | bytes) -> int:
        key = token.encode("utf-8") if isinstance(token, str) else token
        if key not in self._bytes_to_id:
            raise ValueError(f"{token!r} is not a token of this ByteBPE")
        return self._bytes_to_id[key]

    def id_to_token(self, i: int) -> bytes:
        if i not in self._vocab:
            raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
        return self._vocab[i]

    # -- encoding -----------------------------------------------------------------------------------------

    def _encode_pretoken(self, pretoken: str) -> tuple[int, ...]:
        """Apply merges to one pre-token, always the lowest-ranked (earliest learned) adjacent pair first."""
        cached = self._cache.get(pretoken)
        if cached is not None:
            return cached
        ids = [self._byte_ids[b] for b in pretoken.encode("utf-8")]
        ranks = self._ranks
        no_merge = (len(self._merges), -1)
        while len(ids) >= 2:
            # The adjacent pair with the smallest rank; pairs that were never learned rank last.
            pairs = list(zip(ids, ids[1:]))
            best = min(pairs, key=lambda p: ranks.get(p, no_merge)[0])
            if best not in ranks:
                break
            new_id = ranks[best][1]
            merged, i = [], 0
            while i < len(ids):  # replace every occurrence, left to right ("aaa" -> "aa" "a")
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    merged.append(new_id)
                    i += 2
                else:
                    merged.append(ids[i])
                    i += 1
            ids = merged
        if len(self._cache) >= self.CACHE_SIZE:
            self._cache.clear()
        self._cache[pretoken] = result = tuple(ids)
        return result

    def _encode_pieces(self, pieces: Iterable[tuple[str, bool]], out: list[int]) -> None:
        for piece, special in pieces:
            if special:
                out.append(self._special_ids[piece])
            else:
                for pretoken in pretokenize(piece):
                    out.extend(self._encode_pretoken(pretoken))

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"encode needs a str, got {type(text).__name__}")
        check_no_surrogates(text)
        out: list[int] = []
        self._encode_pieces(split_on_special_tokens(text, self._special_re), out)
        return out

    def encode_iterable(self, texts: Iterable[str], min_chunk_chars: int = 1 << 14) -> Iterator[int]:
        """Encode a stream of strings (e.g. an open file's lines) lazily, in bounded memory.

        Yields exactly the ids that `encode("".join(texts))` would return. Chunk boundaries may fall
        anywhere, even inside a word or a special token, so text near the end of the buffer is held back
        until enough follows to be sure how it splits (see `_stable_prefix`).
        """
        buf = ""
        next_scan = min_chunk_chars
        for chunk in texts:
            if not isinstance(chunk, str):
                raise ValueError(f"encode_iterable needs str chunks, got {type(chunk).__name__}")
            buf += chunk
            if len(buf) < next_scan:
                continue
            check_no_surrogates(buf)
            out: list[int] = []
            cut = self._stable_prefix(buf, out)
            yield from out
            buf = buf[cut:]
            # If little could be emitted (one enormous word), wait for the buffer to double before rescanning,
            # so total work stays linear in the input.
            next_scan = max(min_chunk_chars, 2 * len(buf))
        yield from self.encode(buf)

    def _stable_prefix(self, buf: str, out: list[int]) -> int:
        """Encode the part of `buf` whose tokens cannot change whatever text follows; return where it ends.

        Two things can still change at the end of the buffer:
        1. special tokens: the match at position p depends on buf[p : p + longest special]. Positions from
           z = len(buf) - longest + 1 on are undecided, so we cut at z (or after a match straddling z).
        2. pre-tokens in the last ordinary piece: a regex match depends on the character after it (greedy
           runs, the lookahead in `\\s+(?!\\S)`) and on up to 3 characters from its start (contractions like
           "'ll"). With two more pre-tokens after it, all of those characters are known, so every
           pre-token except the last two is final.
        Every cut is also a place where the regex scans restart in `encode`, so encoding buf[cut:] later
        continues exactly as encoding the whole text would.
        """
        cut = max(0, len(buf) - self._max_special_len + 1) if self._special_re else len(buf)
        pieces: list[tuple[str, bool]] = []
        pos = 0
        if self._special_re is not None:
            for m in self._special_re.finditer(buf):
                if m.start() >= cut:
                    break
                if pos < m.start():
                    pieces.append((buf[pos : m.start()], False))
                pieces.append((m.group(), True))
                pos = m.end()
            cut = max(cut, pos)  # a special token that started before the cut is decided: keep it whole
        # The last ordinary piece (pos..cut) may continue past the cut: keep back its last two pre-tokens.
        pretokens = pretokenize(buf[pos:cut])
        stable = pretokens[:-2]
        self._encode_pieces(pieces, out)
        for pretoken in stable:
            out.extend(self._encode_pretoken(pretoken))
        return pos + sum(len(p) for p in stable)

    def decode(self, ids: Iterable[int]) -> str:
        """Bytes of all tokens, then UTF-8; a character cut between tokens decodes to U+FFFD."""
        token_bytes = self._token_bytes_array[as_id_array(ids, self.vocab_size)]  # (N,) of bytes objects
        return b"".join(token_bytes.tolist()).decode("utf-8", errors="replace")

    @cached_property
    def _token_bytes_array(self) -> np.ndarray:
        arr = np.empty(len(self._vocab), dtype=object)
        arr[:] = [self._vocab[i] for i in range(len(self._vocab))]
        return arr

    # -- files --------------------------------------------------------------------------------------------

    def to_gpt2_format(self) -> tuple[dict[str, int], list[tuple[str, str]]]:
        """(vocab {printable token: id}, merges [(left, right)]) in GPT-2's vocab.json/merges.txt spelling.

        This is also what `tokenizers.models.BPE(vocab, merges)` accepts with a ByteLevel pre-tokenizer.
        """
        vocab = {_to_printable(b): i for i, b in self._vocab.items()}
        merges = [(_to_printable(a), _to_printable(b)) for a, b in self._merges]
        return vocab, merges

    def save(self, path: str | os.PathLike) -> None:
        """One JSON file: kind, special tokens, vocab (in id order) and merges, GPT-2 spelling."""
        vocab, merges = self.to_gpt2_format()
        payload = {"kind": self.kind, "version": 1, "special_tokens": list(self._specials),
                   "vocab": sorted(vocab, key=vocab.__getitem__), "merges": [list(m) for m in merges]}
        atomic_write_text(path, json.dumps(payload, ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ByteBPE:
        data = read_json(path, "ByteBPE")
        if data.get("kind") != cls.kind or not isinstance(data.get("vocab"), list):
            raise ValueError(f"{path} is not a saved ByteBPE (kind={data.get('kind')!r}); "
                             "use load_tokenizer() to read any tokenizer file")
        vocab = {i: _from_printable(t, str(path)) for i, t in enumerate(data["vocab"])}
        merges = [(_from_printable(a, str(path)), _from_printable(b, str(path))) for a, b in data["merges"]]
        return cls(vocab, merges, data.get("special_tokens", []))

    @classmethod
    def from_files(cls, vocab_path: str | os.PathLike, merges_path: str | os.PathLike,
                   special_tokens: Iterable[str] = ()) -> ByteBPE:
        """Read GPT-2 style files: vocab.json {token: id} and merges.txt (one "left right" per line)."""
        vocab_json = read_json(vocab_path, "vocab.json")
        merges_path = Path(merges_path)
        if not merges_path.is_file():
            raise FileNotFoundError(f"merges file not found: {merges_path}")
        vocab = {int(i): _from_printable(t, str(vocab_path)) for t, i in vocab_json.items()}
        merges = []
        for n, line in enumerate(merges_path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip() or (n == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise ValueError(f"{merges_path}:{n}: expected 'left right', got {line!r}")
            merges.append((_from_printable(parts[0], str(merges_path)), _from_printable(parts[1], str(merges_path))))
        return cls(vocab, merges, special_tokens)
