"""Lab 09 checks: the poet's instruction data and its form-adherence reward (Survey §5.1.1, formatted instances
built from existing data; §5.2, a reward that is a program, not a model).

Four checks compare the student's functions with the chapter's own (book/ch09_capstone/studies_poems.py):
`verse_lines` and `classify_form` on single poems chosen to separate a right answer from a subtly wrong one
(full-width and ASCII punctuation, ？！； ending lines, a □ for a missing character, a Latin letter, 6 lines, mixed 5/7
lines, 4 lines of 6, empty text, a trailing newline and spaces) and on the first 300 poems of the shipped corpus;
`build_pairs` on hand poems (a title with spaces, a poem of a form with no title, poems without a form) and the same
300 poems; `form_reward` on responses whose prompts name different forms, prompts wrapped in chat tags, near misses,
and real poems under their own and a neighbour's prompt, with its type, shape (N,) and dtype (float32).

Each check refuses the reference itself (a function of the chapter's module passed as the answer: "implement it"),
and on a mismatch recomputes the usual MISTAKES on the same inputs and names the one the student's output equals
(only full-width marks split, lines not stripped, empty lines kept; the first line's length trusted, Han characters
not checked; titles not stripped; the prompt ignored by the reward; partial credit).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

import torch

from book.grading.core import Case, Check, _compare, _Mismatch, register_check
from book.grading.diagnose import Mistake, diagnosing

_REFERENCE_MODULE = "book.ch09_capstone.studies_poems"
_PAIR_KEYS = ("prompt", "response", "form", "title")
N_CORPUS = 300  # poems of the shipped corpus in the real-data cases (the first ones: emperors' and court poems)

# ------------------------------------------------------------------------------------------------ hand texts

JUEJU5 = "白日依山盡，黃河入海流。\n欲窮千里目，更上一層樓。"                      # 王之渙 登鸛雀樓
JUEJU7 = "葡萄美酒夜光杯，欲飲琵琶馬上催。\n醉臥沙場君莫笑，古來征戰幾人回。"      # 王翰 涼州詞
LVSHI5 = "國破山河在，城春草木深。\n感時花濺淚，恨別鳥驚心。\n烽火連三月，家書抵萬金。\n白頭搔更短，渾欲不勝簪。"
LVSHI7 = ("風急天高猿嘯哀，渚清沙白鳥飛迴。\n無邊落木蕭蕭下，不盡長江滾滾來。\n萬里悲秋常作客，百年多病獨登臺。\n"
          "艱難苦恨常無極，潦倒新停濁酒杯。")
BY_FORM = {"五言絕句": JUEJU5, "七言絕句": JUEJU7, "五言律詩": LVSHI5, "七言律詩": LVSHI7}

# (label, text, hint): the shapes a form classifier must get right; verse_lines is graded on the same texts
TEXTS: tuple[tuple[str, str, str], ...] = (
    ("五言絕句, full-width ，。 and a newline between couplets", JUEJU5, ""),
    ("七言絕句", JUEJU7, ""),
    ("五言律詩 (8 lines of 5)", LVSHI5, ""),
    ("七言律詩 (8 lines of 7)", LVSHI7, ""),
    ("ASCII punctuation ,. instead of full-width ，。", "白日依山盡,黃河入海流.\n欲窮千里目,更上一層樓.",
     "ASCII , . ? ! ; : end a line too: some poems are typed with them."),
    ("？！； end lines, all on one line", "床前明月光？疑是地上霜！舉頭望明月；低頭思故鄉。",
     "Every mark of ，。？！；、： (and ASCII ,.?!;:) ends a line, not only ，and 。."),
    ("two couplets without a newline between them", JUEJU5.replace("\n", ""),
     "A line (句) ends at each punctuation mark; newlines only separate couplets and may be missing."),
    ("a □ (a missing character)", JUEJU5.replace("山", "□"),
     "□ marks a character lost from the source: it is not a Han character, so the poem has no certain shape."),
    ("a Latin letter in a line", JUEJU5.replace("海", "A"), "Only Han characters count as verse (is_han)."),
    ("6 lines of 5", JUEJU5 + "\n國破山河在，城春草木深。", "Exactly 4 (絕句) or 8 (律詩) lines; 6 is neither."),
    ("mixed 5- and 7-character lines", "白日依山盡，欲飲琵琶馬上催。\n欲窮千里目，古來征戰幾人回。",
     "Every line must have the same length, not only the first."),
    ("4 lines of 6", "白日依山盡去，黃河入海流來。\n欲窮千里目遠，更上一層樓高。", "Lines of exactly 5 or 7 characters."),
    ("empty text", "", "No lines at all: no form (and no crash)."),
    ("a trailing newline, spaces around the lines", "  白日依山盡， 黃河入海流。\n欲窮千里目，更上一層樓。 \n \n",
     "Strip spaces around each line, and drop the empty pieces a trailing newline leaves."),
    ("two marks in a row (，\\n)", "白日依山盡，\n黃河入海流。\n\n欲窮千里目，\n更上一層樓。\n",
     "Split on runs of marks: consecutive marks must not leave empty lines."),
)


def _poems():
    """The chapter's module of references, imported when a check first runs (importing this module stays cheap)."""
    from book.ch09_capstone import studies_poems as poems

    return poems


@lru_cache(maxsize=1)
def _corpus_poems() -> tuple:
    """The first N_CORPUS poems of the shipped 全唐詩 (read once per process; Poem objects are frozen)."""
    from book.ch09_capstone.studies_corpus import TANG, data_path

    return tuple(_poems().load_poems(data_path(TANG), limit=N_CORPUS))


# ------------------------------------------------------------------------------------------------ shared helpers


def _refuse_reference(fn: Callable, name: str) -> None:
    """The answer must be the student's own function, not one of the chapter's (or a partial of one)."""
    target = getattr(fn, "func", fn)  # functools.partial
    if getattr(target, "__module__", None) == _REFERENCE_MODULE:
        raise _Mismatch(f"you passed {_REFERENCE_MODULE}.{getattr(target, '__qualname__', name)}, the reference "
                        f"itself, not your {name}",
                        f"Implement it: write the body of {name} yourself (helpers such as is_han, FORMS and "
                        "form_prompt may be imported from the chapter).")


def _each_text(name: str, fn: Callable, texts: list[str]) -> list:
    """The runner of the one-text checks: fn on every text of the case."""
    _refuse_reference(fn, name)
    return [fn(t) for t in texts]


def _whole(name: str, fn: Callable, *args: Any) -> Any:
    """The runner of the other checks: fn on the case's arguments."""
    _refuse_reference(fn, name)
    return fn(*args)


def _one_text(text: str) -> tuple:
    return ([text],)


def _corpus_texts() -> tuple:
    return ([p.text for p in _corpus_poems()],)


def _per_text_compare(check_item: Callable[[Any, Any], None]) -> Callable:
    """A compare function for outputs of `_each_text`: the first text whose output differs is named."""
    def compare(got: Any, expected: list, spec: Check, case: Case) -> float:
        (texts,) = case.make()
        for i, (g, e) in enumerate(zip(got, expected)):
            try:
                check_item(g, e)
            except _Mismatch as err:
                short = texts[i][:40] + ("..." if len(texts[i]) > 40 else "")
                where = f"on text {i} {short!r}: " if len(texts) > 1 else ""
                raise _Mismatch(f"{where}{err}", err.hint or case.hint) from None
        return 0.0
    return compare


def _check_lines(got: Any, expected: list[str]) -> None:
    if not isinstance(got, list) or not all(isinstance(s, str) for s in got):
        raise _Mismatch(f"expected a list of str, got {type(got).__name__}"
                        + (f" {got!r}" if isinstance(got, (tuple, str)) else ""), "Return a list of the lines (str).")
    if got != expected:
        raise _Mismatch(f"got {len(got)} line(s) {got!r}, expected {len(expected)}: {expected!r}")


def _check_form(got: Any, expected: str | None) -> None:
    if got is not None and not isinstance(got, str):
        raise _Mismatch(f"expected a form name (str) or None, got {type(got).__name__} {got!r}",
                        "Return one of the four names in FORMS, or None.")
    if got == "" and expected is None:
        raise _Mismatch("got '' (an empty string), expected None", "Return None (not '' or False) for no form.")
    if got != expected:
        raise _Mismatch(f"got {got!r}, expected {expected!r}")


def _same_value(a: Any, b: Any) -> bool:
    """Equal outputs, tensors compared by value (for the reward) and everything else with ==."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return (torch.is_tensor(a) and torch.is_tensor(b) and a.shape == b.shape
                and bool(torch.equal(a.float().cpu(), b.float().cpu())))
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------------------------------------ 1. verse_lines


def _lines_reference(texts: list[str]) -> list[list[str]]:
    return [_poems().verse_lines(t) for t in texts]


def _split_lines(text: str, marks: str, strip: bool = True, drop_empty: bool = True, runs: bool = True) -> list[str]:
    pieces = re.split(f"[{re.escape(marks)}]{'+' if runs else ''}", text)
    pieces = [p.strip() for p in pieces] if strip else pieces
    return [p for p in pieces if p] if drop_empty else pieces


_ALL_MARKS = "，。？！；、：,.?!;:\n"
_LINES_MISTAKES: tuple[Mistake, ...] = (
    (lambda t: _split_lines(t, "，。？！；、：\n"),
     "ASCII punctuation ,.?!;: ends a line too (some poems are typed with it)."),
    (lambda t: _split_lines(t, "，。\n"),
     "Only ，。 and newlines split: ？！；、： and the ASCII marks ,.?!;: end a line too."),
    (lambda t: _split_lines(t, "\n"),
     "A line (句) ends at every punctuation mark, not only at the end of a couplet (a newline)."),
    (lambda t: _split_lines(t, _ALL_MARKS, strip=False),
     "Strip the spaces around each line (str.strip())."),
    (lambda t: _split_lines(t, _ALL_MARKS, drop_empty=False),
     "Drop empty pieces: the text ends with a mark, and a mark before a newline leaves one between them."),
    (lambda t: _split_lines(t, _ALL_MARKS, runs=False, drop_empty=False),
     "Drop empty pieces (or split on runs of marks, [...]+): '，\\n' would otherwise leave an empty line."),
)


# ------------------------------------------------------------------------------------------------ 2. classify_form


def _form_reference(texts: list[str]) -> list[str | None]:
    return [_poems().classify_form(t) for t in texts]


def _classify_mistake(text: str, *, check_han: bool = True, all_lines: bool = True, lines_4_8: bool = True,
                      chars_5_7: bool = True, none: Any = None) -> Any:
    lines = _poems().verse_lines(text)
    if (not lines or (check_han and not all(_poems().is_han(c) for s in lines for c in s))
            or (all_lines and len({len(s) for s in lines}) != 1)):
        return none
    n, k = len(lines), len(lines[0])
    shape = (n if lines_4_8 else 4 if n <= 4 else 8, k if chars_5_7 else 5 if k <= 5 else 7)
    return next((f for f, sh in _poems().FORMS.items() if sh == shape), none)


_FORM_MISTAKES: tuple[Mistake, ...] = (
    (partial(_classify_mistake, check_han=False),
     "Check that every character is a Han character (is_han): □ (a lost character) and Latin letters are not."),
    (partial(_classify_mistake, all_lines=False),
     "Every line must have the same length: check all of them, not only the first."),
    (partial(_classify_mistake, lines_4_8=False),
     "Exactly 4 lines (絕句) or exactly 8 (律詩): any other count has no form."),
    (partial(_classify_mistake, chars_5_7=False),
     "Exactly 5 characters per line (五言) or exactly 7 (七言): 6 or 4 is neither."),
    (partial(_classify_mistake, none=""), "Return None (not '') when the poem has none of the four forms."),
)


# ------------------------------------------------------------------------------------------------ 3. build_pairs


def _hand_poems() -> tuple[list]:
    """Poems a pair builder must sort out: kept with a stripped title, skipped without a form or without a title."""
    Poem = _poems().Poem

    def poem(title: str, text: str):
        return Poem(title, "佚名", tuple(text.split("\n")))

    return ([poem("登鸛雀樓", JUEJU5),
             poem("  秋興八首 一 ", LVSHI7),                                 # spaces around and inside the title
             poem("", JUEJU7),                                               # a form, but no title: skipped
             poem("   ", LVSHI5),                                            # a blank title: skipped
             poem("古風", JUEJU5 + "\n國破山河在，城春草木深。"),               # 6 lines: no form, skipped
             poem("殘句", JUEJU5.replace("山", "□")),                          # a lost character: skipped
             poem("涼州詞二首 一", JUEJU7),
             Poem("春望", "杜甫", ("國破山河在，城春草木深。", "感時花濺淚，恨別鳥驚心。", "烽火連三月，家書抵萬金。",
                                  "白頭搔更短，渾欲不勝簪。"))],)


def _padded_poems() -> tuple[list]:
    Poem = _poems().Poem
    lines = JUEJU5.replace("，", "，\n").split("\n")  # one line per paragraph: the text keeps that layout
    return ([Poem("\t登鸛雀樓\u3000", "王之渙", tuple(lines)), Poem("\u3000\u3000", "佚名", (JUEJU7,)),
             Poem("涼州詞 ", "王翰", tuple(JUEJU7.split("\n")))],)


def _pairs_reference(poems: list) -> list[dict]:
    return _poems().instruction_pairs(poems)


def _pairs_mistake(poems: list, *, strip: Callable[[str], str] = str.strip, text: Callable | None = None,
                   prompt: Callable[[str, str], str] | None = None, keep_untitled: bool = False,
                   order: bool = True) -> list[dict]:
    out = []
    for p in poems:
        form, title = _poems().classify_form(p.text), strip(p.title)
        if form is None or (not title.strip() and not keep_untitled):
            continue
        out.append({"prompt": (prompt or _poems().form_prompt)(title, form), "response": text(p) if text else p.text,
                    "form": form, "title": title})
    return out if order else sorted(out, key=lambda d: d["form"])


_PAIRS_MISTAKES: tuple[Mistake, ...] = (
    (partial(_pairs_mistake, strip=lambda t: t),
     "Strip the title (title.strip()): spaces around it are not part of it, and the prompt must not carry them."),
    (partial(_pairs_mistake, strip=lambda t: t.strip(" ")),
     "str.strip() with no argument strips every kind of space (a tab, the full-width space \\u3000); strip(' ') "
     "only the ASCII space."),
    (partial(_pairs_mistake, strip=lambda t: t.replace(" ", "")),
     "Strip only the ends of the title: a space inside it ('秋興八首 一') separates the poem's number and stays."),
    (partial(_pairs_mistake, text=lambda p: "".join(p.paragraphs)),
     "The response is poem.text: the couplets joined by newlines, as the pretraining documents show them."),
    (partial(_pairs_mistake, prompt=lambda t, f: f"{f}:{t}"),
     "Build the prompt with form_prompt(title, form): a FULL-WIDTH colon ：, no spaces."),
    (partial(_pairs_mistake, prompt=lambda t, f: f"{t}：{f}"),
     "The prompt is form_prompt(title, form): the form first, then the title."),
    (partial(_pairs_mistake, keep_untitled=True),
     "Skip a poem without a title (empty or blank): its prompt would carry no title to write about."),
    (partial(_pairs_mistake, order=False), "Keep the poems' order (one pair per kept poem, in input order)."),
)


def _compare_pairs(got: Any, expected: list[dict], spec: Check, case: Case) -> float:
    if not isinstance(got, list):
        raise _Mismatch(f"expected a list of dicts, got {type(got).__name__}", "Return a list (one dict per pair).")
    for i, g in enumerate(got):
        if not isinstance(g, dict) or set(g) != set(_PAIR_KEYS):
            keys = sorted(g) if isinstance(g, dict) else type(g).__name__
            raise _Mismatch(f"pair {i} is {keys}, expected a dict with exactly the keys {', '.join(_PAIR_KEYS)}",
                            "Each pair is {'prompt': ..., 'response': ..., 'form': ..., 'title': ...}.")
    for i, (g, e) in enumerate(zip(got, expected)):
        if g != e:
            key = next(k for k in _PAIR_KEYS if g[k] != e[k])
            raise _Mismatch(f"pair {i} (title {e['title']!r}): {key} is {g[key]!r}, expected {e[key]!r}")
    if len(got) != len(expected):
        extra = got[len(expected)] if len(got) > len(expected) else expected[len(got)]
        raise _Mismatch(f"{len(got)} pairs, expected {len(expected)}; the first "
                        f"{'extra' if len(got) > len(expected) else 'missing'} one has title {extra['title']!r}",
                        "One pair per poem that has a form AND a non-blank title, nothing else.")
    return 0.0


# ------------------------------------------------------------------------------------------------ 4. form_reward


def _reward_reference(responses: list[str], prompts: list[str]) -> torch.Tensor:
    return _poems().form_reward()(responses, prompts)


def _prompt(title: str, form: str, tags: bool = False) -> str:
    p = _poems().form_prompt(title, form)
    return f"<|user|>{p}<|end|><|assistant|>" if tags else p  # how a GRPO rollout decodes the prompt


def _reward_chat_tags() -> tuple:
    forms = list(BY_FORM)
    return ([BY_FORM[f] for f in forms] + [JUEJU5, LVSHI7],
            [_prompt("秋夜", f, tags=True) for f in forms] + [_prompt("秋夜", "七言絕句", tags=True),
                                                               _prompt("和五言絕句", "七言律詩", tags=True)])


def _reward_near_misses() -> tuple:
    responses = [JUEJU5.split("\n")[0] + "\n欲窮千里目，",                 # 3 lines
                 JUEJU5.replace("山", "□"), JUEJU5.replace("海", "A"),     # a lost character; a Latin letter
                 JUEJU5 + "\n國破山河在，城春草木深。",                     # 6 lines
                 "", JUEJU5 + "\n", LVSHI5.replace("深", "深處")]          # empty; trailing newline; one line of 6
    forms = ["五言絕句"] * 6 + ["五言律詩"]
    return responses, [_prompt("登樓", f) for f in forms]


def _reward_corpus() -> tuple:
    """Real poems of the corpus under their own prompt and under their neighbour's (often another form)."""
    pairs = _poems().instruction_pairs(_corpus_poems())
    own = [(p["response"], p["prompt"]) for p in pairs]
    other = [(p["response"], q["prompt"]) for p, q in zip(pairs, pairs[1:] + pairs[:1])]
    return [r for r, _ in own + other], [p for _, p in own + other]


def _compare_reward(got: Any, expected: torch.Tensor, spec: Check, case: Case) -> float:
    if not torch.is_tensor(got):
        raise _Mismatch(f"expected a torch.Tensor, got {type(got).__name__}",
                        "Return torch.tensor(scores, dtype=torch.float32): GRPO reads one float per response.")
    if got.dtype != torch.float32:
        raise _Mismatch(f"dtype {got.dtype}, expected torch.float32",
                        "torch.tensor([...], dtype=torch.float32): rewards are floats (a bool or int64 tensor, or "
                        "float64, is not what the trainer's advantages are computed in).")
    if got.shape != expected.shape:
        raise _Mismatch(f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}: one reward per response")
    return _compare(got, expected, spec, case)


def _reward_mistake(responses: list[str], prompts: list[str], *, kind: str) -> torch.Tensor:
    FORMS, classify_form = _poems().FORMS, _poems().classify_form
    if kind == "shaped":
        return _poems().form_reward(shaped=True)(responses, prompts)
    if kind == "any form":
        return torch.tensor([float(classify_form(r) is not None) for r in responses], dtype=torch.float32)
    asked = [next(f for f in FORMS if f in p) for p in prompts]  # kind "dict order": FORMS' order, not the prompt's
    return torch.tensor([float(classify_form(r) == f) for r, f in zip(responses, asked)], dtype=torch.float32)


_REWARD_MISTAKES: tuple[Mistake, ...] = (
    (partial(_reward_mistake, kind="any form"),
     "The reward is for the form the PROMPT asks for: a perfect 五言絕句 answering a 七言律詩 prompt gets 0."),
    (partial(_reward_mistake, kind="dict order"),
     "The asked form is the FIRST form name in the prompt (the leftmost match): a title may name another form."),
    (partial(_reward_mistake, kind="shaped"),
     "Binary reward: 1.0 when the response follows the asked form exactly, else 0.0 (no partial credit)."),
)


# ------------------------------------------------------------------------------------------------ registration


def _register_lab09() -> None:
    register_check(Check(
        name="verse_lines",
        shortcuts=("book.ch09_capstone.studies_poems.verse_lines",),
        summary="verse_lines(text) -> list[str]: the stripped pieces between ，。？！；、： ,.?!;: and newlines, empty "
                "ones dropped",
        hint="re.split(r'[，。？！；、：,.?!;:\\n]+', text), then strip each piece and keep the non-empty ones.",
        reference=_lines_reference, runner=partial(_each_text, "verse_lines"),
        compare=diagnosing(_LINES_MISTAKES, _per_text_compare(_check_lines),
                           runner=partial(_each_text, "verse_lines"), same=_same_value),
        cases=tuple(Case(label, partial(_one_text, text), hint) for label, text, hint in TEXTS)
        + (Case(f"the first {N_CORPUS} poems of the corpus", _corpus_texts),),
    ))
    register_check(Check(
        name="classify_form",
        shortcuts=("book.ch09_capstone.studies_poems.classify_form",),
        summary="classify_form(text) -> '五言絕句' | '七言絕句' | '五言律詩' | '七言律詩' | None, from the number of lines "
                "and the characters per line",
        hint="lines = verse_lines(text); a form needs 4 or 8 lines, all of the same length 5 or 7, every character "
             "Han (is_han); look the (lines, length) shape up in FORMS; else None.",
        reference=_form_reference, runner=partial(_each_text, "classify_form"),
        compare=diagnosing(_FORM_MISTAKES, _per_text_compare(_check_form),
                           runner=partial(_each_text, "classify_form"), same=_same_value),
        cases=tuple(Case(label, partial(_one_text, text), hint) for label, text, hint in TEXTS)
        + (Case(f"the first {N_CORPUS} poems of the corpus", _corpus_texts,
                "Real poems: notes in （）, titles in 《》, lost characters □; only clean 4 or 8 line poems count."),),
    ))
    register_check(Check(
        name="build_pairs",
        shortcuts=("book.ch09_capstone.studies_poems.instruction_pairs",),
        summary="build_pairs(poems) -> [{'prompt': form_prompt(title, form), 'response': poem.text, 'form', "
                "'title'}] for each poem with a form and a non-blank title, in order",
        hint="For each poem: form = classify_form(poem.text); title = poem.title.strip(); skip it if form is None "
             "or the title is empty; else append the dict with prompt form_prompt(title, form).",
        reference=_pairs_reference, runner=partial(_whole, "build_pairs"),
        compare=diagnosing(_PAIRS_MISTAKES, _compare_pairs, runner=partial(_whole, "build_pairs"), same=_same_value),
        cases=(
            Case("8 hand poems: spaces around a title, no title, a blank title, 6 lines, a □", _hand_poems),
            Case("no poems at all", lambda: ([],), "An empty list of poems gives an empty list of pairs."),
            Case("titles padded with a tab and a full-width space, a poem stored one line per paragraph",
                 _padded_poems),
            Case(f"the first {N_CORPUS} poems of the corpus", lambda: (list(_corpus_poems()),)),
        ),
    ))
    register_check(Check(
        name="form_reward",
        shortcuts=("book.ch09_capstone.studies_poems.follows_form", "book.ch09_capstone.studies_poems.form_reward"),
        summary="form_reward(responses, prompts) -> (N,) float32: 1.0 where the response has exactly the form its "
                "prompt names, else 0.0",
        hint="form = the first of FORMS' names found in the prompt (chat tags may surround it); reward 1.0 when "
             "classify_form(response) == form; return torch.tensor(scores, dtype=torch.float32).",
        reference=_reward_reference, runner=partial(_whole, "form_reward"),
        compare=diagnosing(_REWARD_MISTAKES, _compare_reward, runner=partial(_whole, "form_reward"),
                           same=_same_value),
        atol=0.0, rtol=0.0,
        cases=(
            Case("one poem of each form, each under its own prompt",
                 lambda: (list(BY_FORM.values()), [_prompt("春日", f) for f in BY_FORM])),
            Case("one 五言絕句 under the prompts of all four forms",
                 lambda: ([JUEJU5] * 4, [_prompt("登樓", f) for f in BY_FORM]),
                 "Only the prompt's own form earns 1.0."),
            Case("prompts wrapped in chat tags, as a GRPO rollout decodes them; a title naming another form",
                 _reward_chat_tags,
                 "Find the form's name anywhere in the prompt, the leftmost one: prompt[:4] is '<|us' here."),
            Case("near misses: 3 lines, a □, a Latin letter, 6 lines, empty, a trailing newline, one line of 6",
                 _reward_near_misses),
            Case("one response", lambda: ([JUEJU7], [_prompt("涼州詞", "七言絕句")]),
                 "Shape (1,), not a 0-d tensor."),
            Case(f"the pairs of the first {N_CORPUS} poems, under their own and their neighbour's prompt",
                 _reward_corpus),
        ),
    ))


_register_lab09()  # cheap: builds Check objects only (the corpus is read when a check first runs)

