"""Autograded lab checks: compare a student's function with minillm's reference on fixed inputs.

Survey §4.2.2 (detailed configuration: attention, softmax) and §4.2.3 (the language-modeling loss) are
the first things the labs ask students to build from scratch. This module is how a lab tells a student
whether their version is right, with a message that says what is wrong and where to look.

How a check works
    ``check("softmax", my_softmax)`` runs ``my_softmax`` on a handful of *cases*: inputs generated from
    fixed seeds, chosen to include the edge cases that separate a working implementation from a subtly
    broken one (large logits that overflow a naive ``exp``, ``-inf`` masked entries, a length-1 sequence,
    a non-last ``dim``). Each output is compared with the output of minillm's own reference function on
    the same inputs (``minillm.softmax``, ``minillm.cross_entropy``,
    ``minillm.scaled_dot_product_attention``, imported from ``minillm.model``; the test-suite pins those to PyTorch's implementations), and
    for some cases the gradients are compared too, since the model trains through the student's code.

    Expectations are computed at check time from the references rather than stored as ``.npz``
    snapshots: the inputs are a few kilobytes, the references are already tested against torch, and there
    is no binary file that could silently go stale.

    Where the lab says "implement it", the check also names its *shortcuts* (``Check.shortcuts``: minillm's
    own function, torch's built-in one). A profile hook watches the student's call, so a function that reaches
    one of them, directly or through a wrapper, fails with "your function calls torch.softmax ...".

What a student sees
    One line ``PASS name: ...`` on success. On a mismatch, a ``FAIL`` line naming the failing case and
    the largest error plus a hint, then an ``AssertionError`` so that a notebook run (and CI) stops. A
    function that still raises ``NotImplementedError`` (the stub the lab builder leaves) gives
    ``NotImplementedError("not implemented yet: ...")``.

Adding a check for a new lab: a module `labNN.py` here builds `Case` objects and calls `register_check`;
import it below.
"""
from book.grading import lab00, lab01, lab02, lab03, lab03_tokenizer, lab04, lab05, lab06, lab07, lab08, lab09  # noqa: F401  (importing a lab module registers its checks; cheap, no tensors built)
from book.grading.core import CHECKS, Case, Check, _Mismatch, check, compare_numbers, lab_version, list_checks, register_check  # noqa: F401

__all__ = ["CHECKS", "Case", "Check", "check", "compare_numbers", "lab_version", "list_checks", "register_check"]
