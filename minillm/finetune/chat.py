"""The chat template: conversations -> token ids + a "this token is a response" mask (Survey §5.1.1, formatted
instances: every instruction dataset is rendered into one fixed text format the model learns to follow).

    <|system|>You answer briefly.<|end|><|user|>Reverse the word abc:<|end|><|assistant|>cba<|end|>
                                                                                 ^^^^^^^^^^ loss here only

Each message is ROLE_TAG + content + END. Only the assistant's content and its closing END are response tokens:
the model learns to write answers and to stop (END is the stop token at generation time), never to predict the
user's prompt. The tags are special tokens, so they are always one id and can never be spelled by ordinary text
(content that contains a tag string is rejected: it would inject a fake turn and corrupt the mask).

Works with any minillm tokenizer whose special tokens include the four tags: `chat_tokenizer()` (the emergence
character vocabulary plus the tags) or `BPETokenizer.train(..., special_tokens=CHAT_TOKENS)`. Segments are
encoded one at a time, so the mask is exact for BPE too (tokens never straddle a segment; a test checks the
ids equal encoding the whole text at once).

Preference pairs ({"prompt", "chosen", "rejected"}) render with `ChatTemplate.preference_batch` into one
right-padded batch, chosen rows first, with a mask over each response: what the reward model and DPO consume.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from minillm.data.tasks.pretraining import ALPHABET
from minillm.data.tokenizer import CharTokenizer

__all__ = ["SYSTEM", "USER", "ASSISTANT", "END", "CHAT_TOKENS", "ROLE_TAGS", "ChatTemplate", "chat_tokenizer",
           "check_messages", "render_text", "as_messages", "pair_fields", "pad_batch"]

SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
CHAT_TOKENS = (SYSTEM, USER, ASSISTANT, END)
ROLE_TAGS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
TRAIN_ON = ("all", "last")  # which assistant turns are response tokens: every one, or only the final one

Messages = Sequence[dict]


def check_messages(messages: Any) -> list[dict]:
    """Validate a conversation: a non-empty list of {"role", "content"} dicts, roles system|user|assistant,
    content a non-empty str without chat tags, a system message only first. Returns it as a list."""
    if isinstance(messages, (str, bytes, dict)) or not isinstance(messages, Sequence):
        raise ValueError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, got "
                         f"{type(messages).__name__}")
    if not messages:
        raise ValueError("messages is empty: a conversation needs at least one message")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"message {i} must be a dict with 'role' and 'content', got {type(m).__name__}")
        missing = {"role", "content"} - set(m)
        if missing:
            raise ValueError(f"message {i} lacks {sorted(missing)}; keys present: {sorted(m)}")
        extra = set(m) - {"role", "content"}
        if extra:
            raise ValueError(f"message {i} has unknown key(s) {sorted(extra)}; a message has only 'role' and 'content'")
        role, content = m["role"], m["content"]
        if role not in ROLE_TAGS:
            raise ValueError(f"message {i} has role {role!r}; choose one of {', '.join(map(repr, ROLE_TAGS))}")
        if role == "system" and i != 0:
            raise ValueError(f"message {i} is a system message; the system message may only come first")
        if not isinstance(content, str):
            raise ValueError(f"message {i} ({role}) content must be a str, got {type(content).__name__}")
        if not content:
            raise ValueError(f"message {i} ({role}) has empty content; drop the message or give it text")
        for tag in CHAT_TOKENS:
            if tag in content:
                raise ValueError(f"message {i} ({role}) contains the chat tag {tag!r}, which would fake a turn "
                                 "boundary; remove it from the content")
    return list(messages)


def as_messages(prompt: Any) -> list[dict]:
    """A prompt given as a str (one user turn) or as a message list, as a validated message list."""
    return check_messages([{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt)


def pair_fields(pair: Any) -> tuple[Any, str, str]:
    """(prompt, chosen, rejected) of a preference pair: a dict with those keys, an object with those attributes,
    or a 3-tuple."""
    if isinstance(pair, dict):
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in pair]
        if missing:
            raise ValueError(f"a preference pair lacks {missing}; keys present: {sorted(pair)}")
        return pair["prompt"], pair["chosen"], pair["rejected"]
    if isinstance(pair, tuple) and len(pair) == 3:
        return pair
    if all(hasattr(pair, k) for k in ("prompt", "chosen", "rejected")):
        return pair.prompt, pair.chosen, pair.rejected
    raise ValueError(f"a preference pair must be a dict or object with prompt/chosen/rejected, or a 3-tuple; "
                     f"got {type(pair).__name__}")


def pad_batch(seqs: Sequence[tuple[np.ndarray, np.ndarray]], pad_id: int,
              max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad (ids, mask) pairs -> ids (B, T) int64, mask (B, T) bool (False on padding), lengths (B,)."""
    if not len(seqs):
        raise ValueError("nothing to pad: the batch is empty")
    lengths = np.array([len(ids) for ids, _ in seqs], dtype=np.int64)
    if max_len is not None and lengths.max() > max_len:
        i = int(lengths.argmax())
        raise ValueError(f"sequence {i} has {lengths[i]} tokens, more than max_len={max_len} (the model's "
                         "block_size): shorten the prompt or response, or use a model with a longer context")
    T = int(lengths.max())
    ids = np.full((len(seqs), T), pad_id, dtype=np.int64)  # (B, T)
    mask = np.zeros((len(seqs), T), dtype=bool)            # (B, T)
    for b, (s, m) in enumerate(seqs):  # a loop over rows; each row is one slice assignment
        ids[b, : len(s)], mask[b, : len(s)] = s, m
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(lengths)


def _segments(messages: Messages, train_on: str, add_generation_prompt: bool) -> list[tuple[str, bool, bool]]:
    """(text, is_special, is_response) pieces of the rendered conversation, in order."""
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on={train_on!r} is not valid; choose one of {', '.join(TRAIN_ON)}")
    messages = check_messages(messages)
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    out = []
    for i, m in enumerate(messages):
        resp = m["role"] == "assistant" and (train_on == "all" or i == last)
        out += [(ROLE_TAGS[m["role"]], True, False), (m["content"], False, resp), (END, True, resp)]
    if add_generation_prompt:
        if messages[-1]["role"] == "assistant":
            raise ValueError("add_generation_prompt=True asks the model for the next assistant turn, but the "
                             "conversation already ends with one; drop it (it is the answer to predict)")
        out.append((ASSISTANT, True, False))
    return out


def render_text(messages: Messages, *, train_on: str = "all",
                add_generation_prompt: bool = False) -> tuple[str, np.ndarray]:
    """The conversation as text and a per-character response mask (bool, len(text)); no tokenizer needed."""
    segs = _segments(messages, train_on, add_generation_prompt)
    text = "".join(s for s, _, _ in segs)
    mask = np.repeat(np.array([r for _, _, r in segs], dtype=bool), [len(s) for s, _, _ in segs])  # (len(text),)
    return text, mask


def chat_tokenizer():
    """The emergence character vocabulary (newline + printable ASCII) plus the four chat tags as special tokens.

    Special tokens take ids 0..3, so ids differ from `emergence_tokenizer()`: pretrain the base model with this
    tokenizer (`emergence.train_lm(..., tokenizer=chat_tokenizer())`) when it will be chat-tuned later.
    """

    return CharTokenizer(sorted(ALPHABET), special_tokens=CHAT_TOKENS)


class ChatTemplate:
    """Renders conversations to ids with a tokenizer whose special tokens include CHAT_TOKENS."""

    def __init__(self, tokenizer: Any):
        missing = [t for t in CHAT_TOKENS if t not in tuple(getattr(tokenizer, "special_tokens", ()))]
        if missing:
            raise ValueError(f"the tokenizer lacks the chat special token(s) {missing}: build it with "
                             f"special_tokens=CHAT_TOKENS (e.g. chat_tokenizer(), or "
                             f"BPETokenizer.train(texts, vocab_size, special_tokens=CHAT_TOKENS))")
        self.tokenizer = tokenizer
        self.tag_ids = {t: tokenizer.token_to_id(t) for t in CHAT_TOKENS}
        self.end_id = self.tag_ids[END]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def render(self, messages: Messages, *, train_on: str = "all",
               add_generation_prompt: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """messages -> (ids int64 (L,), loss_mask bool (L,)); loss_mask[t] says ids[t] is a response token.

        As a training target: position t-1 predicts ids[t], so targets are ids[1:] masked by loss_mask[1:]
        (`sft.pack` does this). train_on="last" marks only the final assistant turn as response.
        """
        pieces, flags = [], []
        for text, special, resp in _segments(messages, train_on, add_generation_prompt):  # loops over messages
            ids = [self.tag_ids[text]] if special else self.tokenizer.encode(text)
            pieces.append(np.asarray(ids, dtype=np.int64))
            flags.append(resp)
        lengths = [len(p) for p in pieces]
        return np.concatenate(pieces), np.repeat(np.array(flags, dtype=bool), lengths)

    def render_response(self, prompt: Any, response: str) -> tuple[np.ndarray, np.ndarray]:
        """prompt (str or messages) + one assistant response -> (ids, mask); the mask covers that response only.
        An empty response ("") is the assistant stopping at once: prompt, assistant tag, END (mask on END only).
        Policies do emit it, so reward models and DPO must be able to score it."""
        if response == "":
            ids = self.prompt_ids(as_messages(prompt))
            return np.append(ids, self.end_id), np.append(np.zeros(len(ids), dtype=bool), True)
        return self.render(as_messages(prompt) + [{"role": "assistant", "content": response}], train_on="last")

    def preference_batch(self, pairs: Sequence, max_len: int | None = None):
        """Preference pairs -> ids (2B, T), response mask (2B, T), lengths (2B,): rows 0..B-1 are the chosen
        responses, rows B..2B-1 the rejected ones (one forward pass scores both); right-padded with END."""
        fields = [pair_fields(p) for p in pairs]
        seqs = [self.render_response(p, c) for p, c, _ in fields] + [self.render_response(p, r) for p, _, r in fields]
        return pad_batch(seqs, self.end_id, max_len)

    def prompt_ids(self, messages: Messages) -> np.ndarray:
        """ids of the conversation so far followed by the assistant tag: what the model continues at inference."""
        return self.render(messages, add_generation_prompt=True)[0]

    def prompt_text(self, messages: Messages) -> str:
        """The same prompt as text (tags included); the chat tokenizer encodes each tag back to one id."""
        return render_text(messages, add_generation_prompt=True)[0]

    def response_text(self, ids: Sequence[int]) -> str:
        """Decode generated ids up to (not including) the first END: the assistant's answer."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        stop = np.flatnonzero(ids == self.end_id)
        return self.tokenizer.decode(ids[: stop[0]] if stop.size else ids)
