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

from tfcontrast._search import exact_search


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
