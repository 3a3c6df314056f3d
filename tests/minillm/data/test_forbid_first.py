"""forbid_first: asking a model that may open with working ("[") for its direct answer, in scoring and decoding."""
from __future__ import annotations

import numpy as np
import torch

from minillm.data.tasks.suites import Example
from minillm.data.tasks.pretraining import emergence_tokenizer
from minillm.evaluation.scoring import greedy_complete, score_examples

TOK = emergence_tokenizer()


class Prefers(torch.nn.Module):
    """A fake LM: at every position '[' gets the top logit, then '7', then '\\n'."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.config = type("C", (), {"block_size": 64})()

    def forward(self, idx, targets=None, **kwargs):
        logits = torch.full((*idx.shape, TOK.vocab_size), -10.0)
        for ch, v in (("[", 3.0), ("7", 2.0), ("\n", 1.0)):
            logits[..., TOK.encode(ch)[0]] = v
        return logits, None


def test_teacher_forced_scores_renormalise_the_first_token_without_the_forbidden_one():
    ex = [Example("3+4=", "7", "addition")]
    free = score_examples(Prefers(), TOK, ex, return_tokens=True)
    direct = score_examples(Prefers(), TOK, ex, return_tokens=True, forbid_first="[")
    assert free["exact_match"][0] == 0 and direct["token_correct"][0, 0]  # '7' is the argmax once '[' is out
    assert direct["token_logprob"][0, 0] > free["token_logprob"][0, 0]  # '['s mass went to the others
    assert np.isclose(direct["token_logprob"][0, 1], free["token_logprob"][0, 1])  # later positions untouched


def test_greedy_decoding_never_starts_with_a_forbidden_character():
    out = greedy_complete(Prefers(), TOK, ["3+4="], max_new_tokens=3, forbid_first="[")
    assert out == ["7[["]  # '7' first (forced off '['), then greedy picks '[' again
    assert greedy_complete(Prefers(), TOK, ["3+4="], max_new_tokens=2) == ["[["]
