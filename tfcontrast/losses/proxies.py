"""Proxy and angular-margin losses: each embedding against one learned vector per class.

`ArcFaceLoss`, `CosFaceLoss`, `SubCenterArcFaceLoss`, `NormalizedSoftmaxLoss` and
`ProxyNCALoss` are softmax cross entropies over the cosines between an embedding and the
class proxies (with an angular or cosine margin on the true class, or a temperature);
`ProxyAnchorLoss` pulls the batch towards its classes' proxies and pushes it from the
others, proxy by proxy. All take integer labels `y_true` `(B,)` in `[0, num_classes)`
and embeddings `y_pred` `(B, D)`; embeddings and proxies are L2-normalised.

Where the proxies live. A `keras.losses.Loss` is not tracked by a model, so the proxies
are the weights of a `tfcontrast.layers.Proxies` layer, `loss.proxies`, which the model
must own for `fit` to train them and for `save` to keep them:

```python
loss = tfcontrast.losses.ArcFaceLoss(num_classes=10, embedding_dim=64)
inputs = keras.Input((28, 28, 1))
embeddings = loss.proxies(backbone(inputs))   # an identity: the model owns the proxies
model = keras.Model(inputs, embeddings)       # still serves the embedding
model.compile(optimizer="adam", loss=loss)
model.fit(images, labels)
```

Calling the layer in the functional graph is the way to go when the model will be saved:
`keras.saving.load_model` then hands the reloaded loss the reloaded layer (the same
object), trained proxies included. A subclassed model can attach the layer instead,
`model.proxies = loss.proxies`, which trains it on every backend. The larger learning
rate proxies usually get is `Proxies(lr_multiplier=...)` (or the losses'
`lr_multiplier=`), see `tfcontrast.layers.Proxies`. Under `tf.distribute`, create the
loss inside `strategy.scope()`, with the model: the proxies are model variables.

Labels out of range raise a `ValueError` naming `y_true` when the labels have values
(eager calls, PyTorch's `fit`); in a TensorFlow graph (`fit`) an assertion fails with the
same message. XLA (`jit_compile=True` on TensorFlow) drops assertions, and traced JAX
code (`fit` on JAX, `jax.jit`) cannot check values: there a row with an out-of-range
label has no target class (its one-hot row is zero).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from tfcontrast import _checks, distribute
from tfcontrast._gradients import custom_gradient
from tfcontrast._masking import masked_logsumexp
from tfcontrast._normalization import l2_normalize, l2_normalize_numpy
from tfcontrast.layers.proxies import Proxies
from tfcontrast.losses.base import ContrastiveLossBase


def check_label_range(labels, num_classes: int, owner: str, argument: str = "y_true"):
    """Checks `0 <= labels < num_classes` where the values can be seen.

    Eagerly (any backend) a `ValueError` names `argument`; in a TensorFlow graph an
    assertion fails with the same text. Traced JAX and compiled PyTorch code cannot
    check values and pass the labels through.
    """
    message = f"{owner}: `{argument}` must hold class ids in [0, num_classes={num_classes})"
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            checks = [
                tf.debugging.assert_non_negative(labels, message=message),
                tf.debugging.assert_less(
                    labels, tf.cast(num_classes, labels.dtype), message=message
                ),
            ]
            with tf.control_dependencies(checks):
                return tf.identity(labels)
    elif backend == "jax":
        import jax

        if isinstance(labels, jax.core.Tracer):
            return labels
    elif backend == "torch":
        import torch

        if torch.compiler.is_compiling():
            return labels
    values = np.asarray(ops.convert_to_numpy(labels))
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        bad = values[(values < 0) | (values >= num_classes)]
        raise ValueError(f"{message}; received {sorted(set(bad.tolist()))[:5]}.")
    return labels


def _resolve_proxies(proxies, num_classes, embedding_dim, num_centers, lr_multiplier, owner):
    if isinstance(proxies, dict):
        proxies = keras.saving.deserialize_keras_object(proxies)
    if proxies is None:
        if num_classes is None:
            raise ValueError(
                f"{owner}: `num_classes` is required (or pass an existing `proxies` layer)."
            )
        return Proxies(
            num_classes, embedding_dim, num_centers=num_centers, lr_multiplier=lr_multiplier
        )
    if not isinstance(proxies, Proxies):
        raise ValueError(
            f"{owner}: `proxies` must be a tfcontrast.layers.Proxies layer or None; received "
            f"{type(proxies).__name__}."
        )
    for name, value, have in (
        ("num_classes", num_classes, proxies.num_classes),
        ("embedding_dim", embedding_dim, proxies.embedding_dim),
    ):
        if value is not None and value != have:
            raise ValueError(f"{owner}: `{name}`={value!r} but the `proxies` layer has {have}.")
    if proxies.num_centers != num_centers:
        raise ValueError(
            f"{owner}: the `proxies` layer has num_centers={proxies.num_centers}; this loss "
            f"needs `num_centers`={num_centers}."
        )
    if float(lr_multiplier) != 1.0:
        raise ValueError(
            f"{owner}: `lr_multiplier` applies to new proxies only; set it on the `proxies` "
            "layer you pass."
        )
    return proxies


def _cosines(embeddings, proxies: Proxies):
    """`(B, C)` cosines between embeddings and class proxies (the closest sub-centre)."""
    unit = l2_normalize(proxies.vectors)
    k, num_classes = proxies.num_centers, proxies.num_classes
    if k == 1:
        return ops.matmul(l2_normalize(embeddings), ops.transpose(unit))
    # Sub-centre-major order (row j * C + c = sub-centre j of class c; the layer stores
    # c * K + j): the max over sub-centres is then a reduction over the middle axis of
    # (B, K, C), not over a last axis of size K, which TensorFlow reduces and (in the
    # gradient) broadcasts slowly: Sub-center ArcFace at B = 1024, C = 100, K = 3 went
    # from 1.34x to 0.80x pytorch-metric-learning's time (`bench_proxy_losses.py`).
    unit = ops.reshape(
        ops.transpose(ops.reshape(unit, (num_classes, k, -1)), (1, 0, 2)), (k * num_classes, -1)
    )
    cos = ops.matmul(l2_normalize(embeddings), ops.transpose(unit))
    return _max_over_centers(ops.reshape(cos, (-1, k, num_classes)))


@custom_gradient
def _max_over_centers(cos):
    """Max over axis 1 of `(B, K, C)`. The gradient is the automatic one of every
    backend's max (split evenly between tied sub-centres), written out once for all
    backends."""
    top = ops.max(cos, axis=1)

    def grad(upstream):
        winners = ops.cast(ops.equal(cos, ops.expand_dims(top, 1)), upstream.dtype)
        share = upstream / ops.sum(winners, axis=1)
        return winners * ops.expand_dims(share, 1)

    return top, grad


def _cross_entropy(logits, one_hot):
    """Per-row softmax cross entropy with one-hot targets."""
    return masked_logsumexp(logits) - ops.sum(logits * one_hot, axis=-1)


class ProxyLoss(ContrastiveLossBase):
    """Base of the proxy losses: labels, embeddings and the `Proxies` layer.

    A subclass implements `compute(labels, embeddings, one_hot)`, with labels checked
    against `num_classes`, `one_hot` float32 `(B, C)`, and the proxies in
    `self.proxies`.

    Args:
        num_classes: number of classes (required unless `proxies` is given).
        embedding_dim: embedding size `D`; `None` creates the proxies when the model
            calls `loss.proxies` on its embeddings.
        proxies: an existing `tfcontrast.layers.Proxies` layer to use instead.
        lr_multiplier: learning-rate multiplier of new proxies (see `Proxies`).
    """

    labels = "required"
    embedding_ranks = (2,)
    #: Sub-centres per class this loss expects of its proxies.
    num_centers = 1
    #: Constructor arguments `tfcontrast.models.recipes` trains this loss with where they
    #: differ from its defaults (a user's `loss_options` win), each with its reason.
    recipe_defaults: dict = {}

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
        proxies=None,
        lr_multiplier: float = 1.0,
        name=None,
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.proxies = _resolve_proxies(
            proxies,
            num_classes,
            embedding_dim,
            self.num_centers,
            lr_multiplier,
            type(self).__name__,
        )

    @property
    def num_classes(self) -> int:
        return self.proxies.num_classes

    def call(self, y_true, y_pred):
        owner = type(self).__name__
        dim = y_pred.shape[-1]
        if self.proxies.embedding_dim is not None and dim is not None:
            if dim != self.proxies.embedding_dim:
                raise ValueError(
                    f"{owner}: `y_pred` has dimension {dim}; the proxies have "
                    f"embedding_dim={self.proxies.embedding_dim}."
                )
        labels = check_label_range(y_true, self.num_classes, owner)
        one_hot = ops.one_hot(labels, self.num_classes, dtype="float32")
        return self.compute(labels, y_pred, one_hot)

    def compute(self, labels, embeddings, one_hot):
        raise NotImplementedError

    def get_config(self):
        return {
            **super().get_config(),
            "proxies": keras.saving.serialize_keras_object(self.proxies),
        }


# -- angular and cosine margins -------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfcontrast")
class ArcFaceLoss(ProxyLoss):
    """ArcFace: additive angular margin softmax (Deng et al., CVPR 2019).

    With `theta_j` the angle between the embedding and the proxy of class `j` and `y`
    the true class:

        L = -log( exp(s cos(theta_y + m)) / (exp(s cos(theta_y + m)) + sum_{j != y} exp(s cos theta_j)) )

    The margin is an angle, in radians (the paper's `m = 0.5` is 28.6 degrees). For
    `theta_y > pi - m`, `cos(theta_y + m)` would grow again with the angle, so the target
    logit becomes `cos(theta_y) - m sin(m)` there (the threshold of the authors' code,
    which keeps the logit decreasing in `theta_y`); with `easy_margin=True` the margin
    applies only for `theta_y < pi / 2`. The sine is computed from the cosine with a
    floor, so gradients stay finite at `theta = 0` and `theta = pi`. Everything runs in
    float32, also under `mixed_float16` / `mixed_bfloat16`.

    The proxies live in the layer `loss.proxies` that the model must own; see the module
    docstring. They are usually trained at the network's learning rate.

    Reference: J. Deng, J. Guo, N. Xue, S. Zafeiriou, "ArcFace: Additive Angular Margin
    Loss for Deep Face Recognition", CVPR 2019 (https://arxiv.org/abs/1801.07698).

    Args:
        num_classes, embedding_dim, proxies, lr_multiplier: see `ProxyLoss`.
        margin: the angular margin `m` in radians, in `[0, pi/2)` (default 0.5).
        scale: the logit scale `s` (> 0, default 64).
        easy_margin: apply the margin only where `cos(theta_y) > 0`.

    Example:

    ```python
    loss = tfcontrast.losses.ArcFaceLoss(num_classes=10, embedding_dim=64)
    embeddings = loss.proxies(backbone(inputs))
    model = keras.Model(inputs, embeddings)
    model.compile(optimizer="adam", loss=loss)
    ```
    """

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
        margin: float = 0.5,
        scale: float = 64.0,
        easy_margin: bool = False,
        name="arcface_loss",
        **kwargs,
    ):
        owner = type(self).__name__
        hint = ""
        if margin is not None and float(margin) >= math.pi / 2 and float(margin) < 90:
            hint = f" The margin is in radians: for {float(margin):g} degrees pass math.radians()."
        self.margin = _checks.in_range(
            "margin", margin, owner, 0.0, math.pi / 2, high_open=True, hint=hint
        )
        self.scale = _checks.positive("scale", scale, owner)
        self.easy_margin = bool(easy_margin)
        super().__init__(num_classes, embedding_dim, name=name, **kwargs)

    def target_logit(self, cos_target):
        """`cos(theta + m)` with the threshold (or easy-margin) fallback, unscaled."""
        m = self.margin
        # The floor keeps sqrt's gradient finite at |cos| = 1; in float32, 1 - cos^2 is
        # either 0 or above 1e-7, so the floor changes no other value.
        sin_target = ops.sqrt(ops.maximum(1.0 - ops.square(cos_target), 1e-12))
        shifted = cos_target * math.cos(m) - sin_target * math.sin(m)
        if self.easy_margin:
            return ops.where(cos_target > 0.0, shifted, cos_target)
        return ops.where(cos_target > math.cos(math.pi - m), shifted, cos_target - m * math.sin(m))

    def compute(self, labels, embeddings, one_hot):
        cos = _cosines(embeddings, self.proxies)
        cos_target = ops.sum(cos * one_hot, axis=-1)
        delta = self.target_logit(cos_target) - cos_target
        logits = self.scale * (cos + one_hot * delta[:, None])
        return _cross_entropy(logits, one_hot)

    def get_config(self):
        return {
            **super().get_config(),
            "margin": self.margin,
            "scale": self.scale,
            "easy_margin": self.easy_margin,
        }


@keras.saving.register_keras_serializable(package="tfcontrast")
class SubCenterArcFaceLoss(ArcFaceLoss):
    """Sub-center ArcFace (Deng et al., ECCV 2020): ArcFace with `K` proxies per class.

    Each class has `num_centers` sub-centres; the cosine to a class is the largest cosine
    to its sub-centres, `cos theta_j = max_k cos theta_jk`, and the loss is ArcFace on
    those cosines. Noisy samples gather at non-dominant sub-centres instead of pulling
    the class apart. The paper then drops, per class, the samples further than 75
    degrees from the dominant sub-centre and retrains with `K = 1`:
    `subcenter_outliers` returns those samples and the dominant sub-centres.

    Reference: J. Deng, J. Guo, T. Liu, M. Gong, S. Zafeiriou, "Sub-center ArcFace:
    Boosting Face Recognition by Large-scale Noisy Web Faces", ECCV 2020.

    Args:
        num_classes, embedding_dim, proxies, lr_multiplier: see `ProxyLoss`.
        num_centers: sub-centres per class `K` (>= 1, default 3).
        margin, scale, easy_margin: as in `ArcFaceLoss`.

    Example:

    ```python
    loss = tfcontrast.losses.SubCenterArcFaceLoss(num_classes=10, embedding_dim=64)
    model = keras.Model(inputs, loss.proxies(backbone(inputs)))
    model.compile(optimizer="adam", loss=loss)
    model.fit(images, labels)
    outliers, centres = tfcontrast.losses.subcenter_outliers(
        model.predict(images), labels, loss.proxies)
    ```
    """

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
        num_centers: int = 3,
        margin: float = 0.5,
        scale: float = 64.0,
        easy_margin: bool = False,
        name="subcenter_arcface_loss",
        **kwargs,
    ):
        # Set before the base class builds or checks the proxies.
        self.num_centers = _checks.integer(
            "num_centers", num_centers, type(self).__name__, numpy_ints=False
        )
        super().__init__(
            num_classes,
            embedding_dim,
            margin=margin,
            scale=scale,
            easy_margin=easy_margin,
            name=name,
            **kwargs,
        )

    def get_config(self):
        return {**super().get_config(), "num_centers": self.num_centers}


def subcenter_outliers(embeddings, labels, proxies, threshold: float = 75.0):
    """The dominant-sub-centre filter of Sub-center ArcFace, over a labelled data set.

    For each class, the dominant sub-centre is the one that most of the class's samples
    are closest to (by cosine; ties go to the lower index). Samples whose angle to their
    class's dominant sub-centre exceeds `threshold` degrees are outliers (the paper uses
    75 degrees). Runs in NumPy on the whole set, outside training.

    Args:
        embeddings: `(N, D)` embeddings of the data set (NumPy or tensors).
        labels: `(N,)` integer class ids in `[0, num_classes)`.
        proxies: the `tfcontrast.layers.Proxies` layer (or a loss that has one).
        threshold: the largest angle kept, in degrees, in `(0, 180]` (default 75).

    Returns:
        `(outliers, centers)`: int64 indices into `embeddings`, ascending, and the
        `(num_classes, D)` dominant sub-centres, ready for
        `Proxies(num_classes, D).set_vectors(centers)` to retrain with one centre per
        class. A class without samples keeps its sub-centre 0.
    """
    owner = "subcenter_outliers"
    if isinstance(proxies, ProxyLoss):
        proxies = proxies.proxies
    if not isinstance(proxies, Proxies):
        raise ValueError(
            f"{owner}: `proxies` must be a tfcontrast.layers.Proxies layer or a proxy loss; "
            f"received {type(proxies).__name__}."
        )
    threshold = _checks.in_range("threshold", threshold, owner, 0.0, 180.0)
    if threshold == 0.0:
        raise ValueError(f"{owner}: `threshold` must be in (0, 180]; received threshold=0.")
    x = np.asarray(ops.convert_to_numpy(embeddings), dtype="float64")
    y = np.asarray(ops.convert_to_numpy(labels))
    if x.ndim != 2 or x.shape[-1] != proxies.embedding_dim:
        raise ValueError(
            f"{owner}: `embeddings` must have shape (N, {proxies.embedding_dim}); received "
            f"{x.shape}."
        )
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{owner}: `labels` must be {len(x)} integer class ids; received shape {y.shape} "
            f"and dtype {y.dtype}."
        )
    y = y.astype("int64")
    check_label_range(y, proxies.num_classes, owner, argument="labels")
    k = proxies.num_centers
    centres = np.asarray(ops.convert_to_numpy(proxies.vectors), dtype="float64")
    centres = centres.reshape(proxies.num_classes, k, -1)
    unit = l2_normalize_numpy(centres)
    x = l2_normalize_numpy(x)
    cos = np.einsum("nd,nkd->nk", x, unit[y])  # each sample against its class's centres
    counts = np.zeros((proxies.num_classes, k), dtype="int64")
    np.add.at(counts, (y, np.argmax(cos, axis=1)), 1)
    dominant = np.argmax(counts, axis=1)
    cos_dominant = cos[np.arange(len(y)), dominant[y]]
    outliers = np.flatnonzero(cos_dominant < math.cos(math.radians(threshold)))
    centers = centres[np.arange(proxies.num_classes), dominant]
    return outliers.astype("int64"), centers.astype("float32")


@keras.saving.register_keras_serializable(package="tfcontrast")
class CosFaceLoss(ProxyLoss):
    """CosFace: large margin cosine loss (Wang et al., CVPR 2018).

    With cosines `cos theta_j` between the embedding and the class proxies and true
    class `y`:

        L = -log( exp(s (cos theta_y - m)) / (exp(s (cos theta_y - m)) + sum_{j != y} exp(s cos theta_j)) )

    The margin is subtracted from the cosine (the paper uses `m = 0.35`, `s = 64`); it is
    in `[0, 1]`. The proxies live in `loss.proxies` (see the module docstring).

    Reference: H. Wang, Y. Wang, Z. Zhou, X. Ji, D. Gong, J. Zhou, Z. Li, W. Liu,
    "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018
    (https://arxiv.org/abs/1801.09414).

    Args:
        num_classes, embedding_dim, proxies, lr_multiplier: see `ProxyLoss`.
        margin: the cosine margin `m` in `[0, 1]` (default 0.35).
        scale: the logit scale `s` (> 0, default 64).

    Example:

    ```python
    loss = tfcontrast.losses.CosFaceLoss(num_classes=10, embedding_dim=64, margin=0.35)
    model = keras.Model(inputs, loss.proxies(backbone(inputs)))  # as for ArcFaceLoss
    ```
    """

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
        margin: float = 0.35,
        scale: float = 64.0,
        name="cosface_loss",
        **kwargs,
    ):
        owner = type(self).__name__
        self.margin = _checks.in_range("margin", margin, owner, 0.0, 1.0)
        self.scale = _checks.positive("scale", scale, owner)
        super().__init__(num_classes, embedding_dim, name=name, **kwargs)

    def compute(self, labels, embeddings, one_hot):
        logits = self.scale * (_cosines(embeddings, self.proxies) - self.margin * one_hot)
        return _cross_entropy(logits, one_hot)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "scale": self.scale}


# -- proxy softmax and proxy anchor ----------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfcontrast")
class NormalizedSoftmaxLoss(ProxyLoss):
    """Normalized softmax: cross entropy over cosines to the class proxies, over a
    temperature (Zhai & Wu, BMVC 2019).

        L = -log( exp(cos theta_y / T) / sum_j exp(cos theta_j / T) )

    `ArcFaceLoss` and `CosFaceLoss` with `margin=0` are this loss at `T = 1 / scale`.
    The paper's temperature is 0.05. The proxies live in `loss.proxies`.

    Reference: A. Zhai, H.-Y. Wu, "Classification is a Strong Baseline for Deep Metric
    Learning", BMVC 2019 (https://arxiv.org/abs/1811.12649).

    Args:
        num_classes, embedding_dim, proxies, lr_multiplier: see `ProxyLoss`.
        temperature: `T` (> 0, default 0.05).

    Example:

    ```python
    loss = tfcontrast.losses.NormalizedSoftmaxLoss(num_classes=100, temperature=0.05)
    ```
    """

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
        temperature: float = 0.05,
        name="normalized_softmax_loss",
        **kwargs,
    ):
        self.temperature = _checks.positive("temperature", temperature, type(self).__name__)
        super().__init__(num_classes, embedding_dim, name=name, **kwargs)

    def compute(self, labels, embeddings, one_hot):
        logits = _cosines(embeddings, self.proxies) * (1.0 / self.temperature)
        return _cross_entropy(logits, one_hot)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@keras.saving.register_keras_serializable(package="tfcontrast")
class ProxyNCALoss(NormalizedSoftmaxLoss):
    """ProxyNCA: NCA against one proxy per class (Movshovitz-Attias et al., ICCV 2017).

    With `x` and the proxies `p_j` L2-normalised and `d_j = ||x - p_j||^2 = 2 - 2 cos theta_j`:

        L = -log( exp(-s d_y) / sum_j exp(-s d_j) )

    a softmax over all proxies, the true one included, as in ProxyNCA++ and
    pytorch-metric-learning (the original paper leaves the true proxy out of the sum,
    which lets the loss go below zero). Since `-s d_j = 2 s cos theta_j - 2 s` and a
    softmax ignores a shift shared by all logits, this is exactly `NormalizedSoftmaxLoss`
    at `T = 1 / (2 s)`, and is computed as such. `softmax_scale` `s` defaults to 1, as in
    pytorch-metric-learning; ProxyNCA++ reports that a larger scale (a low temperature)
    helps a lot. The proxies live in `loss.proxies`.

    References: Y. Movshovitz-Attias, A. Toshev, T. K. Leung, S. Ioffe, S. Singh, "No
    Fuss Distance Metric Learning using Proxies", ICCV 2017. E. W. Teh, T. DeVries,
    G. W. Taylor, "ProxyNCA++: Revisiting and Revitalizing Proxy Neighborhood Component
    Analysis", ECCV 2020.

    Args:
        num_classes, embedding_dim, proxies, lr_multiplier: see `ProxyLoss`.
        softmax_scale: `s` (> 0, default 1).

    Example:

    ```python
    loss = tfcontrast.losses.ProxyNCALoss(num_classes=100, embedding_dim=128, softmax_scale=9)
    ```
    """

    def __init__(self, num_classes=None, embedding_dim=None, softmax_scale: float = 1.0, **kwargs):
        self.softmax_scale = _checks.positive("softmax_scale", softmax_scale, type(self).__name__)
        kwargs.setdefault("name", "proxy_nca_loss")
        kwargs["temperature"] = 0.5 / self.softmax_scale
        super().__init__(num_classes, embedding_dim, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.pop("temperature")
        return {**config, "softmax_scale": self.softmax_scale}


@keras.saving.register_keras_serializable(package="tfcontrast")
class ProxyAnchorLoss(ProxyLoss):
    """Proxy Anchor loss (Kim et al., CVPR 2020): each proxy is an anchor of the batch.

    With `s(x, p)` the cosine between embedding `x` and proxy `p`, `X_p+` the batch's
    embeddings of class `p`, `X_p-` the others, `P+` the proxies with at least one
    embedding in the batch and `P` all proxies:

        L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s(x, p) - delta)))
          + 1/|P|  sum_{p in P}  log(1 + sum_{x in X_p-} exp( alpha (s(x, p) + delta)))

    `L` is a function of the whole batch (the global batch under `tf.distribute`), so
    every example carries `L` as its per-example value and Keras' mean over the batch
    gives `L` (a `sample_weight` scales those copies). The paper uses `alpha = 32`,
    `delta = 0.1` and trains the proxies with a 100 times larger learning rate
    (`lr_multiplier=100` with Adam / AdamW, see `tfcontrast.layers.Proxies`).
    `tfcontrast.models.recipes` trains it with `lr_multiplier=100` and `alpha=16`
    (`recipe_defaults`).

    Reference: S. Kim, D. Kim, M. Cho, S. Kwak, "Proxy Anchor Loss for Deep Metric
    Learning", CVPR 2020 (https://arxiv.org/abs/2003.13911).

    Args:
        num_classes, embedding_dim, proxies, lr_multiplier: see `ProxyLoss`.
        margin: `delta` in `[0, 1)` (default 0.1).
        alpha: the scale (> 0, default 32).

    Example:

    ```python
    loss = tfcontrast.losses.ProxyAnchorLoss(num_classes=100, embedding_dim=128,
                                             lr_multiplier=100)
    model = keras.Model(inputs, loss.proxies(backbone(inputs)))
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=loss)
    ```
    """

    recipe_defaults = {
        # The paper's 100x. On the USPS validation split (metric algorithm, 50 epochs)
        # 1-NN went from 0.991 at 1x to 0.9945 at 10x and at 100x (SupCon 0.994).
        "lr_multiplier": 100.0,
        # The paper's alpha = 32 weights each proxy's hardest few embeddings; 16 spreads
        # the pull over all of a class, which retrieval of a whole class (MAP@R) rewards.
        # On three USPS validation splits (50 epochs): MAP@R 0.979 -> 0.987, higher on
        # each, 1-NN errors 32 -> 28 (benchmarks/README, issue 21).
        "alpha": 16.0,
    }

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_dim: int | None = None,
        margin: float = 0.1,
        alpha: float = 32.0,
        name="proxy_anchor_loss",
        **kwargs,
    ):
        owner = type(self).__name__
        self.margin = _checks.in_range("margin", margin, owner, 0.0, 1.0, high_open=True)
        self.alpha = _checks.positive("alpha", alpha, owner)
        super().__init__(num_classes, embedding_dim, name=name, **kwargs)

    def compute(self, labels, embeddings, one_hot):
        # The proxies are compared with the global batch under tf.distribute.
        ref_labels, refs, _ = distribute.gather_references(labels, embeddings)
        if ref_labels is not labels:
            one_hot = ops.one_hot(ref_labels, self.num_classes, dtype="float32")
        cos = _cosines(refs, self.proxies)  # (N, C)
        positive = one_hot > 0.0
        pull = ops.softplus(masked_logsumexp(-self.alpha * (cos - self.margin), positive, axis=0))
        push = ops.softplus(
            masked_logsumexp(self.alpha * (cos + self.margin), ops.logical_not(positive), axis=0)
        )
        with_positives = ops.sum(ops.cast(ops.any(positive, axis=0), "float32"))
        loss = ops.sum(pull) / ops.maximum(with_positives, 1.0) + ops.sum(push) / self.num_classes
        return ops.broadcast_to(loss, ops.shape(embeddings)[:1])

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "alpha": self.alpha}
