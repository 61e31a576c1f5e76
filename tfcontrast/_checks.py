"""Argument checks shared across modules (private, NumPy only: no TensorFlow import)."""

from __future__ import annotations

import numpy as np


def integer_labels(y, owner: str, name: str = "y", n: int | None = None) -> np.ndarray:
    """`y` as int32 class labels; whole-valued floats are converted, anything else (0.2,
    "cat") is a ValueError naming `owner` and `name`: casting 0.2, 0.7, 1.2 to integers
    would silently merge classes. With `n`, `y` must have shape `(n,)`."""
    labels = np.asarray(y)
    if n is not None and (labels.ndim != 1 or labels.shape[0] != n):
        raise ValueError(
            f"{owner}: `{name}` must have shape ({n},) to match the images; received shape "
            f"{labels.shape}."
        )
    whole = labels.dtype.kind in "iub" or (
        labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels % 1 == 0)
    )
    if not whole:
        example = labels.reshape(-1)[:3].tolist()
        raise ValueError(
            f"{owner}: `{name}` must hold integer class labels; received dtype {labels.dtype} "
            f"(e.g. {example}). Map class names or values to 0..C-1 first."
        )
    return labels.astype(np.int32)
