"""SFT elicits knowledge; it does not teach it (Survey §5.1.3: LIMA's "superficial alignment"; Gekhman et al.
2024: fine-tuning on facts the model does not know teaches it to make facts up).

    rows = knowledge_study(size="ci")     # one row per SFT arm: {"sft_on": "known" | "unknown", ...}

A `FactWorld` of people is split into KNOWN people, whose facts the base model reads in pretraining (fact
documents plus a little of `studies_peft.pretraining_text` for stories, chat tags and instructions), and UNKNOWN
people, whose names never appear in its text. Both groups are split again into SFT people and evaluation people.
Two copies of the base are SFT-ed on chat QA (`FactWorld.question`) about (a) known or (b) unknown SFT people,
same count and steps. Each is scored by greedy exact match on questions about people it was NOT SFT-ed on:
known ones (heldout_known_accuracy: knowledge elicited from pretraining) and unknown ones (every answer is a
guess; unknown_hallucination_rate: the share of answers that are a well-formed value, e.g. a real city), and on
its own SFT questions (train_accuracy: memorisation). base_recall checks the base knows the known facts with a
plain-text probe ("Ada Ashdown lives in" -> " Ashford").

What it shows (laptop, seed 0: base_recall 1.0): SFT on known facts turns the base's recall into QA accuracy on
people never asked about in SFT (heldout_known_accuracy 0.73); SFT on unknown facts must be memorised (it is
learned more slowly: 0.5 vs 1.0 train accuracy after 30 steps) and elicits less (0.40). Both arms answer unknown
people with confident, well-formed values (hallucination rate 0.9-1.0): the QA format teaches the model to
answer, not to abstain. Sizes from `presets.by_size`: ci runs in seconds (a smoke test); laptop takes about 2
minutes on one CPU thread, nearly all of it pretraining the base (cached per (size, seed) in the process,
read-only: the arms deep-copy it). Nothing is written to disk.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch.nn as nn

from minillm.data.synthetic.facts import TEMPLATES, FactWorld
from minillm.presets import by_size
from minillm.finetune.chat import ChatTemplate, chat_tokenizer
from minillm.finetune.sft import Conversation, pack, response_accuracy
from book.ch06_tuning.studies_sft import _check_seed, finetune_copy, sft_study_config
from book.runs import Run, train

__all__ = ["KNOWLEDGE_ATTRIBUTES", "knowledge_world", "knowledge_text", "knowledge_base", "fact_conversations",
           "knowledge_study"]

KNOWLEDGE_ATTRIBUTES = ("city", "birth_year", "job", "colour", "pet")  # not "friend": it names other people
_KB_CACHE: dict[tuple, tuple] = {}


def _sizes(size: str | None) -> dict:
    from book.results import note

    sizes = by_size(ci=dict(n_people=24, n_chars=60_000, steps=150, n_layer=2, n_embd=32, n_head=2),
                   laptop=dict(n_people=120, n_chars=800_000, steps=1500, n_layer=4, n_embd=128, n_head=4),
                   gpu=dict(n_people=400, n_chars=4_000_000, steps=4000, n_layer=6, n_embd=256, n_head=8),
                   size=size)
    note(knowledge_base=sizes)
    return sizes


def _check_attributes(attributes) -> tuple[str, ...]:
    attrs = (attributes,) if isinstance(attributes, str) else tuple(attributes)
    if not attrs or any(a not in KNOWLEDGE_ATTRIBUTES for a in attrs) or len(set(attrs)) != len(attrs):
        raise ValueError(f"attributes={attributes!r} must be distinct names from {', '.join(KNOWLEDGE_ATTRIBUTES)}")
    return attrs


def knowledge_world(n_people: int, seed: int = 0) -> tuple[FactWorld, dict[str, tuple[str, ...]]]:
    """(world, groups): groups "known_sft", "known_eval", "unknown_sft", "unknown_eval", a quarter of the people
    each (disjoint, seeded). Known = the first two groups: only they appear in the pretraining text."""
    if isinstance(n_people, bool) or not isinstance(n_people, int) or n_people < 8:
        raise ValueError(f"n_people={n_people!r} must be an int >= 8 (four groups of at least 2)")
    world = FactWorld(seed, n_people)
    order = np.random.default_rng([0xFAC7, seed]).permutation(n_people)
    q = n_people // 4
    names = world.names
    groups = {g: tuple(names[i] for i in order[j * q:(j + 1) * q])
              for j, g in enumerate(("known_sft", "known_eval", "unknown_sft", "unknown_eval"))}
    return world, groups


def knowledge_text(world: FactWorld, known: Sequence[str], attributes: Sequence[str], n_chars: int,
                   seed: int = 0, fact_share: float = 0.7, size: str | None = None) -> str:
    """About n_chars of pretraining text: fact documents about `known` people only (every attribute in
    `attributes`, one to all of them per document, any of the source's phrasings, name or pronoun), shuffled with
    (1 - fact_share) of `pretraining_text` (stories, chat-form stories, instruction text)."""
    from book.ch06_tuning.studies_peft import pretraining_text

    attrs = _check_attributes(attributes)
    if not 0 < fact_share <= 1:
        raise ValueError(f"fact_share={fact_share!r} must be in (0, 1]")
    if not known:
        raise ValueError("known is empty: name the people the base should learn about")
    rng = np.random.default_rng([0xD0C, seed])
    phr = {a: [tp[1] for tp in TEMPLATES if tp[0] == a] for a in attrs}  # e.g. " lives in ", "'s home town is "
    docs, total = [], 0
    while total < fact_share * n_chars:  # a loop over documents (each a few sentences), not tokens
        p = world.person(known[int(rng.integers(len(known)))])
        pron = "She" if p.gender == "f" else "He"
        sents = []
        for k, j in enumerate(rng.permutation(len(attrs))[: int(rng.integers(1, len(attrs) + 1))]):
            a = attrs[j]
            t = phr[a][int(rng.integers(len(phr[a])))]
            subj = p.name if k == 0 or t.startswith("'") or rng.random() < 0.4 else pron
            sents.append(f"{subj}{t}{world.value(p.name, a)}.")
        docs.append(" ".join(sents) + "\n")
        total += len(docs[-1])
    filler = pretraining_text(size, seed)
    cut = filler.rfind("\n", 0, int((1 - fact_share) * n_chars)) + 1
    docs += filler[:cut].splitlines(keepends=True)
    return "".join(docs[i] for i in rng.permutation(len(docs)))


def knowledge_base(size: str | None = None, seed: int = 0, attributes: Sequence[str] = ("city",)):
    """(model, tokenizer, world, groups): a GPT pretrained on `knowledge_text` about the known people; cached per
    (size, seed, attributes). Read-only: callers deep-copy it."""
    from minillm.presets import size_profile

    attrs = _check_attributes(attributes)
    key = (size or size_profile(), seed, attrs)
    if key not in _KB_CACHE:
        d = _sizes(key[0])
        world, groups = knowledge_world(d["n_people"], seed)
        text = knowledge_text(world, groups["known_sft"] + groups["known_eval"], attrs, d["n_chars"], seed,
                              size=key[0])
        run = Run(n_layer=d["n_layer"], n_embd=d["n_embd"], n_head=d["n_head"], steps=d["steps"], seed=1337 + seed)
        model, tok, _ = train(run, text, tokenizer=chat_tokenizer())  # block 64, batch 16, lr 3e-3 (Run's defaults)
        _KB_CACHE[key] = (model.requires_grad_(False), tok, world, groups)
    return _KB_CACHE[key]


def fact_conversations(world: FactWorld, names: Sequence[str], attributes: Sequence[str]) -> list[Conversation]:
    """One chat QA per (person, attribute): user = world.question, assistant = the value."""
    out = []
    for n in names:  # a loop over people and attributes (each one conversation)
        for a in _check_attributes(attributes):
            q, ans = world.question(n, a)
            out.append(Conversation([{"role": "user", "content": q}, {"role": "assistant", "content": ans}],
                                    {"task": "facts", "person": n, "attribute": a, "answer": ans}))
    return out


def _values(attribute: str) -> set[str]:
    from minillm.data.synthetic import lexicon as L

    if attribute == "birth_year":
        return {str(y) for y in range(1940, 2006)}  # FactWorld draws years in [1940, 2006)
    return set({"city": L.CITIES, "job": L.JOBS, "colour": L.COLOURS, "pet": L.PETS}[attribute])


def _recall(model: nn.Module, tok, world: FactWorld, names: Sequence[str], attributes: Sequence[str]) -> float:
    """Plain-text probe, the way facts appear in pretraining: "<name> lives in " -> value, up to the period."""
    from minillm.evaluation.scoring import greedy_complete

    probes = [(f"{n}{next(t[1] for t in TEMPLATES if t[0] == a and not t[3])}", world.value(n, a))
              for n in names for a in attributes]
    out = greedy_complete(model, tok, [p for p, _ in probes], max(len(v) for _, v in probes) + 2, stop=".")
    return float(np.mean([o == v for o, (_, v) in zip(out, probes)]))


def _replies(model: nn.Module, template: ChatTemplate, convs: Sequence[Conversation]) -> list[str]:
    from minillm.evaluation.scoring import greedy_complete
    from minillm.finetune.chat import END

    n_new = max(len(template.tokenizer.encode(c.answer)) for c in convs) + 2
    return greedy_complete(model, template.tokenizer, [template.prompt_text(c.prompt) for c in convs], n_new,
                           stop=END)


def knowledge_study(size: str | None = None, seed: int = 0, attributes: Sequence[str] = ("city",),
                    arms: Sequence[str] = ("known", "unknown"), **knobs) -> list[dict]:
    """Rows {sft_on, base_recall, base_recall_unknown, heldout_known_accuracy, unknown_hallucination_rate,
    unknown_accuracy, train_accuracy, n_sft, n_eval_known, n_eval_unknown, steps}, one per arm. knobs:
    SFTStudyConfig fields for the SFT (steps, lr, batch_size); defaults lr 3e-4, 100 steps at laptop."""
    attrs, seed = _check_attributes(attributes), _check_seed(seed)
    arms = (arms,) if isinstance(arms, str) else tuple(arms)
    if not arms or any(a not in ("known", "unknown") for a in arms):
        raise ValueError(f"arms={arms!r} must name 'known' and/or 'unknown'")
    # a light touch (LIMA): measured at laptop, 300 steps at lr 1e-3 memorise the 30 SFT answers and elicit little
    # (held-out known 0.30 vs 0.20); 100 steps at 3e-4 elicit far more (0.73 vs 0.40)
    cfg = sft_study_config(size, **{"steps": by_size(ci=30, laptop=100, gpu=300, size=size), "lr": 3e-4, **knobs})
    base, tok, world, groups = knowledge_base(size, seed, attrs)
    template = ChatTemplate(tok)
    ev_known = fact_conversations(world, groups["known_eval"], attrs)
    ev_unknown = fact_conversations(world, groups["unknown_eval"], attrs)
    recall = _recall(base, tok, world, groups["known_eval"], attrs)
    recall_unknown = _recall(base, tok, world, groups["unknown_eval"], attrs)
    rows = []
    for arm in arms:
        train = fact_conversations(world, groups[f"{arm}_sft"], attrs)
        x, y = pack(train, cfg.block_size, template)
        model, loss = finetune_copy(base, x, y, cfg, seed)
        replies = _replies(model, template, ev_unknown)
        formed = [r in _values(c.meta["attribute"]) for r, c in zip(replies, ev_unknown)]
        rows.append({"sft_on": arm, "base_recall": recall, "base_recall_unknown": recall_unknown,
                     "heldout_known_accuracy": float(response_accuracy(model, template, ev_known).mean()),
                     "unknown_hallucination_rate": float(np.mean(formed)),
                     "unknown_accuracy": float(np.mean([r == c.answer for r, c in zip(replies, ev_unknown)])),
                     "train_accuracy": float(response_accuracy(model, template, train).mean()),
                     "n_sft": len(train), "n_eval_known": len(ev_known), "n_eval_unknown": len(ev_unknown),
                     "steps": cfg.run.steps, "loss": loss})
    return rows
