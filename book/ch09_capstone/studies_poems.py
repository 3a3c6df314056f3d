"""The poet's task: Tang poem forms, instruction pairs built from metadata, and the form-adherence reward.

Survey §5.1.1 (formatted instances built from existing data: an instruction dataset need not be written by hand
when the data's own metadata says what a good answer is) and §5.2 (a reward that is a program, not a model).

全唐詩 stores each poem as a title, an author and its couplets ("秦川雄帝宅，函谷壯皇居。"). A regulated poem's
form is visible in its shape alone: the number of lines (句, the clauses between punctuation marks) and the
number of characters in each line.

    五言絕句  4 lines x 5 characters        七言絕句  4 lines x 7 characters
    五言律詩  8 lines x 5 characters        七言律詩  8 lines x 7 characters

(絕句 "cut-off lines" are quatrains, 律詩 "regulated verse" octaves; the real forms also constrain tones and
rhyme, which this shape test does not check.) Every poem whose lines all have the same length, 5 or 7 Han
characters, and which has 4 or 8 lines, gets its form; the rest (古體詩 of any length, poems with missing
characters written as □) get None and are not used as instructions.

    poems = load_poems()                              # 57,607 Poem(title, author, paragraphs)
    train, heldout = split_by_title(poems)            # every poem of one title on one side
    pairs = instruction_pairs(train)                  # {"prompt": "五言絕句：春曉", "response": poem, ...}
    follows_form(response, "五言絕句")                 # exactly 4 lines of 5 Han characters?
    reward = form_reward()                            # a minillm RewardFn for grpo_step
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from minillm.data.sources import iter_jsonl_objects

__all__ = ["FORMS", "Poem", "load_poems", "verse_lines", "is_han", "classify_form", "form_prompt", "form_of_prompt",
           "split_by_title", "instruction_pairs", "follows_form", "form_adherence", "form_reward", "distinct_ratio"]

# form -> (lines, characters per line)
FORMS: dict[str, tuple[int, int]] = {"五言絕句": (4, 5), "七言絕句": (4, 7), "五言律詩": (8, 5), "七言律詩": (8, 7)}
# Line breaks of classical verse in this corpus: full-width punctuation (and newlines between couplets).
_LINE_BREAK = re.compile(r"[，。？！；、：,.?!;:\n]+")
_FORM_IN_PROMPT = re.compile("|".join(FORMS))


@dataclass(frozen=True)
class Poem:
    """One poem of the corpus: its title, author and couplets as stored (one string per couplet)."""

    title: str
    author: str
    paragraphs: tuple[str, ...]

    @property
    def text(self) -> str:
        """The poem as the model sees it: one couplet per line."""
        return "\n".join(self.paragraphs)

    @property
    def form(self) -> str | None:
        return classify_form(self.text)


def load_poems(path: str | os.PathLike, limit: int | None = None) -> list[Poem]:
    """The poems of a JSON-lines file of {"title", "author", "paragraphs": [...]} (.jsonl, .jsonl.xz or .jsonl.gz),
    in file order; at most `limit` of them. A line without a list of strings under "paragraphs" is a ValueError
    naming the line."""
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    poems: list[Poem] = []
    for lineno, obj in iter_jsonl_objects(path):
        paras = obj.get("paragraphs")
        if not isinstance(paras, list) or not all(isinstance(p, str) for p in paras):
            raise ValueError(f"{path}:{lineno}: 'paragraphs' must be a list of strings (a poem's couplets), got "
                             f"{type(paras).__name__}; each line needs {{'title', 'author', 'paragraphs'}}")
        poems.append(Poem(str(obj.get("title", "")), str(obj.get("author", "")), tuple(paras)))
        if limit is not None and len(poems) >= limit:
            break
    if not poems:
        raise ValueError(f"{path} holds no poems: it needs one JSON object per line with a 'paragraphs' list")
    return poems


def is_han(ch: str) -> bool:
    """A CJK ideograph (the unified block, extension A, or the compatibility block)."""
    o = ord(ch)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2FA1F


def verse_lines(text: str) -> list[str]:
    """The lines (句) of a poem: the stripped pieces between punctuation marks and newlines, empty ones dropped."""
    return [s for s in (p.strip() for p in _LINE_BREAK.split(text)) if s]


def classify_form(text: str) -> str | None:
    """The form of a poem from its shape (see the module docstring), or None when it has none of the four."""
    lines = verse_lines(text)
    lengths = {len(s) for s in lines}
    if len(lines) not in (4, 8) or len(lengths) != 1 or not all(is_han(c) for s in lines for c in s):
        return None
    n_chars = lengths.pop()
    for form, shape in FORMS.items():
        if shape == (len(lines), n_chars):
            return form
    return None


def form_prompt(title: str, form: str) -> str:
    """The instruction (the user's message): the form, a full-width colon, the title."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")
    return f"{form}：{title}"


def form_of_prompt(prompt: str) -> str:
    """The form a prompt asks for (the first form name in it, chat tags and all)."""
    m = _FORM_IN_PROMPT.search(prompt)
    if m is None:
        raise ValueError(f"prompt {prompt[:60]!r} names no form; prompts are form_prompt(title, form) with a form "
                         f"among {', '.join(FORMS)}")
    return m.group(0)


def _heldout_bucket(title: str) -> float:
    """A title's fixed place in [0, 1): the same split on every machine and Python (no hash() randomisation)."""
    return int.from_bytes(hashlib.sha256(title.encode("utf-8")).digest()[:8], "big") / 2.0**64


def split_by_title(poems: Sequence[Poem], heldout_frac: float = 0.05) -> tuple[list[Poem], list[Poem]]:
    """(train, heldout): a poem is held out when its title's hash falls below `heldout_frac`, so every poem of one
    title ("句", "古意" ...) lands on the same side and a held-out title was never seen in training."""
    if not 0.0 < heldout_frac < 1.0:
        raise ValueError(f"heldout_frac must be in (0, 1), got {heldout_frac!r}")
    train, heldout = [], []
    for p in poems:
        (heldout if _heldout_bucket(p.title) < heldout_frac else train).append(p)
    return train, heldout


def instruction_pairs(poems: Iterable[Poem]) -> list[dict]:
    """One {"prompt", "response", "form", "title"} per poem that has a form and a title, in input order."""
    pairs = []
    for p in poems:
        form = p.form
        if form is not None and p.title.strip():
            pairs.append({"prompt": form_prompt(p.title.strip(), form), "response": p.text, "form": form,
                          "title": p.title.strip()})
    return pairs


def follows_form(response: str, form: str) -> bool:
    """Exactly the form's number of lines, each of exactly its number of Han characters."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; choose one of {', '.join(FORMS)}")
    return classify_form(response) == form


def form_adherence(responses: Sequence[str], forms: Sequence[str]) -> float:
    """The share of responses that follow the form asked for them."""
    if len(responses) != len(forms) or not responses:
        raise ValueError(f"need as many forms as responses (and at least one), got {len(responses)} responses and "
                         f"{len(forms)} forms")
    return sum(follows_form(r, f) for r, f in zip(responses, forms)) / len(responses)


def _shaped(response: str, form: str) -> float:
    """Partial credit: half for the line count, half for the share of lines of the right length (all Han)."""
    n_lines, n_chars = FORMS[form]
    lines = verse_lines(response)
    if not lines:
        return 0.0
    right = sum(len(s) == n_chars and all(is_han(c) for c in s) for s in lines[:n_lines])
    return 0.5 * (len(lines) == n_lines) + 0.5 * right / n_lines


def form_reward(shaped: bool = False):
    """A minillm RewardFn (responses, prompts) -> (N,) float32: 1.0 where the response follows the form its prompt
    names, else 0.0; with `shaped`, partial credit for the line count and the lines of the right length (a denser
    signal, and an easier one to game: see the chapter)."""
    def reward(responses: list[str], prompts: list[str]) -> torch.Tensor:
        if len(responses) != len(prompts):
            raise ValueError(f"got {len(responses)} responses for {len(prompts)} prompts; pass one prompt per response")
        forms = [form_of_prompt(p) for p in prompts]
        score = _shaped if shaped else (lambda r, f: float(follows_form(r, f)))
        return torch.tensor([score(r, f) for r, f in zip(responses, forms)], dtype=torch.float32)
    return reward


def distinct_ratio(text: str) -> float:
    """Distinct Han characters / Han characters (1.0 = no character repeats): a policy that games a shape reward by
    repeating one line shows up as a falling ratio."""
    han = [c for c in text if is_han(c)]
    return len(set(han)) / len(han) if han else 0.0
