"""Synthetic corpora with an exact entropy floor, written by us, English and Chinese. Survey §4.1 (data)
and §2.1 (the irreducible loss E of the Chinchilla scaling law).

    corpus.py      Corpus, corpus(), sample_stream(), doc_logprob(), exact_distribution(), CORPORA
    grammar.py     Choice tables and the sampler / parser / enumerator that run a generator program
    generator.py   a registered generator: knobs + stream / score / support
    story.py       "story", "story_zh", "bilingual": stories with state (hero, place, object, friend)
    facts.py       "facts" and FactWorld: facts about a seeded world of people
    arithmetic.py  "arithmetic": a+b=c, where the answer costs 0 nats
    lexicon.py     the word lists
"""
from minillm.data.synthetic.corpus import CORPORA, Corpus, corpus, doc_logprob, entropy_per_token, exact_distribution, sample_stream
from minillm.data.synthetic.facts import FactWorld, Person
from minillm.data.synthetic.grammar import DIFFICULTY_LEVELS, Choice

__all__ = ["CORPORA", "Corpus", "corpus", "doc_logprob", "entropy_per_token", "exact_distribution",
           "sample_stream", "FactWorld", "Person", "DIFFICULTY_LEVELS", "Choice"]
