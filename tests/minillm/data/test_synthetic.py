"""Tests of minillm.data.synthetic: exact log-probabilities, unambiguous grammars, entropy floors."""
import math
import re
import time
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from minillm.data import synthetic as S
from minillm.data.synthetic.grammar import Choice, enumerate_program

TINY = {  # configurations small enough to enumerate every document
    "story": dict(difficulty=0.0, max_sentences=2),
    "story_zh": dict(difficulty=0.0, max_sentences=2),
    "bilingual": dict(difficulty=0.0, max_sentences=2, p_zh=0.3),
    "facts": dict(n_people=2, max_facts=2),
    "arithmetic": dict(digits=1, ops="+-*"),
}


class CharTok:
    def encode(self, s):
        return [ord(c) for c in s]


class WordTok:
    """Words, single punctuation marks and single whitespace characters: a coarser tokenizer."""

    def encode(self, s):
        return [hash(t) for t in re.findall(r"\w+|[^\w\s]|\s", s)]


def test_registry_has_required_corpora():
    assert {"story", "story_zh", "facts", "arithmetic", "bilingual"} <= set(S.CORPORA)


@pytest.mark.parametrize("name", list(TINY))
def test_same_seed_same_corpus_other_seed_other_corpus(name):
    a, b, c = (S.corpus(name, 60, seed=s) for s in (3, 3, 4))
    assert a.docs == b.docs and np.array_equal(a.logprobs, b.logprobs)
    assert a.docs != c.docs
    assert a.logprobs.dtype == np.float64 and a.logprobs.shape == (60,)
    stream = S.sample_stream(name, seed=3)
    assert [next(stream) for _ in range(60)] == list(zip(a.docs, a.logprobs.tolist()))


@pytest.mark.parametrize("name,knobs", [("story", {}), ("story", {"difficulty": "hard"}), ("story_zh", {}),
                                        ("bilingual", {"p_zh": 0.2}), ("facts", {}), ("arithmetic", {}),
                                        ("arithmetic", {"digits": 3, "ops": "*"})])
def test_parsing_the_text_alone_gives_the_reported_logprob(name, knobs):
    # The grammar is unambiguous: reading the string back recovers the one derivation, so log p(string)
    # is exactly the sum over decisions that the generator reported.
    c = S.corpus(name, 300, seed=11, **knobs)
    scored = np.array([S.doc_logprob(name, d, **knobs) for d in c.docs])
    np.testing.assert_allclose(scored, c.logprobs, rtol=0, atol=1e-9)
    assert np.all(c.logprobs < 0)
    assert all("\n" not in d for d in c.docs)


@pytest.mark.parametrize("name,doc", [("story", "Mia was at the moon."), ("story", ""),
                                      ("arithmetic", "2+2=5"), ("arithmetic", "02+2=4"),
                                      ("arithmetic", "100+1=101"), ("arithmetic", "3+4=7\n"),
                                      ("story_zh", "Mia was at the old mill."),
                                      ("facts", "Nobody Here lives in Ashford.")])
def test_strings_outside_the_support_have_probability_zero(name, doc):
    assert S.doc_logprob(name, doc) == -math.inf


@pytest.mark.parametrize("name", list(TINY))
def test_exact_distribution_sums_to_one_and_agrees_with_parser(name):
    dist = S.exact_distribution(name, **TINY[name])
    logps = np.array(list(dist.values()))
    assert len(dist) > 20
    assert math.isclose(np.exp(logps).sum(), 1.0, abs_tol=1e-9)
    for doc, lp in list(dist.items())[::7]:
        assert S.doc_logprob(name, doc, **TINY[name]) == pytest.approx(lp, abs=1e-12)


@pytest.mark.parametrize("name", ["story", "story_zh", "facts"])
def test_distinct_derivations_never_write_the_same_string(name):
    src = S.CORPORA[name]
    knobs = src.resolve(TINY[name])
    g = src.grammar(knobs)
    texts = [t for t, _ in enumerate_program(lambda ch: src.program(ch, g), limit=100_000)]
    assert len(texts) == len(set(texts)) > 100


def test_ambiguous_choice_is_rejected():
    with pytest.raises(ValueError, match="prefix"):
        Choice(["the farm", "the farmhouse"], [1, 1])
    with pytest.raises(ValueError, match="distinct"):
        Choice(["a", "a"], [1, 1])
    with pytest.raises(ValueError, match="empty surface"):
        Choice(["", "x"], [1, 1])
    with pytest.raises(ValueError, match="> 0"):
        Choice(["x", "y"], [1, 0])


@pytest.mark.parametrize("name", ["story", "facts", "arithmetic"])
def test_empirical_frequencies_match_exact_probabilities(name):
    dist = S.exact_distribution(name, **TINY[name])
    n = 20_000
    c = S.corpus(name, n, seed=5, **TINY[name])
    assert set(c.docs) <= set(dist)
    counts = Counter(c.docs)
    docs = sorted(dist, key=dist.get, reverse=True)
    expected = np.exp([dist[d] for d in docs]) * n
    observed = np.array([counts[d] for d in docs], dtype=float)
    big = expected >= 5  # pool rare strings into one cell so the chi-square approximation holds
    exp_cells, obs_cells = expected[big], observed[big]
    if not big.all():
        exp_cells = np.append(exp_cells, expected[~big].sum())
        obs_cells = np.append(obs_cells, observed[~big].sum())
    assert stats.chisquare(obs_cells, exp_cells * obs_cells.sum() / exp_cells.sum()).pvalue > 1e-3
    # The same check fails for a wrong distribution: uniform over the support.
    uniform = np.full(len(docs), n / len(docs))
    if name != "arithmetic":  # arithmetic *is* uniform
        assert stats.chisquare(observed, uniform).pvalue < 1e-6


@pytest.mark.parametrize("name", ["story", "story_zh", "facts"])
def test_reported_entropy_matches_exact_and_plugin_estimates(name):
    dist = S.exact_distribution(name, **TINY[name])
    p = np.exp(np.array(list(dist.values())))
    h_exact = float(-(p * np.log(p)).sum())
    c = S.corpus(name, 20_000, seed=9, **TINY[name])
    nll = -c.logprobs
    assert abs(nll.mean() - h_exact) < 4 * nll.std() / math.sqrt(len(nll))
    freq = np.array(list(Counter(c.docs).values()), dtype=float) / len(c)
    plugin = -(freq * np.log(freq)).sum() + (len(freq) - 1) / (2 * len(c))  # Miller-Madow correction
    assert plugin == pytest.approx(h_exact, rel=0.02)


def test_probability_mass_of_distinct_sampled_documents_is_at_most_one():
    c = S.corpus("story", 3000, seed=2, difficulty=0.0)
    unique = dict(zip(c.docs, c.logprobs))
    assert 0 < np.exp(list(unique.values())).sum() <= 1.0
    assert len(unique) < len(c)  # easy stories repeat, so the check above has something to sum


def _bigram_cross_entropy(train: str, test: str, alpha: float = 0.1) -> float:
    vocab = {ch: i for i, ch in enumerate(sorted(set(train) | set(test)))}
    t = np.array([vocab[ch] for ch in train])
    counts = np.full((len(vocab), len(vocab)), alpha)
    np.add.at(counts, (t[:-1], t[1:]), 1.0)
    logp = np.log(counts / counts.sum(1, keepdims=True))
    s = np.array([vocab[ch] for ch in test])
    return float(-logp[s[:-1], s[1:]].mean())


@pytest.mark.parametrize("name", ["story", "story_zh", "facts"])
def test_count_bigram_model_stays_above_the_floor(name):
    train, test = S.corpus(name, 3000, seed=0), S.corpus(name, 800, seed=1)
    floor = test.nats_per_char
    ce = _bigram_cross_entropy(train.text(), test.text())
    assert 0 < floor < ce
    assert ce > floor + 0.2  # context matters: a bigram is far from the floor


def test_story_state_is_consistent():
    c = S.corpus("story", 400, seed=3, difficulty="hard")
    genders = dict(S.CORPORA["story"].lex.names)
    gave = 0
    for doc in c.docs:
        hero = doc.split(" ", 1)[0]
        pronouns = set(re.findall(r"\b(She|she|He|he)\b", doc))
        assert pronouns <= ({"She", "she"} if genders[hero] == "f" else {"He", "he"})
        held = None
        for sentence in re.split(r"(?<=\.) ", doc):
            found = re.search(r" found an? (.+?)(\.| again| at | in | with | very | without | before | all "
                              r"| that | for )", sentence)
            if found:
                assert held is None
                held = found[1]
            m = re.search(r" (?:gave|dropped) the (.+?)( to |\.| again| at | in | with | very | without "
                          r"| before | all | that | for )", sentence)
            if m:
                assert m[1] == held
                held, gave = None, gave + 1
    assert gave > 50


def test_char_tokenizer_gives_nats_per_char_and_words_scale_by_compression():
    c = S.corpus("story", 500, seed=4)
    assert c.entropy_per_token(CharTok()) == pytest.approx(c.nats_per_char, rel=1e-12)
    assert S.entropy_per_token(c, CharTok()) == c.entropy_per_token(CharTok())
    n_words = len(WordTok().encode(c.text()))
    per_word = c.entropy_per_token(WordTok())
    assert per_word == pytest.approx(c.nats_per_char * c.n_chars / n_words, rel=1e-12)
    assert per_word > 2 * c.nats_per_char
    assert c.bits_per_char == pytest.approx(c.nats_per_char / math.log(2))
    assert c.n_chars == len(c.text())

    class HFStyle:  # tokenizers.Tokenizer.encode returns an object with .ids
        def encode(self, s):
            return type("Enc", (), {"ids": list(s)})()
    assert c.entropy_per_token(HFStyle()) == pytest.approx(c.nats_per_char)


def test_bits_per_byte_counts_utf8_bytes():
    c = S.corpus("story_zh", 200, seed=0)
    assert c.bits_per_byte == pytest.approx(c.total_nats / math.log(2) / len(c.text().encode("utf-8")))
    assert c.bits_per_byte < c.bits_per_char / 2  # a Han character is 3 bytes


@pytest.mark.parametrize("name", ["story", "story_zh"])
def test_difficulty_raises_entropy_monotonically(name):
    floors = [S.corpus(name, 2500, seed=0, difficulty=d).nats_per_char for d in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(a < b for a, b in zip(floors, floors[1:])), floors
    named = [S.corpus(name, 2500, seed=0, difficulty=d).nats_per_char for d in ("easy", "default", "hard")]
    assert named == [floors[1], floors[2], floors[4]]


def test_bilingual_mixture_probability_is_in_the_logprob():
    p_zh = 0.3
    c = S.corpus("bilingual", 2000, seed=1, p_zh=p_zh)
    is_zh = np.array([not d[0].isascii() for d in c.docs])
    assert abs(is_zh.mean() - p_zh) < 4 * math.sqrt(p_zh * (1 - p_zh) / len(c))
    for doc, lp, zh in list(zip(c.docs, c.logprobs, is_zh))[:100]:
        part = S.doc_logprob("story_zh" if zh else "story", doc)
        assert lp == pytest.approx(part + math.log(p_zh if zh else 1 - p_zh), abs=1e-9)


def test_fact_world_is_seeded_and_documents_state_true_facts():
    w = S.FactWorld(seed=7, n_people=30)
    assert S.FactWorld(seed=7, n_people=30).people == w.people
    assert S.FactWorld(seed=8, n_people=30).people != w.people
    assert len(set(w.names)) == 30 and all(w.person(p.friend).name != p.name for p in w.people)
    c = S.corpus("facts", 300, seed=0, n_people=30, world_seed=7)
    patterns = {"city": r" lives in (.+)|'s home town is (.+)| has a house in (.+)",
                "birth_year": r" was born in (\d+)|'s birth year is (\d+)",
                "job": r" works as (.+)| earns a living as (.+)",
                "colour": r" likes the colour (.+)|'s favourite colour is (.+)",
                "pet": r" (?:has|keeps) a pet (.+)", "friend": r" is a friend of (.+)|'s best friend is (.+)"}
    checked = 0
    for doc in c.docs:
        subject = next(n for n in w.names if doc.startswith(n))
        for sentence in doc[:-1].split(". "):
            for attr, pat in patterns.items():
                m = re.search(pat, sentence)
                if m:
                    assert next(g for g in m.groups() if g) == w.value(subject, attr)
                    checked += 1
    assert checked > 500
    q, a = w.question(w.names[0], "city")
    assert q == f"Where does {w.names[0]} live?" and a == w.people[0].city
    # Values are fixed by the world: the true one costs 0 nats, any other makes the document impossible.
    name, city = w.names[0], w.people[0].city
    other = next(p.city for p in w.people if p.city != city)
    knobs = dict(n_people=30, world_seed=7)
    assert math.isfinite(S.doc_logprob("facts", f"{name} lives in {city}.", **knobs))
    assert S.doc_logprob("facts", f"{name} lives in {other}.", **knobs) == -math.inf
    probs = w.mention_probs(1.0)
    assert probs.sum() == pytest.approx(1.0) and probs[0] > probs[-1]


def test_every_fact_world_name_set_is_unambiguous():
    # Building the grammar checks that all 1600 full names (and "She"/"He") are prefix-free.
    c = S.corpus("facts", 20, seed=0, n_people=1600, world_seed=3)
    assert len(S.FactWorld(3, 1600).names) == 1600 and len(c) == 20


def test_bilingual_distribution_is_the_weighted_union_of_its_parts():
    knobs = dict(difficulty=0.0, max_sentences=2)
    bi = S.exact_distribution("bilingual", p_zh=0.3, **knobs)
    en, zh = S.exact_distribution("story", **knobs), S.exact_distribution("story_zh", **knobs)
    assert len(bi) == len(en) + len(zh)
    for doc, lp in list(en.items())[:50]:
        assert bi[doc] == pytest.approx(lp + math.log(0.7))
    for doc, lp in list(zh.items())[:50]:
        assert bi[doc] == pytest.approx(lp + math.log(0.3))


def test_arithmetic_logprob_is_the_operand_entropy():
    c = S.corpus("arithmetic", 500, seed=0, digits=3, ops="+")
    np.testing.assert_allclose(c.logprobs, -2 * math.log(1000))
    for d in c.docs[:50]:
        a, b, r = map(int, re.fullmatch(r"(\d+)\+(\d+)=(\d+)", d).groups())
        assert a + b == r
    assert S.corpus("arithmetic", 5, seed=0, ops="*").docs[0].count("*") == 1


def test_story_generation_is_fast():
    S.corpus("story", 10, seed=0)  # build (and cache) the grammar first
    t = time.perf_counter()
    S.corpus("story", 10_000, seed=0)
    assert time.perf_counter() - t < 10.0  # ~0.2-0.4 s here; generous for a loaded CI machine


def test_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="unknown corpus 'poems'.*story, story_zh, facts, arithmetic, bilingual"):
        S.corpus("poems", 10, seed=0)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n_docs"):
            S.corpus("story", bad, seed=0)
    with pytest.raises(ValueError, match="seed"):
        S.corpus("story", 10, seed=-1)
    with pytest.raises(ValueError, match="no knob.*'colour'.*valid knobs"):
        S.corpus("story", 10, seed=0, colour="red")
    for bad in ("medium", 1.5, -0.1, None):
        with pytest.raises(ValueError, match="difficulty"):
            S.corpus("story", 10, seed=0, difficulty=bad)
    with pytest.raises(ValueError, match="max_sentences"):
        S.corpus("story_zh", 10, seed=0, max_sentences=0)
    with pytest.raises(ValueError, match="p_zh"):
        S.corpus("bilingual", 10, seed=0, p_zh=1.0)
    with pytest.raises(ValueError, match="ops"):
        S.corpus("arithmetic", 10, seed=0, ops="+/")
    with pytest.raises(ValueError, match="digits"):
        S.corpus("arithmetic", 10, seed=0, digits=0)
    with pytest.raises(ValueError, match="n_people"):
        S.corpus("facts", 10, seed=0, n_people=1)
    with pytest.raises(ValueError, match="not in this world"):
        S.FactWorld(0, 10).person("Nobody")
    with pytest.raises(ValueError, match="unknown attribute"):
        S.FactWorld(0, 10).value(S.FactWorld(0, 10).names[0], "shoe_size")
    with pytest.raises(ValueError, match="more than limit"):
        S.exact_distribution("story", limit=1000)
    c = S.corpus("story", 5, seed=0)
    with pytest.raises(ValueError, match="occurs inside a document"):
        c.text(sep=" ")
    with pytest.raises(ValueError, match="non-empty"):
        c.text(sep="")
    with pytest.raises(ValueError, match="encode"):
        c.entropy_per_token(object())
    with pytest.raises(ValueError, match="one logprob per document"):
        S.Corpus(docs=["a"], logprobs=np.zeros(2), name="x", seed=0)
    with pytest.raises(ValueError, match="<= 0"):
        S.Corpus(docs=["a"], logprobs=np.ones(1), name="x", seed=0)
