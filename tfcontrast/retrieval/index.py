"""Embedding index: exact top-k search with bounded memory, optional FAISS backend.

The default ("exact") backend keeps the embeddings in one NumPy array and answers
`search` with batched matrix products: queries are processed in chunks of
`query_batch_size`, the index in chunks of `index_batch_size`, and a running top-k is
merged chunk by chunk, so peak memory is about
`4 * query_batch_size * index_batch_size` bytes whatever the index size. The
`"faiss"` backend (optional dependency `faiss-cpu`) wraps a FAISS index with the same
API; its default factory string `"Flat"` is exact too, and other factory strings
(e.g. `"HNSW32"`, `"IVF1024,Flat"`) give approximate search for large collections.
Each backend is an object of `tfcontrast.retrieval.backends`, chosen once when the
index is built or loaded; this module checks inputs, keeps labels, payloads and the
match threshold, and reads and writes the files.

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
from tfcontrast.retrieval import backends
from tfcontrast.retrieval.backends import check_finite
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
    check_finite(arr, f"`{name}`")
    return arr


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


def _setting(name: str, doc: str) -> property:
    """A read-only `Index` attribute backed by its config."""
    return property(lambda index: index._config[name], doc=doc)


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
        backend_class = backends.get(backend)
        for name, value in (
            ("query_batch_size", query_batch_size),
            ("index_batch_size", index_batch_size),
        ):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Index: `{name}` must be a positive int; received {value!r}.")
        self._config = {
            "metric": metric,
            "backend": backend,
            "query_batch_size": int(query_batch_size),
            "index_batch_size": int(index_batch_size),
            "faiss_factory": faiss_factory,
        }
        # The one place that depends on the backend's name (faiss: imported here).
        self._backend = backend_class.from_config(self._config)
        self.dim: int | None = None
        self._size = 0
        self._labels: list[np.ndarray] | None = None
        self._payloads: list[Any] | None = None
        self._threshold: float | None = None
        self.calibration: dict[str, Any] | None = None  # CalibrationResult.summary()

    # ------------------------------------------------------------------ properties
    # The configuration is read-only: the backend was built from it.
    metric = _setting("metric", '`"cosine"`, `"l2"` or `"dot"`.')
    backend = _setting("backend", 'The backend\'s name, `"exact"` or `"faiss"`.')
    query_batch_size = _setting("query_batch_size", "Queries per chunk (exact backend).")
    index_batch_size = _setting("index_batch_size", "Index rows per chunk (exact backend).")
    faiss_factory = _setting("faiss_factory", "FAISS `index_factory` string (faiss backend).")

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
        return self._backend.vectors(self.dim or 0)

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
        self._backend.add(x)
        if labels is not None:
            self._labels = (self._labels or []) + [lab]
        if payloads is not None:
            self._payloads = (self._payloads or []) + payloads
        self._size += n
        return self

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
        scores, idx = self._backend.search(q, k, exclude_ids)
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
        return dict(self._config)

    def save(self, path: str) -> str:
        """Saves to `path`: `index.json` (config, payloads, threshold) + `arrays.npz`.

        Nothing is pickled: arrays go to `.npz` (loaded with `allow_pickle=False`),
        payloads to JSON. Returns `path`.
        """
        os.makedirs(path, exist_ok=True)
        arrays = self._backend.arrays(self.dim or 0)
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
        npz_path = os.path.join(path, "arrays.npz")
        arrays = _read_arrays(npz_path)
        index._backend.restore(arrays, meta["size"], meta["dim"], npz_path)
        _check_labels(arrays, meta, npz_path)
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


def _check_labels(arrays: dict[str, np.ndarray], meta: dict[str, Any], npz_path: str):
    """Stored labels must agree with the size in index.json."""
    size = meta["size"]
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
