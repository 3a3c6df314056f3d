"""Moved from `minillm.tools` (split: the library keeps the reusable part as `minillm.tools`)."""
from __future__ import annotations

from dataclasses import dataclass
from minillm.tools import CALL_CLOSE, CALL_OPEN, ANSWER_MARK, RESULT_MARK, evaluate_tools, tool_examples, tool_text


ARMS = ("tool", "no_tool")


@dataclass(frozen=True)
class ToolStudyConfig:
    """Model sizes as (n_layer, n_embd), one training recipe for both arms, and the evaluation grid."""

    sizes: tuple[tuple[int, int], ...] = ((1, 32), (2, 48), (2, 64))
    steps: int = 1200              # L2-C64 copies 1-3 digit operands perfectly by then; L1-C32 never did
    batch_size: int = 16
    block_size: int = 64
    lr: float = 5e-3
    n_train: int = 20_000          # problems per arm (the same ones in both)
    train_digits: tuple[int, int] = (1, 3)
    eval_digits: tuple[int, ...] = (1, 2, 3, 4)
    n_eval: int = 50               # problems per digit count
    position: str = "rope"         # relative positions: copying a number works at any offset
    device: str = "cpu"            # or "auto" / "cuda" (minillm.device.resolve_device)

    @classmethod
    def for_size(cls, size: str | None = None) -> "ToolStudyConfig":
        from minillm.presets import by_size

        return by_size(ci=cls(sizes=((1, 16), (1, 32)), steps=30, batch_size=8, n_train=600, eval_digits=(1, 2, 4),
                              n_eval=4),
                       laptop=cls(),
                       gpu=cls(sizes=((1, 32), (2, 64), (4, 128)), steps=4000, batch_size=32, n_train=60_000,
                               n_eval=100, device="auto"),
                       size=size)

    def __post_init__(self):
        if not self.sizes or any(len(s) != 2 or min(s) < 1 or s[1] % 16 for s in self.sizes):
            raise ValueError(f"sizes={self.sizes!r} must be (n_layer, n_embd) pairs with n_embd a multiple of 16")
        if self.steps < 1 or self.batch_size < 1 or self.n_train < 100 or self.n_eval < 1:
            raise ValueError("steps, batch_size and n_eval must be >= 1 and n_train >= 100 (enough text to train on)")
        if not self.eval_digits or min(self.eval_digits) < 1 or max(self.eval_digits) > 9:
            raise ValueError(f"eval_digits={self.eval_digits!r} must be digit counts in 1..9")
        d = max(self.eval_digits)  # "\n" prompt "a*b=", call "a*b", result and answer (<= 2d digits each), "\n"
        marks = len(CALL_OPEN + CALL_CLOSE + RESULT_MARK + ANSWER_MARK)
        longest = 1 + (2 * d + 2) + (2 * d + 1) + 2 * (2 * d) + marks + 1
        if longest > self.block_size:
            raise ValueError(f"block_size={self.block_size} is shorter than the longest evaluation line ({longest} "
                             f"characters at {max(self.eval_digits)} digits): raise block_size or lower eval_digits")


def _gold_budget(digits: int) -> int:
    """Generous max_new_tokens for a d-digit problem: a full tool line plus slack for a model that rambles."""
    return len(CALL_OPEN + CALL_CLOSE + RESULT_MARK + ANSWER_MARK) + 6 * digits + 8


def tool_study(size: str | None = None, seed: int = 0, config: ToolStudyConfig | None = None) -> list[dict]:
    """Train every (size, arm) on `seed`'s problems and evaluate both arms on held-out problems per digit count.
    Rows: {size: "L2-C64", params (non-embedding), arm: "tool" | "no_tool", digits, exact_match,
    calls_per_answer}. Digit counts above config.train_digits[1] were never in training."""
    from minillm.device import resolve_device
    from minillm.data.tasks.pretraining import emergence_tokenizer
    from book.runs_lm import train_lm
    from book.ch02_emergence.studies import size_label

    cfg = config or ToolStudyConfig.for_size(size)
    device = str(resolve_device(cfg.device))
    tok = emergence_tokenizer()
    texts = {arm: tool_text(cfg.n_train, seed, cfg.train_digits, with_tool=arm == "tool") for arm in ARMS}
    evals = {d: tool_examples(cfg.n_eval, seed, d) for d in cfg.eval_digits}
    rows = []
    for n_layer, n_embd in cfg.sizes:
        for arm in ARMS:
            model, _, _ = train_lm(texts[arm], n_layer=n_layer, n_embd=n_embd, n_head=max(1, n_embd // 16),
                                   steps=cfg.steps, batch_size=cfg.batch_size, block_size=cfg.block_size,
                                   lr=cfg.lr, seed=seed, device=device, tokenizer=tok,
                                   model_kwargs={"position": cfg.position})
            for d, ex in evals.items():
                res = evaluate_tools(model, tok, ex, _gold_budget(d))
                rows.append({"size": size_label(n_layer, n_embd), "params": model.num_params(), "arm": arm,
                             "digits": d, **res})
    return rows
