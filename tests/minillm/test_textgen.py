"""Text in, text out (issue #22 item 9): generation stops at the tokenizer's end tokens by default, at stop strings
(cut before them, also across BPE token boundaries), hides special tokens, names a prompt's unknown characters with
the right fix, and answers in chat mode. A scripted stand-in for the model makes greedy decoding emit a known
sequence; a real GPT checks seeding and agreement with the tensor-level `generate`."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from minillm.config import ModelConfig
from minillm.data.tokenizer import BPETokenizer, CharTokenizer
from minillm.finetune.chat import END, USER, ChatTemplate, chat_tokenizer
from minillm.finetune.sft_loop import EOS_TOKEN
from minillm.generate import generate
from minillm.model.transformer import GPT
from minillm.textgen import END_TOKENS, generate_text, unknown_characters

EOS = "<|endoftext|>"
CHAR = CharTokenizer.from_text("abcdehlorwy .", special_tokens=(EOS,))


class Scripted(nn.Module):
    """The GPT call signature (idx (B, T) -> (logits (B, T, V), None)) and a `config`; whatever the prompt, greedy
    decoding emits `script` (then repeats its last id). Records the prompt it was given and how often it ran."""

    def __init__(self, script: list[int], vocab_size: int):
        super().__init__()
        self.script, self.vocab_size = list(script), vocab_size
        self.config = SimpleNamespace(block_size=256, vocab_size=vocab_size)
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so the model has a device
        self.prompt: list[int] | None = None
        self.calls = 0

    def forward(self, idx, targets=None, **kw):
        if self.prompt is None:
            self.prompt = idx[0].tolist()
        self.calls += 1
        n = min(idx.size(1) - len(self.prompt), len(self.script) - 1)  # tokens generated so far
        logits = torch.full((idx.size(0), idx.size(1), self.vocab_size), -10.0, device=idx.device)  # (B, T, V)
        logits[:, -1, self.script[n]] = 10.0
        return logits, None


def _ids(tok, *parts: str) -> list[int]:
    """Ids of text pieces; a piece that is a special token becomes its one id."""
    return [i for p in parts for i in ([tok.token_to_id(p)] if p in tok.special_tokens else tok.encode(p))]


def _gen(tok, script_parts, prompt="a", n=30, **kw) -> tuple[str, Scripted]:
    model = Scripted(_ids(tok, *script_parts), tok.vocab_size)
    return generate_text(model, tok, prompt, n, temperature=0, **kw), model


def test_end_tokens_are_the_library_constants():
    assert END_TOKENS == (EOS_TOKEN, END) == (EOS, "<|end|>")


def test_stops_at_end_of_text_by_default_and_leaves_the_token_out():
    text, model = _gen(CHAR, ["ab", EOS, "cd"], n=5)
    assert text == "ab" and model.calls == 3  # stopped generating at the EOS, not only trimmed the text
    old = generate(Scripted(_ids(CHAR, "ab", EOS, "cd"), CHAR.vocab_size), torch.tensor([[1]]), 5, temperature=0,
                   use_cache=False)
    assert CHAR.decode(old[0, 1:].tolist()) == "ab" + EOS + "cd"  # the tensor API runs the budget out
    assert _gen(CHAR, ["ab", EOS, "cd"], n=5, stop_at_special=False)[0] == "abcd"  # EOS hidden by default
    assert _gen(CHAR, ["ab", EOS, "cd"], n=5, stop_at_special=False, skip_special_tokens=False)[0] == "ab" + EOS + "cd"
    assert _gen(CHAR, ["ab", EOS, "cd"], n=5, skip_special_tokens=False)[0] == "ab"  # the stop token is never shown


def test_stops_at_the_chat_end_token_and_hides_other_special_tokens():
    tok = chat_tokenizer()
    assert _gen(tok, ["ok", END, "no"])[0] == "ok"
    assert _gen(tok, ["a", USER, "b", END, "c"])[0] == "ab"
    assert _gen(tok, ["a", USER, "b", END, "c"], skip_special_tokens=False)[0] == "a" + USER + "b"
    assert _gen(tok, ["a", USER, "b", END, "c"], n=5, stop_at_special=False)[0] == "abc"


def test_budget_ends_generation_without_an_end_token():
    text, model = _gen(CHAR, ["hello world"], n=4)
    assert text == "hell" and model.calls == 4
    assert _gen(CHAR, ["hello"], n=0)[0] == ""


def test_stop_strings_cut_before_the_string_char_tokenizer():
    script = ["hello world. bye"]
    text, model = _gen(CHAR, script, stop=".")
    assert text == "hello world" and model.calls == len("hello world.")  # generation ended at the stop string
    assert _gen(CHAR, script, stop=["xyz", "o w"])[0] == "hell"
    assert _gen(CHAR, script, stop=["lo", "llo"])[0] == "he"  # both complete on one token: the earlier one wins
    assert _gen(CHAR, script, stop=("llo", "lo"))[0] == "he"
    assert _gen(CHAR, script, n=16, stop="zz")[0] == "hello world. bye"
    assert _gen(CHAR, ["ab", EOS, "cd ."], stop_at_special=False, stop="d ")[0] == "abc"  # searched as shown


@pytest.fixture(scope="module")
def bpe():
    text = "the cat sat on the mat. the dog sat on the log. " * 30  # ASCII only: no merge inside a 2-byte character
    return BPETokenizer.train(text, vocab_size=270)


def test_stop_string_between_bpe_token_boundaries(bpe):
    target = "the cat sat on the mat"
    ids = bpe.encode(target)
    boundaries = {len(bpe.decode(ids[:k])) for k in range(len(ids) + 1)}
    cut = target.index("at o")
    assert cut not in boundaries and max(len(bpe.decode([i])) for i in ids) > 1  # a real mid-token stop
    assert _gen(bpe, [target], prompt="the", stop="at o")[0] == target[:cut]
    assert _gen(bpe, [target], prompt="the", n=len(ids))[0] == target


def test_incremental_decoding_keeps_multibyte_characters_whole(bpe):
    assert len(bpe.encode("é")) == 2 and "\ufffd" in bpe.decode(bpe.encode("é")[:1])  # é spans two tokens
    ids = bpe.encode("café ok")
    assert _gen(bpe, ["café ok"], prompt="the", n=len(ids))[0] == "café ok"
    assert _gen(bpe, ["café ok"], prompt="the", stop="é")[0] == "caf"
    assert _gen(bpe, ["café ok"], prompt="the", stop=" ok")[0] == "café"


def test_unknown_prompt_characters_say_remove_them():
    with pytest.raises(ValueError, match="rebuild the tokenizer"):
        CHAR.encode("abz")  # the tokenizer's own advice, right in `prepare`, wrong at generation time
    model = Scripted([1], CHAR.vocab_size)
    with pytest.raises(ValueError, match=r"remove them from the prompt \(the model's tokenizer has no id") as e:
        generate_text(model, CHAR, "abz€z", 5)
    msg = str(e.value)
    assert "'z'" in msg and "'€'" in msg and "2 character(s)" in msg and "rebuild" not in msg
    with pytest.raises(ValueError, match="12 character") as e:
        generate_text(model, CHAR, "a" + "ABCDEFGHIJKL", 5)
    assert "'J'" in str(e.value) and "'K'" not in str(e.value) and "and 2 more" in str(e.value)
    assert unknown_characters(CHAR, "zaz€" + EOS + "<") == ["z", "€", "<"]  # a special token written out is fine
    assert generate_text(Scripted(_ids(CHAR, "ab"), CHAR.vocab_size), CHAR, "a" + EOS, 2, temperature=0) == "ab"


def test_unknown_characters_of_a_byte_level_tokenizer(bpe):
    assert unknown_characters(bpe, "zß€😀") == []


def test_chat_mode_renders_the_user_turn_and_returns_the_answer():
    tok = chat_tokenizer()
    model = Scripted(_ids(tok, "cba", END, "zz"), tok.vocab_size)
    answer = generate_text(model, tok, "Reverse the word abc:", 10, temperature=0, chat=True)
    assert answer == "cba"
    want = ChatTemplate(tok).prompt_ids([{"role": "user", "content": "Reverse the word abc:"}]).tolist()
    assert model.prompt == want and tok.decode(want).endswith("<|assistant|>")
    # the answer ends at <|end|> even when asked to go past end tokens
    assert _gen(tok, ["cba", END, "zz"], prompt="hi", chat=True, stop_at_special=False)[0] == "cba"
    assert _gen(tok, ["cba", END, "zz"], prompt="hi", chat=True, stop="b")[0] == "c"
    with pytest.raises(ValueError, match="lacks the chat special token"):
        generate_text(Scripted([1], CHAR.vocab_size), CHAR, "abc", 5, chat=True)
    with pytest.raises(ValueError, match="remove them from the prompt") as e:
        generate_text(model, tok, "caf\u00e9", 5, chat=True)
    assert "'é'" in str(e.value)
    with pytest.raises(ValueError, match="chat tag"):  # not an unknown character: ChatTemplate's own message
        generate_text(model, tok, "hi <|end|>", 5, chat=True)


def test_stopping_early_restores_train_mode():
    model = Scripted(_ids(CHAR, "ab", EOS), CHAR.vocab_size).train()
    assert generate_text(model, CHAR, "a", 10, temperature=0) == "ab" and model.training
    model.eval()
    generate_text(model, CHAR, "a", 10, temperature=0, stop="b")
    assert not model.training


def test_bad_arguments_are_refused():
    model = Scripted([1], CHAR.vocab_size)
    with pytest.raises(ValueError, match="prompt is empty"):
        generate_text(model, CHAR, "", 5)
    with pytest.raises(ValueError, match="non-empty str"):
        generate_text(model, CHAR, "a", 5, stop=["b", ""])
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_text(model, CHAR, "a", -1)
    with pytest.raises(TypeError, match="prompt must be a str"):
        generate_text(model, CHAR, [1, 2], 5)
    with pytest.raises(ValueError, match="temperature"):
        generate_text(model, CHAR, "a", 5, temperature=-1)


def _gpt(tok, device="cpu") -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32)
    return GPT(cfg).to(device).eval()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_seeded_sampling_matches_the_tensor_api(device):
    model, prompt = _gpt(CHAR, device), "hello "
    idx = torch.tensor([CHAR.encode(prompt)], device=device)
    kw = dict(temperature=1.0, stop_at_special=False, skip_special_tokens=False)
    text = generate_text(model, CHAR, prompt, 20, seed=3, **kw)
    out = generate(model, idx, 20, temperature=1.0, generator=torch.Generator(device=device).manual_seed(3))
    assert text == CHAR.decode(out[0, idx.size(1):].tolist())  # same loop, same random stream
    assert generate_text(model, CHAR, prompt, 20, seed=3, **kw) == text
    assert generate_text(model, CHAR, prompt, 20, seed=4, **kw) != text
    greedy = generate(model, idx, 20, temperature=0)
    assert generate_text(model, CHAR, prompt, 20, temperature=0, stop_at_special=False,
                         skip_special_tokens=False) == CHAR.decode(greedy[0, idx.size(1):].tolist())
    # by default the same text stops where the tensor API's stop_tokens=[EOS] stops
    stopped = generate(model, idx, 20, temperature=1.0, stop_tokens=[CHAR.token_to_id(EOS)],
                       generator=torch.Generator(device=device).manual_seed(3))[0, idx.size(1):].tolist()
    eos = CHAR.token_to_id(EOS)
    want = CHAR.decode(stopped[:stopped.index(eos)] if eos in stopped else stopped)
    assert generate_text(model, CHAR, prompt, 20, temperature=1.0, seed=3) == want
