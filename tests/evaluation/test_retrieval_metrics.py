"""`retrieval_metrics` against a brute-force reference: a full stable sort per query.

The data makes every similarity exact in float32 and float64 alike (small integers for
`"dot"` / `"l2"`, unit vectors with entries in {0, +-1/2, +-1} for `"cosine"`), so the
rankings have many exact ties and the reference, computed in float64 with loops, must
agree with the implementation to the last rank.
"""

import importlib

import numpy as np
import pytest

from tfcontrast import evaluation as ev

# The package attribute `retrieval_metrics` is the function; this is its module.
rm_module = importlib.import_module("tfcontrast.evaluation.retrieval_metrics")

METRICS = ("precision_at_1", "r_precision", "map_at_r", "map", "mrr")


def _brute_force(q, ql, g, gl, ks, metric, exclude_self):
    """Per query: score every gallery item, sort by (-score, gallery position), walk the
    ranking. Scores in float64 from the definitions (l2: minus the squared distance)."""
    q, g = np.asarray(q, np.float64), np.asarray(g, np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
    sums = dict.fromkeys([*METRICS, *(f"recall_at_{k}" for k in ks)], 0.0)
    valid = 0
    for i in range(q.shape[0]):
        items = []
        for j in range(g.shape[0]):
            if exclude_self and j == i:
                continue
            if metric == "l2":
                score = -float(np.sum((q[i] - g[j]) ** 2))
            else:
                score = float(np.dot(q[i], g[j]))
            items.append((-score, j))
        ranking = [j for _, j in sorted(items)]  # ties: earlier gallery item first
        rel = [gl[j] == ql[i] for j in ranking]
        r = sum(rel)
        if r == 0:
            continue
        valid += 1
        hits, ap, ap_r = 0, 0.0, 0.0
        first = None
        for pos, is_rel in enumerate(rel, start=1):
            if is_rel:
                hits += 1
                ap += hits / pos
                if pos <= r:
                    ap_r += hits / pos
                if first is None:
                    first = pos
            if pos == r:
                sums["r_precision"] += hits / r
        sums["precision_at_1"] += float(rel[0])
        sums["map_at_r"] += ap_r / r
        sums["map"] += ap / r
        sums["mrr"] += 1.0 / first
        for k in ks:
            sums[f"recall_at_{k}"] += float(any(rel[:k]))
    out = {name: total / max(valid, 1) for name, total in sums.items()}
    out["queries_without_relevant"] = q.shape[0] - valid
    return out


def _labels(rng, n, sizes):
    """`n` labels drawn with class probabilities proportional to `sizes`."""
    p = np.asarray(sizes, np.float64)
    return rng.choice(len(sizes), size=n, p=p / p.sum())


def _integer_points(rng, n, dim=3, high=3):
    return rng.integers(-high, high + 1, size=(n, dim)).astype(np.float32)


def _exact_unit_directions(rng, n, dim=8):
    """Vectors whose float32 normalisation and products are exact: a signed one-hot or
    four entries of +-1/2, times a scale in {1/2, 1, 2, 3, 5}."""
    x = np.zeros((n, dim), np.float32)
    for i in range(n):
        if rng.random() < 0.3:
            x[i, rng.integers(dim)] = rng.choice([-1.0, 1.0])
        else:
            cols = rng.choice(dim, size=4, replace=False)
            x[i, cols] = rng.choice([-0.5, 0.5], size=4)
    return x * rng.choice([0.5, 1.0, 2.0, 3.0, 5.0], size=(n, 1)).astype(np.float32)


def _points(rng, metric, n):
    if metric == "cosine":
        return _exact_unit_directions(rng, n)
    return _integer_points(rng, n)


def _assert_matches(got, ref, ks):
    assert got["queries_without_relevant"] == ref["queries_without_relevant"]
    for name in (*METRICS, *(f"recall_at_{k}" for k in ks)):
        assert got[name] == pytest.approx(ref[name], rel=1e-12, abs=1e-15), name


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_query_vs_gallery_with_ties_matches_brute_force(rng, metric):
    ks = (1, 2, 5, 40)
    # Classes of 1 to 60 items; query class 6 has no gallery item (skipped query).
    g = _points(rng, metric, 160)
    gl = _labels(rng, 160, [60, 30, 30, 20, 10, 3, 0, 1])
    gl[-1] = 7  # class 7: exactly one gallery item
    q = _points(rng, metric, 45)
    ql = _labels(rng, 45, [5, 5, 5, 5, 5, 3, 3, 3])
    ref = _brute_force(q, ql, g, gl, ks, metric, exclude_self=False)
    assert ref["queries_without_relevant"] > 0  # the data exercises the skip
    results = [
        ev.retrieval_metrics(q, ql, g, gl, ks=ks, metric=metric, batch_size=b)
        for b in (1, 4, 7, 1000)
    ]
    _assert_matches(results[0], ref, ks)
    for other in results[1:]:
        assert other == results[0]  # chunking changes nothing, to the last bit


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_self_retrieval_with_ties_matches_brute_force(rng, metric):
    ks = (1, 3, 10)
    x = _points(rng, metric, 120)
    y = _labels(rng, 120, [50, 30, 20, 12, 5, 2, 1])
    ref = _brute_force(x, y, x, y, ks, metric, exclude_self=True)
    results = [ev.retrieval_metrics(x, y, ks=ks, metric=metric, batch_size=b) for b in (1, 5, 256)]
    _assert_matches(results[0], ref, ks)
    for other in results[1:]:
        assert other == results[0]


def _sparse_gaussian(rng, n, dim=6):
    """Rows with one non-zero Gaussian entry. Every similarity is then one rounded product
    (or 0), so equal rows tie exactly in float32 whatever the BLAS: with dense rows,
    OpenBLAS rounds a product differently by the column's place, and duplicates of a
    dense gallery row do not tie exactly."""
    x = np.zeros((n, dim), np.float32)
    x[np.arange(n), rng.integers(dim, size=n)] = rng.standard_normal(n)
    return x


def _random_data(rng, kind, metric, n, q):
    """Gallery and queries of random floats: `"gaussian"` (dense, no ties) or
    `"sparse_ties"` (a third of the gallery duplicates other rows, queries repeat
    gallery rows, and most similarities are 0; for dot / l2 a zero query ties
    everything)."""
    if kind == "gaussian":  # few dimensions: similarities spread, no float32 near-ties
        return rng.standard_normal((n, 4), np.float32), rng.standard_normal((q, 4), np.float32)
    g = _sparse_gaussian(rng, n)
    g[rng.integers(n, size=n // 3)] = g[rng.integers(n, size=n // 3)]
    queries = np.concatenate([_sparse_gaussian(rng, q - q // 3), g[rng.integers(n, size=q // 3)]])
    if metric != "cosine":
        queries[0] = 0.0
    return g, queries


def _assert_no_near_ties(q, g, metric):
    """Float64 similarities of a row are exactly equal or further apart than twice the
    sum of their float32 rounding bounds (`(D + 2) u sum_i |q_i g_i|`, `u = 2^-24`; l2
    adds the squared norms): float32 rounding can then neither break nor make a tie, and
    the float64 reference ranks as the float32 implementation does."""
    q, g = np.asarray(q, np.float64), np.asarray(g, np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
    s = -((q[:, None, :] - g[None]) ** 2).sum(-1) if metric == "l2" else q @ g.T
    size = np.abs(q) @ np.abs(g).T
    if metric == "l2":
        size = 2 * size + (g * g).sum(1) + (q * q).sum(1)[:, None]
    err = (q.shape[1] + 2) * 2.0**-24 * size
    for row, row_err in zip(s, err):
        order = np.argsort(row)
        gaps, errs = np.diff(row[order]), row_err[order]
        assert np.all((gaps == 0) | (gaps > 2 * (errs[1:] + errs[:-1])))


@pytest.mark.parametrize("kind", ["gaussian", "sparse_ties"])
@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_random_floats_match_brute_force(rng, metric, kind):
    """Random float data (not small integers), query-vs-gallery and leave-one-out, in
    chunks of 7 queries: the same metrics as the full stable sort of the reference."""
    ks = (1, 3, 20)
    g, q = _random_data(rng, kind, metric, 60, 25)
    gl = _labels(rng, 60, [20, 12, 10, 8, 5, 3, 1, 0, 1])
    ql = _labels(rng, 25, [3, 3, 3, 3, 3, 3, 3, 2, 1])
    _assert_no_near_ties(q, g, metric)
    _assert_no_near_ties(g, g, metric)
    ref = _brute_force(q, ql, g, gl, ks, metric, exclude_self=False)
    assert ref["queries_without_relevant"] > 0
    _assert_matches(ev.retrieval_metrics(q, ql, g, gl, ks=ks, metric=metric, batch_size=7), ref, ks)
    ref = _brute_force(g, gl, g, gl, ks, metric, exclude_self=True)
    _assert_matches(ev.retrieval_metrics(g, gl, ks=ks, metric=metric, batch_size=7), ref, ks)


def test_ties_decide_the_metrics_here(rng):
    """The data of the tests above is tie-heavy enough that a ranking which broke ties
    the other way (later gallery item first) gives different metrics: the comparisons
    above would catch a wrong tie rule."""
    x = _integer_points(rng, 120)
    y = _labels(rng, 120, [50, 30, 20, 12, 5, 2, 1])
    ks = (1, 3, 10)
    ref = _brute_force(x, y, x, y, ks, "dot", exclude_self=True)
    flipped = _brute_force(x[::-1], y[::-1], x[::-1], y[::-1], ks, "dot", exclude_self=True)
    assert flipped["map"] != pytest.approx(ref["map"], rel=1e-9)
    assert flipped["precision_at_1"] != pytest.approx(ref["precision_at_1"], rel=1e-9)


def test_small_chunk_budget_and_one_thread_change_nothing(rng, monkeypatch):
    """The 64 MiB chunk cap (here shrunk to a few rows) and the thread split only change
    how rows are grouped."""
    ks = (1, 4)
    g, gl = _integer_points(rng, 90), _labels(rng, 90, [40, 30, 15, 5])
    q, ql = _integer_points(rng, 33), _labels(rng, 33, [1, 1, 1, 1])
    want = ev.retrieval_metrics(q, ql, g, gl, ks=ks, metric="dot")
    monkeypatch.setattr(rm_module, "_CHUNK_BYTES", 3 * 90 * 4)  # 3 queries per chunk
    assert ev.retrieval_metrics(q, ql, g, gl, ks=ks, metric="dot") == want
    monkeypatch.setattr(rm_module, "_threads", lambda: 1)
    assert ev.retrieval_metrics(q, ql, g, gl, ks=ks, metric="dot") == want
    _assert_matches(want, _brute_force(q, ql, g, gl, ks, "dot", exclude_self=False), ks)


def test_all_items_tied():
    """Every score equal: the ranking is the gallery order, query itself left out."""
    x = np.ones((6, 2), np.float32)
    y = np.array([0, 1, 0, 1, 1, 0])
    got = ev.retrieval_metrics(x, y, ks=(1, 2), metric="dot")
    # Query 0 (label 0) ranks 1,2,3,4,5 -> rel 0,1,0,0,1: AP = (1/2)(1/2 + 2/5).
    ref = _brute_force(x, y, x, y, (1, 2), "dot", exclude_self=True)
    _assert_matches(got, ref, (1, 2))
    assert ref["map"] < 1.0 and ref["precision_at_1"] < 1.0
    q0_ap = (1 / 2 + 2 / 5) / 2
    single = ev.retrieval_metrics(x[:1], y[:1], x[1:], y[1:], ks=(1,), metric="dot")
    assert single["map"] == pytest.approx(q0_ap)
    assert single["mrr"] == pytest.approx(0.5)


def test_string_labels_and_labels_missing_from_the_gallery(rng):
    g = _integer_points(rng, 40)
    names = np.array(["cat", "dog", "eel"])
    gl = names[_labels(rng, 40, [5, 3, 2])]
    q = _integer_points(rng, 12)
    ql = np.array(["cat", "dog", "eel", "fox"] * 3)
    got = ev.retrieval_metrics(q, ql, g, gl, ks=(1, 3), metric="l2")
    ref = _brute_force(q, ql, g, gl, (1, 3), "l2", exclude_self=False)
    _assert_matches(got, ref, (1, 3))
    assert got["queries_without_relevant"] == 3  # the "fox" queries


def test_non_finite_inputs_raise(rng):
    x, y = _integer_points(rng, 8), np.array([0, 1] * 4)
    bad = x.copy()
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match="`query_embeddings` contains NaN"):
        ev.retrieval_metrics(bad, y, x, y, ks=(1,))
    with pytest.raises(ValueError, match="`gallery_embeddings` contains NaN"):
        ev.retrieval_metrics(x, y, bad, y, ks=(1,))
    huge = np.full((8, 3), 3e30, np.float32)  # finite inputs, products overflow float32
    with pytest.raises(ValueError, match="similarity is not finite"):
        ev.retrieval_metrics(huge, y, ks=(1,), metric="dot")
