"""The usual mistakes of lab 03's BPE exercises, simulated, so a check can name the one a wrong answer made
(Survey §4.1.2, tokenization; used by book/grading/lab03_tokenizer.py through `diagnosing`).

Each MISTAKES tuple pairs a function that computes the mistaken output from a case's arguments with the advice shown
when the student's output equals it: pair counts unweighted or once per word; a merge of the first occurrence only or
right to left; training with ties broken on ids, to the smallest pair or to the first pair seen, without
pre-tokenization, without recounting after a merge, with off-by-one ids; encoding characters instead of bytes,
splitting or shortest-matching special tokens, merging across pre-tokens, the leftmost pair first or the longest
vocabulary match; decoding token by token or dropping special tokens. `vocab_of` is the lab's id layout.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from book.grading.diagnose import Mistake

Words = dict[tuple[int, ...], int]
Merges = list[tuple[bytes, bytes]]


def vocab_of(merges: Sequence[tuple[bytes, bytes]], special_tokens: Sequence[str] = ()) -> dict[int, bytes]:
    """The lab's id layout: 0..255 bytes, 256 + r for merge r, then the special tokens (ByteBPE appends them)."""
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in merges:
        vocab[len(vocab)] = a + b
    for s in special_tokens:
        vocab[len(vocab)] = s.encode("utf-8")
    return vocab



def _counts_mistake(words: Words, *, weighted: bool = True, overlap: str = "all") -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for word, n in words.items():
        pairs = list(zip(word, word[1:]))
        if overlap == "once per word":
            pairs = list(dict.fromkeys(pairs))
        elif overlap == "non-overlapping":
            pairs, i = [], 0
            while i + 1 < len(word):
                pairs.append((word[i], word[i + 1]))
                i += 2 if word[i] == word[i + 1] else 1
        for p in pairs:
            counts[p] = counts.get(p, 0) + (n if weighted else 1)
    return counts


def _merge_word_mistake(word: tuple[int, ...], a: int, b: int, new_id: int, how: str) -> tuple[int, ...]:
    if how == "first only":
        for i in range(len(word) - 1):
            if (word[i], word[i + 1]) == (a, b):
                return (*word[:i], new_id, *word[i + 2:])
        return word
    out, i = [], len(word) - 1  # "right to left": "aaa" -> (a, new)
    while i >= 0:
        if i >= 1 and (word[i - 1], word[i]) == (a, b):
            out.append(new_id)
            i -= 2
        else:
            out.append(word[i])
            i -= 1
    return tuple(reversed(out))


def _merge_mistake(words: Words, pair: tuple[int, int], new_id: int, *, how: str) -> Words:
    return {_merge_word_mistake(w, pair[0], pair[1], new_id, how): n for w, n in words.items()}


def naive_train(text: str, vocab_size: int, *, tie: str = "bytes", pretokens: bool = True, overlap: str = "all",
                recount: bool = True, first_id: int = 256) -> tuple[dict[int, bytes], Merges]:
    """Recount-every-merge BPE training; the defaults give minillm's result, the options its usual mistakes."""
    from collections import Counter

    from minillm.data.bpe import pretokenize
    from minillm.data.bpe_train import _merge_word

    pieces = pretokenize(text) if pretokens else [text]
    words: Words = dict(Counter(tuple(p.encode("utf-8")) for p in pieces))
    vocab = {i: bytes([i]) for i in range(256)}
    merges: Merges = []
    frozen = _counts_mistake(words, overlap=overlap)  # the counts of the first step, for recount=False
    while len(merges) < vocab_size - 256:
        counts = _counts_mistake(words, overlap=overlap) if recount else frozen
        if not counts:
            break
        if tie == "bytes":
            best = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
        elif tie == "ids":
            best = max(counts, key=lambda p: (counts[p], p))
        elif tie == "smallest":
            best = min(counts, key=lambda p: (-counts[p], vocab[p[0]], vocab[p[1]]))
        else:  # "first seen": max() on the count alone keeps the first pair of equal counts
            best = max(counts, key=counts.__getitem__)
        new_id = first_id + len(merges)
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        merges.append((vocab[best[0]], vocab[best[1]]))
        words = {tuple(_merge_word(list(w), best[0], best[1], new_id)): n for w, n in words.items()}
        frozen.pop(best, None)
    return {i: vocab[i] for i in sorted(vocab)}, merges


def _encode_mistake(text: str, merges: Merges, special_tokens: Sequence[str], *, how: str) -> list[int]:
    import re

    from minillm.data.bpe import ByteBPE, pretokenize
    from minillm.data.special_tokens import special_token_pattern, split_on_special_tokens

    if how == "ord":
        return [ord(c) for c in text]
    tok = ByteBPE(vocab_of(merges), merges, special_tokens)
    specials = () if how == "no specials" else tuple(special_tokens)
    pattern = special_token_pattern(specials)
    if how == "specials in given order" and specials:  # alternatives as listed: the first one wins, not the longest
        pattern = re.compile("|".join(map(re.escape, specials)))
    by_bytes = {v: i for i, v in tok.vocab.items()}
    out: list[int] = []
    for piece, special in split_on_special_tokens(text, pattern):
        if special:
            out.append(tok.token_to_id(piece))
        elif how == "no pre-tokens":  # the whole piece merged as one word
            out += tok._encode_pretoken(piece)
        elif how == "leftmost":  # the leftmost learned pair first, whatever its rank
            for p in pretokenize(piece):
                ids = list(p.encode("utf-8"))
                learned = [i for i in range(len(ids) - 1) if (ids[i], ids[i + 1]) in tok._ranks]
                while learned:
                    i = learned[0]
                    ids[i:i + 2] = [tok._ranks[(ids[i], ids[i + 1])][1]]
                    learned = [i for i in range(len(ids) - 1) if (ids[i], ids[i + 1]) in tok._ranks]
                out += ids
        elif how == "longest match":  # greedy longest vocabulary prefix, not BPE's merge order
            for data in (p.encode("utf-8") for p in pretokenize(piece)):
                while data:
                    k = max(k for k in range(1, len(data) + 1) if data[:k] in by_bytes)
                    out.append(by_bytes[data[:k]])
                    data = data[k:]
        else:
            out += [i for p in pretokenize(piece) for i in tok._encode_pretoken(p)]
    return out


def _decode_mistake(ids: list[int], merges: Merges, special_tokens: Sequence[str], *, how: str) -> str:
    vocab = vocab_of(merges, special_tokens)
    if how == "per token":
        return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)
    return b"".join(vocab[i] for i in ids if i < 256 + len(merges)).decode("utf-8", errors="replace")


COUNT_MISTAKES: tuple[Mistake, ...] = (
    (partial(_counts_mistake, weighted=False),
     "Weight each pair by its word's count: a word seen 5 times adds 5, not 1."),
    (partial(_counts_mistake, overlap="once per word"),
     "Count every position: 'aaa' holds (a, a) twice (positions 0-1 and 1-2), not once per word."),
    (partial(_counts_mistake, overlap="non-overlapping"),
     "Count overlapping pairs too: zip(word, word[1:]) gives 'aaaa' three (a, a) pairs."),
)

MERGE_MISTAKES: tuple[Mistake, ...] = (
    (partial(_merge_mistake, how="first only"),
     "Replace every occurrence of the pair in a word, not only the first."),
    (partial(_merge_mistake, how="right to left"),
     "Scan left to right: 'aaa' merged on (a, a) is (aa, a), not (a, aa)."),
)

TRAIN_MISTAKES: tuple[Mistake, ...] = (
    (partial(naive_train, tie="ids"),
     "Break ties on the pair's BYTES (vocab[a], vocab[b]), not on its ids: merged ids are large, their bytes "
     "need not be."),
    (partial(naive_train, tie="smallest"),
     "Ties go to the GREATEST pair: max over (count, vocab[a], vocab[b])."),
    (partial(naive_train, tie="first seen"),
     "Break ties explicitly: among equal counts take the greatest (vocab[a], vocab[b]); max() on the count "
     "alone keeps whichever pair came first."),
    (partial(naive_train, pretokens=False),
     "Pre-tokenize first (pretokenize(text)) and merge within pre-tokens only: a merge never crosses a word "
     "boundary such as 'x' + ' '."),
    (partial(naive_train, overlap="once per word"),
     "Count overlapping pairs at every position ('aaa' holds (a, a) twice)."),
    (partial(naive_train, recount=False),
     "Recount the pairs after every merge (get_pair_counts on the merged words): a merge changes the counts."),
    (partial(naive_train, first_id=257), "The first merge gets id 256 (ids 0..255 are the bytes)."),
    (partial(naive_train, first_id=255), "The first merge gets id 256: id 255 is the byte 0xff."),
)

ENCODE_MISTAKES: tuple[Mistake, ...] = (
    (partial(_encode_mistake, how="ord"),
     "Start from the UTF-8 BYTES (text.encode('utf-8')), not characters: 世 is 3 bytes, not one id ord('世')."),
    (partial(_encode_mistake, how="no specials"),
     "Cut the text at the special tokens first and emit each as one id (256 + len(merges) + k): "
     "pretokenize would split '<|endoftext|>' into '<|', 'endoftext', '|>'."),
    (partial(_encode_mistake, how="specials in given order"),
     "Match the LONGEST special token first (sort them by length): '<|a|><|a|>' is one token, not two."),
    (partial(_encode_mistake, how="no pre-tokens"),
     "Pre-tokenize before merging (pretokenize(piece)): merges never cross a pre-token boundary."),
    (partial(_encode_mistake, how="leftmost"),
     "Merge the pair with the LOWEST RANK (learned earliest) first, wherever it sits in the word, not the leftmost."),
    (partial(_encode_mistake, how="longest match"),
     "BPE is not the longest vocabulary match: apply merges in the order learned (lowest rank first)."),
)

DECODE_MISTAKES: tuple[Mistake, ...] = (
    (partial(_decode_mistake, how="per token"),
     "Join all the bytes first, then decode once: a Chinese character's 3 bytes may sit in 2 tokens."),
    (partial(_decode_mistake, how="drop specials"),
     "Special tokens are in the vocabulary too: id 256 + len(merges) + k spells special_tokens[k]."),
)
