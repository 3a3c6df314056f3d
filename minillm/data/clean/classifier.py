"""A fastText-like quality classifier (Survey §4.1.2, "Quality filtering", the classifier-based approach:
train a binary classifier on high-quality text as positives and web text as negatives, then keep the pages
it scores as high quality; GPT-3, PaLM and GLaM filtered this way).

Model, as in fastText (Joulin et al. 2017, "Bag of Tricks for Efficient Text Classification"):

* features: lower-cased word unigrams and bigrams, and character 3..5-grams of the text, each hashed
  into one of `n_buckets` rows (the "hashing trick": no vocabulary to store, unseen n-grams still map to
  a row). Chinese characters count as one-character words, since Chinese has no spaces;
* a document is the mean of its features' embeddings (torch EmbeddingBag, mode="mean"), then a linear
  layer gives one logit; trained with logistic loss and Adam, seeded, a few epochs.

Hashes must be stable across runs and machines, so never Python's salted hash(). Every n-gram here is a
polynomial hash of its code points, computed for all substrings of a document at once from prefix sums
in wrapping uint64 arithmetic (h(s, e) = sum_j cp_j B^(e-1-j) mod 2^64), then mixed with SplitMix64's
finalizer and a salt per feature kind: no Python loop over characters or words.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from minillm.data.clean._common import check_float, check_int, check_texts, codepoints, is_han, is_space

_B = np.uint64(0x100000001B3)                       # odd base (FNV prime); odd -> invertible mod 2^64
_B_INV = np.uint64(pow(int(_B), -1, 2**64))
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
SALT_WORD, SALT_BIGRAM, SALT_CHAR = 1, 2, 10        # char n-grams use SALT_CHAR + n


def _salt(k: int) -> np.uint64:
    """A distinct 64-bit offset per feature kind (computed on Python ints: no scalar overflow warning)."""
    return np.uint64(k * int(_GOLDEN) % 2**64)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer: spreads similar inputs over all 64 bits (uint64 arrays wrap, as intended)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _powers(base: np.uint64, n: int) -> np.ndarray:
    """(n,) base**0 .. base**(n-1) mod 2^64."""
    p = np.full(n, base, dtype=np.uint64)
    p[0] = 1
    return np.cumprod(p, dtype=np.uint64)


def substring_hashes(cp: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(K,) uint64 polynomial hash of each cp[starts[k]:ends[k]] (stable; equal strings, equal hashes)."""
    L = len(cp)
    # prefix[i] = sum_{j<i} cp_j B^(L-j): a cumsum, because every term carries its own power.
    prefix = np.concatenate([np.zeros(1, np.uint64), np.cumsum(cp.astype(np.uint64) * _powers(_B, L + 1)[L:0:-1],
                                                              dtype=np.uint64)])
    inv = _powers(_B_INV, L + 2)                     # B^-(L-e+1) turns B^(L-j) into B^(e-1-j)
    h = (prefix[ends] - prefix[starts]) * inv[L - ends + 1]
    return h ^ ((ends - starts).astype(np.uint64) * _GOLDEN)   # length too: "" and "\0" differ


def word_spans(cp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the words of a code point array: runs of non-space characters, and every Chinese
    character on its own."""
    tok, han = ~is_space(cp), is_han(cp)
    prev_tok = np.concatenate([[False], tok[:-1]])
    next_tok = np.concatenate([tok[1:], [False]])
    prev_han = np.concatenate([[False], han[:-1]])
    next_han = np.concatenate([han[1:], [False]])
    starts = np.flatnonzero(tok & (~prev_tok | han | prev_han))
    ends = np.flatnonzero(tok & (~next_tok | han | next_han)) + 1
    return starts, ends


def hashed_features(text: str, n_buckets: int = 2**18, word_ngrams: int = 2,
                    char_ngrams: tuple[int, int] = (3, 5)) -> np.ndarray:
    """(F,) int64 bucket ids of the text's word 1..word_ngrams-grams and char n-grams (n in char_ngrams)."""
    cp = codepoints(text.lower())
    if len(cp) == 0:
        return np.zeros(0, dtype=np.int64)
    starts, ends = word_spans(cp)
    parts = []
    words = substring_hashes(cp, starts, ends)                                  # (W,)
    parts.append(_mix(words + _salt(SALT_WORD)))
    for n in range(2, word_ngrams + 1):
        if len(words) >= n:
            h = words[: len(words) - n + 1].copy()
            for j in range(1, n):                                                # n-1 vectorized passes
                h = _mix(h) ^ words[j: len(words) - n + 1 + j]
            parts.append(_mix(h + _salt(SALT_BIGRAM + n - 2)))
    lo, hi = char_ngrams
    for n in range(lo, hi + 1):
        if len(cp) >= n:
            s = np.arange(len(cp) - n + 1)
            parts.append(_mix(substring_hashes(cp, s, s + n) + _salt(SALT_CHAR + n)))
    return (np.concatenate(parts) % np.uint64(n_buckets)).astype(np.int64)


class _FastTextModel(nn.Module):
    def __init__(self, n_buckets: int, dim: int, generator: torch.Generator):
        super().__init__()
        # sparse=True: a step touches only the rows of the batch's n-grams, not all n_buckets rows.
        self.emb = nn.EmbeddingBag(n_buckets, dim, mode="mean", sparse=True)
        self.out = nn.Linear(dim, 1)
        with torch.no_grad():   # fastText's init: uniform(-1/dim, 1/dim) embeddings, zero output layer
            self.emb.weight.uniform_(-1.0 / dim, 1.0 / dim, generator=generator)
            self.out.weight.zero_()
            self.out.bias.zero_()

    def forward(self, flat: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(flat, offsets)).squeeze(-1)      # (B,) logits


class QualityClassifier:
    """Binary quality classifier: labels 1 = clean (keep), 0 = junk. `predict_proba` gives P(clean).

    >>> clf = QualityClassifier(epochs=5).fit(clean_docs + junk_docs, [1] * len(clean_docs) + [0] * len(junk_docs))
    >>> clf.predict(["Mia found a red key."])
    """

    def __init__(self, n_buckets: int = 2**18, dim: int = 16, word_ngrams: int = 2,
                 char_ngrams: tuple[int, int] = (3, 5), epochs: int = 5, lr: float = 0.05,
                 batch_size: int = 32, seed: int = 0):
        self.n_buckets = check_int(n_buckets, "n_buckets", 2, 2**26)
        self.dim = check_int(dim, "dim", 1, 1024)
        self.word_ngrams = check_int(word_ngrams, "word_ngrams", 1, 5)
        if (not isinstance(char_ngrams, tuple) or len(char_ngrams) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in char_ngrams)
                or not 1 <= char_ngrams[0] <= char_ngrams[1] <= 10):
            raise ValueError(f"char_ngrams must be a (min_n, max_n) tuple with 1 <= min_n <= max_n <= 10, "
                             f"got {char_ngrams!r}")
        self.char_ngrams = char_ngrams
        self.epochs = check_int(epochs, "epochs", 1, 1000)
        self.lr = check_float(lr, "lr", 0.0, 10.0, lo_open=True)
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.seed = check_int(seed, "seed", 0)
        self.model: _FastTextModel | None = None
        self.history: list[float] = []      # mean training loss per epoch

    def _features(self, texts: list[str]) -> list[torch.Tensor]:
        return [torch.from_numpy(hashed_features(t, self.n_buckets, self.word_ngrams, self.char_ngrams))
                for t in texts]

    @staticmethod
    def _bag(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.tensor([len(f) for f in feats])
        offsets = torch.cumsum(lengths, 0) - lengths                              # (B,) start of each bag
        return torch.cat(feats), offsets

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> "QualityClassifier":
        """Train from scratch on `texts` with labels 1 (clean) / 0 (junk); both classes are required."""
        texts = check_texts(texts)
        y = np.asarray(labels)
        if y.shape != (len(texts),) or not np.isin(y, (0, 1)).all():
            raise ValueError(f"labels must be {len(texts)} values, each 1 (clean) or 0 (junk)")
        if len(np.unique(y)) < 2:
            raise ValueError("labels hold only one class: the classifier needs clean (1) and junk (0) examples")
        feats = self._features(texts)
        target = torch.as_tensor(y, dtype=torch.float32)
        g = torch.Generator().manual_seed(self.seed)
        self.model = _FastTextModel(self.n_buckets, self.dim, g)
        # Adam for the dense output layer, its sparse variant for the embedding table (same update rule,
        # applied to the rows a batch touches): a dense step over 2^18 x dim rows would dominate the time.
        opts = [torch.optim.SparseAdam(list(self.model.emb.parameters()), lr=self.lr),
                torch.optim.Adam(list(self.model.out.parameters()), lr=self.lr)]
        loss_fn = nn.BCEWithLogitsLoss()
        self.history = []
        for _ in range(self.epochs):
            order = torch.randperm(len(texts), generator=g)
            total = 0.0
            for b in range(0, len(texts), self.batch_size):
                idx = order[b: b + self.batch_size].tolist()
                flat, offsets = self._bag([feats[i] for i in idx])
                loss = loss_fn(self.model(flat, offsets), target[idx])
                for opt in opts:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                for opt in opts:
                    opt.step()
                total += loss.item() * len(idx)
            self.history.append(total / len(texts))
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(D,) float64 P(clean) of each text (a text with no features gets the model's bias alone)."""
        if self.model is None:
            raise ValueError("this QualityClassifier is not fitted yet: call fit(texts, labels) first")
        texts = check_texts(texts)
        feats = self._features(texts)
        out = np.empty(len(texts))
        with torch.no_grad():
            for b in range(0, len(texts), 256):
                flat, offsets = self._bag(feats[b: b + 256])
                out[b: b + 256] = torch.sigmoid(self.model(flat, offsets)).double().numpy()
        return out

    def predict(self, texts: Sequence[str], threshold: float = 0.5) -> np.ndarray:
        """(D,) int64: 1 where P(clean) >= threshold (keep), else 0."""
        threshold = check_float(threshold, "threshold", 0.0, 1.0)
        return (self.predict_proba(texts) >= threshold).astype(np.int64)
