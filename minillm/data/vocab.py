"""Growing a trained tokenizer's vocabulary: special tokens added after training (Survey §4.1.2, tokenization;
used by §5.1, instruction tuning, to chat-tune a model pretrained without chat tokens).

    tok = add_special_tokens(load_tokenizer("runs/mine/tokenizer.json"), CHAT_TOKENS)   # a new tokenizer
    resize_token_embeddings(model, tok.vocab_size)                                     # minillm.model.resize

Every id the tokenizer had keeps its meaning, so the trained model's embedding rows stay valid; each new token
gets the next id (vocab_size, vocab_size + 1, ... in the order given) and is a special token: always one id,
never spelled by ordinary text. Tokens that are already special tokens are skipped, not duplicated. A token that
the vocabulary already holds as an ordinary token is refused: making it special would change how existing text
is split. The result saves and loads like any tokenizer (a CharTokenizer file then carries the explicit ids of
its added tokens: format version 2; version 1 files still load).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from tokenizers import AddedToken
from tokenizers import Tokenizer as HFTokenizer

from minillm.data.bpe import ByteBPE
from minillm.data.special_tokens import check_special_tokens
from minillm.data.tokenizer import BPETokenizer, CharTokenizer, Tokenizer

__all__ = ["add_special_tokens"]

T = TypeVar("T", bound=Tokenizer)


def _already_ordinary(tokenizer: Tokenizer, token: str) -> bool:
    """True when `token` is in the vocabulary as an ordinary (non-special) token."""
    if isinstance(tokenizer, CharTokenizer):
        return token in tokenizer._chars  # the same package's private field: one character per entry
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.hf_tokenizer.token_to_id(token) is not None
    if isinstance(tokenizer, ByteBPE):
        return token.encode("utf-8") in set(tokenizer.vocab.values())
    return False


def add_special_tokens(tokenizer: T, tokens: Iterable[str]) -> T:
    """A new tokenizer of the same kind with `tokens` appended as special tokens at ids vocab_size, vocab_size+1, ...

    Tokens already among `tokenizer.special_tokens` (or repeated in `tokens`) are added once at most (when none is
    new, `tokenizer` itself is returned). The original is not changed. Works for CharTokenizer, BPETokenizer and
    ByteBPE; resize the model to the new `vocab_size` with `minillm.model.resize.resize_token_embeddings`.
    """
    if not isinstance(tokenizer, (CharTokenizer, BPETokenizer, ByteBPE)):
        raise TypeError(f"add_special_tokens works on CharTokenizer, BPETokenizer and ByteBPE, got "
                        f"{type(tokenizer).__name__}")
    # A lone str is refused by check_special_tokens; a token repeated in `tokens` is added once.
    tokens = check_special_tokens(tokens if isinstance(tokens, str) else dict.fromkeys(tokens))
    new = [t for t in tokens if t not in tokenizer.special_tokens]
    if not new:
        return tokenizer
    ordinary = [t for t in new if _already_ordinary(tokenizer, t)]
    if ordinary:
        raise ValueError(f"cannot add {ordinary[0]!r} as a special token: the vocabulary already holds it as an "
                         f"ordinary token, so text spelling it would be split differently than the model was "
                         f"trained on; choose a token that is not in the vocabulary, e.g. '<|{ordinary[0]}|>'")
    before = tokenizer.vocab_size
    if isinstance(tokenizer, CharTokenizer):
        grown = CharTokenizer(tokenizer._chars, tokenizer._specials,
                              added_special_tokens=tokenizer._added + tuple(new))
    elif isinstance(tokenizer, BPETokenizer):
        hf = HFTokenizer.from_str(tokenizer.hf_tokenizer.to_str())  # a copy: the original stays as it was
        hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in new])
        grown = BPETokenizer(hf)
    else:
        grown = ByteBPE(tokenizer.vocab, tokenizer.merges, tokenizer.special_tokens + tuple(new))
    ids = [grown.token_to_id(t) for t in new]
    if ids != list(range(before, before + len(new))):  # the contract every caller relies on: old ids unchanged
        raise RuntimeError(f"adding {new} gave ids {ids}, not {before}..{before + len(new) - 1}: the tokenizer "
                           f"library numbered them differently; please report this")
    return grown
