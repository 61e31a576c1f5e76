"""Exact top-k search of NumPy vectors in bounded memory: the one search that the
evaluation (`tfcontrast.evaluation.knn`) and the index (`tfcontrast.retrieval`) share.
It depends on NumPy only, so neither package imports the other for it."""

from __future__ import annotations

import numpy as np


def _top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (largest) of every row, unsorted: returns (values, column indices)."""
    if k >= scores.shape[1]:
        cols = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        return scores, np.array(cols)
    cols = np.argpartition(scores, -k, axis=1)[:, -k:]
    return np.take_along_axis(scores, cols, axis=1), cols


def exact_search(
    queries: np.ndarray,
    base: np.ndarray,
    k: int,
    metric: str = "cosine",
    query_batch_size: int = 512,
    index_batch_size: int = 8192,
    exclude: np.ndarray | None = None,
    base_sq_norms: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of `queries` against `base` with bounded memory.

    Queries and `base` must already be float32 and, for cosine, L2-normalised. Returns
    `(scores, indices)` sorted best first, scores as documented in the module (for
    `l2`, Euclidean distances). With `exclude` (`(Q,)` ints), query `i` never returns
    base row `exclude[i]` (negative: nothing excluded), e.g. `exclude=np.arange(Q)` for
    leave-one-out on a set searched against itself.
    """
    num_q, n = queries.shape[0], base.shape[0]
    out_scores = np.empty((num_q, k), dtype=np.float32)
    out_idx = np.empty((num_q, k), dtype=np.int64)
    if metric == "l2" and base_sq_norms is None:
        base_sq_norms = np.sum(base * base, axis=1)
    for q0 in range(0, num_q, query_batch_size):
        q = queries[q0 : q0 + query_batch_size]
        run_s = np.full((q.shape[0], 0), -np.inf, dtype=np.float32)
        run_i = np.zeros((q.shape[0], 0), dtype=np.int64)
        for b0 in range(0, n, index_batch_size):
            b = base[b0 : b0 + index_batch_size]
            s = q @ b.T
            if metric == "l2":
                # Ranking by 2 q.b - |b|^2 is ranking by -|q - b|^2 (|q|^2 is constant).
                s *= 2.0
                s -= base_sq_norms[b0 : b0 + b.shape[0]][None, :]
            if exclude is not None:
                rows = np.arange(q.shape[0])
                cols = exclude[q0 : q0 + q.shape[0]] - b0
                ok = (cols >= 0) & (cols < b.shape[0]) & (cols + b0 >= 0)
                s[rows[ok], cols[ok]] = -np.inf
            vals, cols = _top_k_rows(s, min(k, s.shape[1]))
            run_s = np.concatenate([run_s, vals], axis=1)
            run_i = np.concatenate([run_i, cols + b0], axis=1)
            if run_s.shape[1] > k:
                run_s, pos = _top_k_rows(run_s, k)
                run_i = np.take_along_axis(run_i, pos, axis=1)
        # Sort best first; ties broken by smaller index for reproducibility.
        order = np.lexsort((run_i, -run_s), axis=1)
        run_s = np.take_along_axis(run_s, order, axis=1)
        run_i = np.take_along_axis(run_i, order, axis=1)
        if metric == "l2":
            q_sq = np.sum(q * q, axis=1, keepdims=True)
            run_s = np.sqrt(np.maximum(q_sq - run_s, 0.0))
        out_scores[q0 : q0 + q.shape[0]] = run_s
        out_idx[q0 : q0 + q.shape[0]] = run_i
    return out_scores, out_idx
