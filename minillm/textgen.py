"""Text in, text out: generation that stops where the text ends (Survey §4.2.4, decoding strategy; §5.1.1 for
the chat format).

`minillm.generate` works on token ids and stops only where told. A user with a prompt wants more: the model's
end-of-text token ends the text (a pretrained model writes "<|endoftext|>" where a document ends, a chat-tuned one
writes "<|end|>" where its answer ends), a stop string ends it too (for BPE the string need not sit on a token
boundary, so the decoded text is searched, not the ids), and special tokens are bookkeeping the reader should not
see. `generate_text` does this on top of `stream`, one token per step:

    text = generate_text(model, tokenizer, "ROMEO:", 200, stop="\\n\\n")      # continuation only
    answer = generate_text(model, chat_tok, "Reverse the word abc:", chat=True)  # the assistant's answer

A prompt the tokenizer cannot spell is refused with the characters named: at generation time the fix is to remove
them from the prompt (the model was trained with this tokenizer; a new one would not fit its embedding).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from minillm.data.special_tokens import EOS_TOKEN, special_token_pattern
from minillm.data.tokenizer import encode_array
from minillm.finetune.chat import END, ChatTemplate, as_messages
from minillm.generate import stream

__all__ = ["END_TOKENS", "generate_text", "unknown_characters"]

END_TOKENS = (EOS_TOKEN, END)  # where a text ends: the end of a document, the end of a chat turn
MAX_SHOWN = 10  # unknown characters named in the error; the rest are counted


def unknown_characters(tokenizer: Any, text: str) -> list[str]:
    """The distinct characters of `text` (in order of first appearance) that `tokenizer.encode` refuses, special
    tokens written out in full not counted. Empty for byte-level tokenizers, which can encode anything."""
    pattern = special_token_pattern(tuple(getattr(tokenizer, "special_tokens", ())))
    plain = pattern.sub("", text) if pattern is not None else text
    return [c for c in dict.fromkeys(plain) if not _encodes(tokenizer, c)]  # a loop over distinct characters


def _encodes(tokenizer: Any, char: str) -> bool:
    try:
        tokenizer.encode(char)
    except ValueError:
        return False
    return True


def _encode_prompt(tokenizer: Any, prompt: str, encode: Callable[[], np.ndarray]) -> np.ndarray:
    """encode(), with an out-of-vocabulary error that says to fix the prompt, not the tokenizer."""
    try:
        ids = encode()
    except ValueError:
        unknown = unknown_characters(tokenizer, prompt)
        if not unknown:
            raise  # some other problem with the prompt: the tokenizer's own message says which
        shown = ", ".join(repr(c) for c in unknown[:MAX_SHOWN])
        more = f" and {len(unknown) - MAX_SHOWN} more" if len(unknown) > MAX_SHOWN else ""
        raise ValueError(f"the prompt holds {len(unknown)} character(s) outside the tokenizer's vocabulary: "
                         f"{shown}{more}; remove them from the prompt (the model's tokenizer has no id for them)"
                         ) from None
    return ids


def _stop_strings(stop: str | Sequence[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    for s in stops:
        if not isinstance(s, str) or not s:
            raise ValueError(f"stop holds {s!r}: each stop string must be a non-empty str (or pass stop=None)")
    return stops


def _first_stop(text: str, stops: list[str], start: int) -> int | None:
    """Where the earliest stop string begins in text[start:], or None."""
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(found) if found else None


def _decode_until(tokenizer: Any, tokens: Iterator[int], stop_ids: set[int], hidden: set[int],
                  stops: list[str]) -> str:
    """Decode token ids as they arrive; end at a stop id (left out) or before the first stop string.

    Text is decoded incrementally: ids wait in `pending` until they decode to whole characters (a byte-level
    token may hold half of a UTF-8 character, shown as U+FFFD), then join the fixed text. Each step decodes only
    the pending ids and searches only where a stop string could newly end."""
    committed, pending = "", []
    reach = max((len(s) for s in stops), default=1) - 1  # a new stop string may start this far back
    for tid in tokens:  # the decoding loop itself: one generated token per step
        if tid in stop_ids:
            break
        if tid in hidden:
            continue
        start = max(0, len(committed) - reach)
        pending.append(tid)
        piece = tokenizer.decode(pending)
        text = committed + piece
        cut = _first_stop(text, stops, start) if stops else None
        if cut is not None:
            return text[:cut]
        if not piece.endswith("\ufffd"):
            committed, pending = text, []
    return committed + (tokenizer.decode(pending) if pending else "")


def generate_text(model: torch.nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int = 200, *,
                  temperature: float = 0.8, top_k: int | None = None, top_p: float | None = None,
                  stop: str | Sequence[str] | None = None, stop_at_special: bool = True,
                  skip_special_tokens: bool = True, repetition_penalty: float = 1.0, seed: int = 0,
                  chat: bool = False) -> str:
    """Continue `prompt` by up to max_new_tokens tokens and return the continuation only (not the prompt).

    - stop_at_special: stop when the model emits an end token the tokenizer has ("<|endoftext|>", "<|end|>";
      END_TOKENS). The end token is not part of the returned text. False: keep going past them.
    - stop: a string or list of strings; generation ends once the decoded continuation contains one, and the text
      is cut before it (the string need not align with token boundaries).
    - skip_special_tokens: leave the tokenizer's special tokens out of the text (e.g. "<|endoftext|>" between
      documents when stop_at_special=False).
    - chat: `prompt` is a user message, rendered with `ChatTemplate(tokenizer)` (which needs CHAT_TOKENS);
      generation always stops at "<|end|>" and the return is the assistant's answer.
    - temperature 0 is greedy; otherwise sampling (top_k, top_p, repetition_penalty as in `generate`) is seeded
      with `seed`, so the same seed gives the same text. Runs on the device of the model's parameters.

    A prompt with characters the tokenizer cannot encode raises ValueError naming them.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an int >= 0")
    stops = _stop_strings(stop)
    specials = tuple(getattr(tokenizer, "special_tokens", ()))
    stop_ids = {tokenizer.token_to_id(t) for t in END_TOKENS if t in specials} if stop_at_special else set()
    if chat:
        template = ChatTemplate(tokenizer)  # a clear error when the tokenizer lacks the chat tokens
        stop_ids.add(template.end_id)  # the answer ends at <|end|>, whatever stop_at_special says
        ids = _encode_prompt(tokenizer, prompt, lambda: template.prompt_ids(as_messages(prompt)))
    else:
        ids = _encode_prompt(tokenizer, prompt, lambda: encode_array(tokenizer, prompt))
    if len(ids) == 0:
        raise ValueError(f"the prompt is empty: give at least one character to continue (e.g. a newline, or "
                         f"{EOS_TOKEN!r} when the tokenizer has it)")
    hidden = {tokenizer.token_to_id(t) for t in specials} if skip_special_tokens else set()
    params = next(iter(model.parameters()), None)
    device = params.device if params is not None else torch.device("cpu")
    idx = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)[None]  # (1, T)
    generator = torch.Generator(device=device).manual_seed(seed)
    tokens = stream(model, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                    stop_tokens=sorted(stop_ids), use_cache=hasattr(model, "make_cache"), generator=generator,
                    repetition_penalty=repetition_penalty)
    with contextlib.closing(tokens):  # stopping early still restores the model's train/eval mode at once
        return _decode_until(tokenizer, tokens, stop_ids, hidden, stops)
