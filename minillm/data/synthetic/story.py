"""The "story world": short stories from a stochastic grammar with state, English and Chinese, and their
bilingual mixture. Survey §4.1 (data) and §2.1 (the irreducible loss E under a scaling-law curve).

A story follows one hero. The hero's name, the current place, the object in the hero's hands and the
hero's friend are *state*: they change which sentences may come next and what they say. Examples of
what a model can learn only from context (a bigram model cannot):
  - "the red key" in "Mia gave the red key to Tom." is fixed by an earlier "Mia found a red key." (0 nats);
  - "She" vs "He" is fixed by the hero's name; nobody walks to the place they already are;
  - what one finds or sees depends on where one is (each place has its own preferences);
  - one can only give or drop something while holding it, only find something with empty hands.
Everything random is a decision from an explicit Zipf-weighted table (grammar.Choice), so the exact
log-probability of every story is known. `difficulty` (0..1, or easy/default/hard) sets how many names,
places, objects, ... are in play and how flat their Zipf weights are, which moves the entropy floor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from minillm.data.synthetic.grammar import Choice, check_float, check_int, parse_difficulty, zipf_weights
from minillm.data.synthetic.lexicon import StoryLexicon
from minillm.data.synthetic.generator import END, ProgramSource

P_END = 0.15          # chance the story stops after each sentence: ~6 sentences on average
P_NAME = 0.35         # chance a sentence names the hero rather than using a pronoun
P_NO_ADJECTIVE = 0.4  # chance an object comes without an adjective
P_NO_ADVERB = 0.5     # chance an event comes without an adverb
FRIEND_BOOST = 4.0    # the hero gives things to the friend they met 4x more often than to anyone else
# How often each kind of event happens, before removing those the state forbids.
EVENT_WEIGHTS = {"walk": 3.0, "find": 3.0, "give": 3.0, "drop": 1.0, "meet": 2.0, "feel": 2.0, "see": 2.0,
                 "eat": 1.5, "smile": 2.0, "sing": 0.5}


def _size(n_max: int, lo: int, d: float) -> int:
    """How many entries of a word list are in play at difficulty d (lo at d=0, all of them at d=1)."""
    return lo + round(d * (n_max - lo))


@dataclass
class StoryGrammar:
    """All Choice tables of one (language, difficulty, max_sentences); built once, shared by all docs."""

    lex: StoryLexicon
    max_sentences: int
    zipf_s: float
    names: Choice
    genders: list[str]
    openings: Choice
    places: Choice
    next_by_hero: list[Choice]          # option 0 ends the story; the others start a sentence
    events: dict                        # (holding, has_friend) -> Choice over event heads
    event_names: dict                   # (holding, has_friend) -> event name of each option
    places_except: list[Choice]         # where one can walk from each place
    place_ids_except: list[list[int]]
    objects_at: list[Choice]            # indefinite noun phrases, place-dependent preferences
    object_defs: list[list[str]]        # the matching definite noun phrases ("the red key")
    sights_at: list[Choice]
    feelings: Choice
    foods: Choice
    codas: Choice
    others: list[Choice]                # everyone but the hero
    other_ids: list[list[int]]
    _give: dict = field(default_factory=dict)

    def give_targets(self, hero: int, friend: int) -> Choice:
        """Like others[hero] but the friend (if any) is FRIEND_BOOST times likelier; cached per pair."""
        key = (hero, friend)
        if key not in self._give:
            ids = self.other_ids[hero]
            w = zipf_weights(len(self.genders), self.zipf_s)[ids]
            w = np.where(np.asarray(ids) == friend, w * FRIEND_BOOST, w)
            self._give[key] = Choice(self.others[hero].surfaces, w)
        return self._give[key]


def _probs(w: np.ndarray) -> np.ndarray:
    return w / w.sum()


def _next_sentence_tables(lex, names, genders, conn, conn_p) -> list[Choice]:
    """Per hero: stop (END) or start a sentence with sep + connective + (name | pronoun).

    Continue-or-stop is folded into the first words of the next sentence so that every decision writes
    visible text: a decision "continue" that wrote "" would be a prefix of "\n" and so ambiguous."""
    tables = []
    for name, g in zip(names, genders):
        surf, w = [END], [P_END]
        for c, cp in zip(conn, conn_p):
            pronoun = lex.pronoun_mid[g] if c else lex.pronoun_start[g]
            surf += [lex.sentence_sep + c + name, lex.sentence_sep + c + pronoun]
            w += [(1 - P_END) * cp * P_NAME, (1 - P_END) * cp * (1 - P_NAME)]
        tables.append(Choice(surf, w))
    return tables


def _event_tables(lex, adverbs, adverb_p) -> tuple[dict, dict]:
    """(holding, has_friend) -> Choice over "[adverb] event head", and the event name of each option."""
    events, names = {}, {}
    for holding in (False, True):
        for has_friend in (False, True):
            allowed = [e for e in EVENT_WEIGHTS
                       if not (e == "find" and holding) and not (e in ("give", "drop") and not holding)
                       and not (e == "smile" and not has_friend)]
            surf, w, kinds = [], [], []
            for e in allowed:  # " walked to " | " slowly walked to " ... (no "calmly felt")
                options = [("", P_NO_ADVERB)] + ([] if e == "feel" else
                                                 list(zip(adverbs, (1 - P_NO_ADVERB) * adverb_p)))
                total = sum(x for _, x in options)
                for adverb, x in options:
                    surf.append(adverb + lex.events[e][0])
                    w.append(EVENT_WEIGHTS[e] * x / total)
                    kinds.append(e)
            events[holding, has_friend], names[holding, has_friend] = Choice(surf, w), kinds
    return events, names


def build_story_grammar(lex: StoryLexicon, difficulty: float, max_sentences: int) -> StoryGrammar:
    d = difficulty
    s = 1.2 - 0.6 * d  # Zipf exponent: flatter (more uncertain) choices when harder
    zipf = lambda n: zipf_weights(n, s)  # noqa: E731

    def first(words, lo=2):  # the words in play at this difficulty
        return list(words[:_size(len(words), lo, d)])

    def table(words):
        words = first(words)
        return Choice(words, zipf(len(words)))

    names, genders = zip(*first(lex.names))
    places, nouns, adjs, sights = first(lex.places), first(lex.nouns), first(lex.adjectives, 1), first(lex.sights)
    adverbs, conn = first(lex.adverbs, 1), first(lex.connectives)
    n_names, n_places, n_nouns = len(names), len(places), len(nouns)
    events, event_names = _event_tables(lex, adverbs, _probs(zipf(len(adverbs))))

    place_w = zipf(n_places)
    place_ids_except = [[q for q in range(n_places) if q != p] for p in range(n_places)]

    # What one finds or sees depends on the place: its noun (sight) ranks are rotated by 3 per place.
    adj_p = np.concatenate([[P_NO_ADJECTIVE], (1 - P_NO_ADJECTIVE) * _probs(zipf(len(adjs)))])
    objects_at, object_defs, sights_at = [], [], []
    for p in range(n_places):
        noun_w = zipf(n_nouns)[(np.arange(n_nouns) - 3 * p) % n_nouns]
        pairs = [(a, k) for a in range(len(adjs) + 1) for k in range(n_nouns)]  # adjective 0 = none
        adj = lambda a: adjs[a - 1] if a else None  # noqa: E731
        objects_at.append(Choice([lex.indefinite(adj(a), nouns[k]) for a, k in pairs],
                                 [adj_p[a] * noun_w[k] for a, k in pairs]))
        object_defs.append([lex.definite(adj(a), nouns[k]) for a, k in pairs])
        sights_at.append(Choice(sights, zipf(len(sights))[(np.arange(len(sights)) - 3 * p) % len(sights)]))

    other_ids = [[j for j in range(n_names) if j != h] for h in range(n_names)]
    name_w = zipf(n_names)
    return StoryGrammar(
        lex=lex, max_sentences=max_sentences, zipf_s=s, names=Choice(names, name_w), genders=list(genders),
        openings=table([o for o, _ in lex.openings]), places=Choice(places, place_w),
        next_by_hero=_next_sentence_tables(lex, names, genders, conn, _probs(zipf(len(conn)))),
        events=events, event_names=event_names,
        places_except=[Choice([places[q] for q in ids], place_w[ids]) for ids in place_ids_except],
        place_ids_except=place_ids_except, objects_at=objects_at, object_defs=object_defs, sights_at=sights_at,
        feelings=table(lex.feelings), foods=table(lex.foods), codas=table(lex.codas),
        others=[Choice([names[j] for j in ids], name_w[ids]) for ids in other_ids], other_ids=other_ids)


def story_program(ch, g: StoryGrammar) -> None:
    """Write one story through chooser `ch` (a Sampler, Parser or enumerator: see grammar.py)."""
    lex = g.lex
    hero = ch.choose(g.names)                       # "Mia"
    opening = ch.choose(g.openings)                 # " was at "
    place = ch.choose(g.places)                     # "the old mill"
    ch.emit(lex.openings[opening][1])               # "."  (fixed by the opening: 0 nats)
    held: str | None = None                         # definite phrase of the object in hand
    friend = -1                                     # index of the last person met
    for _ in range(g.max_sentences - 1):
        if ch.choose(g.next_by_hero[hero]) == 0:    # "\n" ends the story, else " Then she" ...
            return
        state = (held is not None, friend >= 0)
        event = g.event_names[state][ch.choose(g.events[state])]
        mid = lex.events[event][1]
        if event == "walk":
            place = g.place_ids_except[place][ch.choose(g.places_except[place])]
        elif event == "find":
            held = g.object_defs[place][ch.choose(g.objects_at[place])]
        elif event == "give":                        # "gave the red key to Tom": the key is known
            ch.emit(held)
            ch.emit(mid)
            ch.choose(g.give_targets(hero, friend))
            held = None
        elif event == "drop":
            ch.emit(held)
            held = None
        elif event == "meet":
            friend = g.other_ids[hero][ch.choose(g.others[hero])]
        elif event == "feel":
            ch.choose(g.feelings)
        elif event == "see":
            ch.choose(g.sights_at[place])
        elif event == "eat":
            ch.choose(g.foods)
        elif event == "smile":                       # smiles at the friend: a name with 0 nats
            ch.emit(g.names.surfaces[friend])
            ch.emit(mid)
        ch.choose(g.codas)                           # "." or " at noon." ...
    ch.emit(END)                                     # the longest allowed story ends for sure


class StorySource(ProgramSource):
    """Stories in one language. Knobs: difficulty ('easy'|'default'|'hard'|float in [0, 1]),
    max_sentences (1..64, the opening sentence included)."""

    defaults = {"difficulty": "default", "max_sentences": 12}

    def __init__(self, name: str, lex: StoryLexicon, description: str):
        super().__init__()
        self.name, self.lex, self.description = name, lex, description

    def check(self, knobs: dict) -> None:
        parse_difficulty(knobs["difficulty"])
        check_int("max_sentences", knobs["max_sentences"], 1, 64)

    def build(self, knobs: dict) -> StoryGrammar:
        return build_story_grammar(self.lex, parse_difficulty(knobs["difficulty"]), knobs["max_sentences"])

    def program(self, ch, g: StoryGrammar) -> None:
        story_program(ch, g)


class BilingualSource(ProgramSource):
    """Each document is an English story with probability 1 - p_zh, else a Chinese one. The language is
    a hidden decision, but the first character reveals it (Latin vs Han), so log p(doc) =
    log p(language) + log p(doc | language) exactly."""

    name = "bilingual"
    description = "a mixture of English and Chinese stories; p_zh = share of Chinese documents"
    defaults = {"difficulty": "default", "max_sentences": 12, "p_zh": 0.5}

    def __init__(self, en: StorySource, zh: StorySource):
        super().__init__()
        self.parts = (en, zh)

    def check(self, knobs: dict) -> None:
        self.parts[0].check({k: knobs[k] for k in StorySource.defaults})
        check_float("p_zh", knobs["p_zh"], 0.0, 1.0, open_interval=True)

    def build(self, knobs: dict):
        story_knobs = {k: knobs[k] for k in StorySource.defaults}
        lang = Choice(["en", "zh"], [1 - knobs["p_zh"], knobs["p_zh"]])
        return lang, tuple(p.grammar(story_knobs) for p in self.parts)

    def program(self, ch, g) -> None:
        lang, grammars = g
        story_program(ch, grammars[ch.choose_hidden(lang)])

    def score(self, doc: str, knobs: dict) -> float:
        # p(doc) = sum over languages of p(lang) p(doc | lang): a true mixture, no disjointness assumed.
        p_zh = knobs["p_zh"]
        story_knobs = {k: knobs[k] for k in StorySource.defaults}
        terms = [math.log(w) + part.score(doc, story_knobs) for w, part in zip((1 - p_zh, p_zh), self.parts)]
        return float(np.logaddexp(*terms))
