"""Tool use: a calculator the model calls in its own text, and greedy decoding that runs the call.
Survey §6.4 (planning and external tools; Toolformer, Schick et al. 2023: the model writes an API call into its
text, the runtime executes it and pastes the result back, and the model continues from there).

The format is compact so a tiny character-level model can learn it. A training line with the tool reads

    37*48=<calc>37*48</calc>=>1776 so 1776

The model writes everything except ``=>1776``: it copies the problem into a call, and when it closes the call
``generate_with_tools`` pauses, runs `calculator` and appends RESULT_MARK + result; the model then copies the result
after ANSWER_MARK and ends the line with a newline. Without the tool (the baseline) the same problem reads
``37*48=1776``: the model must multiply in its weights, which a tiny model cannot do beyond one digit.

Training and evaluation problems are disjoint by construction: every problem (a, op, b) belongs to the held-out
set or not by a hash of its text (`is_heldout`), so `tool_text` never writes a problem that `tool_examples` asks,
whatever the seeds.

The study (`tool_study`, Survey §7.1.3 arithmetic reasoning) trains each model size twice on the SAME problems,
with calculator calls and with direct answers, and evaluates both (the calculator available to both) on held-out
problems of 1 to 4 digits per operand, 4 never seen in training. Measured at `laptop` (seed 0, 106-137 s on one
shared CPU thread), exact match tool / no_tool at 1, 2, 3, 4 digits:

    L1-C32  tool 0.00 0.00 0.00 0.00   no_tool 0.16 0.00 0.00 0.00   (one layer never learned to copy)
    L2-C48  tool 0.72 0.70 0.32 0.00   no_tool 0.52 0.02 0.00 0.00
    L2-C64  tool 1.00 1.00 1.00 0.00   no_tool 0.72 0.00 0.00 0.00

A tool only helps as far as the model can use it: at 4 digits L2-C64 copies just 3 of the 4 digits of each operand
into the call (1417*5076 -> <calc>137*506</calc>), a length it never wrote in training.
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch

from minillm.model.transformer import logits_of

CALL_OPEN, CALL_CLOSE = "<calc>", "</calc>"
RESULT_MARK = "=>"        # the runtime writes this and the tool's result right after a closed call
ANSWER_MARK = " so "      # the model's final answer follows the last one on the line
CALC_ERROR = "ERR"        # what a bad call returns: the model sees it and goes on; nothing raises
MAX_EXPR_CHARS = 64       # longer expressions are refused: a model's runaway call must not cost seconds
MAX_NUMBER_DIGITS = 18
HELDOUT_MOD = 8           # one problem in 8 (by hash) is kept for evaluation only

_EXPR = re.compile(r"\d+(?:[+\-*]\d+)*")
_PIECES = re.compile(r"\d+|[+\-*]")
_TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def calculator(expr: str) -> str:
    """Evaluate ``+ - *`` on non-negative integers with the usual precedence (* before + and -), without eval().

    Spaces are ignored. Anything else (letters, brackets, division, a leading sign, an empty or too long
    expression) returns CALC_ERROR: a model's bad call must never raise. The result may be negative ("3-5")."""
    if not isinstance(expr, str):
        return CALC_ERROR
    expr = "".join(expr.split())
    if not expr or len(expr) > MAX_EXPR_CHARS or not _EXPR.fullmatch(expr):
        return CALC_ERROR
    pieces = _PIECES.findall(expr)  # number, op, number, op, ...
    if any(len(p) > MAX_NUMBER_DIGITS for p in pieces[::2]):
        return CALC_ERROR
    total, sign, term = 0, 1, int(pieces[0])
    for op, num in zip(pieces[1::2], pieces[2::2]):
        if op == "*":
            term *= int(num)  # a product binds tighter: keep building the current term
        else:
            total += sign * term
            sign, term = (1 if op == "+" else -1), int(num)
    return str(total + sign * term)


# ---- problems and training text ------------------------------------------------------------------------------


def is_heldout(a: int, b: int, op: str = "*") -> bool:
    """True for the evaluation-only problems: a fixed hash of "a op b" decides, so no seed can leak one."""
    return zlib.crc32(f"{a}{op}{b}".encode()) % HELDOUT_MOD == 0


def _digit_range(digits) -> tuple[int, int]:
    """digits: an int d (exactly d digits) or a (lo, hi) range of digit counts, inclusive."""
    lo, hi = (digits, digits) if isinstance(digits, (int, np.integer)) else tuple(digits)
    if isinstance(lo, bool) or not 1 <= int(lo) <= int(hi) <= 9:
        raise ValueError(f"digits={digits!r} must be an int in 1..9 or a (lo, hi) pair with 1 <= lo <= hi <= 9")
    return int(lo), int(hi)


def _number(rng: np.random.Generator, d: int) -> int:
    """A uniform d-digit non-negative integer (1 digit includes 0)."""
    return int(rng.integers(0 if d == 1 else 10 ** (d - 1), 10 ** d))


def _problems(n: int, seed: int, digits, heldout: bool, stream: int) -> list[tuple[int, int]]:
    """n multiplication problems, each operand with a digit count drawn from `digits`, from the held-out set or
    from its complement."""
    from minillm.data.tasks.pretraining import stream_seed

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r} must be a positive int (the number of problems)")
    lo, hi = _digit_range(digits)
    rng = np.random.default_rng(stream_seed(seed, "tool_calc", stream))
    out: list[tuple[int, int]] = []
    for _ in range(50 * HELDOUT_MOD * n):  # rejection: about 1 draw in HELDOUT_MOD is held out
        if len(out) == n:
            break
        a, b = _number(rng, int(rng.integers(lo, hi + 1))), _number(rng, int(rng.integers(lo, hi + 1)))
        if is_heldout(a, b) == heldout:
            out.append((a, b))
    if len(out) < n:
        raise ValueError(f"could not draw {n} {'held-out' if heldout else 'training'} problems with digits={digits!r}")
    return out


def tool_line(a: int, b: int, with_tool: bool = True) -> str:
    """One training line for a*b: with the calculator call and its result, or the direct answer."""
    ans = str(a * b)
    if with_tool:
        return f"{a}*{b}={CALL_OPEN}{a}*{b}{CALL_CLOSE}{RESULT_MARK}{ans}{ANSWER_MARK}{ans}\n"
    return f"{a}*{b}={ans}\n"


def tool_text(n: int, seed: int, digits=(1, 3), with_tool: bool = True) -> str:
    """n multiplication problems (operand digit counts uniform in `digits`), one per line, never a held-out one.
    with_tool=False writes the SAME problems answered directly (the no-tool baseline's training text)."""
    from minillm.data.tasks.pretraining import TRAIN_STREAM

    return "".join(tool_line(a, b, with_tool) for a, b in _problems(n, seed, digits, False, TRAIN_STREAM))


def tool_examples(n: int, seed: int, digits) -> list[tuple[str, str]]:
    """n held-out evaluation problems as (prompt "a*b=", answer "a*b as digits"); digits is an int (both operands
    have exactly that many digits) or a (lo, hi) range. Problems may repeat where the held-out pool is small
    (about 12 of the 100 one-digit products)."""
    from minillm.data.tasks.pretraining import EVAL_STREAM

    return [(f"{a}*{b}=", str(a * b)) for a, b in _problems(n, seed, digits, True, EVAL_STREAM)]


def extract_answer(text: str) -> str | None:
    """The final answer in a continuation: what follows the last ANSWER_MARK, or the whole line when the model
    answered directly (no call, no mark); None when it called a tool but never gave an answer."""
    text = text.split("\n", 1)[0]
    if ANSWER_MARK in text:
        return text.rsplit(ANSWER_MARK, 1)[1].strip()
    return None if "<" in text else text.strip()


# ---- generation with tools -----------------------------------------------------------------------------------


@dataclass
class ToolTrace:
    """What `generate_with_tools` wrote after the prompt: the model's tokens with every tool result pasted in
    (without the final newline), each call as (expression, result), and why it stopped: "newline",
    "max_new_tokens" or "max_calls" (the model closed one call more than allowed; that call was not run)."""

    text: str
    calls: list[tuple[str, str]] = field(default_factory=list)
    stop: str = "newline"

    @property
    def answer(self) -> str | None:
        return extract_answer(self.text)


def _tags(tools: Mapping[str, Callable[[str], str]]) -> dict[str, tuple[str, str]]:
    if not isinstance(tools, Mapping) or not tools:
        raise ValueError("tools must be a non-empty mapping of name -> callable(str) -> str, e.g. {'calc': calculator}")
    for name, fn in tools.items():
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name) or not callable(fn):
            raise ValueError(f"tool {name!r}: names must be identifiers (the call is <name>...</name>) and "
                             "values callables")
    return {name: (f"<{name}>", f"</{name}>") for name in tools}


def _run_tool(fn: Callable[[str], str], expr: str | None) -> str:
    if expr is None:
        return CALC_ERROR  # a close tag without its open tag: nothing to run
    try:
        return str(fn(expr))
    except Exception:  # a tool's failure is the model's problem to read, never the decoder's crash
        return CALC_ERROR


@torch.no_grad()
def generate_with_tools(model, tokenizer, prompt: str, max_new_tokens: int,
                        tools: Mapping[str, Callable[[str], str]] = MappingProxyType({"calc": calculator}),
                        max_calls: int = 4) -> ToolTrace:
    """Greedy continuation of `prompt` that executes tool calls: when the model's text ends with ``</name>`` the
    expression since the matching ``<name>`` is passed to ``tools[name]`` and RESULT_MARK + result is appended to
    the context (and to the trace) before decoding goes on. Stops at a newline, after `max_new_tokens` tokens the
    MODEL wrote (pasted results do not count), or when the model closes call number max_calls + 1.

    The model needs ``.config.block_size`` and ``forward(idx (1, T)) -> logits (1, T, V)`` or ``(logits, _)``.
    With ``make_cache`` (minillm.GPT) a KV cache is used: each step feeds only the new tokens (one, or a pasted
    result); past block_size the context is cropped and re-encoded, exactly as `minillm.generate.generate` does.
    """
    from minillm.generate import sample_next

    if not isinstance(prompt, str) or not prompt:
        raise ValueError("prompt must be a non-empty str: the first token needs something to condition on")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be a positive int")
    if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 0:
        raise ValueError(f"max_calls={max_calls!r} must be an int >= 0")
    tags = _tags(tools)
    newline = tokenizer.encode("\n")
    if len(newline) != 1:
        raise ValueError("the tokenizer must encode a newline as exactly one token (it ends the answer line)")
    block = model.config.block_size
    use_cache = hasattr(model, "make_cache")
    params = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    device = params.device if params is not None else torch.device("cpu")
    ctx = list(tokenizer.encode(prompt))
    text, calls, stop = "", [], "max_new_tokens"
    call_from = 0  # where in `text` the current call may start: after the last pasted result
    cache, n_fed = None, 0
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        for _ in range(max_new_tokens):
            if cache is not None and len(ctx) <= block:
                x = torch.tensor([ctx[n_fed:]], dtype=torch.long, device=device)  # (1, new): one token or a result
                logits = logits_of(model(x, cache=cache))
            else:
                context = ctx[-block:]
                cache = model.make_cache(1) if use_cache and len(context) < block else None
                x = torch.tensor([context], dtype=torch.long, device=device)  # (1, T) (re)encode everything
                logits = logits_of(model(x, cache=cache) if cache is not None else model(x))
            n_fed = len(ctx)
            nxt = int(sample_next(logits[:, -1, :], temperature=0.0)[0])  # greedy
            if nxt == newline[0]:
                stop = "newline"
                break
            ctx.append(nxt)
            text += tokenizer.decode([nxt])
            closed = next((n for n, (_, close) in tags.items() if text.endswith(close)), None)
            if closed is None:
                continue
            if len(calls) >= max_calls:
                stop = "max_calls"
                break
            open_tag, close_tag = tags[closed]
            start = text.rfind(open_tag, call_from, len(text) - len(close_tag))
            expr = text[start + len(open_tag):len(text) - len(close_tag)] if start >= 0 else None
            result = _run_tool(tools[closed], expr)
            try:
                pasted_ids = tokenizer.encode(RESULT_MARK + result)
            except (KeyError, ValueError):  # a result the vocabulary cannot spell reaches the model as an error
                result = CALC_ERROR
                pasted_ids = tokenizer.encode(RESULT_MARK + result)
            calls.append((expr if expr is not None else "", result))
            pasted = RESULT_MARK + result
            ctx.extend(pasted_ids)
            text += pasted
            call_from = len(text)
    finally:
        if hasattr(model, "train"):
            model.train(was_training)
    return ToolTrace(text, calls, stop)


# ---- the study -----------------------------------------------------------------------------------------------


def evaluate_tools(model, tokenizer, examples, max_new_tokens: int, max_calls: int = 4) -> dict:
    """Exact match of the final answer and tool calls per answer over (prompt, answer) examples. Each prompt is
    decoded after a newline, as every problem in the training text starts a line."""
    hits, calls = [], []
    for prompt, answer in examples:
        trace = generate_with_tools(model, tokenizer, "\n" + prompt, max_new_tokens, max_calls=max_calls)
        hits.append(trace.stop == "newline" and trace.answer == answer)
        calls.append(len(trace.calls))
    return {"exact_match": float(np.mean(hits)), "calls_per_answer": float(np.mean(calls))}
