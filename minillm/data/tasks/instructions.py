"""Instruction-following tasks and the inverse-scaling probe built on them. Survey §2.1 (instruction
following, said to emerge with scale) and §5.1 (instruction tuning: many phrasings of the same task).

- "instructions": seven families (reverse, upper, sort, count, first, last, repeat) with 8 phrasings each; the
  last 2 of each family are held out (`templates="heldout"`) for zero-shot evaluation on unseen phrasings.
- "pattern_conflict": an inverse-scaling probe (McKenzie et al. 2023): few-shot pairs follow a distractor rule f,
  then an instruction asks for a different rule g on the query word. Correct = g(word) (the instruction);
  imitation = f(word) (what continuing the in-context pattern gives), kept in meta["imitation"].

Registered in `tasks.TASKS` with the arithmetic and in-context tasks.
"""
from __future__ import annotations

from minillm.data.tasks.examples import MAP_SEP, Example, TaskGenerator, _choice, _int_choices, _word, few_shot_prompt

# ---- instruction following: many phrasings, some held out ---------------------------------------------------

FAMILIES = {  # family -> (what it computes, phrasings); the last HELDOUT_PER_FAMILY are held out
    "reverse": (lambda w: w[::-1], [
        "Reverse the word {w}:", "Write {w} backwards:", "{w} reversed is", "Spell {w} in reverse:",
        "Reverse: {w} ->", "What is {w} backwards?", "Flip the letters of {w}:", "Turn {w} back to front:"]),
    "upper": (str.upper, [
        "Uppercase the word {w}:", "Write {w} in capitals:", "{w} in upper case is",
        "Capitalize every letter of {w}:", "Upper: {w} ->", "What is {w} in capital letters?", "Shout the word {w}:",
        "Make {w} all caps:"]),
    "sort": (lambda w: "".join(sorted(w)), [
        "Sort the letters of {w}:", "Write the letters of {w} in order:", "{w} sorted is",
        "Put the letters of {w} in alphabetical order:", "Sort: {w} ->", "What is {w} with its letters sorted?",
        "Alphabetize the letters in {w}:", "Arrange {w} from a to z:"]),
    "count": (lambda w: str(len(w)), [
        "Count the letters in {w}:", "How many letters does {w} have?", "The length of {w} is",
        "Number of letters in {w}:", "Count: {w} ->", "How long is the word {w}?", "Give the letter count of {w}:",
        "Tell me how many characters {w} has:"]),
    "first": (lambda w: w[0], [
        "First letter of {w}:", "What letter does {w} start with?", "The first letter of {w} is",
        "Give the initial of {w}:", "First: {w} ->", "Which letter begins {w}?", "Name the opening letter of {w}:",
        "Start of {w}, one letter:"]),
    "last": (lambda w: w[-1], [
        "Last letter of {w}:", "What letter does {w} end with?", "The last letter of {w} is",
        "Give the final letter of {w}:", "Last: {w} ->", "Which letter ends {w}?", "Name the closing letter of {w}:",
        "End of {w}, one letter:"]),
    "repeat": (lambda w: f"{w} {w}", [
        "Repeat the word {w} twice:", "Say {w} two times:", "{w} twice is", "Write {w} and then {w} again:",
        "Twice: {w} ->", "What is {w} said two times?", "Echo the word {w}:", "Double the word {w}:"]),
}
HELDOUT_PER_FAMILY = 2


def templates(family: str, split: str = "all") -> list[str]:
    """The phrasings of `family` in `split` ("train": all but the last 2, "heldout": the last 2, "all")."""
    _choice("family", family, tuple(FAMILIES))
    ts = FAMILIES[family][1]
    return {"train": ts[:-HELDOUT_PER_FAMILY], "heldout": ts[-HELDOUT_PER_FAMILY:], "all": list(ts)}[
        _choice("templates", split, ("train", "heldout", "all"))]


def _families(v) -> tuple[str, ...]:
    fams = tuple(FAMILIES) if v == "all" else ((v,) if isinstance(v, str) else tuple(v))
    if not fams:
        raise ValueError("families is empty; give family names or 'all'")
    for f in fams:
        _choice("family", f, tuple(FAMILIES))
    return fams


class Instructions(TaskGenerator):
    """A phrasing of family f applied to a random lowercase word: prompt ``<phrasing> `` -> f(word). Knobs:
    families ("all" or names), templates ("train" | "heldout" | "all"), word_len (letters, 2..8)."""

    name = "instructions"
    description = "instruction + word -> output (reverse, upper, sort, count, first, last, repeat)"
    defaults = {"families": "all", "templates": "train", "word_len": (3, 4, 5)}

    def check(self, k: dict) -> dict:
        k["families"] = _families(k["families"])
        _choice("templates", k["templates"], ("train", "heldout", "all"))
        k["word_len"] = _int_choices("word_len", k["word_len"], 2, 8)
        return k

    def _draw(self, rng, n, k):
        out = []
        for _ in range(n):
            fam = k["families"][rng.integers(0, len(k["families"]))]
            ts = templates(fam, k["templates"])
            t = int(rng.integers(0, len(ts)))
            w = _word(rng, k["word_len"])
            meta = {"family": fam, "template": ts[t], "input": w}
            out.append(Example(ts[t].format(w=w) + " ", FAMILIES[fam][0](w), self.name, meta))
        return out


class PatternConflict(TaskGenerator):
    """Inverse-scaling probe: `shots` pairs ``w>f(w)`` follow a distractor family f, then a (train-split)
    instruction for a different family g on a new word. answer = g(word) (the instruction: correct);
    meta["imitation"] = f(word) (continuing the in-context pattern). The two always differ."""

    name = "pattern_conflict"
    description = "few-shot pattern f, then an instruction for g: correct = g(word), imitation = f(word)"
    defaults = {"shots": 4, "families": ("reverse", "upper", "sort", "repeat"), "word_len": (3, 4, 5)}

    def check(self, k: dict) -> dict:
        k["shots"] = _int_choices("shots", k["shots"], 1, 16)
        k["families"] = _families(k["families"])
        if len(k["families"]) < 2:
            raise ValueError(f"families={k['families']} needs at least two families (a distractor and a target)")
        k["word_len"] = _int_choices("word_len", k["word_len"], 2, 8)
        return k

    def _draw(self, rng, n, k):
        out = []
        for _ in range(n):
            s = int(rng.choice(k["shots"]))
            fi, gi = rng.permutation(len(k["families"]))[:2].tolist()
            f, g = k["families"][fi], k["families"][gi]
            fn, gn = FAMILIES[f][0], FAMILIES[g][0]
            words = [_word(rng, k["word_len"]) for _ in range(s)]
            w = _word(rng, k["word_len"])
            while fn(w) == gn(w):  # e.g. sort == reverse for "cba": the probe must tell the two apart
                w = _word(rng, k["word_len"])
            ts = templates(g, "train")
            t = ts[rng.integers(0, len(ts))]
            shots = [Example(x + MAP_SEP, fn(x), self.name) for x in words]
            prompt = few_shot_prompt(shots, Example(t.format(w=w) + " ", "", self.name))
            meta = {"distractor": f, "family": g, "input": w, "imitation": fn(w), "template": t, "shots": s}
            out.append(Example(prompt, gn(w), self.name, meta))
        return out
