"""Tool use (Survey §6.4): the calculator, the training text format, generation that runs calls, and the study."""
import re

import pytest
import torch

from minillm.config import ModelConfig
from minillm.data.tasks.pretraining import emergence_tokenizer
from minillm.generate import generate
from minillm.model.transformer import GPT
from minillm.tools import (
    ANSWER_MARK,
    CALC_ERROR,
    CALL_CLOSE,
    CALL_OPEN,
    RESULT_MARK,
    ToolTrace,
    calculator,
    extract_answer,
    generate_with_tools,
    is_heldout,
    tool_examples,
    tool_text,
)

TOK = emergence_tokenizer()


@pytest.mark.parametrize("expr, want", [("37*48", "1776"), ("2+3*4", "14"), ("2*3+4", "10"), ("10-3*5", "-5"),
                                        ("7", "7"), (" 12 * 12 ", "144"), ("0*999", "0"), ("100-1-1", "98"),
                                        ("123456789*987654321", str(123456789 * 987654321))])
def test_calculator_hand_cases(expr, want):
    assert calculator(expr) == want


@pytest.mark.parametrize("bad", ["", "   ", "1/2", "-1", "1++2", "2*", "*2", "(1+2)", "abc", "1e5", "2**3",
                                 "__import__('os')", "9" * 30, "1+" * 40 + "1", None, 12])
def test_calculator_bad_input_returns_error_string(bad):
    assert calculator(bad) == CALC_ERROR


def test_training_text_round_trips():
    text = tool_text(300, seed=3, digits=(1, 3))
    lines = text.splitlines(keepends=True)
    assert len(lines) == 300 and all(line.endswith("\n") for line in lines)
    pat = re.compile(r"(\d+)\*(\d+)=" + re.escape(CALL_OPEN) + r"(.*?)" + re.escape(CALL_CLOSE)
                     + re.escape(RESULT_MARK) + r"(-?\d+)" + re.escape(ANSWER_MARK) + r"(\d+)\n")
    for line in lines:
        m = pat.fullmatch(line)
        assert m, line
        a, b, expr, result, answer = m.groups()
        assert calculator(expr) == result == answer == str(int(a) * int(b))  # every call evaluates to its result
        assert 1 <= len(a) <= 3 and 1 <= len(b) <= 3
        assert not is_heldout(int(a), int(b))


def test_no_tool_text_has_the_same_problems_answered_directly():
    with_tool, direct = tool_text(50, seed=1), tool_text(50, seed=1, with_tool=False)
    assert CALL_OPEN not in direct
    for t, d in zip(with_tool.splitlines(), direct.splitlines()):
        q, ans = d.split("=")
        a, b = map(int, q.split("*"))
        assert t.startswith(q + "=") and extract_answer(t[len(q) + 1:]) == ans == str(a * b)


def test_eval_examples_are_held_out_and_disjoint_from_training():
    train = {line.split("=")[0] for line in tool_text(2000, seed=0, digits=(1, 2)).splitlines()}
    for d in (1, 2, 4):
        ex = tool_examples(30, seed=0, digits=d)
        assert len(ex) == 30
        for prompt, answer in ex:
            a, b = map(int, prompt.rstrip("=").split("*"))
            assert len(str(a)) == len(str(b)) == d and answer == str(a * b) and is_heldout(a, b)
            assert prompt.rstrip("=") not in train


def test_text_and_examples_are_deterministic_per_seed():
    assert tool_text(100, seed=5) == tool_text(100, seed=5) != tool_text(100, seed=6)
    assert tool_examples(20, 5, 3) == tool_examples(20, 5, 3) != tool_examples(20, 6, 3)


@pytest.mark.parametrize("kw", [dict(n=0, seed=0, digits=2), dict(n=3, seed=0, digits=(3, 1)),
                                dict(n=3, seed=0, digits=0), dict(n=3, seed=-1, digits=2)])
def test_bad_arguments_raise_clear_errors(kw):
    with pytest.raises(ValueError):
        tool_examples(**kw)


class Scripted(torch.nn.Module):
    """Emits `script` one character per forward call (no KV cache), and records every context it was shown."""

    def __init__(self, script: str, block_size: int = 256):
        super().__init__()
        self.config = type("Cfg", (), {"block_size": block_size})()
        self.script, self.step, self.seen = script, 0, []
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx, cache=None):
        self.seen.append(TOK.decode(idx[0].tolist()))
        logits = torch.zeros(idx.size(0), idx.size(1), TOK.vocab_size)
        logits[:, -1, TOK.encode(self.script[self.step])[0]] = 1.0
        self.step += 1
        return logits, None


def test_generate_with_tools_inserts_the_result_and_continues():
    model = Scripted(f"{CALL_OPEN}37*48{CALL_CLOSE} so 1776\nIGNORED")
    trace = generate_with_tools(model, TOK, "37*48=", max_new_tokens=50)
    assert trace.text == f"{CALL_OPEN}37*48{CALL_CLOSE}{RESULT_MARK}1776 so 1776"
    assert trace.calls == [("37*48", "1776")] and trace.stop == "newline" and trace.answer == "1776"
    # the model saw the pasted result before writing its answer
    assert any(s.endswith(f"{CALL_CLOSE}{RESULT_MARK}1776") for s in model.seen)


def test_the_tool_not_the_model_writes_the_result():
    model = Scripted(f"{CALL_OPEN}1+1{CALL_CLOSE} so x\n")
    trace = generate_with_tools(model, TOK, "q=", 40, tools={"calc": lambda e: "42"})
    assert trace.text == f"{CALL_OPEN}1+1{CALL_CLOSE}{RESULT_MARK}42 so x" and trace.calls == [("1+1", "42")]
    bad = generate_with_tools(Scripted(f"{CALL_OPEN}1/0{CALL_CLOSE}\n"), TOK, "q=", 40)
    assert bad.calls == [("1/0", CALC_ERROR)]  # a bad call is answered, not raised
    crash = generate_with_tools(Scripted(f"{CALL_OPEN}1{CALL_CLOSE}\n"), TOK, "q=", 40, tools={"calc": lambda e: 1 / 0})
    assert crash.calls == [("1", CALC_ERROR)]
    unspellable = generate_with_tools(Scripted(f"{CALL_OPEN}1{CALL_CLOSE}\n"), TOK, "q=", 40,
                                      tools={"calc": lambda e: "é"})
    assert unspellable.text.endswith(RESULT_MARK + CALC_ERROR)
    no_open = generate_with_tools(Scripted(f"1+1{CALL_CLOSE} so 2\n"), TOK, "q=", 40)
    assert no_open.calls == [("", CALC_ERROR)] and no_open.answer == "2"


def test_max_calls_is_enforced_and_budget_counts_model_tokens():
    call = f"{CALL_OPEN}2*2{CALL_CLOSE}"
    trace = generate_with_tools(Scripted(call * 10 + " so 4\n"), TOK, "q=", 500, max_calls=2)
    assert len(trace.calls) == 2 and trace.stop == "max_calls"
    assert trace.text == (call + RESULT_MARK + "4") * 2 + call
    none = generate_with_tools(Scripted(call + "\n"), TOK, "q=", 500, max_calls=0)
    assert none.calls == [] and none.stop == "max_calls"
    short = generate_with_tools(Scripted(call + " so 4\n"), TOK, "q=", len(call) + 2)
    assert short.stop == "max_new_tokens" and short.text == call + RESULT_MARK + "4 s"  # pasted "=>4" is free


def test_generate_with_tools_validates_arguments():
    with pytest.raises(ValueError, match="prompt"):
        generate_with_tools(Scripted("\n"), TOK, "", 5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_with_tools(Scripted("\n"), TOK, "q", 0)
    with pytest.raises(ValueError, match="max_calls"):
        generate_with_tools(Scripted("\n"), TOK, "q", 5, max_calls=-1)
    with pytest.raises(ValueError, match="tools"):
        generate_with_tools(Scripted("\n"), TOK, "q", 5, tools={})


def _gpt(block_size=32):
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=TOK.vocab_size, block_size=block_size, n_layer=2, n_embd=32, n_head=2,
                           position="rope")).eval()


def test_without_calls_it_is_greedy_generate():
    model = _gpt()
    trace = generate_with_tools(model, TOK, "12*34=", 20, tools={"zz": calculator})  # a tag a random model never closes
    ids = generate(model, torch.tensor([TOK.encode("12*34=")]), 20, temperature=0.0)[0, 6:].tolist()
    want = TOK.decode(ids).split("\n", 1)[0]
    assert trace.text == want and trace.calls == []


class Forced(torch.nn.Module):
    """A real GPT (with or without its KV cache) whose argmax is forced to follow `script`; records the GPT's own
    last-position logits so cached and uncached decoding can be compared through pasted tool results."""

    def __init__(self, gpt, script, cached):
        super().__init__()
        self.gpt, self.script, self.step, self.logged = gpt, script, 0, []
        self.config = gpt.config
        if cached:
            self.make_cache = gpt.make_cache

    def forward(self, idx, cache=None):
        logits, _ = self.gpt(idx, cache=cache)
        self.logged.append(logits[0, -1].clone())
        forced = logits.clone()
        forced[:, -1, TOK.encode(self.script[self.step])[0]] = 1e4
        self.step += 1
        return forced, None


def test_kv_cache_path_matches_uncached_through_tool_results_and_cropping():
    gpt = _gpt(block_size=24)  # the 30+ character trace crosses block_size: the crop-and-re-encode path runs
    script = f"{CALL_OPEN}99*99{CALL_CLOSE} so 9801 ok\n"
    runs = [Forced(gpt, script, cached) for cached in (True, False)]
    traces = [generate_with_tools(r, TOK, "99*99=", 60) for r in runs]
    assert traces[0] == traces[1] and traces[0].calls == [("99*99", "9801")]
    for a, b in zip(*(r.logged for r in runs)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_tool_trace_answer():
    assert ToolTrace("<calc>1*2</calc>=>2 so 2").answer == "2"
    assert ToolTrace("56").answer == "56" and ToolTrace("<calc>1*2</calc>=>2").answer is None
