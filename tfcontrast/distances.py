"""Pairwise distances and similarities between two sets of embeddings.

Every distance maps `a` of shape `(B1, D)` and `b` of shape `(B2, D)` to a matrix of
shape `(B1, B2)`. Most are *distances* (smaller means closer); `DotProduct` is a
*similarity* (larger means closer), flagged by `higher_is_closer = True`. Losses and
miners never branch on the concrete class: they ask a distance for
`to_distance(matrix)` (smaller-is-closer) or `to_similarity(matrix)`
(larger-is-closer) and stay agnostic.

Example:

```python
import numpy as np
from tfcontrast import distances

a = np.random.rand(4, 8).astype("float32")
d = distances.get("cosine")(a, a)          # (4, 4), zeros on the diagonal
sim = distances.get("dot")(a, a)            # (4, 4) inner products
```

All distances are safe at zero vectors and at zero distance: values and gradients are
finite there.
"""

from __future__ import annotations

import keras
from keras import ops

from tfcontrast._linalg import gram
from tfcontrast._normalization import l2_normalize
from tfcontrast._registry import resolve

_EPS = 1e-12
_PROB_EPS = 1e-7


def _safe_sqrt(x):
    """`sqrt` whose gradient is finite (zero) where `x == 0`.

    The double `where` keeps the `1 / (2 sqrt(0))` branch out of the gradient.
    """
    is_zero = x <= 0.0
    safe = ops.where(is_zero, ops.ones_like(x), x)
    return ops.where(is_zero, ops.zeros_like(x), ops.sqrt(safe))


def _pairwise_squared_euclidean(a, b):
    sq_a = ops.sum(ops.square(a), axis=-1, keepdims=True)
    # The factor -2 scales `a` (B1 x D), not the (B1, B2) product (one pass less over
    # the matrix forward and backward); the norm row is a reshape, not a transpose.
    if b is a:  # in-batch: the norms once, the products a Gram matrix (see `gram`)
        sq_b, products = sq_a, gram(a, -2.0)
    else:
        sq_b = ops.sum(ops.square(b), axis=-1, keepdims=True)
        products = ops.matmul(-2.0 * a, ops.transpose(b))
    d2 = products + sq_a + ops.reshape(sq_b, (1, -1))
    # Cancellation can leave tiny negatives where the true distance is zero. `relu`
    # rather than `maximum(d2, 0)`: its gradient is one select, with no reduction for
    # the broadcast zero.
    return ops.relu(d2)


def _as_probabilities(x):
    return ops.clip(x, _PROB_EPS, 1.0)


class Distance:
    """Base class of pairwise distances.

    Subclasses implement `pairwise(a, b) -> (B1, B2)`. Calling a distance object checks
    shapes and calls `pairwise`.

    Attributes:
        name: the alias that `get` resolves to this class.
        higher_is_closer: `True` for similarities (dot product), `False` for distances.
    """

    name: str = ""
    higher_is_closer: bool = False

    def __call__(self, a, b=None):
        a = ops.convert_to_tensor(a)
        b = a if b is None else ops.convert_to_tensor(b)
        for arg, x in (("a", a), ("b", b)):
            if len(x.shape) != 2:
                raise ValueError(
                    f"{type(self).__name__}: `{arg}` must be 2-D (batch, dim); "
                    f"received shape {tuple(x.shape)}."
                )
        if a.shape[-1] is not None and b.shape[-1] is not None and a.shape[-1] != b.shape[-1]:
            raise ValueError(
                f"{type(self).__name__}: `a` and `b` must have the same last dimension; "
                f"received {a.shape[-1]} and {b.shape[-1]}."
            )
        return self.pairwise(a, b)

    def pairwise(self, a, b):
        raise NotImplementedError

    def to_distance(self, matrix):
        """Returns `matrix` oriented so that smaller values mean closer."""
        return -matrix if self.higher_is_closer else matrix

    def to_similarity(self, matrix):
        """Returns `matrix` oriented so that larger values mean closer."""
        return matrix if self.higher_is_closer else -matrix

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}()"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash(type(self))


@keras.saving.register_keras_serializable(package="tfcontrast")
class CosineDistance(Distance):
    """`1 - cos(a, b)`, in `[0, 2]`. Zero vectors have cosine 0 to everything."""

    name = "cosine"

    def pairwise(self, a, b):
        unit_a = l2_normalize(a)
        if b is a:  # in-batch: normalise once, one backward matmul (see `gram`)
            return 1.0 - gram(unit_a)
        return 1.0 - ops.matmul(unit_a, ops.transpose(l2_normalize(b)))

    def to_similarity(self, matrix):
        # The cosine similarity itself, so margins keep their usual meaning.
        return 1.0 - matrix


@keras.saving.register_keras_serializable(package="tfcontrast")
class DotProduct(Distance):
    """Inner product `<a, b>`: a similarity (larger is closer)."""

    name = "dot"
    higher_is_closer = True

    def pairwise(self, a, b):
        return gram(a) if b is a else ops.matmul(a, ops.transpose(b))


@keras.saving.register_keras_serializable(package="tfcontrast")
class SquaredEuclideanDistance(Distance):
    """`||a - b||^2`."""

    name = "squared_euclidean"

    def pairwise(self, a, b):
        return _pairwise_squared_euclidean(a, b)


@keras.saving.register_keras_serializable(package="tfcontrast")
class EuclideanDistance(Distance):
    """`||a - b||`, with a finite gradient at zero distance."""

    name = "euclidean"

    def pairwise(self, a, b):
        return _safe_sqrt(_pairwise_squared_euclidean(a, b))


@keras.saving.register_keras_serializable(package="tfcontrast")
class ManhattanDistance(Distance):
    """`sum_k |a_k - b_k|`. Materialises a `(B1, B2, D)` tensor."""

    name = "manhattan"

    def pairwise(self, a, b):
        return ops.sum(ops.abs(a[:, None, :] - b[None, :, :]), axis=-1)


@keras.saving.register_keras_serializable(package="tfcontrast")
class KLDivergence(Distance):
    """`KL(a_i || b_j) = sum_k a_ik (log a_ik - log b_jk)`; rows are probability vectors.

    Probabilities are clipped to `[1e-7, 1]` before the logarithm, so zeros are safe.
    Not symmetric.
    """

    name = "kl"

    def pairwise(self, a, b):
        pa, pb = _as_probabilities(a), _as_probabilities(b)
        neg_entropy = ops.sum(pa * ops.log(pa), axis=-1, keepdims=True)
        cross = ops.matmul(pa, ops.transpose(ops.log(pb)))
        return neg_entropy - cross


@keras.saving.register_keras_serializable(package="tfcontrast")
class JSDivergence(Distance):
    """Jensen-Shannon divergence `(KL(a || m) + KL(b || m)) / 2`, `m = (a + b) / 2`.

    Rows are probability vectors; symmetric and bounded by `log 2`. Materialises a
    `(B1, B2, D)` tensor.
    """

    name = "js"

    def pairwise(self, a, b):
        pa = _as_probabilities(a)[:, None, :]
        pb = _as_probabilities(b)[None, :, :]
        log_m = ops.log(0.5 * (pa + pb))
        kl_am = ops.sum(pa * (ops.log(pa) - log_m), axis=-1)
        kl_bm = ops.sum(pb * (ops.log(pb) - log_m), axis=-1)
        return 0.5 * (kl_am + kl_bm)


@keras.saving.register_keras_serializable(package="tfcontrast")
class WassersteinDistance(Distance):
    """1-D Wasserstein-1 (earth mover's) distance between rows seen as histograms.

    Each row is a histogram over the same ordered, unit-spaced bins; rows are normalised
    to sum to one. In 1-D the distance is the L1 distance between cumulative sums.
    """

    name = "wasserstein"

    def pairwise(self, a, b):
        def cdf(x):
            x = ops.maximum(x, 0.0)
            total = ops.maximum(ops.sum(x, axis=-1, keepdims=True), _EPS)
            return ops.cumsum(x / total, axis=-1)

        return ManhattanDistance().pairwise(cdf(a), cdf(b))


_REGISTRY: dict[str, type[Distance]] = {
    cls.name: cls
    for cls in (
        CosineDistance,
        DotProduct,
        EuclideanDistance,
        SquaredEuclideanDistance,
        ManhattanDistance,
        KLDivergence,
        JSDivergence,
        WassersteinDistance,
    )
}
_ALIASES = {
    "l2": "euclidean",
    "sqeuclidean": "squared_euclidean",
    "l1": "manhattan",
    "inner_product": "dot",
}


def names() -> list[str]:
    """The valid distance names accepted by `get`."""
    return sorted(_REGISTRY)


def get(identifier: str | Distance | dict) -> Distance:
    """Resolves a distance name, config dict or object to a `Distance` object.

    Args:
        identifier: a name such as `"cosine"` (see `names()`), a `Distance` instance
            (returned as is) or a dict produced by `serialize`.

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    return resolve(
        identifier, base=Distance, registry=_REGISTRY, aliases=_ALIASES, argument="distance"
    )


def serialize(distance: Distance) -> dict:
    """Serialises a distance to a config dict that `get` accepts."""
    return keras.saving.serialize_keras_object(distance)
