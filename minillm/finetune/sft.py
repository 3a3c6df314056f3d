"""Supervised fine-tuning on instructions (Survey §5.1, instruction tuning).

    convs = instruction_data(2000, seed=0, mix={"instructions": 0.6, "addition": 0.2, "kv_map": 0.2})
    x, y = pack(convs, block_size=64, template=ChatTemplate(chat_tokenizer()))   # (N, T) each, y = -100 off-response
    history = train_sft(model, x, y, TrainConfig(max_steps=200, batch_size=16, lr=1e-3, device="cpu"))
    acc = response_accuracy(model, template, instruction_data(200, seed=1, split="heldout"))

Data (§5.1.1, formatted instances): the synthetic worlds of `minillm.data.tasks` become chat conversations. Each
task has 8 phrasings (the instruction families' own `FAMILIES` phrasings; `TASK_TEMPLATES` for arithmetic and
in-context tasks); the last `HELDOUT_PER_FAMILY` of each are held out, so zero-shot generalisation to unseen
phrasings is measurable. `n_templates` limits the training phrasings per task (the diversity-vs-count study),
`mix` sets the task proportions (data mixing). Local data in the usual JSONL shapes loads with `load_jsonl`.

Packing: conversations are laid end to end in rows of block_size + 1 tokens (whole conversations only, padded), or
with `one_per_row=True` each alone in its padded row (better for a few short pairs: see `pack`).
A target is kept only where it is a response token of the same conversation as its context: prompt, system,
padding and the first token of every conversation (a document boundary) get -100, so the loss is computed on
assistant tokens only. Attention still crosses conversations inside a row (GPT has no per-document mask); each
conversation opens with a role tag after the previous END, which is what tells the model a new one began.

The loop that trains on the packed rows, `optimize`, is shared with DPO and the reward model: `finetune.loop`.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from minillm.config import TrainConfig
from minillm.device import resolve_device
from minillm.data.sources import iter_jsonl_objects
from minillm.data.tasks.pretraining import stream_seed
from minillm.data.tasks.suites import FAMILIES, HELDOUT_PER_FAMILY, TASKS, TRACE_OPEN, Example
from minillm.finetune.chat import END, ChatTemplate, check_messages
from minillm.finetune.loop import optimize

__all__ = ["IGNORE", "TASK_TEMPLATES", "SFT_TASKS", "Conversation", "task_templates", "example_to_conversation",
           "problem_key", "instruction_data", "JSONL_SHAPES", "load_jsonl", "pack", "sft_batches", "sft_loss",
           "train_sft", "response_accuracy"]

IGNORE = -100  # F.cross_entropy's ignore_index: targets that carry no loss

_ARITH = ["What is {q}?", "Compute {q}.", "Calculate {q}:", "{q} =", "Work out {q}.", "Add it up: {q}",
          "Evaluate {q}:", "Tell me the value of {q}."]
_PATTERN = ["Continue the pattern: {p}", "Complete: {p}", "{p}", "Fill in the last value: {p}", "Pattern: {p}",
            "Read the pairs and answer: {p}", "What comes next? {p}", "Finish this list of pairs: {p}"]
TASK_TEMPLATES = {"addition": _ARITH, "multiplication": [t.replace("Add it up", "Multiply") for t in _ARITH],
                  "kv_map": _PATTERN, "linear": _PATTERN}  # {q}: "37+48"; {p}: the few-shot prompt "ab>3;ab="
SFT_TASKS = ("instructions", *TASK_TEMPLATES)
SPLITS = ("train", "heldout", "all")


@dataclass(frozen=True)
class Conversation:
    """A chat (list of {"role", "content"}) plus where it came from (task, family, template, split)."""

    messages: list[dict]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        check_messages(self.messages)

    @property
    def prompt(self) -> list[dict]:
        """Every message before the final assistant turn (what the model is given at evaluation)."""
        return self.messages[:-1] if self.messages[-1]["role"] == "assistant" else list(self.messages)

    @property
    def answer(self) -> str | None:
        return self.messages[-1]["content"] if self.messages[-1]["role"] == "assistant" else None


# ---- instruction data from the synthetic worlds ---------------------------------------------------------------

def task_templates(task: str, family: str | None = None, split: str = "train") -> list[str]:
    """Phrasings of `task` (for "instructions": of `family`) in `split`; the last HELDOUT_PER_FAMILY are held out."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not valid; choose one of {', '.join(SPLITS)}")
    if task == "instructions":
        if family not in FAMILIES:
            raise ValueError(f"family={family!r} is not an instruction family; choose one of {', '.join(FAMILIES)}")
        ts = FAMILIES[family][1]
    elif task in TASK_TEMPLATES:
        ts = TASK_TEMPLATES[task]
    else:
        raise ValueError(f"task={task!r} has no chat phrasings; choose one of {', '.join(SFT_TASKS)}")
    return {"train": ts[:-HELDOUT_PER_FAMILY], "heldout": ts[-HELDOUT_PER_FAMILY:], "all": list(ts)}[split]


def example_to_conversation(e: Example, template: str, system: str | None = None) -> Conversation:
    """An emergence Example as a chat: the user turn is `template` filled with the problem, the assistant turn the
    answer (with chain-of-thought working, the working opened by TRACE_OPEN, then the answer)."""
    if e.task == "instructions":
        user = template.format(w=e.meta["input"])
    elif e.task in ("addition", "multiplication"):
        user = template.format(q=e.meta["key"])
    elif e.task in ("kv_map", "linear"):
        user = template.format(p=e.prompt)
    else:
        raise ValueError(f"cannot phrase task {e.task!r} as a chat; supported: {', '.join(SFT_TASKS)}")
    answer = (TRACE_OPEN + e.trace + e.answer) if e.trace else e.answer
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return Conversation(msgs, {"task": e.task, "template": template, "answer": e.answer, "key": problem_key(e),
                               **{k: e.meta[k] for k in ("family",) if k in e.meta}})


def problem_key(e: Example) -> str:
    """The problem an example poses, whatever its phrasing: "reverse:abc" for instructions, else `e.key`."""
    return f"{e.meta['family']}:{e.meta['input']}" if e.task == "instructions" else e.key


def _mix_counts(n: int, mix: Any) -> dict[str, int]:
    """n split over tasks by weight (largest remainder, so the counts sum to n exactly)."""
    if isinstance(mix, str):
        mix = {mix: 1.0}
    elif not isinstance(mix, Mapping):
        mix = dict.fromkeys(mix, 1.0)
    if not mix:
        raise ValueError("mix is empty; name at least one task")
    for t, w in mix.items():
        if t not in SFT_TASKS:
            raise ValueError(f"mix names unknown task {t!r}; choose from {', '.join(SFT_TASKS)}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise ValueError(f"mix weight of {t!r} is {w!r}; weights must be non-negative numbers")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError(f"mix weights {dict(mix)} sum to 0; give at least one positive weight")
    raw = {t: n * w / total for t, w in mix.items()}
    counts = {t: int(math.floor(r)) for t, r in raw.items()}
    for t in sorted(raw, key=lambda t: counts[t] - raw[t])[: n - sum(counts.values())]:
        counts[t] += 1
    return counts


def instruction_data(n: int, seed: int, mix: Any = "instructions", split: str = "train",
                     n_templates: int | None = None, system: str | None = None,
                     knobs: Mapping[str, dict] | None = None, exclude: Sequence = ()) -> list[Conversation]:
    """`n` chat conversations from the synthetic tasks, shuffled.

    mix: a task name, a list (equal shares) or {task: weight}; tasks from SFT_TASKS. split: phrasings "train",
    "heldout" (never seen in training) or "all". n_templates: use only the first k training phrasings of each
    task/family (diversity studies). knobs: per-task generator knobs, e.g. {"addition": {"digits": (1, 2)}}.
    exclude: Examples/keys/Conversations whose problem must not appear (keep evaluation problems out).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n={n!r} must be a non-negative int (the number of conversations)")
    if n_templates is not None and (isinstance(n_templates, bool) or not isinstance(n_templates, int)
                                    or n_templates < 1):
        raise ValueError(f"n_templates={n_templates!r} must be None or a positive int")
    knobs = dict(knobs or {})
    banned = {c.meta.get("key") if isinstance(c, Conversation) else problem_key(c) if isinstance(c, Example) else c
              for c in exclude}
    rng = np.random.default_rng(seed)
    out: list[Conversation] = []
    for task, count in _mix_counts(n, mix).items():
        examples: list[Example] = []
        r = 0
        while len(examples) < count:  # rejection rounds: redraw problems that `exclude` bans
            if r == 100:
                raise ValueError(f"could not draw {count} {task} problems outside `exclude`: it bans (nearly) all")
            # stream 2: draws independent of the emergence pretraining (0) and evaluation (1) streams
            draw = TASKS[task].sample(2 * (count - len(examples)) + 16, stream_seed(seed, task, 2, r),
                                      **knobs.get(task, {}))
            examples += [e for e in draw if problem_key(e) not in banned][: count - len(examples)]
            r += 1
        for e in examples:  # a loop over examples (each becomes one chat), not over tokens
            ts = task_templates(task, e.meta.get("family"), split)[:n_templates]
            out.append(example_to_conversation(e, ts[int(rng.integers(0, len(ts)))], system))
    return [out[j] for j in rng.permutation(len(out))]


# ---- local JSONL: {"messages": [...]}, {"instruction", "input", "output"} or {"prompt", "response"} ---------------

JSONL_SHAPES = ('{"messages": [{"role": ..., "content": ...}, ...]}',
                '{"instruction": ..., "input"?: ..., "output": ..., "system"?: ...}',
                '{"prompt": ..., "response": ...}')
_SHAPES = ("each line must be one JSON object of one of these shapes (? = optional key): " + "; ".join(JSONL_SHAPES))


def _line_to_messages(obj: Any, where: str) -> list[dict]:
    """One JSONL object -> messages; every error names the line and the accepted shapes."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}; {_SHAPES}")
    if "messages" in obj:
        try:
            return check_messages(obj["messages"])
        except ValueError as e:
            raise ValueError(f"{where}: {e}; {_SHAPES}") from None
    if "instruction" in obj or "output" in obj:
        required, optional = ("instruction", "output"), ("input", "system")
    elif "prompt" in obj or "response" in obj:
        required, optional = ("prompt", "response"), ()
    else:
        raise ValueError(f"{where}: no accepted shape; keys present: {sorted(obj)}. {_SHAPES}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}; keys present: {sorted(obj)}. {_SHAPES}")
    for k in required + optional:
        if k in obj and not isinstance(obj[k], str):
            raise ValueError(f"{where}: {k!r} must be a string, got {type(obj[k]).__name__}. {_SHAPES}")
    if required[0] == "prompt":
        msgs = [{"role": "user", "content": obj["prompt"]}, {"role": "assistant", "content": obj["response"]}]
    else:
        user = obj["instruction"] + ("\n\n" + obj["input"] if obj.get("input") else "")  # Alpaca's layout
        msgs = ([{"role": "system", "content": obj["system"]}] if obj.get("system") else []) + [
            {"role": "user", "content": user}, {"role": "assistant", "content": obj["output"]}]
    try:
        return check_messages(msgs)
    except ValueError as e:
        raise ValueError(f"{where}: {e}; {_SHAPES}") from None


def load_jsonl(path: str | os.PathLike) -> list[Conversation]:
    """Conversations from a UTF-8 JSON Lines file; each line in one of the JSONL_SHAPES (they may be mixed).
    Blank lines are skipped; every error names the file, the 1-based line and the accepted shapes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no JSONL file at {path}" + (" (it is a directory)" if path.is_dir() else ""))
    out = []
    try:
        for lineno, obj in iter_jsonl_objects(path):  # a loop over lines (documents)
            out.append(Conversation(_line_to_messages(obj, f"{path}:{lineno}"), {"source": str(path), "line": lineno}))
    except ValueError as e:
        raise ValueError(str(e) if _SHAPES in str(e) else f"{e}; {_SHAPES}") from None
    if not out:
        raise ValueError(f"{path} holds no conversations (only blank lines); {_SHAPES}")
    return out


# ---- packing: whole conversations into fixed rows, loss on response tokens only ----------------------------------

def _as_sequence(item: Any, template: ChatTemplate | None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, response mask) of one item: a Conversation / message list (rendered), a str (a plain LM document:
    every token is a target, for mixing pretraining text into SFT) or an (ids, mask) pair."""
    if isinstance(item, tuple) and len(item) == 2:
        ids, mask = np.asarray(item[0], dtype=np.int64).reshape(-1), np.asarray(item[1], dtype=bool).reshape(-1)
        if ids.shape != mask.shape:
            raise ValueError(f"an (ids, mask) pair has {ids.size} ids but {mask.size} mask entries")
        return ids, mask
    if template is None:
        raise ValueError("pack needs template=ChatTemplate(tokenizer) to render conversations or text")
    if isinstance(item, str):
        ids = np.asarray(template.tokenizer.encode(item), dtype=np.int64)
        return ids, np.ones(len(ids), dtype=bool)
    return template.render(item.messages if isinstance(item, Conversation) else item)


def pack(conversations: Sequence, block_size: int, template: ChatTemplate | None = None, *,
         pad_id: int | None = None, overflow: str = "error",
         one_per_row: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack conversations (in order, whole) into rows -> x (N, T), y (N, T) int64 with T = block_size.

    y[n, t] is the token after x[n, t] if that token is a response token of the same conversation, else -100.
    overflow: what to do with a conversation longer than block_size + 1 tokens: "error" or "drop".
    pad_id (default: END's id, else 0) fills row ends; padded positions are never targets.

    one_per_row=False (packing) lays conversations end to end, so a row holds several and each attends to the ones
    before it in its row; one_per_row=True puts each conversation alone in its own padded row (N = number of
    conversations), so its answer is predicted from its own prompt only, as at generation time. Which to use:
    short answers and a few pairs (tens to a few thousand: homework, a task-specific tune) -> one per row (issue
    #22 measured training exact match 34% packed vs 97% one per row on a 32-pair set); large corpora of long
    responses -> packing: far fewer padding tokens, so more useful tokens per step (throughput).
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size={block_size!r} must be a positive int")
    if overflow not in ("error", "drop"):
        raise ValueError(f"overflow={overflow!r} is not valid; choose 'error' or 'drop'")
    if pad_id is None:
        pad_id = template.end_id if template is not None else 0
    L = block_size + 1  # a row holds T inputs plus the last target
    rows: list[list[tuple[np.ndarray, np.ndarray]]] = []
    used = L  # forces a new row for the first sequence
    for i, item in enumerate(conversations):  # a loop over conversations; tokens are handled as arrays
        ids, mask = _as_sequence(item, template)
        if not mask[1:].any():
            raise ValueError(f"conversation {i} has no response token to learn from (no assistant turn?)")
        if len(ids) > L:
            if overflow == "drop":
                continue
            raise ValueError(f"conversation {i} has {len(ids)} tokens, more than block_size+1={L}: raise "
                             f"block_size, shorten it, or pass overflow='drop'")
        if one_per_row or used + len(ids) > L:
            rows.append([])
            used = 0
        rows[-1].append((ids, mask))
        used += len(ids)
    if not rows:
        raise ValueError("nothing to pack: no conversations (or all were dropped for being too long)")
    X = np.full((len(rows), L), pad_id, dtype=np.int64)   # (N, T+1)
    M = np.zeros((len(rows), L), dtype=bool)              # (N, T+1) token is a trainable target
    for r, row in enumerate(rows):
        ids = np.concatenate([s for s, _ in row])
        mask = np.concatenate([m for _, m in row])
        starts = np.cumsum([0] + [len(s) for s, _ in row[:-1]])
        mask[starts] = False  # a conversation's first token is never predicted from the previous one
        X[r, : len(ids)], M[r, : len(ids)] = ids, mask
    Y = np.where(M[:, 1:], X[:, 1:], IGNORE)  # (N, T)
    return torch.from_numpy(X[:, :-1].copy()), torch.from_numpy(Y)


def sft_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *, seed: int = 0,
                device: str | torch.device = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (x, y) batches of `batch_size` rows: each epoch a fresh permutation (seeded), no row repeated."""
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must both be (N, T)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= len(x):
        raise ValueError(f"batch_size={batch_size!r} must be an int in [1, {len(x)}] (the number of packed rows)")
    g = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(x), generator=g)
        for s in range(0, len(x) - batch_size + 1, batch_size):  # drop the ragged tail: equal-sized batches
            idx = order[s:s + batch_size]
            yield x[idx].to(device), y[idx].to(device)


def sft_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over response tokens only: logits (B, T, V), targets (B, T) with -100 elsewhere."""
    if not bool((targets != IGNORE).any()):
        raise ValueError("the batch has no response token (every target is -100): nothing to learn from")
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE)


def train_sft(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> list[dict]:
    """Fine-tune `model` (a GPT: forward(idx, targets) -> (logits, loss)) on packed rows; loss on response
    tokens only (y = -100 elsewhere, which GPT's cross-entropy ignores). Returns `optimize`'s history.
    cfg.out_dir / checkpoint_interval / resume work as in `optimize` (resume: pass the same x, y and cfg.seed)."""
    if x.size(1) > getattr(getattr(model, "config", None), "block_size", x.size(1)):
        raise ValueError(f"rows have {x.size(1)} tokens, more than the model's block_size; pack with a "
                         "block_size no larger than the model's")
    device = resolve_device(cfg.device)
    model.to(device)
    batches = sft_batches(x, y, cfg.batch_size, seed=cfg.seed, device=device)
    return optimize(model, cfg, batches=batches)  # lm_loss: GPT's cross-entropy skips the -100 targets


@torch.no_grad()
def response_accuracy(model: torch.nn.Module, template: ChatTemplate, conversations: Sequence[Conversation],
                      max_new_tokens: int | None = None, batch_size: int = 64) -> np.ndarray:
    """Exact match (N,) of the model's greedy response (up to END) against each conversation's final answer."""
    from minillm.evaluation.scoring import greedy_complete

    if not conversations or any(c.answer is None for c in conversations):
        raise ValueError("need conversations that end with an assistant answer to score against")
    if max_new_tokens is None:
        max_new_tokens = max(len(template.tokenizer.encode(c.answer)) for c in conversations) + 2
    prompts = [template.prompt_text(c.prompt) for c in conversations]
    replies = greedy_complete(model, template.tokenizer, prompts, max_new_tokens, stop=END, batch_size=batch_size)
    return np.array([r == c.answer for r, c in zip(replies, conversations)], dtype=float)
