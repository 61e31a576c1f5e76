"""Index back-ends: where an `Index` keeps its vectors and how it searches them.

An `Index` chooses its back-end once, by name, when it is built or loaded, and from then
on only calls the `Backend` interface (`add`, `search`, `vectors`, `arrays`,
`restore`); it has no `if backend == ...` of its own. Adding a back-end is adding a
class here and its name to `_REGISTRY`.

- `"exact"` (`ExactBackend`): one NumPy array, searched with batched matrix products
  (`exact_search`): queries in chunks of `query_batch_size`, the index in chunks of
  `index_batch_size`, a running top-k merged chunk by chunk, so peak memory is about
  `4 * query_batch_size * index_batch_size` bytes whatever the index size.
- `"faiss"` (`FaissBackend`, optional dependency `faiss-cpu`): a FAISS index built from
  `faiss_factory` (`"Flat"` is exact; `"HNSW32"`, `"IVF1024,Flat"` are approximate).

Both return scores as `Index.search` documents them: similarities for `"cosine"` and
`"dot"`, Euclidean distances for `"l2"`.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np


def check_finite(x: np.ndarray, what: str) -> None:
    """Refuses NaN / inf rows: they would take top-k slots or give NaN scores."""
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"{what} has non-finite values (NaN or inf) in {rows.size} row(s), the first "
            f"in row {rows[0]}; they cannot be ranked: remove or fix them (float32 holds "
            "magnitudes up to 3.4e38)."
        )


class Backend(abc.ABC):
    """How an `Index` stores its vectors and answers searches.

    Class attributes:
        name: the `Index(backend=...)` name, saved in `index.json`.
        options: the `Index` arguments the back-end takes besides `metric`.

    The `Index` checks every input (shapes, finiteness, `k`, exclusions) and
    L2-normalises cosine vectors before they reach the back-end.
    """

    name: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, metric: str):
        self.metric = metric

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Backend:
        """The back-end for an `Index.get_config()` dict (it reads its own options)."""
        return cls(config["metric"], **{key: config[key] for key in cls.options})

    @abc.abstractmethod
    def add(self, x: np.ndarray) -> None:
        """Appends rows: float32 `(n, D)`, finite, L2-normalised for cosine."""

    @abc.abstractmethod
    def search(
        self, queries: np.ndarray, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`(scores, indices)`, float32 and int64 `(Q, k)`, best first. `exclude`:
        `(Q,)` rows that query `i` must not return (negative: none), or `None`."""

    @abc.abstractmethod
    def vectors(self, dim: int) -> np.ndarray:
        """The stored rows `(N, dim)` in insertion order."""

    @abc.abstractmethod
    def arrays(self, dim: int) -> dict[str, np.ndarray]:
        """The arrays `Index.save` writes to `arrays.npz` for the vectors."""

    @abc.abstractmethod
    def restore(self, arrays: dict[str, np.ndarray], size: int, dim: int, npz_path: str):
        """Takes back the vectors `arrays` wrote; raises a `ValueError` naming `npz_path`
        when they are missing or disagree with the `size` and `dim` of `index.json`."""


class ExactBackend(Backend):
    """Exact search over one NumPy array (see `exact_search`)."""

    name = "exact"
    options = ("query_batch_size", "index_batch_size")

    def __init__(self, metric: str, query_batch_size: int = 512, index_batch_size: int = 8192):
        super().__init__(metric)
        self.query_batch_size = query_batch_size
        self.index_batch_size = index_batch_size
        self._chunks: list[np.ndarray] = []  # added since the last search, joined lazily
        self._base: np.ndarray | None = None
        self._sq_norms: np.ndarray | None = None  # l2: |row|^2, computed once

    def add(self, x: np.ndarray) -> None:
        self._chunks.append(x)

    def _matrix(self) -> np.ndarray | None:
        if self._chunks:
            parts = ([self._base] if self._base is not None else []) + self._chunks
            self._base = np.ascontiguousarray(np.concatenate(parts, axis=0))
            self._chunks = []
            self._sq_norms = (
                np.sum(self._base * self._base, axis=1) if self.metric == "l2" else None
            )
        return self._base

    def search(self, queries, k, exclude):
        return exact_search(
            queries,
            self._matrix(),
            k,
            self.metric,
            self.query_batch_size,
            self.index_batch_size,
            exclude=exclude,
            base_sq_norms=self._sq_norms,
        )

    def vectors(self, dim: int) -> np.ndarray:
        base = self._matrix()
        return np.zeros((0, dim), np.float32) if base is None else base

    def arrays(self, dim: int) -> dict[str, np.ndarray]:
        return {"embeddings": self.vectors(dim)}

    def restore(self, arrays, size, dim, npz_path):
        if not size:
            return
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
        check_finite(emb, f"Index.load: {npz_path}: `embeddings`")
        self._chunks = [np.ascontiguousarray(emb, dtype=np.float32)]


def import_faiss():
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Index(backend='faiss') needs the optional dependency faiss-cpu: "
            "`pip install faiss-cpu` (or use backend='exact')."
        ) from err
    return faiss


class FaissBackend(Backend):
    """A FAISS index (`faiss.index_factory(dim, faiss_factory, metric)`), built on the
    first `add`, which also trains it when the factory needs training."""

    name = "faiss"
    options = ("faiss_factory",)

    def __init__(self, metric: str, faiss_factory: str = "Flat"):
        super().__init__(metric)
        self._faiss = import_faiss()  # fails here, at construction, when not installed
        self.factory = faiss_factory
        self._index = None

    def add(self, x: np.ndarray) -> None:
        if self._index is None:
            faiss = self._faiss
            faiss_metric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
            self._index = faiss.index_factory(x.shape[1], self.factory, faiss_metric)
        if not self._index.is_trained:
            self._index.train(x)
        self._index.add(x)

    def search(self, queries, k, exclude):
        if exclude is not None:
            raise ValueError("Index.search: `exclude_self` / `exclude_ids` need backend='exact'.")
        scores, idx = self._index.search(queries, k)
        scores = scores.astype(np.float32)
        if self.metric == "l2":  # FAISS returns squared distances.
            scores = np.sqrt(np.maximum(scores, 0.0))
        return scores, idx.astype(np.int64)

    def vectors(self, dim: int) -> np.ndarray:
        if self._index is None:
            return np.zeros((0, dim), np.float32)
        return self._index.reconstruct_n(0, self._index.ntotal)

    def arrays(self, dim: int) -> dict[str, np.ndarray]:
        if self._index is None:
            return {}
        return {"faiss_index": self._faiss.serialize_index(self._index)}

    def restore(self, arrays, size, dim, npz_path):
        if "faiss_index" not in arrays:
            if size:
                raise ValueError(
                    f"Index.load: {npz_path} has no `faiss_index` array; index.json records "
                    f"size={size}."
                )
            return
        index = self._faiss.deserialize_index(arrays["faiss_index"])
        if index.ntotal != size or index.d != dim:
            raise ValueError(
                f"Index.load: {npz_path} holds a FAISS index of {index.ntotal} rows of "
                f"dimension {index.d} but index.json records size={size}, dim={dim}."
            )
        self._index = index


_REGISTRY: dict[str, type[Backend]] = {cls.name: cls for cls in (ExactBackend, FaissBackend)}


def names() -> list[str]:
    """The valid `Index(backend=...)` names."""
    return sorted(_REGISTRY)


def get(name: str, owner: str = "Index") -> type[Backend]:
    """The back-end class called `name`; a `ValueError` lists the valid names."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"{owner}: `backend` must be one of {names()}; received {name!r}.")
    return _REGISTRY[name]


# ---------------------------------------------------------------------- exact search
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
