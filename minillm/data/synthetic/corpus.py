"""Corpora with a known entropy floor: the public entry points. Survey §4.1 (pre-training data) and §2.1
(scaling laws: Chinchilla's irreducible loss E).

    >>> c = corpus("story", n_docs=1000, seed=0)
    >>> c.docs[0], c.logprobs[0]          # a story and its exact natural-log probability
    >>> c.nats_per_char                   # the floor under a character-level loss curve
    >>> c.entropy_per_token(tokenizer)    # the floor under a token-level loss curve

Why these numbers are floors. Documents are drawn independently from a distribution p that we know
exactly, and each is followed by the end symbol "\\n" (its probability is inside the logprob). For any
model q, the cross-entropy on this text, -sum log q(text) / #units, is at least the true -sum log p(text)
/ #units on average (Gibbs' inequality), whatever the units: characters, bytes or the tokens of any
tokenizer (a string's tokens are a function of the string, so its total nats do not change; only the
count we divide by does). Two caveats worth teaching: the floor assumes the model sees the whole document
(a model with a short context cannot use what scrolled out of it), and on a finite sample a model can
land a little under it by chance, not by more than noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from minillm.data.synthetic.arithmetic import ArithmeticSource
from minillm.data.synthetic.facts import FactsSource
from minillm.data.synthetic.grammar import check_int
from minillm.data.synthetic.lexicon import CHINESE, ENGLISH
from minillm.data.synthetic.generator import END, Source, take
from minillm.data.synthetic.story import BilingualSource, StorySource

_story_en = StorySource("story", ENGLISH, "English stories from a stochastic grammar with state")
_story_zh = StorySource("story_zh", CHINESE, "Chinese stories from the same grammar, Chinese surface forms")

# name -> generator. Each one has .defaults (its knobs), .description, and stream / score / support.
CORPORA: dict[str, Source] = {
    "story": _story_en,
    "story_zh": _story_zh,
    "facts": FactsSource(),
    "arithmetic": ArithmeticSource(),
    "bilingual": BilingualSource(_story_en, _story_zh),
}


def _source(name: str) -> Source:
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; valid names: {', '.join(CORPORA)}")
    return CORPORA[name]


@dataclass
class Corpus:
    """Documents and their exact log-probabilities under the generator that wrote them.

    docs do not contain the end-of-document symbol; `text()` writes it after each one. logprobs[i] is
    log p(docs[i] + END), natural log, float64, END's probability included.
    """

    docs: list[str]
    logprobs: np.ndarray
    name: str
    seed: int
    knobs: dict = field(default_factory=dict)

    def __post_init__(self):
        self.logprobs = np.asarray(self.logprobs, dtype=np.float64)
        if self.logprobs.shape != (len(self.docs),):
            raise ValueError(f"need one logprob per document: {len(self.docs)} docs, logprobs of shape "
                             f"{self.logprobs.shape}")
        if not np.all(np.isfinite(self.logprobs)) or np.any(self.logprobs > 0):
            raise ValueError("logprobs must be finite natural-log probabilities (<= 0)")

    def __len__(self) -> int:
        return len(self.docs)

    def __repr__(self) -> str:
        return (f"Corpus(name={self.name!r}, n_docs={len(self)}, seed={self.seed}, knobs={self.knobs}, "
                f"nats_per_char={self.nats_per_char:.4f})")

    def text(self, sep: str = END) -> str:
        """All documents, each followed by `sep`. Any sep that never occurs inside a document is just a
        renaming of the end symbol, so the total log-probability stays sum(logprobs)."""
        if not isinstance(sep, str) or not sep:
            raise ValueError(f"sep must be a non-empty string, got {sep!r}")
        if any(sep in d for d in self.docs):
            raise ValueError(f"sep={sep!r} occurs inside a document, so documents could not be told apart; "
                             f"use a separator that does not occur in the text (default '\\n')")
        return sep.join(self.docs) + sep

    @property
    def total_nats(self) -> float:
        """-log p(whole corpus) = sum of -logprobs (documents are independent)."""
        return float(-self.logprobs.sum())

    @property
    def n_chars(self) -> int:
        """Characters (Unicode code points) of text(), one END per document included."""
        return sum(map(len, self.docs)) + len(self.docs)

    @property
    def nats_per_char(self) -> float:
        """The entropy floor per character of this text: total nats / characters."""
        return self.total_nats / self.n_chars

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / math.log(2)

    @property
    def bits_per_byte(self) -> float:
        """Floor per UTF-8 byte: comparable across languages (a Chinese character is 3 bytes)."""
        return self.total_nats / math.log(2) / len(self.text().encode("utf-8"))

    def entropy_per_token(self, tokenizer, sep: str = END) -> float:
        """Floor per token: total nats / number of tokens `tokenizer.encode(self.text(sep))` returns.

        Accepts anything whose encode(str) gives a list of ids, or an object with `.ids` (HF tokenizers).
        A tokenizer that adds special tokens (BOS/EOS) adds them to the count too.
        """
        return entropy_per_token(self, tokenizer, sep)


def entropy_per_token(corpus: Corpus, tokenizer, sep: str = END) -> float:
    """Nats per token of `corpus` under its generator, for any tokenizer: total nats / token count."""
    encode = getattr(tokenizer, "encode", None)
    if not callable(encode):
        raise ValueError(f"tokenizer must have an encode(str) -> list[int] method, got {type(tokenizer).__name__}")
    ids = encode(corpus.text(sep))
    n_tokens = len(getattr(ids, "ids", ids))
    if n_tokens == 0:
        raise ValueError("the tokenizer returned no tokens for this corpus; check that it encodes text")
    return corpus.total_nats / n_tokens


def corpus(name: str, n_docs: int, seed: int, **knobs) -> Corpus:
    """`n_docs` documents of corpus `name` (see CORPORA) drawn with `seed`; knobs per corpus, e.g.
    corpus("story", 1000, seed=0, difficulty="hard"). The same seed always gives the same documents, and
    corpus(n) is the first n documents of sample_stream(name, seed)."""
    src = _source(name)
    n_docs = check_int("n_docs", n_docs, 1, 10**9)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    knobs = src.resolve(knobs)
    docs, logprobs = take(src.stream(seed, knobs), n_docs)
    return Corpus(docs=docs, logprobs=logprobs, name=name, seed=seed, knobs=knobs)


def sample_stream(name: str, seed: int, **knobs) -> Iterator[tuple[str, float]]:
    """Endless (doc, logprob) pairs; corpus(name, n, seed) holds the first n of them."""
    src = _source(name)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    return src.stream(seed, src.resolve(knobs))


def doc_logprob(name: str, doc: str, **knobs) -> float:
    """log p(doc + END) under corpus `name` by parsing the text alone; -inf if it cannot be generated.

    For every generated document this equals the logprob the generator reported: the grammar is
    unambiguous, so the probability of the decisions is the probability of the string."""
    src = _source(name)
    if not isinstance(doc, str):
        raise ValueError(f"doc must be a str, got {type(doc).__name__}")
    return src.score(doc, src.resolve(knobs))


def exact_distribution(name: str, limit: int = 100_000, **knobs) -> dict[str, float]:
    """{doc: logprob} over *every* document a tiny configuration can produce (probabilities sum to 1).
    Raises ValueError if there are more than `limit`, e.g. for story use difficulty=0.0, max_sentences=2."""
    src = _source(name)
    limit = check_int("limit", limit, 1, 10**8)
    return src.support(src.resolve(knobs), limit)
