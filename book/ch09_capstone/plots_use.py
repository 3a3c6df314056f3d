"""The capstone's sampling widget: talk to the trained model, as free text or as the poet (Survey §4.2.4, decoding
strategy: temperature and top-p change what a trained model writes; §5.1.1: the poet answers an instruction in the
chat format it was tuned on).

    w = SamplingWidget(model, tok)        # draws one sample (the reader sees output at once)
    display(w.widget)                     # mode, prompt or title + form, temperature, top-p, max tokens, seed
    w.render()                            # sample again with the controls as they are; returns what it showed

Two modes. "free text": the model continues the prompt box (a pretrained model writes Shakespeare or a poem's
title and lines). "poet": the title box and the form dropdown become poems.form_prompt(title, form) in the chat
template, the model answers until <|end|>, and the widget says whether the answer follows the form (line count and
characters per line, poems.follows_form). Each sample draws from a generator seeded with `seed`, so the same
settings always give the same text and a change comes from the settings alone; the tokens are exactly those
minillm.textgen.generate_text returns for the same settings (a test checks), counted here to report tokens/s.
"""
from __future__ import annotations

import html
import time
from typing import Any

import torch

from minillm.finetune.chat import CHAT_TOKENS, ChatTemplate, as_messages
from minillm.generate import generate
from minillm.textgen import END_TOKENS
from book.ch09_capstone.studies_poems import FORMS, follows_form, form_prompt
from book.viz import SAMPLE_CSS_CLASS, SliderPanel

__all__ = ["MODES", "SamplingWidget"]

MODES = ("free text", "poet")


class SamplingWidget(SliderPanel):
    """Controls (mode, prompt, title, form, temperature, top-p, max new tokens, seed) and one sample. Moving a
    control samples again; `render()` does it directly and returns {mode, prompt, title, form, temperature, top_p,
    max_new_tokens, seed, text, follows_form (None in free-text mode), new_tokens, seconds, tokens_per_s}.
    max_new_tokens None: min(96, block_size // 2)."""

    def __init__(self, model: torch.nn.Module, tok: Any, *, mode: str = "poet", prompt: str = "ROMEO:\n",
                 title: str = "春曉", form: str = "五言絕句", temperature: float = 0.8, top_p: float = 0.95,
                 max_new_tokens: int | None = None, seed: int = 0):
        import ipywidgets as widgets

        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not valid; choose one of {', '.join(map(repr, MODES))}")
        if form not in FORMS:
            raise ValueError(f"form={form!r} is not valid; choose one of {', '.join(FORMS)}")
        block = int(model.config.block_size)
        if max_new_tokens is None:  # room for an 8-line 七言 poem (~60 tokens), and half the context for the prompt
            max_new_tokens = min(96, block // 2)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens < block:
            raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an int in [1, {block - 1}] (the model's "
                             f"block_size={block} holds the prompt too)")
        if not 0.0 <= temperature <= 2.0 or not 0.05 <= top_p <= 1.0:
            raise ValueError(f"temperature={temperature} must be in [0, 2] (0 = greedy) and top_p={top_p} in "
                             "[0.05, 1] (1 = off)")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise ValueError(f"seed={seed!r} must be an int in [0, 2**31)")
        specials = tuple(getattr(tok, "special_tokens", ()))
        has_chat = all(t in specials for t in CHAT_TOKENS)
        if mode == "poet" and not has_chat:
            raise ValueError(f"poet mode needs a tokenizer with the chat tags {CHAT_TOKENS}; use the capstone "
                             "tokenizer (book.ch09_capstone.studies_corpus.capstone_tokenizer), or mode='free text'")
        self.model, self.tok = model, tok
        self.template = ChatTemplate(tok) if has_chat else None  # None: poet mode says why when chosen
        self.stop_ids = [tok.token_to_id(t) for t in END_TOKENS if t in specials]  # where generate_text stops
        self.hidden_ids = {tok.token_to_id(t) for t in specials}  # bookkeeping the reader should not see

        def common() -> dict:
            """continuous_update=False: sample when a slider is released or Enter is pressed, not on every pixel or
            key; a Layout per control, since hiding a shared one would hide every box that shares it."""
            return dict(continuous_update=False, style={"description_width": "110px"},
                        layout=widgets.Layout(width="380px"))

        self.sample = widgets.HTML()  # the text, shown beside the controls
        self.sample.add_class(SAMPLE_CSS_CLASS)
        self._build({
            "mode": widgets.ToggleButtons(options=list(MODES), value=mode, description="mode",
                                          style={"description_width": "110px"}),
            "prompt": widgets.Textarea(value=prompt, description="prompt", **common()),
            "title": widgets.Text(value=title, description="title", **common()),
            "form": widgets.Dropdown(options=list(FORMS), value=form, description="form",
                                     style={"description_width": "110px"}),
            "temperature": widgets.FloatSlider(value=temperature, min=0.0, max=2.0, step=0.05, readout_format=".2f",
                                               description="temperature (0=greedy)", **common()),
            "top_p": widgets.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.05, readout_format=".2f",
                                         description="top-p (1=off)", **common()),
            "max_new_tokens": widgets.IntSlider(value=max_new_tokens, min=1, max=block - 1,
                                                description="max new tokens", **common()),
            "seed": widgets.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed",
                                           style={"description_width": "110px"}),
        })
        with self.output:  # once: later samples only change self.sample's value
            from IPython.display import display

            display(self.sample)

    # ------------------------------------------------------------------------------------------- sampling

    def _prompt_ids(self, mode: str) -> list[int]:
        c = self.controls
        if mode == "poet":
            if self.template is None:
                raise ValueError("poet mode needs a tokenizer with the chat tags (<|user|>, <|assistant|>, <|end|>); "
                                 "use the capstone tokenizer, or switch to free text")
            title = c["title"].value.strip()
            if not title:
                raise ValueError("the title is empty: type a title for the poem")
            return self.template.prompt_ids(as_messages(form_prompt(title, c["form"].value))).tolist()
        prompt = c["prompt"].value
        if not prompt:
            raise ValueError("the prompt is empty: type at least one character for the model to continue")
        return list(self.tok.encode(prompt))

    def _generate(self, ids: list[int]) -> tuple[list[int], float]:
        """(new ids up to the first end token, seconds): minillm.generate with generate_text's settings."""
        c = self.controls
        block = self.model.config.block_size
        n = c["max_new_tokens"].value
        if len(ids) + n > block:
            raise ValueError(f"the prompt has {len(ids)} tokens; with {n} new ones that exceeds the model's context "
                             f"of {block}: shorten the prompt or lower max new tokens")
        device = next(self.model.parameters()).device
        idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
        gen = torch.Generator(device=device).manual_seed(int(c["seed"].value))
        top_p = c["top_p"].value
        t0 = time.perf_counter()
        out = generate(self.model, idx, n, temperature=c["temperature"].value, top_p=top_p if top_p < 1.0 else None,
                       stop_tokens=self.stop_ids or None, generator=gen)
        new = out[0, len(ids):].tolist()  # .tolist() waits for the device
        seconds = time.perf_counter() - t0
        ends = [i for i, t in enumerate(new) if t in self.stop_ids]
        return (new[: ends[0] + 1] if ends else new), seconds  # a finished row repeats its end token: cut there

    def render(self) -> dict:
        """Sample once with the controls as they are, show it, and return what was shown (see the class)."""
        return self._render()

    def _render(self) -> dict:
        c = self.controls
        mode = c["mode"].value
        # show the boxes of the mode only: the prompt in free text, the title and form for the poet
        c["prompt"].layout.display = "none" if mode == "poet" else None
        for name in ("title", "form"):
            c[name].layout.display = None if mode == "poet" else "none"
        ids = self._prompt_ids(mode)
        new, seconds = self._generate(ids)
        text = self.tok.decode([t for t in new if t not in self.hidden_ids])
        form = c["form"].value if mode == "poet" else None
        follows = follows_form(text, form) if form is not None else None
        shown_prompt = (form_prompt(c["title"].value.strip(), form) if form is not None else c["prompt"].value)
        self.result = {"mode": mode, "prompt": shown_prompt, "title": c["title"].value.strip(), "form": form,
                       "temperature": c["temperature"].value, "top_p": c["top_p"].value,
                       "max_new_tokens": c["max_new_tokens"].value, "seed": int(c["seed"].value), "text": text,
                       "follows_form": follows, "new_tokens": len(new), "seconds": seconds,
                       "tokens_per_s": len(new) / seconds}
        verdict = "" if follows is None else (f"<b style='color:#070'>follows {form}</b> · " if follows else
                                              f"<b style='color:#b00'>does not follow {form}</b> · ")
        self.summary.value = (f"{verdict}{len(new)} tokens in {seconds:.2f} s "
                              f"({self.result['tokens_per_s']:.0f} tokens/s, KV cache)")
        sep = "\n" if mode == "poet" else ""  # the poet's answer starts on its own line; free text continues
        self.sample.value = (f'<pre style="white-space: pre-wrap; font-size: 14px"><b>{html.escape(shown_prompt)}'
                             f"</b>{sep}{html.escape(text)}</pre>")
        return self.result

    def _on_change(self, change: dict) -> None:
        if self._syncing:
            return
        try:
            self._render()
        except ValueError as e:  # an empty box or an over-long prompt: say so where the sample would be
            self.summary.value = f'<span style="color:#b00">cannot sample: {html.escape(str(e))}</span>'

