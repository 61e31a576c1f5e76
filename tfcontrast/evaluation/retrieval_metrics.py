"""Retrieval metrics of a query set ranked against a gallery.

For a query with label `y`, the gallery items with label `y` are *relevant*; `R` is
their number and `rel_i` says whether the item at rank `i` (1-based) is relevant, and
`P(i) = (1/i) sum_{j<=i} rel_j`. Per query:

- precision@1: `rel_1`,
- recall@k: `1` if any of the top `k` is relevant (the metric-learning convention of
  Song et al. 2016 / Musgrave et al. 2020, not `|relevant in top k| / R`),
- R-precision: `P(R)`,
- MAP@R: `(1/R) sum_{i=1}^{R} P(i) rel_i` (Musgrave, Belongie, Lim, "A Metric Learning
  Reality Check", ECCV 2020),
- AP (averaged into MAP): `(1/R) sum_{i=1}^{N} P(i) rel_i` over the full ranking,
- reciprocal rank (averaged into MRR): `1 / (rank of the first relevant item)`.

Each metric is the mean over queries with `R > 0`; queries without any relevant gallery
item are skipped (their count is returned as `queries_without_relevant`). Ties in the
score are broken by gallery position (stable sort).

How it is computed: every metric above is a function of the ranks `r_1 < ... < r_R` of
a query's relevant items (`P(r_j) = j / r_j`; the first relevant rank gives precision@1,
recall@k and the reciprocal rank), so no query's full ranking is built. The gallery is
grouped by class (the relevant items of a query are one contiguous block of columns);
per chunk of queries the similarities are computed once (one float32 buffer); each
thread copies one row at a time into its own scratch row and sorts it, and binary
searches of the query's sorted relevant scores in it give how many gallery items score
strictly higher than each relevant item. Items with exactly the same score (common in
float32 at 10^5 items) are found in one pass over the row and counted by gallery
position. The result equals a stable full sort of every row, ties included, in
`O(N log N)` float32 work per query and `O(chunk * N)` memory. Similarities are the
float32 products for `"cosine"` and `"dot"` (as before: converting them to float64
changes no order) and float64 `2 q.g - |g|^2` for `"l2"` (the same values as the
previous implementation, so the same ties).

Why not a partial top-R selection (`np.argpartition`, `top_k`): MAP over the full
ranking, and MRR and recall@k when a query's first relevant item lies beyond the top
R, need the rank of every relevant item, which a top-R selection does not give. Placing
R relevant scores among N needs about `N log R` comparisons; on NumPy the vectorised
sort of the whole row (`N log N`) is still the cheapest way (measured on 200k float32
scores and 2k relevant ones: sort 1.4-1.9 ms, `np.searchsorted` of the scores into the
sorted relevant ones 17 ms, a 65k-bucket histogram with exact fix-up of shared buckets
2.8 ms, `tf.sort` 29 ms; `np.partition` alone 0.4 ms).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tfcontrast import _checks
from tfcontrast._normalization import l2_normalize_numpy
from tfcontrast.evaluation._common import (
    as_embeddings,
    as_labels,
)

_OWNER = "retrieval_metrics"
#: Bytes of one chunk's similarity matrix at 4 bytes per score, 8 for "l2" (the sizes of
#: the rank-counting version before issue 23's second round): a chunk holds at most
#: `batch_size` queries and fewer when the gallery is large (83 queries against 200k
#: items for cosine and dot, 41 for l2). The chunk size is kept on purpose: OpenBLAS
#: rounds a float32 product differently by the row's place in the chunk (about 5% of
#: the products differ in the last bit between 83- and 167-row chunks), so a larger
#: chunk, though ~25% cheaper in the product, would move MAP by ~1e-9.
_CHUNK_BYTES = 64 * 2**20
#: Per-query values, one column each (recall@k comes from the first relevant rank).
_P1, _RP, _MAPR, _AP, _RR, _FIRST = range(6)


def retrieval_metrics(
    query_embeddings,
    query_labels,
    gallery_embeddings=None,
    gallery_labels=None,
    ks=(1, 5, 10),
    metric: str = "cosine",
    exclude_self: bool | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Precision@1, recall@k, R-precision, MAP@R, MAP and MRR of queries vs a gallery.

    Args:
        query_embeddings: `(Q, D)` query embeddings (array or tensor).
        query_labels: `(Q,)` query labels.
        gallery_embeddings: `(N, D)` gallery; `None` searches the queries against
            themselves.
        gallery_labels: `(N,)` gallery labels (required with `gallery_embeddings`).
        ks: the `k` of the reported `recall_at_{k}` values.
        metric: `"cosine"`, `"l2"` or `"dot"`.
        exclude_self: drop gallery item `i` from the ranking of query `i` (the query
            itself when query set == gallery). Defaults to `True` when
            `gallery_embeddings` is `None`, else `False`.
        batch_size: at most this many queries per chunk; fewer when the gallery is
            large, so that a chunk's similarities stay within 64 MiB (memory is
            `O(min(batch_size, 64 MiB / N) * N)` besides the embeddings).

    Returns:
        Dict with `precision_at_1`, `recall_at_{k}` for each `k`, `r_precision`,
        `map_at_r`, `map`, `mrr` (floats in `[0, 1]`) and `queries_without_relevant`.

    Raises:
        ValueError: on bad shapes or arguments, and when an embedding or a similarity
            is not finite (NaN or inf has no rank).

    Example:

    ```python
    scores = retrieval_metrics(test_emb, test_y, ks=(1, 2, 4, 8))  # leave-one-out
    scores["map_at_r"], scores["recall_at_1"]
    ```
    """
    q = as_embeddings(query_embeddings, "query_embeddings")
    q_lab = as_labels(query_labels, "query_labels", q.shape[0])
    if gallery_embeddings is None:
        if gallery_labels is not None:
            raise ValueError(f"{_OWNER}: `gallery_labels` given without `gallery_embeddings`.")
        g, g_lab = q, q_lab
        exclude_self = True if exclude_self is None else exclude_self
    else:
        g = as_embeddings(gallery_embeddings, "gallery_embeddings")
        if gallery_labels is None:
            raise ValueError(f"{_OWNER}: `gallery_labels` is required with `gallery_embeddings`.")
        g_lab = as_labels(gallery_labels, "gallery_labels", g.shape[0])
        exclude_self = False if exclude_self is None else exclude_self
    if g.shape[1] != q.shape[1]:
        raise ValueError(
            f"{_OWNER}: `gallery_embeddings` dimension {g.shape[1]} does not match "
            f"`query_embeddings` dimension {q.shape[1]}."
        )
    if exclude_self and g.shape[0] != q.shape[0]:
        raise ValueError(
            f"{_OWNER}: `exclude_self=True` needs as many gallery items as queries; "
            f"received {q.shape[0]} queries and {g.shape[0]} gallery items."
        )
    _checks.choice("metric", metric, ("cosine", "l2", "dot"), _OWNER)
    batch_size = _checks.integer("batch_size", batch_size, _OWNER)
    ks = tuple(_checks.integer("ks", k, _OWNER) for k in ks)
    n_eff = g.shape[0] - (1 if exclude_self else 0)
    if n_eff < 1 or (ks and max(ks) > n_eff):
        raise ValueError(
            f"{_OWNER}: every value in `ks` must be <= the number of gallery items ranked "
            f"per query ({n_eff}); received ks={ks}."
        )
    for name, x in (("query_embeddings", q), ("gallery_embeddings", g)):
        if not np.isfinite(x).all():
            raise ValueError(f"{_OWNER}: `{name}` contains NaN or inf.")

    q_cls, perm, starts = _group_by_class(q_lab, g_lab)
    g = g[perm]  # relevant items of a query: one block of columns
    if metric == "cosine":
        q, g = l2_normalize_numpy(q), l2_normalize_numpy(g)
    # The previous implementation's float64 l2 scores, term for term.
    g_sq = np.sum(g * g, axis=1).astype(np.float64) if metric == "l2" else None
    self_col = np.argsort(perm) if exclude_self else None  # query i -> column of item i
    itemsize = 8 if metric == "l2" else 4
    chunk = min(batch_size, q.shape[0], max(1, _CHUNK_BYTES // (g.shape[0] * itemsize)))

    values = np.zeros((q.shape[0], 6), dtype=np.float64)
    valid = np.zeros(q.shape[0], dtype=bool)
    # Reused for every chunk: fresh 64 MiB arrays cost page faults (system time).
    products = np.empty((chunk, g.shape[0]), dtype=np.float32)
    workers = max(1, min(_threads(), chunk))
    rankers = [
        _RowRanker(q_cls, starts, perm, self_col, g_sq, values, valid) for _ in range(workers)
    ]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for q0 in range(0, q.shape[0], chunk):
            m = min(chunk, q.shape[0] - q0)
            with np.errstate(over="ignore", invalid="ignore"):  # raised below, clearly
                np.matmul(q[q0 : q0 + m], g.T, out=products[:m])
            # Row blocks in threads (np.sort and np.searchsorted release the GIL), one
            # ranker per block: each owns its scratch rows.
            bounds = np.linspace(0, m, workers + 1).astype(int)
            jobs = [
                pool.submit(ranker.rank, products[a:b], q0 + a)
                for ranker, a, b in zip(rankers, bounds[:-1], bounds[1:])
                if b > a
            ]
            for job in jobs:
                job.result()

    num_valid = int(valid.sum())
    denom = max(num_valid, 1)
    per_query = values[valid]
    out = {"precision_at_1": float(per_query[:, _P1].sum()) / denom}
    out.update({f"recall_at_{k}": float(np.sum(per_query[:, _FIRST] <= k)) / denom for k in ks})
    for name, col in (("r_precision", _RP), ("map_at_r", _MAPR), ("map", _AP), ("mrr", _RR)):
        out[name] = float(per_query[:, col].sum()) / denom
    out["queries_without_relevant"] = int(q.shape[0] - num_valid)
    return out


def _threads() -> int:
    """Threads for sorting and ranking: the usable CPUs, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(cpus, 8)


def _group_by_class(q_lab: np.ndarray, g_lab: np.ndarray):
    """Query class ids (-1: not in the gallery), the gallery order grouped by class
    (stable: gallery positions ascend inside a class) and each class's column block
    `[starts[c], starts[c + 1])`."""
    classes, g_cls = np.unique(g_lab, return_inverse=True)
    g_cls = g_cls.reshape(-1)
    perm = np.argsort(g_cls, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(g_cls, minlength=classes.size))])
    try:
        pos = np.minimum(np.searchsorted(classes, q_lab), classes.size - 1)
        q_cls = np.where(classes[pos] == q_lab, pos, -1)
    except TypeError:  # e.g. int query labels vs str gallery labels: nothing matches
        q_cls = np.full(q_lab.shape[0], -1)
    return q_cls, perm, starts


class _RowRanker:
    """Per-query values from one row of similarities at a time (columns in `perm`
    order); writes row `qi` of `values` / `valid` only. One ranker per thread: it owns
    its scratch rows (the gallery's size, so they stay in the core's cache)."""

    def __init__(self, q_cls, starts, perm, self_col, g_sq, values, valid):
        n = perm.shape[0]
        self.q_cls, self.starts, self.perm, self.self_col = q_cls, starts, perm, self_col
        self.g_sq, self.values, self.valid = g_sq, values, valid
        dtype = np.float32 if g_sq is None else np.float64
        self.scores = None if g_sq is None else np.empty(n, np.float64)
        self.ordered = np.empty(n, dtype)

    def rank(self, products: np.ndarray, q0: int) -> None:
        for row, qi in enumerate(range(q0, q0 + products.shape[0])):
            scores = products[row]
            if self.g_sq is not None:  # float64 2 q.g - |g|^2
                scores = self.scores
                with np.errstate(over="ignore", invalid="ignore"):
                    np.multiply(products[row], 2.0, out=scores, dtype=np.float64)
                    scores -= self.g_sq
            c = self.q_cls[qi]
            if c < 0:  # nothing relevant: only the check below
                if not np.isfinite(scores).all():
                    _raise_not_finite()
                continue
            self.ordered[...] = scores
            self.ordered.sort()  # NaN sorts last
            if not (np.isfinite(self.ordered[0]) and np.isfinite(self.ordered[-1])):
                _raise_not_finite()
            self._rank_row(scores, qi, c)

    def _rank_row(self, scores: np.ndarray, qi: int, c: int) -> None:
        n = scores.shape[0]
        a, b = self.starts[c], self.starts[c + 1]
        rel = scores[a:b]
        own = None  # the query's own column, skipped
        if self.self_col is not None:
            own = self.self_col[qi]
            if a <= own < b:
                rel = np.delete(rel, own - a)
        if rel.size == 0:
            return
        # Sorted keys: the binary searches walk the sorted row in one direction.
        rel = np.sort(rel)
        hi = np.searchsorted(self.ordered, rel, side="right")
        above = n - hi  # items scoring strictly higher
        if own is not None:
            above -= scores[own] > rel
        # hi - 1 holds the item's own value; another copy below it is a tie.
        tied = self.ordered[np.maximum(hi - 2, 0)] == rel
        tied &= hi >= 2
        if tied.any():
            _add_equal_before(above, rel, np.unique(rel[tied]), scores, a, b, self.perm, own)
        ranks = np.sort(above) + 1  # distinct: every item has its own place
        r = ranks.size
        prec = np.arange(1, r + 1, dtype=np.float64) / ranks
        within_r = int(np.searchsorted(ranks, r, side="right"))
        first = int(ranks[0])
        self.values[qi] = (
            float(first == 1),
            within_r / r,
            float(prec[:within_r].sum()) / r,
            float(prec.sum()) / r,
            1.0 / first,
            first,
        )
        self.valid[qi] = True


def _raise_not_finite():
    raise ValueError(
        f"{_OWNER}: a similarity is not finite (the embeddings overflow the "
        f"product); rescale the embeddings."
    )


def _add_equal_before(above, rel, tied_values, row, a, b, perm, own) -> None:
    """Adds to `above` (one entry per relevant item, in the order of the sorted scores
    `rel`) the items with exactly the same score that sit earlier in the gallery, i.e.
    rank above it in a stable sort; the query's own column `own` is not counted. One
    pass over the row finds every tied item."""
    same = row == tied_values[0]
    for value in tied_values[1:]:
        same |= row == value
    cols = np.flatnonzero(same)
    if own is not None:
        cols = cols[cols != own]
    at = row[cols]
    for value in tied_values:
        items = cols[at == value]  # columns ascending; relevant ones in [a, b)
        relevant = items[(items >= a) & (items < b)]
        earlier = np.searchsorted(np.sort(perm[items]), perm[relevant], side="left")
        # Equal scores share one slot range of `rel` and the same count above; which
        # of them gets which tie count does not matter: the ranks are sorted.
        first = np.searchsorted(rel, value, side="left")
        above[first : first + relevant.size] += earlier
