"""A fixed world of people and their attributes, and documents that state its facts. Survey §4.1 (data),
§2.2 (emergent abilities; knowledge recall) and §7.1 (closed-book QA): a model can only predict a fact's
value by having memorized the world.

`FactWorld(seed, n_people)` is the world: each person has a city, a birth year, a job, a favourite colour,
a pet and a friend, drawn once from the seed. Documents then talk about one person at a time:

    "Ada Ashdown lives in Ashford. She works as a baker. Ada Ashdown's best friend is Bo Carver."

The random decisions of a document are: who (a Zipf "popularity" over people, so some are mentioned
often and others rarely: the long tail of knowledge), how many facts, which attribute, which template,
name or pronoun. The *values* are fixed by the world, so they cost 0 nats: the entropy floor is
conditional on the world. A model that has not memorized the world pays log(#cities) and more per value;
one that has, can reach the floor. Train and test corpora should share `world_seed` and differ in `seed`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minillm.data.synthetic.grammar import Choice, check_float, check_int, zipf_weights
from minillm.data.synthetic.lexicon import CITIES, COLOURS, ENGLISH, JOBS, LAST_NAMES, PETS
from minillm.data.synthetic.generator import END, ProgramSource

ATTRIBUTES = ("city", "birth_year", "job", "colour", "pet", "friend")
# (attribute, text between subject and value, relative weight, needs the name: "Ada Ashdown's ...")
TEMPLATES = (
    ("city", " lives in ", 3.0, False), ("city", " has a house in ", 1.0, False),
    ("city", "'s home town is ", 2.0, True),
    ("birth_year", " was born in ", 3.0, False), ("birth_year", "'s birth year is ", 1.0, True),
    ("job", " works as ", 3.0, False), ("job", " earns a living as ", 1.0, False),
    ("colour", " likes the colour ", 2.0, False), ("colour", "'s favourite colour is ", 2.0, True),
    ("pet", " has a pet ", 2.0, False), ("pet", " keeps a pet ", 1.0, False),
    ("friend", " is a friend of ", 2.0, False), ("friend", "'s best friend is ", 1.0, True),
)
QUESTIONS = {"city": "Where does {} live?", "birth_year": "In which year was {} born?",
             "job": "What does {} do for a living?", "colour": "What is {}'s favourite colour?",
             "pet": "What pet does {} keep?", "friend": "Who is {}'s friend?"}
P_NAME = 0.4  # a follow-up sentence repeats the full name (else uses the pronoun)


@dataclass(frozen=True)
class Person:
    name: str
    gender: str        # "f" | "m"
    city: str
    birth_year: int
    job: str           # with its article: "a baker"
    colour: str
    pet: str
    friend: str        # another person's name


class FactWorld:
    """People and their attributes, a pure function of (seed, n_people).

    >>> w = FactWorld(seed=0, n_people=50)
    >>> q, a = w.question(w.people[0].name, "city")   # ("Where does ... live?", "<city>")
    """

    ATTRIBUTES = ATTRIBUTES

    def __init__(self, seed: int = 0, n_people: int = 100):
        firsts = ENGLISH.names
        max_people = len(firsts) * len(LAST_NAMES)
        self.seed = check_int("world_seed", seed, 0, 2**63 - 1)
        self.n_people = check_int("n_people", n_people, 2, max_people)
        # A seed stream of its own, so the world never shares random numbers with the documents.
        rng = np.random.default_rng([0x5EED, seed])
        combo = rng.permutation(max_people)[:n_people]               # distinct (first, last) pairs
        zipf_pick = lambda words: rng.choice(len(words), size=n_people, p=_normalized(len(words)))  # noqa: E731
        city, job, colour, pet = zipf_pick(CITIES), zipf_pick(JOBS), zipf_pick(COLOURS), zipf_pick(PETS)
        year = rng.integers(1940, 2006, size=n_people)
        friend = (np.arange(n_people) + rng.integers(1, n_people, size=n_people)) % n_people  # never oneself
        names = [f"{firsts[c // len(LAST_NAMES)][0]} {LAST_NAMES[c % len(LAST_NAMES)]}" for c in combo]
        self.people = tuple(
            Person(name=names[i], gender=firsts[combo[i] // len(LAST_NAMES)][1], city=CITIES[city[i]],
                   birth_year=int(year[i]), job=JOBS[job[i]], colour=COLOURS[colour[i]], pet=PETS[pet[i]],
                   friend=names[friend[i]])
            for i in range(n_people))
        self._by_name = {p.name: i for i, p in enumerate(self.people)}

    def __len__(self) -> int:
        return len(self.people)

    def __repr__(self) -> str:
        return f"FactWorld(seed={self.seed}, n_people={self.n_people})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.people)

    def person(self, name: str) -> Person:
        if name not in self._by_name:
            raise ValueError(f"{name!r} is not in this world ({self!r}); see .names for who is")
        return self.people[self._by_name[name]]

    def value(self, name: str, attribute: str) -> str:
        """The attribute as written in documents, e.g. value("Ada Ashdown", "job") -> "a baker"."""
        if attribute not in ATTRIBUTES:
            raise ValueError(f"unknown attribute {attribute!r}; use one of {ATTRIBUTES}")
        return str(getattr(self.person(name), attribute))

    def question(self, name: str, attribute: str) -> tuple[str, str]:
        """(question, answer) about one fact, for closed-book QA / memorization experiments."""
        answer = self.value(name, attribute)  # validates name and attribute
        return QUESTIONS[attribute].format(name), answer

    def mention_probs(self, popularity: float = 1.0) -> np.ndarray:
        """P(a document is about person i) in the "facts" corpus: Zipf with exponent `popularity`."""
        check_float("popularity", popularity, 0.0, 3.0)
        return _normalized(self.n_people, popularity)


def _normalized(n: int, s: float = 1.0) -> np.ndarray:
    w = zipf_weights(n, s)
    return w / w.sum()


@dataclass
class FactsGrammar:
    world: FactWorld
    max_facts: int
    people: Choice
    next_by_person: list[Choice]    # option 0: END; 1: " " + name; 2: " " + pronoun
    _templates: dict = field(default_factory=dict)

    def templates(self, pronoun: bool, stated: int) -> tuple[Choice, list[int]]:
        """Templates for attributes not yet stated (bit mask), uniform over attributes; cached."""
        key = (pronoun, stated)
        if key not in self._templates:
            ids = [t for t, (attr, _, _, possessive) in enumerate(TEMPLATES)
                   if not stated >> ATTRIBUTES.index(attr) & 1 and not (pronoun and possessive)]
            attrs = {TEMPLATES[t][0] for t in ids}
            per_attr = {a: sum(TEMPLATES[t][2] for t in ids if TEMPLATES[t][0] == a) for a in attrs}
            w = [TEMPLATES[t][2] / per_attr[TEMPLATES[t][0]] / len(attrs) for t in ids]
            self._templates[key] = (Choice([TEMPLATES[t][1] for t in ids], w), ids)
        return self._templates[key]


def facts_program(ch, g: FactsGrammar) -> None:
    person = ch.choose(g.people)                      # "Ada Ashdown"
    p = g.world.people[person]
    pronoun, stated = False, 0
    for k in range(g.max_facts):
        if k > 0:
            nxt = ch.choose(g.next_by_person[person])  # "\n" | " Ada Ashdown" | " She"
            if nxt == 0:
                return
            pronoun = nxt == 2
        table, ids = g.templates(pronoun, stated)
        attr = TEMPLATES[ids[ch.choose(table)]][0]    # " lives in "
        ch.emit(str(getattr(p, attr)) + ".")          # "Ashford." is fixed by the world: 0 nats
        stated |= 1 << ATTRIBUTES.index(attr)
    ch.emit(END)


class FactsSource(ProgramSource):
    """Knobs: n_people (2..1600), world_seed (the world; share it between train and test), popularity
    (Zipf exponent of who is talked about, 0 = uniform), p_stop (chance to stop after each fact),
    max_facts (1..6 facts per document)."""

    name = "facts"
    description = "statements about a seeded world of people (entropy conditional on the world)"
    defaults = {"n_people": 100, "world_seed": 0, "popularity": 1.0, "p_stop": 0.3, "max_facts": 6}

    def check(self, knobs: dict) -> None:
        check_int("n_people", knobs["n_people"], 2, len(ENGLISH.names) * len(LAST_NAMES))
        check_int("world_seed", knobs["world_seed"], 0, 2**63 - 1)
        check_float("popularity", knobs["popularity"], 0.0, 3.0)
        check_float("p_stop", knobs["p_stop"], 0.0, 1.0, open_interval=True)
        check_int("max_facts", knobs["max_facts"], 1, len(ATTRIBUTES))

    def build(self, knobs: dict) -> FactsGrammar:
        world = FactWorld(knobs["world_seed"], knobs["n_people"])
        q = 1 - knobs["p_stop"]
        nxt = [Choice([END, " " + p.name, " " + ("She" if p.gender == "f" else "He")],
                      [knobs["p_stop"], q * P_NAME, q * (1 - P_NAME)]) for p in world.people]
        return FactsGrammar(world=world, max_facts=knobs["max_facts"],
                            people=Choice(world.names, world.mention_probs(knobs["popularity"])),
                            next_by_person=nxt)

    def program(self, ch, g: FactsGrammar) -> None:
        facts_program(ch, g)
