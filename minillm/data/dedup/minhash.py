"""MinHash signatures: short fingerprints whose agreement estimates Jaccard similarity (Survey §4.1.2).

Near-duplicate documents (a copy with a few words edited, a page with a different date line) defeat exact
hashing. The standard tool, used for GPT-3, The Pile, RefinedWeb and most crawls since, is MinHash
(Broder, 1997). A document becomes the *set* of its shingles (word or character n-grams), and the
similarity of two documents is the Jaccard similarity of their sets, |A ∩ B| / |A ∪ B|.

For a random hash function h, P[min h(A) == min h(B)] = J(A, B): the smallest hashed element of A ∪ B
is equally likely to be any element of the union, and both minima agree exactly when it lies in A ∩ B.
With P independent hash functions, the fraction of agreeing minima (`estimate_jaccard`) is an unbiased
estimate of J with standard deviation sqrt(J (1 - J) / P): 0.044 at J = 0.5 with P = 128.

The hash functions here are the universal family h_p(x) = (a_p * x + b_p) mod M with M = 2^31 - 1 (a
Mersenne prime), a_p uniform in [1, M) and b_p in [0, M), applied to 32-bit CRC hashes x of the shingles.
a_p x + b_p < 2^63, so the arithmetic is exact in uint64, and x -> h_p(x) is a bijection of the residues
mod M: two shingles tie for the minimum only if their hashes are equal mod M (~2^-31 per pair).
Why not the 61-bit prime 2^61 - 1 that many MinHash codes use: with 32-bit x its a_p must be drawn from
the full [1, 2^61) for the family to mix, and a_p x then needs 93 bits (uint64 overflows silently). Keeping
a_p < 2^32 to avoid the overflow breaks the estimate: a_p x + b_p then wraps around 2^61 - 1 at most 7
times, so every h_p orders the shingles almost like x itself, all P minima pick nearly the same shingle,
and a Jaccard of 0.27 can be estimated as 1.0 (the accuracy test in tests/test_dedup_minhash.py fails).

    hashes = [shingle_hashes(t, n=5) for t in texts]  # list of (S_d,) uint64
    a, b = permutations(num_perm=128, seed=1)            # (P,), (P,)
    sig = minhash_signatures(hashes, a, b)                # (D, P) uint64
    estimate_jaccard(sig[0], sig[1])                      # ~ jaccard(hashes[0], hashes[1])
"""
from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

from minillm.data.dedup._checks import check_int, check_text, check_unit, encode_utf8

MERSENNE_PRIME = (1 << 31) - 1
MAX_HASH = (1 << 64) - 1  # the signature of an empty set: larger than any (a*x + b) mod MERSENNE_PRIME
_M = np.uint64(MERSENNE_PRIME)
_M32 = np.uint32(MERSENNE_PRIME)
_EMPTY = np.empty(0, dtype=np.int64)


def shingle_spans(text: str, n: int = 5, unit: str = "word", pad_short: bool = True
                  ) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The UTF-8 bytes the shingles are cut from, and each shingle's (start, end) byte offsets.

    unit="word": the words of `text.split()` joined by single spaces, so shingle i is words i..i+n-1
    joined by " " and layout never matters. unit="char": `text` as is, shingle i is code points i..i+n-1.
    Offsets come from numpy (spaces, UTF-8 lead bytes), so no Python loop runs over words or characters.
    A text with fewer than n units gives one shingle of the whole text if pad_short, else none; an empty
    text (no words / no characters) gives none. Returns (buf, starts, ends), starts and ends (K,) int64,
    one per position (repeated shingles are repeated here).
    """
    check_text(text)
    check_int(n, "n")
    check_unit(unit)
    if unit == "word":
        words = text.split()
        if not words:
            return b"", _EMPTY, _EMPTY
        buf = encode_utf8(" ".join(words))
        # A space byte never occurs inside a UTF-8 multi-byte character, so it marks word boundaries.
        spaces = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 0x20)  # (W-1,)
        starts = np.concatenate(([0], spaces + 1))                           # (W,) first byte of word w
        ends = np.concatenate((spaces, [len(buf)]))                           # (W,) one past its last byte
    else:
        buf = encode_utf8(text)
        if not buf:
            return b"", _EMPTY, _EMPTY
        # Code points start at every byte that is not a UTF-8 continuation byte (10xxxxxx).
        starts = np.flatnonzero((np.frombuffer(buf, dtype=np.uint8) & 0xC0) != 0x80)  # (C,)
        ends = np.append(starts[1:], len(buf))                                         # (C,)
    units = len(starts)
    if units < n and not pad_short:
        return buf, _EMPTY, _EMPTY
    k = max(units - n + 1, 1)    # number of shingle positions
    last = min(n, units) - 1     # shingle i ends where unit i + last ends
    return buf, starts[:k].astype(np.int64), ends[last:last + k].astype(np.int64)


def shingles(text: str, n: int = 5, unit: str = "word") -> list[str]:
    """The distinct shingle strings of `text`, in order of first appearance (a readable reference for
    `shingle_hashes`; also what other MinHash libraries are fed, e.g. in bench/dedup_speed.py)."""
    buf, starts, ends = shingle_spans(text, n, unit)
    return list(dict.fromkeys(buf[s:e].decode("utf-8") for s, e in zip(starts.tolist(), ends.tolist())))


def shingle_hashes(text: str, n: int = 5, unit: str = "word") -> np.ndarray:
    """Sorted distinct 32-bit hashes of the shingles of `text`, as uint64: shape (S,), S <= #positions.

    Each shingle is hashed with zlib.crc32 of its UTF-8 bytes (words joined by single spaces for
    unit="word", the characters as they are for unit="char"). A text shorter than n units gives one
    shingle of the whole text; an empty text gives an empty array. Two different shingles can share a
    32-bit hash (rarely: ~S^2 / 2^33 collisions per document), which only merges them in the set.

    Cost: one crc32 call per shingle position on a slice of one shared buffer (no string is built per
    shingle), about 0.1-0.2 µs each, then one np.unique: linear in the text length.
    """
    buf, starts, ends = shingle_spans(text, n, unit)
    if not len(starts):
        return np.empty(0, dtype=np.uint64)
    view, crc = memoryview(buf), zlib.crc32
    hashes = np.fromiter((crc(view[s:e]) for s, e in zip(starts.tolist(), ends.tolist())),
                         dtype=np.uint64, count=len(starts))                            # (K,)
    return np.unique(hashes)                                                              # (S,)


def permutations(num_perm: int = 128, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The P hash functions h_p(x) = (a_p x + b_p) mod MERSENNE_PRIME as two (P,) uint64 arrays.

    Drawn from np.random.default_rng(seed): first a (a_p in [1, M)), then b (b_p in [0, M)), M =
    MERSENNE_PRIME = 2^31 - 1. For x < 2^32, a_p x + b_p < 2^31 * 2^32 = 2^63: no uint64 overflow.
    """
    check_int(num_perm, "num_perm")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    rng = np.random.default_rng(seed)
    a = rng.integers(1, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)  # (P,) a = 0 would make h constant
    b = rng.integers(0, MERSENNE_PRIME, size=num_perm, dtype=np.uint64)  # (P,)
    return a, b


def _check_perm(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"a and b must be two 1-D arrays of the same non-zero length, got shapes {a.shape} "
                         f"and {b.shape}; make them with permutations(num_perm, seed)")
    if a.dtype.kind not in "ui" or b.dtype.kind not in "ui":
        raise TypeError(f"a and b must be integer arrays, got {a.dtype} and {b.dtype}")
    if a.min() < 1 or a.max() >= MERSENNE_PRIME or b.min() < 0 or b.max() >= MERSENNE_PRIME:
        raise ValueError("a must lie in [1, 2^31 - 1) and b in [0, 2^31 - 1) (residues mod MERSENNE_PRIME, so "
                         "a*x + b cannot overflow uint64); make them with permutations(num_perm, seed)")
    return a.astype(np.uint64), b.astype(np.uint64)


def _flatten(hash_sets: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All hashes end to end (S,) uint64, and each document's length (D,) int64."""
    if isinstance(hash_sets, np.ndarray) or not isinstance(hash_sets, Sequence):
        raise TypeError("hash_sets must be a list with one 1-D array of shingle hashes per document, got "
                        f"{type(hash_sets).__name__}; make each with shingle_hashes(text)")
    if len(hash_sets) == 0:
        raise ValueError("hash_sets is empty: pass one array of shingle hashes per document")
    arrays = []
    for d, h in enumerate(hash_sets):
        h = np.asarray(h)
        if h.ndim != 1:
            raise ValueError(f"hash_sets[{d}] must be 1-D, got shape {h.shape}")
        if h.size and (h.dtype.kind not in "ui" or h.min() < 0):
            raise ValueError(f"hash_sets[{d}] must hold non-negative integers (32-bit shingle hashes), "
                             f"got dtype {h.dtype}")
        arrays.append(h.astype(np.uint64, copy=False))
    x = np.concatenate(arrays)                                                   # (S,)
    if x.size and x.max() >= 1 << 32:
        raise ValueError("shingle hashes must be < 2^32 (a*x + b would overflow uint64); "
                         "use shingle_hashes(), which returns 32-bit CRC hashes")
    return x, np.array([len(h) for h in arrays], dtype=np.int64)


def minhash_signatures(hash_sets: Sequence[np.ndarray], a: np.ndarray, b: np.ndarray,
                       chunk: int = 2048) -> np.ndarray:
    """MinHash signatures of D sets at once: sig[d, p] = min over x in hash_sets[d] of (a_p x + b_p) mod M.

    Returns (D, P) uint64; an empty set's row is all MAX_HASH. Reference (the definition, slow):

        sig[d, p] = min(((int(a[p]) * int(x) + int(b[p])) % MERSENNE_PRIME) for x in hash_sets[d])

    One pass over all documents, no loop over documents or shingles: the S shingle hashes are concatenated,
    each block of `chunk` of them is hashed by all P functions at once as a (P, chunk) array (about
    24 * P * chunk bytes of buffers: 6 MiB by default), and np.minimum.reduceat takes the minimum over each
    document's columns; a document cut by a block boundary gets the minimum of its pieces. The (P, chunk)
    layout makes each document's values contiguous, so the reduction is a fast contiguous scan.
    """
    x, lengths = _flatten(hash_sets)  # (S,), (D,)
    a, b = _check_perm(a, b)          # (P,), (P,)
    check_int(chunk, "chunk")
    D, P, S = len(lengths), len(a), len(x)
    # (a x + b) mod M == (a (x mod M) + b) mod M, and with x < M: y = a x + b <= (M - 1)^2 + M - 1 < 2^62.
    x = x % _M                                             # (S,)
    a, b = a[:, None], b[:, None]                          # (P, 1)
    sig = np.full((D, P), 0xFFFFFFFF, dtype=np.uint32)     # (D, P) every residue is < M < 2^32 - 1
    nonempty = np.flatnonzero(lengths)                     # empty documents keep the sentinel
    ends = np.cumsum(lengths)[nonempty]                    # (D',) one past each document's last hash
    starts = ends - lengths[nonempty]                      # (D',)
    c = min(chunk, S)
    y, t = np.empty((P, c), dtype=np.uint64), np.empty((P, c), dtype=np.uint64)  # reused: no allocation per block
    z, w = np.empty((P, c), dtype=np.uint32), np.empty((P, c), dtype=np.uint32)
    for lo in range(0, S, chunk):
        hi = min(lo + chunk, S)
        yc, tc, zc, wc = y[:, :hi - lo], t[:, :hi - lo], z[:, :hi - lo], w[:, :hi - lo]
        np.multiply(a, x[None, lo:hi], out=yc)        # (P, c) exact in uint64
        yc += b
        # y mod M without a division: y = q 2^31 + r with r < 2^31, and 2^31 = 1 (mod M), so y = q + r
        # (mod M). Here q < 2^31 too, so z = q + r < 2^32 fits uint32, and one conditional subtraction of M
        # finishes: min(z, z - M) does it without a branch, because z - M wraps around when z < M.
        np.right_shift(yc, 31, out=tc)
        yc &= _M
        yc += tc
        np.copyto(zc, yc, casting="unsafe")            # exact: every value is < 2^32
        np.subtract(zc, _M32, out=wc)
        np.minimum(zc, wc, out=zc)
        # Documents overlapping [lo, hi): the first whose end is past lo up to the last starting before hi.
        first = np.searchsorted(ends, lo, side="right")
        last = np.searchsorted(starts, hi, side="left")
        seg = np.maximum(starts[first:last], lo) - lo                  # (k,) increasing column offsets
        part = np.minimum.reduceat(zc, seg, axis=1)                    # (P, k)
        docs = nonempty[first:last]
        sig[docs] = np.minimum(sig[docs], part.T)
    out = sig.astype(np.uint64)                                        # (D, P)
    out[lengths == 0] = MAX_HASH
    return out


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float | np.ndarray:
    """Fraction of agreeing signature entries: an unbiased estimate of the Jaccard similarity.

    sig_a, sig_b: (P,) or (..., P) arrays of the same shape, from the same permutations. Returns a float
    for 1-D inputs, else an array over the leading axes.
    """
    sig_a, sig_b = np.asarray(sig_a), np.asarray(sig_b)
    if sig_a.shape != sig_b.shape or sig_a.ndim == 0 or sig_a.shape[-1] == 0:
        raise ValueError(f"signatures must have the same non-empty shape, got {sig_a.shape} and {sig_b.shape}")
    est = np.mean(sig_a == sig_b, axis=-1)
    return float(est) if est.ndim == 0 else est


def jaccard(set_a: np.ndarray, set_b: np.ndarray) -> float:
    """Exact Jaccard similarity |A ∩ B| / |A ∪ B| of two collections of hashes (duplicates ignored).

    Two empty sets count as identical (1.0), matching their identical all-MAX_HASH signatures.
    """
    a, b = np.unique(np.asarray(set_a)), np.unique(np.asarray(set_b))
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return 1.0 if union == 0 else inter / union
