"""How fast is minillm's vectorized MinHash-LSH next to datasketch? (Survey §4.1.2, de-duplication.)

One corpus, one process, the same settings for both: documents of 8 synthetic stories each (~290 words,
`minillm.data.synthetic.corpus("story")`), plus planted near duplicates (copies of random documents with
0-10% of their words replaced, so every duplicate pair is known), 5-word shingles, 128 permutations, and the
same LSH bands x rows (near_dedup's choice for the threshold).

* minillm: `minhash_signatures` of all documents at once + `cluster_signatures` (LSH candidate pairs,
  verification of each pair's estimated Jaccard, connected components).
* datasketch: `MinHash(num_perm=128, seed=1)` + `update_batch` of the same shingle strings for each
  document (as given in its README; `MinHash.bulk`, which reuses the permutations, is timed too), then
  `MinHashLSH(threshold, num_perm, params=(bands, rows))`: insert every document, query every document.

Shingling is timed separately (minillm: `shingle_hashes`, crc32 of each shingle; datasketch: building the
shingle byte strings, which it then hashes with sha1 inside update_batch). Reports docs/s for each, their
ratio (goal: minillm >= 3x), and recall / precision of the planted duplicate pairs for both. Recall counts
planted pairs whose exact Jaccard reaches the threshold; precision counts reported pairs that are planted
pairs (any Jaccard) and, stricter, reported pairs whose exact Jaccard reaches the threshold.

    OMP_NUM_THREADS=1 python bench/dedup_speed.py [--n-docs 5000] [--dup-fraction 0.2] [--threshold 0.8]

Prints one summary line and appends a JSON record (command, date, host, versions, numbers) to
bench/results/dedup_speed.jsonl.
"""
from __future__ import annotations

import argparse
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from minillm.data.dedup import (NearDedupConfig, cluster_signatures, jaccard, lsh_candidate_pairs, minhash_signatures,
                                permutations, shingle_hashes, shingles)
from minillm.data.synthetic import corpus
from minillm.provenance import append_jsonl, provenance

RESULTS = Path(__file__).resolve().parent / "results" / "dedup_speed.jsonl"
EDIT_RATES = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1)
FILLER = ("zork", "quill", "mote", "fen", "grue", "lumen", "brack", "tine")  # words the stories never use
STORIES_PER_DOC = 8


def planted_corpus(n_docs: int, dup_fraction: float, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts, the source document of each (itself for originals), and the edit rate of each copy (0 else)."""
    n_dup = int(round(n_docs * dup_fraction))
    n_base = n_docs - n_dup
    stories = corpus("story", STORIES_PER_DOC * n_base, seed=seed).docs
    texts = [" ".join(stories[STORIES_PER_DOC * i:STORIES_PER_DOC * (i + 1)]) for i in range(n_base)]
    rng = np.random.default_rng(seed)
    source = np.concatenate([np.arange(n_base), rng.integers(0, n_base, n_dup)])
    rate = np.concatenate([np.zeros(n_base), rng.choice(EDIT_RATES, n_dup)])
    for k in range(n_base, n_docs):
        words = texts[source[k]].split()
        for i in np.flatnonzero(rng.random(len(words)) < rate[k]):
            words[i] = FILLER[rng.integers(len(FILLER))]
        texts.append(" ".join(words))
    return texts, source, rate


def planted_pairs(source: np.ndarray) -> set[tuple[int, int]]:
    """Every pair of documents copied from the same source (the source included)."""
    groups: dict[int, list[int]] = {}
    for d, s in enumerate(source.tolist()):
        groups.setdefault(s, []).append(d)
    return {(g[i], g[j]) for g in groups.values() if len(g) > 1 for i in range(len(g)) for j in range(i + 1, len(g))}


def scores(found: set, truth: set, planted: set, similar: set) -> dict:
    return {"pairs_reported": len(found), "recall": round(len(found & truth) / max(len(truth), 1), 4),
            "precision_planted": round(len(found & planted) / max(len(found), 1), 4),
            "precision_at_threshold": round(len(found & similar) / max(len(found), 1), 4)}


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run_datasketch(encoded: list[list[bytes]], threshold: float, num_perm: int, bands: int, rows: int,
                   bulk: bool) -> tuple[set, float, float]:
    from datasketch import MinHash, MinHashLSH

    def sketches():
        if bulk:
            return MinHash.bulk(encoded, num_perm=num_perm, seed=1)
        out = []
        for sh in encoded:
            m = MinHash(num_perm=num_perm, seed=1)
            m.update_batch(sh)
            out.append(m)
        return out

    def index_and_query(ms):
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=(bands, rows))
        for d, m in enumerate(ms):
            lsh.insert(d, m)
        return {(min(d, q), max(d, q)) for d, m in enumerate(ms) for q in lsh.query(m) if q != d}

    ms, t_sig = timed(sketches)
    pairs, t_lsh = timed(lambda: index_and_query(ms))
    return pairs, t_sig, t_lsh


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-docs", type=int, default=5000)
    ap.add_argument("--dup-fraction", type=float, default=0.2, help="fraction of documents that are planted copies")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--shingle", type=int, default=5, help="words per shingle")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.n_docs < 10 or not 0 < args.dup_fraction < 1:
        raise SystemExit("--n-docs must be >= 10 and --dup-fraction in (0, 1)")
    cfg = NearDedupConfig(threshold=args.threshold, num_perm=args.num_perm, n=args.shingle)
    bands, rows = cfg.band_rows()

    texts, source, rate = planted_corpus(args.n_docs, args.dup_fraction, args.seed)
    D = len(texts)

    # minillm
    hashes, ours_shingle_s = timed(lambda: [shingle_hashes(t, cfg.n) for t in texts])
    a, b = permutations(cfg.num_perm, cfg.seed)
    sig, ours_sig_s = timed(lambda: minhash_signatures(hashes, a, b))
    result, ours_lsh_s = timed(lambda: cluster_signatures(sig, cfg.threshold, bands, verify=True))
    ours_pairs = {tuple(p) for p in result.pairs.tolist()}
    # The unverified candidates (not timed again) are what datasketch's query returns: same algorithm.
    ours_cands = {tuple(p) for p in lsh_candidate_pairs(sig, bands, rows).tolist()}

    # datasketch: the same shingles, as the UTF-8 byte strings it expects
    encoded, ds_shingle_s = timed(lambda: [[s.encode("utf-8") for s in shingles(t, cfg.n)] for t in texts])
    ds_pairs, ds_sig_s, ds_lsh_s = run_datasketch(encoded, cfg.threshold, cfg.num_perm, bands, rows, bulk=False)
    _, dsb_sig_s, _ = run_datasketch(encoded, cfg.threshold, cfg.num_perm, bands, rows, bulk=True)

    # Ground truth from the planting, scored by exact Jaccard of the same shingle sets.
    planted = planted_pairs(source)
    exact = {p: jaccard(hashes[p[0]], hashes[p[1]]) for p in planted | ours_cands | ds_pairs}
    truth = {p for p in planted if exact[p] >= cfg.threshold}
    similar = {p for p, j in exact.items() if j >= cfg.threshold}
    by_rate = {}
    for r in EDIT_RATES:
        pairs_r = {p for p in planted if rate[p[1]] == r and source[p[0]] == p[0]}  # (source, copy) pairs
        if pairs_r:
            by_rate[str(r)] = {"pairs": len(pairs_r),
                               "mean_jaccard": round(float(np.mean([exact[p] for p in pairs_r])), 3),
                               "recall_minillm": round(len(pairs_r & ours_pairs) / len(pairs_r), 3),
                               "recall_datasketch": round(len(pairs_r & ds_pairs) / len(pairs_r), 3)}

    ours_s = ours_sig_s + ours_lsh_s
    ds_s = min(ds_sig_s, dsb_sig_s) + ds_lsh_s  # datasketch's faster sketching path
    record = provenance()
    record["versions"].update(datasketch=version("datasketch"), scipy=version("scipy"))
    record |= {
        "corpus": f"{D} docs: {D - len(set(source.tolist()))} planted copies (edit rates {list(EDIT_RATES)}) of "
                  f"documents of {STORIES_PER_DOC} synthetic stories (story, seed {args.seed})",
        "n_docs": D, "mean_words": round(float(np.mean([len(t.split()) for t in texts])), 1),
        "mean_shingles": round(float(np.mean([len(h) for h in hashes])), 1),
        "threshold": cfg.threshold, "num_perm": cfg.num_perm, "shingle_words": cfg.n, "bands": bands, "rows": rows,
        "planted_pairs": len(planted), "planted_pairs_at_threshold": len(truth),
        "minillm": {"shingle_s": round(ours_shingle_s, 3), "signatures_s": round(ours_sig_s, 3),
                    "lsh_verify_cluster_s": round(ours_lsh_s, 3), "docs_per_s": round(D / ours_s, 1),
                    "docs_per_s_with_shingling": round(D / (ours_s + ours_shingle_s), 1),
                    **scores(ours_pairs, truth, planted, similar),
                    "unverified_candidates": scores(ours_cands, truth, planted, similar)},
        "datasketch": {"shingle_s": round(ds_shingle_s, 3), "minhash_s": round(ds_sig_s, 3),
                       "minhash_bulk_s": round(dsb_sig_s, 3), "lsh_insert_query_s": round(ds_lsh_s, 3),
                       "docs_per_s": round(D / ds_s, 1),
                       "docs_per_s_with_shingling": round(D / (ds_s + ds_shingle_s), 1),
                       **scores(ds_pairs, truth, planted, similar)},
        "speedup_minillm_over_datasketch": round(ds_s / ours_s, 2),
        "speedup_with_shingling": round((ds_s + ds_shingle_s) / (ours_s + ours_shingle_s), 2),
        "recall_by_edit_rate": by_rate,
    }
    append_jsonl(RESULTS, record)

    o, d = record["minillm"], record["datasketch"]
    print(f"MinHash-LSH on {D} docs (P={cfg.num_perm}, {bands}x{rows}, t={cfg.threshold}): "
          f"minillm {o['docs_per_s']:.0f} docs/s vs datasketch {d['docs_per_s']:.0f} docs/s "
          f"({record['speedup_minillm_over_datasketch']}x; "
          f"{record['speedup_with_shingling']}x with shingling); recall {o['recall']} vs {d['recall']}, "
          f"precision (planted) {o['precision_planted']} vs {d['precision_planted']}, (J >= t) "
          f"{o['precision_at_threshold']} vs {d['precision_at_threshold']} -> {RESULTS.name}")


if __name__ == "__main__":
    main()
