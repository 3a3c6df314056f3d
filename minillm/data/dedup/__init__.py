"""De-duplication of pre-training data (Survey §4.1.2, "De-duplication").

Duplicated data hurts language models: it wastes compute, skews the data distribution toward whatever was
copied most, encourages verbatim memorization, and can make training unstable. The survey describes
de-duplication at three granularities; each maps to a module here:

    sentence level   exact.py     repeated_lines_within (repeated lines/sentences inside one document),
                                  line_dedup (lines repeated across many documents: crawl boilerplate)
    document level   exact.py     normalize_for_hash, exact_dedup (identical documents)
                     minhash.py   shingle_hashes, permutations, minhash_signatures, estimate_jaccard, jaccard
                     lsh.py       s_curve, choose_bands, lsh_candidate_pairs, UnionFind, near_dedup
                                  (near duplicates: a few words edited)
    dataset level    decontam.py  ngram_overlap, decontaminate (training documents that overlap an
                                  evaluation set: GPT-3's 13-gram rule)

Typical order on a crawl: exact_dedup, then line_dedup and repeated_lines_within, then near_dedup, then
decontaminate against every benchmark you will report.
"""
from minillm.data.dedup.decontam import DecontamResult, decontaminate, ngram_keys, ngram_overlap
from minillm.data.dedup.exact import DedupResult, exact_dedup, line_dedup, normalize_for_hash, repeated_lines_within
from minillm.data.dedup.lsh import (NearDedupConfig, NearDedupResult, UnionFind, choose_bands, cluster_signatures,
                  clusters_from_pairs, lsh_candidate_pairs, near_dedup, s_curve)
from minillm.data.dedup.minhash import (MAX_HASH, MERSENNE_PRIME, estimate_jaccard, jaccard, minhash_signatures, permutations,
                      shingle_hashes, shingle_spans, shingles)

__all__ = [
    "DecontamResult", "decontaminate", "ngram_keys", "ngram_overlap",
    "DedupResult", "exact_dedup", "line_dedup", "normalize_for_hash", "repeated_lines_within",
    "NearDedupConfig", "NearDedupResult", "UnionFind", "choose_bands", "cluster_signatures",
    "clusters_from_pairs", "lsh_candidate_pairs", "near_dedup", "s_curve",
    "MAX_HASH", "MERSENNE_PRIME", "estimate_jaccard", "jaccard", "minhash_signatures", "permutations",
    "shingle_hashes", "shingle_spans", "shingles",
]
