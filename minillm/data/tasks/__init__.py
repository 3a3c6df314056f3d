"""Task suites with exact answers, mixed into pretraining text. Survey §2.1 (abilities said to emerge with scale:
in-context learning, instruction following, step-by-step reasoning), §6.1 (ICL), §6.2 (chain of thought).

    examples.py      Example (prompt + trace + answer), the prompt marks, few_shot_prompt, extract_answer,
                     the TaskGenerator base class
    suites.py        arithmetic with written working, in-context key->value maps and linear rules; the registry
                     (TASKS, make_examples)
    instructions.py  instruction families with held-out phrasings; the inverse-scaling probe (PatternConflict)
    pretraining.py   pretraining text: stories + task examples at controlled character rates; the fixed
                     character tokenizer these texts use
"""
from minillm.data.tasks.examples import (ANSWER_MARK, MAP_SEP, QUERY_MARK, SHOT_SEP, TRACE_OPEN, Example, TaskGenerator, extract_answer, few_shot_prompt)
from minillm.data.tasks.suites import (TASKS, Addition, KVMap, Linear, Multiplication, addition_trace, make_examples, multiplication_trace)
from minillm.data.tasks.instructions import FAMILIES, HELDOUT_PER_FAMILY, Instructions, PatternConflict, templates
from minillm.data.tasks.pretraining import (ALPHABET, EVAL_STREAM, TRAIN_STREAM, Mixture, emergence_tokenizer,
                                            eval_examples, pretraining_mixture, stream_seed)

__all__ = [
    "ANSWER_MARK", "MAP_SEP", "QUERY_MARK", "SHOT_SEP", "TRACE_OPEN", "Example", "TaskGenerator", "extract_answer",
    "few_shot_prompt",
    "TASKS", "Addition", "KVMap", "Linear", "Multiplication", "addition_trace", "make_examples", "multiplication_trace",
    "FAMILIES", "HELDOUT_PER_FAMILY", "Instructions", "PatternConflict", "templates",
    "ALPHABET", "EVAL_STREAM", "TRAIN_STREAM", "Mixture", "emergence_tokenizer", "eval_examples",
    "pretraining_mixture", "stream_seed",
]
