"""Array helpers shared by the evaluation modules (NumPy in, NumPy out)."""

from __future__ import annotations

import numpy as np

from tfcontrast._normalization import l2_normalize_numpy


def to_numpy(x, name: str) -> np.ndarray:
    """Converts arrays, tensors (TF, JAX, torch) and lists to a NumPy array."""
    if x is None:
        raise ValueError(f"`{name}` must not be None.")
    if not isinstance(x, np.ndarray):
        if hasattr(x, "detach"):  # torch
            x = x.detach().cpu()
        if hasattr(x, "numpy"):
            x = x.numpy()
    return np.asarray(x)


def as_embeddings(x, name: str) -> np.ndarray:
    """A float32 `(N, D)` matrix; raises ValueError naming `name` otherwise."""
    arr = to_numpy(x, name)
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must have shape (N, D); received shape {arr.shape}.")
    if arr.shape[0] == 0:
        raise ValueError(f"`{name}` is empty (shape {arr.shape}).")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"`{name}` must be numeric; received dtype {arr.dtype}.")
    return np.ascontiguousarray(arr, dtype=np.float32)


def as_labels(y, name: str, n: int) -> np.ndarray:
    """A `(n,)` label vector (ints or strings; `(n, 1)` is flattened)."""
    arr = to_numpy(y, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise ValueError(
            f"`{name}` must have shape ({n},) to match the embeddings; received {arr.shape}."
        )
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"`{name}` must hold class ids (ints or strings); received floats.")
        arr = arr.astype(np.int64)
    return arr


# The evaluation modules import `l2_normalize_numpy` from `tfcontrast._normalization`;
# this name stays for benchmarks/bench_retrieval_metrics.py.
l2_normalize = l2_normalize_numpy
