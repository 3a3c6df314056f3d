"""LSH banding, clustering and near_dedup (minillm.data.dedup.lsh, Survey §4.1.2) on planted duplicates."""
import itertools

import numpy as np
import pytest
from scipy import integrate
from scipy.sparse import csr_matrix

from minillm.data.dedup import (NearDedupConfig, UnionFind, choose_bands, cluster_signatures, clusters_from_pairs,
                                exact_dedup, lsh_candidate_pairs, minhash_signatures, near_dedup, permutations,
                                s_curve, shingle_hashes)
from minillm.data.synthetic import corpus

FILLER = ["zork", "quill", "mote", "fen", "grue", "lumen", "brack", "tine"]  # words the stories never use


def edit(text, rate, rng):
    words = text.split()
    for i in np.flatnonzero(rng.random(len(words)) < rate):
        words[i] = FILLER[rng.integers(len(FILLER))]
    return " ".join(words)


def planted(n_base=300, n_dup=120, seed=0):
    """Base documents of 6 stories each, then copies of random bases with 0-30% of words replaced."""
    stories = corpus("story", 6 * n_base, seed=seed).docs
    texts = [" ".join(stories[6 * i:6 * i + 6]) for i in range(n_base)]
    rng = np.random.default_rng(seed)
    for _ in range(n_dup):
        texts.append(edit(texts[rng.integers(n_base)], rng.choice([0.0, 0.01, 0.03, 0.1, 0.3]), rng))
    return texts


def all_pairs_jaccard(hash_sets):
    """(D, D) exact Jaccard of every pair, via a sparse document x shingle incidence matrix."""
    vocab, cols = np.unique(np.concatenate(hash_sets), return_inverse=True)
    rows = np.repeat(np.arange(len(hash_sets)), [len(h) for h in hash_sets])
    x = csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(hash_sets), len(vocab)))
    inter = (x @ x.T).toarray()
    sizes = np.diag(inter)
    return inter / (sizes[:, None] + sizes[None, :] - inter)


def test_s_curve_hand_values():
    assert s_curve(0.5, 2, 2) == pytest.approx(1 - 0.75**2)         # 0.4375
    assert s_curve(0.8, 16, 8) == pytest.approx(1 - (1 - 0.8**8) ** 16)
    assert s_curve(0.9, 1, 1) == pytest.approx(0.9)
    np.testing.assert_allclose(s_curve(np.array([0.0, 1.0]), 16, 8), [0.0, 1.0])
    s = np.linspace(0, 1, 101)
    assert np.all(np.diff(s_curve(s, 16, 8)) >= 0)                      # monotone


def _quad_error(t, b, r, wfp, wfn):
    fp = integrate.quad(lambda s: 1 - (1 - s**r) ** b, 0, t)[0]
    fn = integrate.quad(lambda s: (1 - s**r) ** b, t, 1)[0]
    return wfp * fp + wfn * fn


@pytest.mark.parametrize("num_perm, t, w", [(128, 0.8, (0.5, 0.5)), (128, 0.8, (0.1, 0.9)), (256, 0.7, (0.5, 0.5)),
                                            (64, 0.9, (0.2, 0.8)), (120, 0.5, (0.5, 0.5))])
def test_choose_bands_minimizes_error_area(num_perm, t, w):
    b, r = choose_bands(num_perm, t, *w)
    assert b * r == num_perm
    errors = {(d, num_perm // d): _quad_error(t, d, num_perm // d, *w) for d in range(1, num_perm + 1)
              if num_perm % d == 0}
    assert errors[(b, r)] == pytest.approx(min(errors.values()), rel=1e-3)


def test_choose_bands_known_choices():
    assert choose_bands(128, 0.8) == (8, 16)                 # datasketch's 1:1 weights
    assert NearDedupConfig(threshold=0.8).band_rows() == (16, 8)  # verify=True: misses weigh more
    assert NearDedupConfig(threshold=0.8, verify=False).band_rows() == (8, 16)
    assert NearDedupConfig(num_perm=128, bands=32).band_rows() == (32, 4)


def test_candidate_pairs_equal_brute_force():
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 3, size=(60, 12)).astype(np.uint64)  # a 3-letter alphabet: many collisions
    sig[10] = sig[3]
    for bands, rows in [(12, 1), (4, 3), (3, 4), (2, 6), (1, 12)]:
        expect = sorted((i, j) for i, j in itertools.combinations(range(60), 2)
                        if any((sig[i, k * rows:(k + 1) * rows] == sig[j, k * rows:(k + 1) * rows]).all()
                               for k in range(bands)))
        got = lsh_candidate_pairs(sig, bands, rows)
        assert got.dtype == np.int64 and got.shape == (len(expect), 2)
        assert [tuple(p) for p in got.tolist()] == expect
    assert lsh_candidate_pairs(sig[:1], 3, 4).shape == (0, 2)


def test_lsh_recall_and_false_positives_on_planted_duplicates():
    texts = planted()
    hashes = [shingle_hashes(t) for t in texts]
    sig = minhash_signatures(hashes, *permutations(128, seed=1))
    jac = all_pairs_jaccard(hashes)
    bands, rows = NearDedupConfig(threshold=0.8).band_rows()
    cand = np.zeros_like(jac, dtype=bool)
    pairs = lsh_candidate_pairs(sig, bands, rows)
    cand[pairs[:, 0], pairs[:, 1]] = True
    iu = np.triu_indices(len(texts), 1)
    j, c = jac[iu], cand[iu]
    high, low = j >= 0.9, j < 0.3
    assert high.sum() > 30 and low.sum() > 10_000
    assert c[high].mean() >= 0.95
    assert c[low].mean() < 0.05


def test_near_dedup_against_ground_truth():
    texts = planted()
    r = near_dedup(texts, threshold=0.8)
    assert (r.bands, r.rows) == (16, 8)
    jac = all_pairs_jaccard([shingle_hashes(t) for t in texts])
    found = {tuple(p) for p in r.pairs.tolist()}
    truth = {(i, k) for i, k in zip(*np.nonzero(np.triu(jac >= 0.85, 1)))}
    assert len(truth) > 30 and len(truth - found) <= 0.03 * len(truth)          # recall >= 97%
    assert all(jac[i, k] >= 0.6 for i, k in found)                               # no unrelated pair
    # A removed document is in the same cluster as an earlier, kept one.
    removed = np.flatnonzero(~r.keep)
    assert np.all(r.cluster[removed] < removed) and np.all(r.keep[r.cluster])
    assert np.array_equal(r.duplicate_of, np.where(r.keep, -1, r.cluster)) and r.n_removed == len(removed)
    assert r.n_candidates >= len(r.pairs)


def test_near_dedup_verify_false_unions_all_candidates():
    texts = planted(n_base=100, n_dup=40, seed=2)
    loose = near_dedup(texts, threshold=0.8, verify=False, bands=16)
    strict = near_dedup(texts, threshold=0.8, verify=True, bands=16)
    assert loose.n_candidates == strict.n_candidates == len(loose.pairs) >= len(strict.pairs)
    assert loose.n_removed >= strict.n_removed


def test_near_dedup_clusters_are_transitive():
    stories = corpus("story", 60, seed=9).docs
    words = " ".join(stories[:30]).split()
    k = len(words) // 14
    # b rewrites the first k words of a, c also the last k: a ~ b ~ c, but a and c are too far apart.
    a = " ".join(words)
    b = " ".join([f"new{i}" for i in range(k)] + words[k:])
    c = " ".join([f"new{i}" for i in range(k)] + words[k:-k] + [f"end{i}" for i in range(k)])
    other = " ".join(stories[30:60])
    jac = all_pairs_jaccard([shingle_hashes(t) for t in (a, b, c, other)])
    assert jac[0, 1] > 0.85 and jac[1, 2] > 0.85 and jac[0, 2] < 0.78
    r = near_dedup([a, other, b, c], threshold=0.8, num_perm=512)  # std of the estimates ~0.02
    assert r.cluster.tolist() == [0, 1, 0, 0] and r.keep.tolist() == [True, True, False, False]
    assert [0, 3] not in r.pairs.tolist()  # a and c are joined only through b


def test_exact_duplicates_and_empty_docs_cluster_together():
    texts = planted(n_base=20, n_dup=0)
    texts = texts + [texts[3], "", texts[3].upper(), "   "]
    r = near_dedup(texts, threshold=0.9)
    assert r.cluster[20] == 3 and r.cluster[23] == 21 and r.keep[21]
    assert r.keep[22]  # word shingles are case-sensitive: normalize first (exact_dedup does)
    assert exact_dedup(texts).duplicate_of[22] == 3


def test_near_dedup_chinese_char_shingles():
    zh = corpus("story_zh", 400, seed=1).docs
    base = ["".join(zh[10 * i:10 * i + 10]) for i in range(40)]
    copy = base[7][:-5] + "大家都笑了。"   # the last few characters changed
    r = near_dedup(base + [copy], threshold=0.8, n=5, unit="char")
    assert r.cluster[-1] == 7 and r.n_removed == 1


def test_union_find_and_clusters_from_pairs_agree():
    uf = UnionFind(6)
    assert uf.union(0, 1) and uf.union(2, 1) and not uf.union(0, 2)
    assert uf.union(4, 5)
    assert uf.labels().tolist() == [0, 0, 0, 3, 4, 4]
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 200, size=(150, 2))
    uf = UnionFind(200)
    for i, j in pairs.tolist():
        uf.union(i, j)
    assert np.array_equal(uf.labels(), clusters_from_pairs(200, pairs))
    assert clusters_from_pairs(3, np.empty((0, 2))).tolist() == [0, 1, 2]


@pytest.mark.parametrize("call, err", [
    (lambda: near_dedup([], 0.8), ValueError),
    (lambda: near_dedup("abc"), TypeError),
    (lambda: near_dedup(["a", 3]), TypeError),
    (lambda: near_dedup(["a"], threshold=1.0), ValueError),
    (lambda: near_dedup(["a"], threshold=0), ValueError),
    (lambda: near_dedup(["a"], num_perm=0), ValueError),
    (lambda: near_dedup(["a"], n=0), ValueError),
    (lambda: near_dedup(["a"], unit="byte"), ValueError),
    (lambda: near_dedup(["a"], num_perm=128, bands=5), ValueError),
    (lambda: choose_bands(128, 1.2), ValueError),
    (lambda: choose_bands(128, 0.8, -1, 1), ValueError),
    (lambda: lsh_candidate_pairs(np.zeros((4, 12), dtype=np.uint64), 5, 2), ValueError),
    (lambda: lsh_candidate_pairs(np.zeros(12, dtype=np.uint64), 3, 4), ValueError),
    (lambda: cluster_signatures(np.zeros((3, 8), dtype=np.uint64), threshold=0.8, bands=3), ValueError),
    (lambda: clusters_from_pairs(3, np.array([[0, 3]])), ValueError),
    (lambda: UnionFind(0), ValueError),
])
def test_bad_input(call, err):
    with pytest.raises(err):
        call()
