"""The tool-use study of chapter 07 (Survey §6.4, tool manipulation; Toolformer), on `minillm.tools`.

Two small models learn 1-3 digit products from the same number of problems, one from text whose lines call the
calculator (``12*34=<calc>12*34</calc>=>408 so 408``) and one from the bare answers. `tool_study` trains both
arms at the reader's size profile and scores exact match on held-out problems by number of digits.
"""
from __future__ import annotations

from dataclasses import dataclass

from minillm.tools import CALL_CLOSE, CALL_OPEN, ANSWER_MARK, RESULT_MARK, evaluate_tools, tool_examples, tool_text
from book.results import note
from book.runs import Run, size_label, train


ARMS = ("tool", "no_tool")


# Both arms' training recipe (book.runs.Run); each size replaces n_layer, n_embd and n_head (a head per 16 channels)
# and tool_study sets the seed. 1200 steps: L2-C64 copies 1-3 digit operands perfectly by then; L1-C32 never did.
# RoPE (relative positions): copying a number works at any offset.
RECIPE = Run(steps=1200, batch_size=16, block_size=64, lr=5e-3, model_fields={"position": "rope"})


@dataclass(frozen=True)
class ToolStudyConfig:
    """Model sizes as (n_layer, n_embd), one training recipe for both arms (`run`, a book.runs.Run), and the
    evaluation grid."""

    sizes: tuple[tuple[int, int], ...] = ((1, 32), (2, 48), (2, 64))
    run: Run = RECIPE              # its device may be "auto" / "cuda" (minillm.device.resolve_device)
    n_train: int = 20_000          # problems per arm (the same ones in both)
    train_digits: tuple[int, int] = (1, 3)
    eval_digits: tuple[int, ...] = (1, 2, 3, 4)
    n_eval: int = 50               # problems per digit count

    @classmethod
    def for_size(cls, size: str | None = None) -> "ToolStudyConfig":
        from minillm.presets import by_size

        return by_size(ci=cls(sizes=((1, 16), (1, 32)), run=RECIPE.replace(steps=30, batch_size=8), n_train=600,
                              eval_digits=(1, 2, 4), n_eval=4),
                       laptop=cls(),
                       gpu=cls(sizes=((1, 32), (2, 64), (4, 128)), run=RECIPE.replace(steps=4000, batch_size=32,
                                                                                      device="auto"),
                               n_train=60_000, n_eval=100),
                       size=size)

    def __post_init__(self):
        if not isinstance(self.run, Run):
            raise TypeError(f"run must be a book.runs.Run, got {type(self.run).__name__}")
        if not self.sizes or any(len(s) != 2 or min(s) < 1 or s[1] % 16 for s in self.sizes):
            raise ValueError(f"sizes={self.sizes!r} must be (n_layer, n_embd) pairs with n_embd a multiple of 16")
        if self.n_train < 100 or self.n_eval < 1:
            raise ValueError("n_eval must be >= 1 and n_train >= 100 (enough text to train on)")
        if not self.eval_digits or min(self.eval_digits) < 1 or max(self.eval_digits) > 9:
            raise ValueError(f"eval_digits={self.eval_digits!r} must be digit counts in 1..9")
        d = max(self.eval_digits)  # "\n" prompt "a*b=", call "a*b", result and answer (<= 2d digits each), "\n"
        marks = len(CALL_OPEN + CALL_CLOSE + RESULT_MARK + ANSWER_MARK)
        longest = 1 + (2 * d + 2) + (2 * d + 1) + 2 * (2 * d) + marks + 1
        if longest > self.run.block_size:
            raise ValueError(f"block_size={self.run.block_size} is shorter than the longest evaluation line "
                             f"({longest} characters at {max(self.eval_digits)} digits): raise run.block_size or "
                             f"lower eval_digits")


def _gold_budget(digits: int) -> int:
    """Generous max_new_tokens for a d-digit problem: a full tool line plus slack for a model that rambles."""
    return len(CALL_OPEN + CALL_CLOSE + RESULT_MARK + ANSWER_MARK) + 6 * digits + 8


def tool_study(size: str | None = None, seed: int = 0, config: ToolStudyConfig | None = None) -> list[dict]:
    """Train every (size, arm) on `seed`'s problems and evaluate both arms on held-out problems per digit count.
    Rows: {size: "L2-C64", params (non-embedding), arm: "tool" | "no_tool", digits, exact_match,
    calls_per_answer}. Digit counts above config.train_digits[1] were never in training."""
    from minillm.device import resolve_device
    from minillm.data.tasks.pretraining import emergence_tokenizer

    cfg = config or ToolStudyConfig.for_size(size)
    device = str(resolve_device(cfg.run.device))
    tok = emergence_tokenizer()
    texts = {arm: tool_text(cfg.n_train, seed, cfg.train_digits, with_tool=arm == "tool") for arm in ARMS}
    evals = {d: tool_examples(cfg.n_eval, seed, d) for d in cfg.eval_digits}
    note(tools={"n_train": cfg.n_train, "train_digits": cfg.train_digits, "eval_digits": cfg.eval_digits,
                "n_eval": cfg.n_eval, "seed": seed})
    rows = []
    for n_layer, n_embd in cfg.sizes:
        for arm in ARMS:
            run = cfg.run.replace(n_layer=n_layer, n_embd=n_embd, n_head=max(1, n_embd // 16), seed=seed,
                                  device=device)
            model, _, _ = train(run, texts[arm], tokenizer=tok)
            for d, ex in evals.items():
                res = evaluate_tools(model, tok, ex, _gold_budget(d))
                rows.append({"size": size_label(n_layer, n_embd), "params": model.num_params(), "arm": arm,
                             "digits": d, **res})
    return rows
