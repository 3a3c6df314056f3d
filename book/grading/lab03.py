"""Lab 03 checks: MinHash signatures, LSH banding, a Gopher rule, and a junk filter graded on ground truth
(Survey §4.1.2, de-duplication and quality filtering)."""
from __future__ import annotations

from typing import Any

from book.grading.core import Case, Check, _Mismatch, compare_numbers, register_check

# ------------------------------------------------------------------------------------------------ inputs


def _hash_sets(seed: int, n_docs: int, max_shingles: int, empty: bool = False) -> tuple:
    """(hash_sets, a, b): random 32-bit shingle hashes per document (sorted, unique) and 16 permutations."""
    import numpy as np

    from minillm.data.dedup import permutations

    rng = np.random.default_rng(seed)
    sets = [np.unique(rng.integers(0, 2**32, size=int(rng.integers(1, max_shingles + 1)), dtype=np.uint64))
            for _ in range(n_docs)]
    if empty:
        sets[1] = np.empty(0, dtype=np.uint64)
    a, b = permutations(16, seed)
    return sets, a, b


def _text_sets(seed: int) -> tuple:
    """Shingle hashes of real documents: near copies and unrelated stories."""
    from minillm.data.dedup import permutations, shingle_hashes
    from minillm.data.synthetic import corpus

    docs = corpus("story", 6, seed).docs
    docs = docs + [docs[0].replace(" the ", " a ", 1), docs[1] + " The end."]
    a, b = permutations(32, seed)
    return [shingle_hashes(d, 5) for d in docs], a, b


def _signatures(seed: int, n_docs: int, num_perm: int, n_values: int) -> tuple:
    """(signatures, bands, rows): small-alphabet signatures so that bands collide often."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sig = rng.integers(0, n_values, size=(n_docs, num_perm)).astype(np.uint64)
    sig[3] = sig[0]              # an exact copy: every band collides
    sig[5, : num_perm // 2] = sig[4, : num_perm // 2]  # half the signature shared
    return sig


_CRAWL_SEEDS = (11, 12, 13, 14)  # the crawls junk_filter is graded on (600 pages each)
_TEXTS: dict[int, tuple[str, ...]] = {}  # seed -> texts only: no ground truth is kept while a filter runs
_CASE_SEEDS = {f"fresh English pages of crawl {i + 1} of {len(_CRAWL_SEEDS)}": s for i, s in enumerate(_CRAWL_SEEDS)}


def _fresh_english_pages(seed: int) -> list:
    from minillm.data.crawl import generate_crawl

    return [p for p in generate_crawl(600, seed=seed).pages if p.language == "en" and p.duplicate_of is None]


def _crawl_texts(seed: int) -> tuple:
    """(texts,) of the fresh English pages of a 600-page crawl. Only the texts are kept: the truth is made by the
    comparison after the student's filter has run, so nothing in the grader answers "which of these is junk?"
    while it runs (the old `_truth_for(texts)` lookup was an oracle a filter could call)."""
    if seed not in _TEXTS:
        _TEXTS[seed] = tuple(p.text for p in _fresh_english_pages(seed))
    return (list(_TEXTS[seed]),)


def _page_count(texts: list[str]) -> int:
    """junk_filter's "reference": only how many decisions are due. The truth comes after (compare_junk_filter)."""
    return len(texts)


# ------------------------------------------------------------------------------------------------ comparisons


def compare_exact_ints(got: Any, expected: Any, spec: Check, case: Case) -> float:
    """Integer arrays must be equal exactly: same shape, every value."""
    import numpy as np

    want = np.asarray(expected)
    try:
        have = np.asarray(got)
    except (TypeError, ValueError):
        raise _Mismatch(f"expected an integer array shaped like {want.shape}, got {type(got).__name__}") from None
    if have.shape != want.shape:
        raise _Mismatch(f"output shape {have.shape} but expected {want.shape}", case.hint)
    if have.dtype.kind not in "ui":
        raise _Mismatch(f"output dtype {have.dtype} is not an integer type",
                        "Hashes must stay exact: use np.uint64 arithmetic, never floats.")
    if not np.array_equal(have.astype(np.uint64), want.astype(np.uint64)):
        idx = tuple(int(i) for i in np.argwhere(have.astype(np.uint64) != want.astype(np.uint64))[0])
        raise _Mismatch(f"values differ at index {idx}: got {have[idx]}, expected {want[idx]}", case.hint)
    return 0.0


def compare_junk_filter(got: Any, expected: Any, spec: Check, case: Case) -> float:
    """The student's drop decisions scored against ground truth: precision >= spec.rtol, recall >= spec.atol.
    `expected` is the number of pages; the truth is regenerated here, after the student's filter returned."""
    from minillm.data.clean import precision_recall

    got = list(got)
    if len(got) != expected:
        raise _Mismatch(f"returned {len(got)} decisions for {expected} texts", "Return one bool per text.")
    expected = [p.quality != "clean" for p in _fresh_english_pages(_CASE_SEEDS[case.label])]
    if not all(isinstance(g, bool) or type(g).__name__ == "bool_" for g in got):
        raise _Mismatch("decisions must be bools (True = drop the page as junk)")
    pr = precision_recall(got, expected)
    if pr["precision"] < spec.rtol or pr["recall"] < spec.atol:
        raise _Mismatch(f"precision {pr['precision']:.3f} (need >= {spec.rtol}) and recall {pr['recall']:.3f} "
                        f"(need >= {spec.atol}) on {sum(expected)} junk of {len(expected)} pages", case.hint)
    return 0.0  # a pass is a pass: the thresholds, not an error size, are what this check grades


# ------------------------------------------------------------------------------------------------ checks


def _dup_lines_reference(text: str) -> float:
    from minillm.data.clean import text_stats

    return text_stats(text)["dup_lines"]


def _minhash_reference(hash_sets, a, b):
    from minillm.data.dedup import minhash_signatures

    return minhash_signatures(hash_sets, a, b)


def _lsh_reference(signatures, bands, rows):
    from minillm.data.dedup import lsh_candidate_pairs

    return lsh_candidate_pairs(signatures, bands, rows)


def _register_lab03() -> None:
    register_check(Check(
        name="minhash_signatures",
        shortcuts=("minillm.data.dedup.minhash_signatures",),
        summary="minhash_signatures(hash_sets, a, b) -> (D, P) uint64: min over x of (a[p] x + b[p]) mod (2^31 - 1)",
        hint="Concatenate all shingles, compute (a * x + b) % MERSENNE_PRIME as an (S, P) uint64 array, then "
             "np.minimum.reduceat over each document's slice; an empty document's row is MAX_HASH everywhere.",
        reference=_minhash_reference, compare=compare_exact_ints,
        cases=(
            Case("5 documents of random shingle hashes", lambda: _hash_sets(0, 5, 40)),
            Case("one document with a single shingle", lambda: _hash_sets(1, 1, 1)),
            Case("an empty document among others", lambda: _hash_sets(2, 4, 30, empty=True),
                 "np.minimum.reduceat on an empty slice returns the next element, not MAX_HASH: handle empties."),
            Case("shingles of real stories, with near copies", lambda: _text_sets(3)),
        ),
    ))
    register_check(Check(
        name="lsh_candidate_pairs",
        shortcuts=("minillm.data.dedup.lsh_candidate_pairs",),
        summary="lsh_candidate_pairs(signatures, bands, rows) -> (K, 2) int64 pairs i < j sharing a whole band, sorted",
        hint="For each band, group documents with identical rows in that band; every pair in a group is a "
             "candidate. Return each pair once as [i, j] with i < j, sorted by i then j.",
        reference=_lsh_reference, compare=compare_exact_ints,
        cases=(
            Case("8 docs, 4 bands of 2 rows", lambda: (_signatures(0, 8, 8, 3), 4, 2)),
            Case("an exact copy and a half copy, 2 bands of 6 rows", lambda: (_signatures(1, 8, 12, 50), 2, 6),
                 "Documents 0 and 3 are identical; 4 and 5 share the first band only."),
            Case("one band of all rows (only exact signature matches)", lambda: (_signatures(2, 10, 6, 2), 1, 6)),
            Case("no collisions at all", lambda: (_signatures(3, 6, 8, 10**9)[[0, 1, 2, 4]], 4, 2),
                 "With no pair, return an empty (0, 2) array."),
        ),
    ))
    register_check(Check(
        name="dup_line_fraction",
        shortcuts=("minillm.data.clean.text_stats",),
        summary="dup_line_fraction(text) -> float: Gopher's duplicate lines / lines (stripped, non-empty lines)",
        hint="Strip every line and drop empty ones; count each distinct line; duplicates = sum(count - 1); "
             "divide by the number of lines (0.0 for a text with no lines).",
        reference=_dup_lines_reference, compare=compare_numbers, atol=1e-12, rtol=0.0,
        cases=(
            Case("no repeats", lambda: ("one line\ntwo lines\nthree",)),
            Case("a line three times", lambda: ("buy now\nbuy now\nhello\nbuy now",)),
            Case("blank lines and surrounding spaces", lambda: ("  a b  \n\n a b\nc\n",),
                 "Strip lines before comparing and skip lines that are empty after stripping."),
            Case("empty text", lambda: ("",), "A text with no lines has 0.0 duplicate lines, not a division by zero."),
            Case("Chinese lines", lambda: ("我们回家。\n我们回家。\n天气很好。",)),
        ),
    ))
    register_check(Check(
        name="junk_filter",
        shortcuts=("minillm.data.clean.heuristic_filter", "minillm.data.clean.rule_results"),
        summary="junk_filter(texts) -> list[bool] (True = drop): precision >= 0.9 and recall >= 0.6 on crawl pages",
        hint="Combine a few text statistics (your dup_line_fraction, word count, mean word length, stop words) "
             "with thresholds; look at the pages you miss and the clean pages you drop, and adjust.",
        reference=_page_count, compare=compare_junk_filter, atol=0.6, rtol=0.9,
        cases=tuple(Case(label, lambda seed=seed: _crawl_texts(seed),
                         "Another crawl: thresholds tuned to one sample must still hold on another." if i else "")
                    for i, (label, seed) in enumerate(_CASE_SEEDS.items())),
    ))


_register_lab03()  # cheap: builds Check objects only; inputs and crawls are made when a check runs
