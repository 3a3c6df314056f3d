"""Training byte-level BPE in plain Python (Survey §4.1.2, tokenization).

BPE training is a greedy loop: count every adjacent pair of symbols in the corpus, merge the most
frequent pair into a new symbol, repeat until the vocabulary is full. Done naively, every merge
recounts the whole corpus. Two observations make it fast enough for a notebook (1 MB in seconds):

1. Words repeat. We pre-tokenize once and keep `Counter(pre-token -> count)`; a merge then touches each
   *distinct* word once, weighted by its count, instead of every occurrence.
2. A merge only changes the words that contain the merged pair. We keep an index pair -> {word ids},
   update the pair counts of those words only, and keep a max-heap of pair counts whose stale entries
   are skipped when popped ("lazy invalidation") instead of being searched for and removed.

Tie-breaking: among equally frequent pairs we merge the lexicographically greatest (left bytes,
right bytes), as in the CS336 assignment, so results are deterministic and testable.
"""

from __future__ import annotations

import heapq
import os
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from minillm.data.bpe import pretokenize
from minillm.data.special_tokens import (
    check_no_surrogates,
    check_special_tokens,
    check_vocab_size,
    special_token_pattern,
    split_on_special_tokens,
)

# A string argument is treated as a file name when it names an existing file, or when it looks like one:
# a single "word" ending in a text-file extension (then a missing file is an error, not training text).
_LOOKS_LIKE_FILE = re.compile(r"\S+\.(?:txt|text|md|json|jsonl|csv|tsv|html?|xml|log)", re.IGNORECASE)


def read_corpus(path_or_text: str | os.PathLike) -> tuple[str, str]:
    """Return (text, description) for `train_bpe`'s first argument.

    Rule: a `pathlib.Path` (any os.PathLike) is always a file. A `str` is a file if it is one line that
    names an existing file or looks like a file name ("data/corpus.txt"); any other str is the text itself.
    """
    if isinstance(path_or_text, os.PathLike):
        path = Path(path_or_text)
    elif isinstance(path_or_text, str):
        s = path_or_text
        is_path = "\n" not in s and len(s) < 4096 and (_LOOKS_LIKE_FILE.fullmatch(s) or os.path.isfile(s))
        if not is_path:
            return s, "the training text"
        path = Path(s)
    else:
        raise ValueError(f"train_bpe needs a file path or a str of text, got {type(path_or_text).__name__}")
    if not path.is_file():
        raise FileNotFoundError(f"training file not found: {path} (to train on a string that looks like a file "
                                "name, put it in a longer text)")
    data = path.read_bytes()
    try:
        return data.decode("utf-8"), str(path)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start} ({e.reason}). "
            "Re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in.txt > out.txt`)"
        ) from None


def count_pretokens(text: str, special_tokens: Iterable[str] = ()) -> Counter[str]:
    """Pre-token -> number of occurrences, after removing the special tokens (which are never merged)."""
    counts: Counter[str] = Counter()
    for piece, special in split_on_special_tokens(text, special_token_pattern(tuple(special_tokens))):
        if not special:
            counts.update(pretokenize(piece))  # Counter.update over a list runs in C
    return counts


class _Desc:
    """Heap key that orders byte pairs in *reverse*, so a min-heap pops the greatest pair first on ties."""

    __slots__ = ("pair",)

    def __init__(self, pair: tuple[bytes, bytes]):
        self.pair = pair

    def __lt__(self, other: _Desc) -> bool:
        return self.pair > other.pair


def _merge_word(word: list[int], a: int, b: int, new_id: int) -> list[int]:
    """Replace each non-overlapping (a, b) in `word`, scanning left to right."""
    out, i, n = [], 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def learn_merges(word_counts: Counter[str], vocab: dict[int, bytes], num_merges: int) -> list[tuple[bytes, bytes]]:
    """Learn up to `num_merges` merges from pre-token counts; new tokens are appended to `vocab` in place."""
    words = [list(w.encode("utf-8")) for w in word_counts]  # distinct pre-tokens as byte ids (ids 0..255 = bytes)
    freqs = list(word_counts.values())

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)  # (left id, right id) -> weighted count
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> indices of words containing it
    for wi, word in enumerate(words):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freqs[wi]
            where[pair].add(wi)

    def entry(pair: tuple[int, int]) -> tuple[int, _Desc, tuple[int, int]]:
        return (-pair_counts[pair], _Desc((vocab[pair[0]], vocab[pair[1]])), pair)

    heap = [entry(p) for p in pair_counts]
    heapq.heapify(heap)

    merges: list[tuple[bytes, bytes]] = []
    while len(merges) < num_merges:
        # Pop until an entry is current: stale ones carry a count the pair no longer has.
        best = None
        while heap:
            neg_count, _, pair = heapq.heappop(heap)
            if pair_counts.get(pair) == -neg_count:
                best = pair
                break
        if best is None:
            warnings.warn(f"BPE training ran out of pairs after {len(merges)} merges (vocab {len(vocab)} tokens): "
                          "the corpus is too small for the requested vocab_size", stacklevel=3)
            break
        a, b = best
        new_id = len(vocab)
        vocab[new_id] = vocab[a] + vocab[b]
        merges.append((vocab[a], vocab[b]))

        # Update only the words that contain (a, b): remove their old pairs, add their new ones.
        changed: set[tuple[int, int]] = set()
        for wi in where.pop(best):
            old, f = words[wi], freqs[wi]
            new = _merge_word(old, a, b, new_id)
            old_pairs, new_pairs = list(zip(old, old[1:])), list(zip(new, new[1:]))
            for p in old_pairs:
                pair_counts[p] -= f
            for p in new_pairs:
                pair_counts[p] += f
                where[p].add(wi)
            for p in set(old_pairs).difference(new_pairs):
                if p in where:
                    where[p].discard(wi)
            changed.update(old_pairs)
            changed.update(new_pairs)
            words[wi] = new
        for p in changed:
            if pair_counts[p] > 0:
                heapq.heappush(heap, entry(p))
            else:
                del pair_counts[p]
                where.pop(p, None)
    return merges


def train_bpe(
    path_or_text: str | os.PathLike, vocab_size: int, special_tokens: Iterable[str] = ()
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train byte-level BPE. Returns (vocab {id: bytes}, merges [(left, right)] in the order learned).

    path_or_text: a file (os.PathLike, or a str naming/looking like a file: see `read_corpus`) or the text.
    vocab_size: total ids including the 256 bytes and the special tokens; at least 256 + len(special_tokens).
    Id layout: 0..255 single bytes, then the special tokens in the given order, then the merges.
    Build a tokenizer from the result with `ByteBPE(vocab, merges, special_tokens)`.
    """
    specials = check_special_tokens(special_tokens)
    for s in specials:
        if len(s.encode("utf-8")) == 1:
            raise ValueError(f"special token {s!r} is a single byte, which already has its own id among the 256 "
                             "byte tokens; use a multi-character special token such as '<|endoftext|>'")
    check_vocab_size(vocab_size, len(specials))
    text, source = read_corpus(path_or_text)
    check_no_surrogates(text, source)
    counts = count_pretokens(text, specials)
    if not counts:
        raise ValueError(f"cannot train BPE: {source} is empty (or holds only special tokens); pass some text")

    vocab = {i: bytes([i]) for i in range(256)}
    for s in specials:
        vocab[len(vocab)] = s.encode("utf-8")
    merges = learn_merges(counts, vocab, vocab_size - len(vocab))
    return vocab, merges
