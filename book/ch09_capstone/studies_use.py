"""Use it: KV-cache decoding, and the poet exported to Hugging Face Llama, decoding the same tokens there.

Survey §4.2.4 (decoding strategy) and §4.2.2 (the KV cache: each new token attends to keys and values kept from the
earlier steps, so a step costs one position's work instead of the whole prefix's); §7.3 (public tools load models
through Hugging Face `transformers`, so a model is usable outside this book once it is written in that layout).

    cfg = use_config("laptop")
    prompts = use_prompts(cfg, tok)                  # free text and poet requests (in the chat template)
    rows = kv_cache_rows(model, tok, prompts, cfg.new_tokens)      # tokens/s with and without the cache
    export_hf(model, tok, "poet-hf")                 # config.json, model.safetensors, tokenizer.json, ...
    checks = hf_greedy_check(model, tok, "poet-hf", prompts, cfg.new_tokens)   # same greedy ids in transformers?

The export is `minillm.model.hf.export_llama` (weights and config; the RoPE row permutation is explained there)
plus what `transformers` needs besides: the tokenizer (a BPETokenizer already is a `tokenizers` tokenizer.json),
a tokenizer_config.json naming its end token and a chat template that renders a conversation exactly as
`minillm.finetune.chat.ChatTemplate` does, and the end-of-text / end-of-turn ids in config.json and
generation_config.json so that `generate` stops where minillm's `generate_text` stops.

`transformers` is a book-side tool here (the library's export needs only safetensors): it is imported inside
`hf_greedy_check`, with an error naming `pip install transformers` where it is missing.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minillm.finetune.chat import CHAT_TOKENS, ChatTemplate, as_messages
from minillm.generate import generate
from minillm.io import replace_dir
from minillm.model.hf import CONFIG_FILE, WEIGHTS_FILE, export_llama
from minillm.model.transformer import GPT
from minillm.presets import by_size
from minillm.textgen import END_TOKENS
from book.ch09_capstone.studies_poems import form_prompt

__all__ = ["UseConfig", "use_config", "poet_prompt_text", "use_prompts", "kv_cache_rows", "HF_FILES", "export_hf",
           "hf_greedy_check"]

TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, GENERATION_CONFIG_FILE = ("tokenizer.json", "tokenizer_config.json",
                                                                 "generation_config.json")
HF_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, GENERATION_CONFIG_FILE)
# ChatTemplate's format as a Jinja template (what transformers' apply_chat_template runs): every message is
# <|role|> content <|end|>; the generation prompt is the assistant tag. A test checks both give the same ids.
CHAT_TEMPLATE = ("{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
TRANSFORMERS_MISSING = ("hf_greedy_check needs Hugging Face transformers, which is not installed: run "
                        "`pip install transformers` (the export itself, export_hf, needs only safetensors)")


# ---------------------------------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class UseConfig:
    """What the section decodes: free-text prompts, poet requests (title, form), how many new tokens per prompt,
    and how often each speed is timed (the fastest of `repeats` counts: other processes only ever slow a run)."""

    free_prompts: tuple[str, ...] = ("ROMEO:\n", "First Citizen:\n")
    poet_requests: tuple[tuple[str, str], ...] = (("春曉", "五言絕句"), ("秋夜", "七言律詩"))
    new_tokens: int = 96
    repeats: int = 2

    def __post_init__(self) -> None:
        for k in ("new_tokens", "repeats"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"UseConfig.{k}={v!r} must be a positive int")
        if not self.free_prompts and not self.poet_requests:
            raise ValueError("UseConfig needs at least one free prompt or poet request")
        if any(not isinstance(p, str) or not p for p in self.free_prompts):
            raise ValueError(f"UseConfig.free_prompts={self.free_prompts!r} must be non-empty strings")
        for title, form in self.poet_requests:
            form_prompt(title, form)  # a ValueError naming the forms for an unknown one
            if not title.strip():
                raise ValueError("UseConfig.poet_requests holds an empty title; give each request a title")


def use_config(size: str | None = None, **changes: Any) -> UseConfig:
    """The section's sizes per profile. ci: 16 new tokens, one timing (seconds on a 2-layer model). laptop: 96 new
    tokens (an 8-line 七言 poem is ~60 tokens), the best of 2 timings; estimate for a ~5M-parameter model with a
    256-token context on 2 cores: ~1.2 GFLOP per uncached token at the mean context of ~130 -> ~1.5 s per prompt
    uncached, ~0.3 s cached, ~10 s for the 4 prompts; the transformers check adds ~5 s to load and ~2 s per prompt.
    gpu: 200 new tokens (unmeasured: no GPU ran it)."""
    base = by_size(ci=dict(new_tokens=16, repeats=1), laptop={}, gpu=dict(new_tokens=200, repeats=3), size=size)
    return UseConfig(**{**base, **changes})


def poet_prompt_text(tok: Any, title: str, form: str) -> str:
    """The poet's request as the model sees it: form_prompt(title, form) as a user turn in the chat template,
    ending with the assistant tag (the tags are special tokens, so the text encodes back to one id each)."""
    return ChatTemplate(tok).prompt_text(as_messages(form_prompt(title, form)))


def use_prompts(cfg: UseConfig, tok: Any) -> list[str]:
    """The config's free prompts, then its poet requests rendered with `poet_prompt_text`."""
    return [*cfg.free_prompts, *(poet_prompt_text(tok, t, f) for t, f in cfg.poet_requests)]


# ---------------------------------------------------------------------------------------------------- helpers


def _plain(model: Any) -> GPT:
    """The GPT itself: a torch.compile'd model keeps it (same parameters) under _orig_mod."""
    inner = getattr(model, "_orig_mod", model)
    if not isinstance(inner, GPT):
        raise TypeError(f"expected a minillm GPT (or a torch.compile of one), got {type(model).__name__}")
    return inner


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _sync(device: torch.device) -> None:
    """Timings must include the GPU's queued work, not only its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _prompt_ids(tok: Any, prompts: Sequence[str], new_tokens: int, block_size: int) -> list[list[int]]:
    """Each prompt's ids; refuses prompts that, with new_tokens more, would not fit the context: past block_size
    minillm slides its window (and re-encodes it every step, cache or not) while HF Llama keeps counting
    positions, so neither the speed nor the equality would mean what the rows say."""
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of strings (wrap a single prompt in a list)")
    if isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 1:
        raise ValueError(f"new_tokens={new_tokens!r} must be a positive int")
    out = []
    for p in prompts:
        if not isinstance(p, str) or not p:
            raise ValueError(f"each prompt must be a non-empty str, got {p!r}")
        ids = tok.encode(p)
        if len(ids) + new_tokens > block_size:
            raise ValueError(f"prompt {p[:40]!r} has {len(ids)} tokens; with new_tokens={new_tokens} that is more "
                             f"than the model's block_size={block_size}: shorten the prompt or ask for fewer tokens")
        out.append(ids)
    return out


def _greedy(model: torch.nn.Module, ids: list[int], new_tokens: int, use_cache: bool,
            stop: Sequence[int] = ()) -> tuple[list[int], float]:
    """(new ids, seconds) of greedy decoding from one prompt."""
    device = _device(model)
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    _sync(device)
    t0 = time.perf_counter()
    out = generate(model, idx, new_tokens, temperature=0.0, use_cache=use_cache, stop_tokens=list(stop) or None)
    new = out[0, len(ids):].tolist()  # .tolist() waits for the device
    return new, time.perf_counter() - t0


def _stop_ids(tok: Any) -> list[int]:
    """The ids that end a text (END_TOKENS the tokenizer has): where minillm's generate_text stops."""
    specials = tuple(getattr(tok, "special_tokens", ()))
    return [tok.token_to_id(t) for t in END_TOKENS if t in specials]


# ---------------------------------------------------------------------------------------------------- KV cache


def kv_cache_rows(model: torch.nn.Module, tok: Any, prompts: Sequence[str], new_tokens: int,
                  repeats: int = 1) -> list[dict]:
    """Greedy decoding of `new_tokens` tokens from each prompt with and without the KV cache, one row each:
    {prompt, prompt_tokens, new_tokens, cached_tps, uncached_tps, speedup, same_tokens, cached_s, uncached_s}.

    tokens/s = new_tokens / wall seconds, the fastest of `repeats` runs after one untimed warm-up token (first-call
    allocation is not decoding). No stop tokens: every run does the same work. same_tokens: both paths chose the
    same ids (the cache changes how the logits are computed, not what they are)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be a positive int")
    gpt = _plain(model)
    rows = []
    for prompt, ids in zip(prompts, _prompt_ids(tok, prompts, new_tokens, gpt.config.block_size)):
        timing: dict[bool, tuple[list[int], float]] = {}
        for use_cache in (True, False):
            _greedy(model, ids, 1, use_cache)  # warm-up
            runs = [_greedy(model, ids, new_tokens, use_cache) for _ in range(repeats)]
            timing[use_cache] = (runs[0][0], min(s for _, s in runs))
        (cached, t_c), (uncached, t_u) = timing[True], timing[False]
        rows.append({"prompt": prompt, "prompt_tokens": len(ids), "new_tokens": new_tokens,
                     "cached_tps": new_tokens / t_c, "uncached_tps": new_tokens / t_u, "speedup": t_u / t_c,
                     "same_tokens": cached == uncached, "cached_s": t_c, "uncached_s": t_u})
    return rows


# ---------------------------------------------------------------------------------------------------- export


def _tokenizer_config(tok: Any, block_size: int) -> dict:
    specials = tuple(tok.special_tokens)
    end = next((t for t in END_TOKENS if t in specials), None)
    if end is None:
        raise ValueError(f"the tokenizer has none of the end tokens {END_TOKENS}: transformers would not know where "
                         "a text ends; train it with special_tokens=SPECIAL_TOKENS (book.ch09_capstone.studies_corpus)")
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": end, "pad_token": end,
           "unk_token": None, "add_bos_token": False, "add_eos_token": False,
           "clean_up_tokenization_spaces": False,  # decode must give back exactly what minillm decodes
           "model_max_length": block_size}
    if all(t in specials for t in CHAT_TOKENS):
        cfg["chat_template"] = CHAT_TEMPLATE
    return cfg


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def export_hf(model: torch.nn.Module, tok: Any, out_dir: str | Path) -> Path:
    """Write model and tokenizer as one Hugging Face Llama directory; returns out_dir. Then
    `transformers.AutoTokenizer.from_pretrained(out_dir)` and `LlamaForCausalLM.from_pretrained(out_dir)` load
    them, and `generate` stops at <|endoftext|> / <|end|> as minillm does.

    Files: config.json + model.safetensors (minillm.model.hf.export_llama; end-token ids added), tokenizer.json
    (the BPETokenizer's own file), tokenizer_config.json (end token, chat template), generation_config.json.
    Built in a sibling folder and swapped in whole; an existing out_dir is replaced only when it holds nothing but
    these files (a previous export), so no one's other files are deleted."""
    gpt = _plain(model)
    if not hasattr(tok, "hf_tokenizer"):
        raise TypeError(f"export_hf writes the tokenizer as a Hugging Face tokenizer.json, which a BPETokenizer is; "
                        f"got {type(tok).__name__}. Train the capstone tokenizer with capstone_tokenizer(...)")
    if tok.vocab_size != gpt.config.vocab_size:
        raise ValueError(f"the tokenizer has {tok.vocab_size} ids but the model's vocab_size is "
                         f"{gpt.config.vocab_size}: export the tokenizer the model was trained with")
    tok_cfg = _tokenizer_config(tok, gpt.config.block_size)  # checks the end token before anything is written
    stop = _stop_ids(tok)
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ValueError(f"{out_dir} exists and is a file; choose a directory path for the export")
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in HF_FILES)
        if foreign:
            raise ValueError(f"{out_dir} already holds {foreign[:5]}, which the export would delete; choose an empty "
                             "or new directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        export_llama(gpt, tmp)  # weights + config.json into the (empty) folder
        config = json.loads((tmp / CONFIG_FILE).read_text(encoding="utf-8"))
        # without these, transformers 4.x falls back to LlamaConfig's defaults (bos 1, eos 2): other tokens here
        ids = {"bos_token_id": None, "eos_token_id": stop, "pad_token_id": stop[0]}
        _write_json(tmp / CONFIG_FILE, {**config, **ids})
        _write_json(tmp / GENERATION_CONFIG_FILE, {**ids, "do_sample": False})
        tok.save(tmp / TOKENIZER_FILE)
        _write_json(tmp / TOKENIZER_CONFIG_FILE, tok_cfg)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# ---------------------------------------------------------------------------------------------------- transformers


@torch.no_grad()
def _logits(model: torch.nn.Module, ids: list[int], hf: bool) -> torch.Tensor:
    """Next-token logits (T, V) over one prompt, in eval mode (then the mode it was in)."""
    was_training = model.training
    model.eval()
    try:
        idx = torch.tensor([ids], dtype=torch.long, device=_device(model))  # (1, T)
        out = model(idx)
        return (out.logits if hf else out[0])[0].float()  # (T, V)
    finally:
        model.train(was_training)


def hf_greedy_check(model: torch.nn.Module, tok: Any, out_dir: str | Path, prompts: Sequence[str],
                    new_tokens: int) -> list[dict]:
    """Load the export in out_dir with `transformers` (LlamaForCausalLM and AutoTokenizer) and decode each prompt
    greedily in both libraries, stopping at the end tokens. One row per prompt: {prompt, prompt_tokens,
    minillm_ids, hf_ids, equal (same new ids), tokenizer_equal (the exported tokenizer encodes the prompt and decodes
    the ids as minillm's does), max_logit_diff (max |minillm - transformers| over every logit of the prompt),
    minillm_s, hf_s (seconds to decode), text (the decoded continuation)}.

    The HF model runs on the minillm model's device in its dtype, so a difference is the implementations', not a
    cast's. Greedy ids can only differ where two logits are closer than max_logit_diff."""
    try:
        import transformers
    except ImportError:
        raise ImportError(TRANSFORMERS_MISSING) from None
    gpt = _plain(model)
    out_dir = Path(out_dir)
    missing = [f for f in HF_FILES if not (out_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{out_dir} lacks {missing}: write the export first with export_hf(model, tok, "
                                f"{str(out_dir)!r})")
    all_ids = _prompt_ids(tok, prompts, new_tokens, gpt.config.block_size)
    device, dtype = _device(gpt), gpt.tok_emb.weight.dtype
    hf_tok = transformers.AutoTokenizer.from_pretrained(out_dir)
    hf_model = transformers.LlamaForCausalLM.from_pretrained(out_dir, dtype=dtype).to(device).eval()
    stop = _stop_ids(tok)
    rows = []
    for prompt, ids in zip(prompts, all_ids):
        ours, ours_s = _greedy(gpt, ids, new_tokens, use_cache=True, stop=stop)
        idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = hf_model.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=new_tokens,
                                    do_sample=False, eos_token_id=stop, pad_token_id=stop[0])
        theirs = out[0, len(ids):].tolist()  # .tolist() waits for the device
        hf_s = time.perf_counter() - t0
        diff = (_logits(gpt, ids, hf=False) - _logits(hf_model, ids, hf=True)).abs().max().item()
        tok_equal = (hf_tok(prompt, add_special_tokens=False)["input_ids"] == ids
                     and hf_tok.decode(theirs) == tok.decode(theirs))
        rows.append({"prompt": prompt, "prompt_tokens": len(ids), "minillm_ids": ours, "hf_ids": theirs,
                     "equal": ours == theirs, "tokenizer_equal": tok_equal, "max_logit_diff": diff,
                     "minillm_s": ours_s, "hf_s": hf_s, "text": tok.decode(ours)})
    return rows
