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
"""

from __future__ import annotations

import numpy as np

from tfcontrast.evaluation._common import (
    as_embeddings,
    as_labels,
    check_choice,
    check_positive_int,
    l2_normalize,
)

_OWNER = "retrieval_metrics"


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
        batch_size: queries ranked per chunk (memory is `O(batch_size * N)`).

    Returns:
        Dict with `precision_at_1`, `recall_at_{k}` for each `k`, `r_precision`,
        `map_at_r`, `map`, `mrr` (floats in `[0, 1]`) and `queries_without_relevant`.

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
    check_choice("metric", metric, ("cosine", "l2", "dot"), _OWNER)
    batch_size = check_positive_int("batch_size", batch_size, _OWNER)
    ks = tuple(int(check_positive_int("ks", k, _OWNER)) for k in ks)
    n_eff = g.shape[0] - (1 if exclude_self else 0)
    if n_eff < 1 or (ks and max(ks) > n_eff):
        raise ValueError(
            f"{_OWNER}: every value in `ks` must be <= the number of gallery items ranked "
            f"per query ({n_eff}); received ks={ks}."
        )
    if metric == "cosine":
        q, g = l2_normalize(q), l2_normalize(g)
    g_sq = np.sum(g * g, axis=1) if metric == "l2" else None

    sums = {"precision_at_1": 0.0, "r_precision": 0.0, "map_at_r": 0.0, "map": 0.0, "mrr": 0.0}
    recall = dict.fromkeys(ks, 0.0)
    num_valid = 0
    ranks = np.arange(1, n_eff + 1, dtype=np.float64)
    for q0 in range(0, q.shape[0], batch_size):
        qb = q[q0 : q0 + batch_size]
        scores = (qb @ g.T).astype(np.float64)
        if metric == "l2":
            scores = 2.0 * scores - g_sq[None, :]  # = -|q-g|^2 + |q|^2 (same ranking)
        if exclude_self:
            rows = np.arange(qb.shape[0])
            scores[rows, rows + q0] = -np.inf  # sorted last, then dropped
        order = np.argsort(-scores, axis=1, kind="stable")[:, :n_eff]
        rel = g_lab[order] == q_lab[q0 : q0 + qb.shape[0], None]
        r = rel.sum(axis=1)
        valid = r > 0
        if not np.any(valid):
            continue
        rel, r = rel[valid], r[valid]
        num_valid += rel.shape[0]
        cum = np.cumsum(rel, axis=1)
        prec = cum / ranks[None, :]
        prec_rel = prec * rel
        sums["precision_at_1"] += float(rel[:, 0].sum())
        sums["r_precision"] += float(np.sum(cum[np.arange(rel.shape[0]), r - 1] / r))
        within_r = ranks[None, :] <= r[:, None]
        sums["map_at_r"] += float(np.sum(np.sum(prec_rel * within_r, axis=1) / r))
        sums["map"] += float(np.sum(prec_rel.sum(axis=1) / r))
        sums["mrr"] += float(np.sum(1.0 / (np.argmax(rel, axis=1) + 1)))
        for k in ks:
            recall[k] += float(np.any(rel[:, :k], axis=1).sum())
    denom = max(num_valid, 1)
    out = {"precision_at_1": sums["precision_at_1"] / denom}
    out.update({f"recall_at_{k}": recall[k] / denom for k in ks})
    for name in ("r_precision", "map_at_r", "map", "mrr"):
        out[name] = sums[name] / denom
    out["queries_without_relevant"] = int(q.shape[0] - num_valid)
    return out
