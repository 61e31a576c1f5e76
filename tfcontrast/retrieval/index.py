"""Embedding index: exact top-k search with bounded memory, optional FAISS backend.

The default ("exact") backend keeps the embeddings in one NumPy array and answers
`search` with batched matrix products: queries are processed in chunks of
`query_batch_size`, the index in chunks of `index_batch_size`, and a running top-k is
merged chunk by chunk, so peak memory is about
`4 * query_batch_size * index_batch_size` bytes whatever the index size. The
`"faiss"` backend (optional dependency `faiss-cpu`) wraps a FAISS index with the same
API; its default factory string `"Flat"` is exact too, and other factory strings
(e.g. `"HNSW32"`, `"IVF1024,Flat"`) give approximate search for large collections.

Scores returned by `search`:

- `metric="cosine"`: cosine similarity (higher is closer),
- `metric="dot"`: inner product (higher is closer),
- `metric="l2"`: Euclidean distance (lower is closer).

`Index.higher_is_closer` tells which.

With labels, `calibrate` chooses a match threshold on labelled data for a target
precision and `match` answers "which known item is this, or is it unknown?"
(`tfcontrast.retrieval.calibration`); the threshold is saved with the index.

Example:

```python
import numpy as np
from tfcontrast.retrieval import Index

index = Index(metric="cosine")
index.add(np.random.rand(1000, 64), labels=np.arange(1000) % 10,
          payloads=[{"path": f"img_{i}.jpg"} for i in range(1000)])
scores, indices, labels, payloads = index.search(np.random.rand(5, 64), k=3)
index.save("my_index")              # my_index/index.json + my_index/arrays.npz
same = Index.load("my_index")

index.calibrate(calib_embeddings, calib_labels, target_precision=0.99)
labels, known, _, _ = index.match(new_embeddings)  # label, or -1 where unknown
```
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from typing import Any, NamedTuple

import numpy as np

from tfcontrast._normalization import l2_normalize_numpy
from tfcontrast.retrieval.calibration import (
    CalibrationResult,
    MatchResult,
    accepts,
    calibrate_threshold,
    check_target_precision,
    check_threshold,
    unknown_marker,
)

_METRICS = ("cosine", "l2", "dot")
_BACKENDS = ("exact", "faiss")
_FORMAT_VERSION = 1


class SearchResult(NamedTuple):
    """Result of `Index.search`; unpacks as `scores, indices, labels, payloads`.

    Attributes:
        scores: `(Q, k)` float32, similarities (cosine, dot) or Euclidean distances
            (l2), best first.
        indices: `(Q, k)` int64 positions in the index (insertion order).
        labels: `(Q, k)` labels of the neighbours, or `None` if the index has no labels.
        payloads: `Q` lists of `k` payloads, or `None` if the index has no payloads.
    """

    scores: np.ndarray
    indices: np.ndarray
    labels: np.ndarray | None
    payloads: list[list[Any]] | None


def _to_numpy(x, name: str, dtype=None) -> np.ndarray:
    if x is None:
        raise ValueError(f"`{name}` must not be None.")
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    arr = np.asarray(x)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def _as_matrix(x, name: str) -> np.ndarray:
    arr = _to_numpy(x, name)
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must have shape (N, D); received shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"`{name}` must be numeric; received dtype {arr.dtype}.")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    _check_finite(arr, f"`{name}`")
    return arr


def _check_finite(x: np.ndarray, what: str) -> None:
    """Refuses NaN / inf rows: they would take top-k slots or give NaN scores."""
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"{what} has non-finite values (NaN or inf) in {rows.size} row(s), the first "
            f"in row {rows[0]}; they cannot be ranked: remove or fix them (float32 holds "
            "magnitudes up to 3.4e38)."
        )


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


def _check_payloads(payloads, n: int) -> list[Any]:
    payloads = list(payloads)
    if len(payloads) != n:
        raise ValueError(
            f"`payloads` must have one entry per embedding: expected {n}, received {len(payloads)}."
        )
    try:
        json.dumps(payloads)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"`payloads` must be JSON-serialisable (str, numbers, bool, None, lists, dicts); {err}"
        ) from err
    return payloads


def _import_faiss():
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Index(backend='faiss') needs the optional dependency faiss-cpu: "
            "`pip install faiss-cpu` (or use backend='exact')."
        ) from err
    return faiss


class Index:
    """A searchable collection of embeddings with optional labels and payloads.

    Args:
        metric: `"cosine"` (vectors are L2-normalised on `add` and `search`), `"l2"`
            (Euclidean) or `"dot"` (inner product).
        backend: `"exact"` (NumPy, batched matrix products) or `"faiss"` (requires
            `faiss-cpu`).
        query_batch_size: queries per chunk in the exact backend.
        index_batch_size: index rows per chunk in the exact backend; peak extra memory
            is about `4 * query_batch_size * index_batch_size` bytes.
        faiss_factory: FAISS `index_factory` string for `backend="faiss"`; `"Flat"`
            (default) is exact, others (`"HNSW32"`, `"IVF1024,Flat"`) are approximate
            and may need `train` data (the first `add` call trains them).

    Example:

    ```python
    index = Index(metric="l2")
    index.add(train_embeddings, labels=train_labels)
    distances, neighbours, neighbour_labels, _ = index.search(query_embeddings, k=5)
    ```
    """

    def __init__(
        self,
        metric: str = "cosine",
        backend: str = "exact",
        query_batch_size: int = 512,
        index_batch_size: int = 8192,
        faiss_factory: str = "Flat",
    ):
        if metric not in _METRICS:
            raise ValueError(
                f"Index: `metric` must be one of {list(_METRICS)}; received {metric!r}."
            )
        if backend not in _BACKENDS:
            raise ValueError(
                f"Index: `backend` must be one of {list(_BACKENDS)}; received {backend!r}."
            )
        for name, value in (
            ("query_batch_size", query_batch_size),
            ("index_batch_size", index_batch_size),
        ):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Index: `{name}` must be a positive int; received {value!r}.")
        self.metric = metric
        self.backend = backend
        self.query_batch_size = int(query_batch_size)
        self.index_batch_size = int(index_batch_size)
        self.faiss_factory = faiss_factory
        self.dim: int | None = None
        self._chunks: list[np.ndarray] = []  # exact backend; concatenated lazily
        self._base: np.ndarray | None = None
        self._sq_norms: np.ndarray | None = None
        self._faiss = None
        self._size = 0
        self._labels: list[np.ndarray] | None = None
        self._payloads: list[Any] | None = None
        self._threshold: float | None = None
        self.calibration: dict[str, Any] | None = None  # CalibrationResult.summary()
        if backend == "faiss":
            _import_faiss()

    # ------------------------------------------------------------------ properties
    @property
    def higher_is_closer(self) -> bool:
        """`True` for cosine / dot (scores are similarities), `False` for l2."""
        return self.metric != "l2"

    def __len__(self) -> int:
        return self._size

    @property
    def size(self) -> int:
        """Number of indexed embeddings."""
        return self._size

    @property
    def labels(self) -> np.ndarray | None:
        """Labels of the indexed embeddings in insertion order, or `None`."""
        if self._labels is None:
            return None
        if len(self._labels) > 1:
            self._labels = [np.concatenate(self._labels)]
        return self._labels[0] if self._labels else None

    @property
    def payloads(self) -> list[Any] | None:
        """Payloads of the indexed embeddings in insertion order, or `None`."""
        return self._payloads

    @property
    def threshold(self) -> float | None:
        """The match threshold (similarity for cosine / dot, distance for l2), or `None`.

        Set by `calibrate`, saved with the index; may be set by hand (which clears
        `calibration`, the summary of the calibrated one).
        """
        return self._threshold

    @threshold.setter
    def threshold(self, value) -> None:
        self._threshold = check_threshold(value, "threshold", "Index")
        self.calibration = None

    @property
    def embeddings(self) -> np.ndarray:
        """The stored vectors `(N, D)` (L2-normalised for cosine)."""
        if self.backend == "faiss":
            if self._faiss is None:
                return np.zeros((0, self.dim or 0), np.float32)
            return self._faiss.reconstruct_n(0, self._faiss.ntotal)
        return self._matrix()

    def _matrix(self) -> np.ndarray:
        if self._chunks:
            parts = ([self._base] if self._base is not None else []) + self._chunks
            self._base = np.ascontiguousarray(np.concatenate(parts, axis=0))
            self._chunks = []
            self._sq_norms = (
                np.sum(self._base * self._base, axis=1) if self.metric == "l2" else None
            )
        if self._base is None:
            return np.zeros((0, self.dim or 0), np.float32)
        return self._base

    # ------------------------------------------------------------------ add / search
    def add(self, embeddings, labels=None, payloads=None) -> Index:
        """Adds embeddings `(N, D)` with optional labels `(N,)` and payloads (N items).

        Labels and payloads must be given on every `add` call or on none of them.
        Payloads must be JSON-serialisable (they are saved as JSON, never pickled).
        Rows with NaN or inf (also values beyond float32's range) raise a `ValueError`
        and nothing is added. Returns the index, so calls can be chained.
        """
        x = _as_matrix(embeddings, "embeddings")
        n = x.shape[0]
        if n == 0:
            raise ValueError("Index.add: `embeddings` is empty (shape (0, D)).")
        if self.dim is None:
            self.dim = int(x.shape[1])
        elif x.shape[1] != self.dim:
            raise ValueError(
                f"Index.add: `embeddings` dimension {x.shape[1]} does not match the "
                f"index dimension {self.dim}."
            )
        first = self._size == 0
        if labels is not None:
            lab = _to_numpy(labels, "labels")
            if lab.shape != (n,):
                raise ValueError(
                    f"Index.add: `labels` must have shape ({n},); received {lab.shape}."
                )
            if lab.dtype == object:
                raise ValueError("Index.add: `labels` must be numbers or strings, not objects.")
            if not first and self._labels is None:
                raise ValueError("Index.add: the index has no labels; do not pass `labels` now.")
        elif not first and self._labels is not None:
            raise ValueError("Index.add: the index has labels; pass `labels` for new embeddings.")
        if payloads is not None:
            payloads = _check_payloads(payloads, n)
            if not first and self._payloads is None:
                raise ValueError(
                    "Index.add: the index has no payloads; do not pass `payloads` now."
                )
        elif not first and self._payloads is not None:
            raise ValueError(
                "Index.add: the index has payloads; pass `payloads` for new embeddings."
            )

        if self.metric == "cosine":
            x = l2_normalize_numpy(x)
        if self.backend == "faiss":
            self._faiss_add(x)
        else:
            self._chunks.append(x)
        if labels is not None:
            self._labels = (self._labels or []) + [lab]
        if payloads is not None:
            self._payloads = (self._payloads or []) + payloads
        self._size += n
        return self

    def _faiss_add(self, x: np.ndarray) -> None:
        faiss = _import_faiss()
        if self._faiss is None:
            faiss_metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
            self._faiss = faiss.index_factory(self.dim, self.faiss_factory, faiss_metric)
        if not self._faiss.is_trained:
            self._faiss.train(x)
        self._faiss.add(x)

    def search(
        self, queries, k: int = 10, exclude_self: bool = False, exclude_ids=None
    ) -> SearchResult:
        """Returns the `k` nearest indexed embeddings of each query, best first.

        Args:
            queries: `(Q, D)` array or tensor (a single `(D,)` vector is accepted);
                NaN or inf values raise a `ValueError`.
            k: neighbours per query, `1 <= k <= len(index)`.
            exclude_self: leave-one-out when the queries are all the indexed
                embeddings in insertion order (query `i` never returns index row `i`).
            exclude_ids: `(Q,)` index positions, query `i` never returns row
                `exclude_ids[i]` (negative: none), e.g. the positions of queries taken
                from the index. Exclusion needs the exact backend and `k < len(index)`.

        Returns:
            `SearchResult(scores, indices, labels, payloads)`.
        """
        q = _to_numpy(queries, "queries")
        if q.ndim == 1:
            q = q[None, :]
        q = _as_matrix(q, "queries")
        self._check_query_dim(q, "Index.search", "queries")
        if exclude_self:
            if exclude_ids is not None:
                raise ValueError("Index.search: pass `exclude_self` or `exclude_ids`, not both.")
            if q.shape[0] != self._size:
                raise ValueError(
                    "Index.search: `exclude_self=True` needs one query per indexed embedding; "
                    f"received {q.shape[0]} queries for an index of size {self._size} (use "
                    "`exclude_ids` for a subset)."
                )
            exclude_ids = np.arange(self._size)
        if exclude_ids is not None:
            exclude_ids = _to_numpy(exclude_ids, "exclude_ids")
            if exclude_ids.shape != (q.shape[0],) or not np.issubdtype(
                exclude_ids.dtype, np.integer
            ):
                raise ValueError(
                    f"Index.search: `exclude_ids` must be {q.shape[0]} ints (one per query); "
                    f"received shape {exclude_ids.shape}, dtype {exclude_ids.dtype}."
                )
            exclude_ids = exclude_ids.astype(np.int64)
        excluding = exclude_ids is not None
        limit = self._size - 1 if excluding else self._size
        if not isinstance(k, (int, np.integer)) or k < 1 or k > limit:
            raise ValueError(
                f"Index.search: `k` must be an int in [1, {limit}] (index size {self._size}"
                f"{', minus the excluded match' if excluding else ''}); received k={k!r}."
            )
        k = int(k)
        if self.metric == "cosine":
            q = l2_normalize_numpy(q)
        if self.backend == "faiss":
            if excluding:
                raise ValueError(
                    "Index.search: `exclude_self` / `exclude_ids` need backend='exact'."
                )
            scores, idx = self._faiss.search(q, k)
            scores = scores.astype(np.float32)
            if self.metric == "l2":  # FAISS returns squared distances.
                scores = np.sqrt(np.maximum(scores, 0.0))
            idx = idx.astype(np.int64)
        else:
            base = self._matrix()
            scores, idx = exact_search(
                q,
                base,
                k,
                self.metric,
                self.query_batch_size,
                self.index_batch_size,
                exclude=exclude_ids,
                base_sq_norms=self._sq_norms,
            )
        labels = self.labels
        nb_labels = labels[np.maximum(idx, 0)] if labels is not None else None
        nb_payloads = None
        if self._payloads is not None:
            nb_payloads = [[self._payloads[j] if j >= 0 else None for j in row] for row in idx]
        return SearchResult(scores, idx, nb_labels, nb_payloads)

    # ------------------------------------------------------------------ calibrate / match
    def calibrate(
        self, embeddings, labels, target_precision: float = 0.99, exclude_self: bool = False
    ) -> CalibrationResult:
        """Chooses the match threshold on labelled calibration data and stores it.

        Every calibration embedding is searched against the index; its nearest entry is
        a *match* when it has the embedding's label. Each distinct nearest score is
        tried as threshold (precision, recall, F1 and FPR of "accept the nearest entry
        within the threshold", see `tfcontrast.retrieval.calibration`), and the loosest
        one whose precision reaches `target_precision` becomes `index.threshold`, used by
        `match` and saved by `save`. Adding entries later changes nearest neighbours:
        calibrate again after large additions.

        Args:
            embeddings: `(Q, D)` calibration embeddings, not the indexed ones (unless
                `exclude_self`); include items that are not in the index, the unknowns
                the threshold must learn to reject.
            labels: `(Q,)` their labels, of the same kind (numbers or strings) as the
                index labels.
            target_precision: the fraction of accepted queries that must be right, in
                `(0, 1]`.
            exclude_self: the calibration embeddings are the indexed ones in insertion
                order; each query skips itself (leave-one-out).

        Returns:
            `CalibrationResult` (threshold, precision / recall / F1 / FPR there, curve).

        Raises:
            ValueError: the index has no labels; the calibration data gives no matches or
                no non-matches; no threshold reaches `target_precision`.

        Example:

        ```python
        index = Index(metric="cosine").add(gallery, labels=gallery_labels)
        result = index.calibrate(calib_embeddings, calib_labels, target_precision=0.99)
        result.threshold, result.recall
        labels, known, _, _ = index.match(new_embeddings)  # -1 where unknown
        ```
        """
        owner = "Index.calibrate"
        target_precision = check_target_precision(target_precision, owner)
        index_labels = self._require_labels(owner)
        x = _as_matrix(embeddings, "embeddings")
        self._check_query_dim(x, owner, "embeddings")
        y = _to_numpy(labels, "labels")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (x.shape[0],):
            raise ValueError(
                f"{owner}: `labels` must have shape ({x.shape[0]},) to match `embeddings`; "
                f"received {y.shape}."
            )
        if (y.dtype.kind in "US") != (index_labels.dtype.kind in "US") or y.dtype == object:
            raise ValueError(
                f"{owner}: `labels` must be of the same kind as the index labels "
                f"({index_labels.dtype}); received dtype {y.dtype}."
            )
        res = self.search(x, k=1, exclude_self=exclude_self)
        correct = res.labels[:, 0] == y
        result = calibrate_threshold(
            res.scores[:, 0], correct, target_precision, self.higher_is_closer, owner
        )
        self._threshold = result.threshold
        self.calibration = result.summary()
        return result

    def match(self, queries, threshold: float | None = None, unknown=None) -> MatchResult:
        """Labels each query with its nearest entry's label, or "unknown" beyond the threshold.

        Args:
            queries: `(Q, D)` array or tensor (a single `(D,)` vector is accepted).
            threshold: accept the nearest entry when its similarity is `>= threshold`
                (cosine, dot) or its distance `<= threshold` (l2); `None` uses
                `index.threshold` (set by `calibrate` or loaded with the index).
            unknown: the label given to unknown queries; default `-1` for numeric
                labels, `"unknown"` for string labels. It must not be an index label.

        Returns:
            `MatchResult(labels, known, scores, indices)`, one entry per query.
        """
        owner = "Index.match"
        index_labels = self._require_labels(owner)
        threshold = check_threshold(threshold, "threshold", owner)
        if threshold is None:
            threshold = self._threshold
        if threshold is None:
            raise ValueError(
                f"{owner}: the index has no threshold; call `calibrate` on labelled data "
                "first, or pass `threshold=`."
            )
        marker = unknown_marker(unknown, index_labels, owner)
        res = self.search(queries, k=1)
        scores, idx, nearest = res.scores[:, 0], res.indices[:, 0], res.labels[:, 0]
        known = accepts(scores, threshold, self.higher_is_closer)
        # A 0-d array promotes with the labels (a string marker is not cut to their width).
        labels = np.where(known, nearest, np.asarray(marker))
        return MatchResult(labels, known, scores, idx)

    def _require_labels(self, owner: str) -> np.ndarray:
        labels = self.labels
        if labels is None:
            raise ValueError(
                f"{owner}: the index has no labels; `add` embeddings with `labels=` first."
            )
        return labels

    def _check_query_dim(self, x: np.ndarray, owner: str, name: str) -> None:
        if self._size == 0:
            raise ValueError(f"{owner}: the index is empty; call `add` first.")
        if x.shape[1] != self.dim:
            raise ValueError(
                f"{owner}: `{name}` dimension {x.shape[1]} does not match the index "
                f"dimension {self.dim}."
            )

    # ------------------------------------------------------------------ save / load
    def get_config(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "backend": self.backend,
            "query_batch_size": self.query_batch_size,
            "index_batch_size": self.index_batch_size,
            "faiss_factory": self.faiss_factory,
        }

    def save(self, path: str) -> str:
        """Saves to `path`: `index.json` (config, payloads, threshold) + `arrays.npz`.

        Nothing is pickled: arrays go to `.npz` (loaded with `allow_pickle=False`),
        payloads to JSON. Returns `path`.
        """
        os.makedirs(path, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        if self.backend == "faiss":
            if self._faiss is not None:
                faiss = _import_faiss()
                arrays["faiss_index"] = faiss.serialize_index(self._faiss)
        else:
            arrays["embeddings"] = self._matrix()
        labels = self.labels
        if labels is not None:
            arrays["labels"] = labels
        np.savez(os.path.join(path, "arrays.npz"), **arrays)
        meta = {
            "format": "tfcontrast.retrieval.Index",
            "version": _FORMAT_VERSION,
            "config": self.get_config(),
            "dim": self.dim,
            "size": self._size,
            "has_labels": labels is not None,
            "payloads": self._payloads,
            "threshold": self._threshold,
            "calibration": self.calibration,
        }
        with open(os.path.join(path, "index.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f)
        return path

    @classmethod
    def load(cls, path: str) -> Index:
        """Loads an index written by `save`.

        The files are checked, not trusted: a missing, truncated or invalid
        `index.json` / `arrays.npz`, or stored arrays that disagree with the recorded
        size, dimension or labels, raise a `ValueError` naming the file and what was
        expected.
        """
        meta_path = os.path.join(path, "index.json")
        if not os.path.exists(meta_path):
            raise ValueError(f"Index.load: no index.json in `path`={path!r}.")
        meta = _read_meta(meta_path)
        try:
            index = cls(**meta["config"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"Index.load: {meta_path} has an invalid `config`: {err}") from err
        index.dim, index._size = meta["dim"], meta["size"]
        arrays = _read_arrays(os.path.join(path, "arrays.npz"))
        _check_arrays(arrays, meta, index.backend, os.path.join(path, "arrays.npz"))
        if index.backend == "faiss":
            if "faiss_index" in arrays:
                index._faiss = _import_faiss().deserialize_index(arrays["faiss_index"])
                _check_faiss(index._faiss, meta, os.path.join(path, "arrays.npz"))
        elif index._size:
            index._chunks = [np.ascontiguousarray(arrays["embeddings"], dtype=np.float32)]
        if meta["has_labels"]:
            index._labels = [arrays["labels"]]
        index._payloads = meta["payloads"]
        index._threshold = meta["threshold"]
        index.calibration = meta["calibration"]
        return index

    def __repr__(self) -> str:
        return (
            f"Index(metric={self.metric!r}, backend={self.backend!r}, size={self._size}, "
            f"dim={self.dim})"
        )


# ---------------------------------------------------------------------- load checks
def _read_meta(meta_path: str) -> dict[str, Any]:
    """Reads and checks `index.json`; raises ValueError naming it and the fault."""
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"Index.load: {meta_path} is not valid JSON (truncated or corrupted?): {err}"
        ) from err
    if not isinstance(meta, dict) or meta.get("format") != "tfcontrast.retrieval.Index":
        raise ValueError(f"Index.load: {meta_path} is not a tfcontrast index.")

    def bad(key: str, expected: str):
        return ValueError(
            f"Index.load: {meta_path}: `{key}` must be {expected}; found {meta.get(key)!r}."
        )

    if meta.get("version") != _FORMAT_VERSION:
        raise bad("version", f"{_FORMAT_VERSION} (this tfcontrast's index format)")
    if not isinstance(meta.get("config"), dict):
        raise bad("config", "a dict of Index arguments")
    size = meta.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise bad("size", "an int >= 0")
    dim = meta.get("dim")
    if size and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise bad("dim", "a positive int for a non-empty index")
    if not isinstance(meta.get("has_labels"), bool):
        raise bad("has_labels", "true or false")
    payloads = meta.get("payloads")
    if payloads is not None and (not isinstance(payloads, list) or len(payloads) != size):
        count = len(payloads) if isinstance(payloads, list) else type(payloads).__name__
        raise ValueError(
            f"Index.load: {meta_path}: `payloads` must be null or a list of one entry per "
            f"row (size {size}); found {count}."
        )
    meta.setdefault("threshold", None)  # files written before calibration existed
    meta.setdefault("calibration", None)
    try:
        check_threshold(meta["threshold"], "threshold", f"Index.load: {meta_path}")
    except ValueError as err:
        raise bad("threshold", "a finite number or null") from err
    if meta["calibration"] is not None and not isinstance(meta["calibration"], dict):
        raise bad("calibration", "a dict or null")
    return meta


def _read_arrays(npz_path: str) -> dict[str, np.ndarray]:
    """Reads every array of `arrays.npz`; raises ValueError naming it if unreadable."""
    if not os.path.exists(npz_path):
        raise ValueError(
            f"Index.load: {npz_path} is missing (an index is index.json + arrays.npz)."
        )
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ValueError("not an .npz archive")
            return {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as err:
        # A truncated .npz fails as BadZipFile, EOFError or a pickle refusal, by where
        # it was cut; users need to know which file is broken, not which reader failed.
        raise ValueError(
            f"Index.load: {npz_path} cannot be read (truncated or corrupted?): {err}"
        ) from err


def _check_arrays(arrays: dict[str, np.ndarray], meta: dict[str, Any], backend: str, npz_path: str):
    """Stored rows and labels must agree with the size and dimension in index.json."""
    size, dim = meta["size"], meta["dim"]
    if backend == "faiss" and size and "faiss_index" not in arrays:
        raise ValueError(
            f"Index.load: {npz_path} has no `faiss_index` array; index.json records size={size}."
        )
    if backend != "faiss" and size:
        emb = arrays.get("embeddings")
        if emb is None:
            raise ValueError(
                f"Index.load: {npz_path} has no `embeddings` array; index.json records size={size}."
            )
        if emb.ndim != 2 or emb.shape[0] != size:
            raise ValueError(
                f"Index.load: {npz_path} stores {emb.shape[0] if emb.ndim else 0} rows "
                f"(shape {emb.shape}) but index.json records size={size}."
            )
        if emb.shape[1] != dim:
            raise ValueError(
                f"Index.load: {npz_path} stores embeddings of dimension {emb.shape[1]} but "
                f"index.json records dim={dim}."
            )
        if not np.issubdtype(emb.dtype, np.floating):
            raise ValueError(
                f"Index.load: {npz_path}: `embeddings` must be floats; found {emb.dtype}."
            )
        _check_finite(emb, f"Index.load: {npz_path}: `embeddings`")
    if meta["has_labels"]:
        labels = arrays.get("labels")
        if labels is None:
            raise ValueError(
                f"Index.load: {npz_path} has no `labels` array; index.json records labels."
            )
        if labels.shape != (size,):
            raise ValueError(
                f"Index.load: {npz_path} stores {labels.size} labels (shape {labels.shape}) "
                f"but index.json records size={size}."
            )


def _check_faiss(faiss_index, meta: dict[str, Any], npz_path: str) -> None:
    if faiss_index.ntotal != meta["size"] or faiss_index.d != meta["dim"]:
        raise ValueError(
            f"Index.load: {npz_path} holds a FAISS index of {faiss_index.ntotal} rows of "
            f"dimension {faiss_index.d} but index.json records size={meta['size']}, "
            f"dim={meta['dim']}."
        )
