"""Self-distillation losses: the SimSiam / BYOL negative cosine similarity."""

from __future__ import annotations

import keras
from keras import ops

from tfcontrast._gradients import custom_gradient
from tfcontrast._normalization import SQUARED_NORM_FLOOR
from tfcontrast.losses.base import ContrastiveLossBase


def _negative_cosine(y_pred):
    """`-1/K sum_k cos(p_k, stopgrad(z_k))` per example, its gradient written by hand.

    `y_pred` is `(B, 2K, D)`, predictions then targets. The target half gets a zero
    gradient in the same op that returns the prediction gradient (a pad), where
    automatic differentiation concatenates the prediction gradient with a tensor of
    zeros and sends each norm and the dot product back through separate broadcasts:
    with `c = dL/dcos`,

        dL/dp = c / (|p| |z|) (z - (p.z / |p|^2) p)
    """
    k = y_pred.shape[1] // 2

    @custom_gradient
    def forward(y):
        predictions, targets = ops.split(y, 2, axis=1)  # (B, K, D) each
        dots = ops.sum(predictions * targets, axis=-1)  # (B, K)
        squares_p = ops.sum(ops.square(predictions), axis=-1)
        # The floor of ||x||^2 that `l2_normalize` uses: the zero vector has cosine 0
        # and finite gradients.
        inverse_p = ops.rsqrt(ops.maximum(squares_p, SQUARED_NORM_FLOOR))
        inverse_z = ops.rsqrt(
            ops.maximum(ops.sum(ops.square(targets), axis=-1), SQUARED_NORM_FLOOR)
        )
        value = -ops.mean(dots * inverse_p * inverse_z, axis=-1)

        def grad(upstream):
            scale = (-1.0 / k) * upstream[:, None] * inverse_p * inverse_z  # (B, K)
            # d(1/|p|)/dp is zero where the floor holds |p|^2 at epsilon.
            ratio = ops.where(squares_p > SQUARED_NORM_FLOOR, dots * ops.square(inverse_p), 0.0)
            d_predictions = scale[..., None] * (targets - ratio[..., None] * predictions)
            return ops.pad(d_predictions, [[0, 0], [0, k], [0, 0]])

        return value, grad

    return forward(y_pred)


@keras.saving.register_keras_serializable(package="tfcontrast")
class NegativeCosineSimilarity(ContrastiveLossBase):
    """Negative cosine similarity with a stop-gradient target (SimSiam, BYOL).

    `y_pred` has shape `(B, 2K, D)`: the first `K` entries on axis 1 are predictions
    `p_1 .. p_K` (the predictor's output, gradients flow), the last `K` are their
    targets `z_1 .. z_K` (projections or momentum-encoder outputs, gradients stopped).
    Prediction `k` is paired with target `k`:

        L_b = 1/K sum_k -cos(p_k, stopgrad(z_k)),   cos(p, z) = p.z / (||p|| ||z||)

    `K = 1` is `[prediction, target]`. SimSiam's symmetric loss
    `D(p1, z2) / 2 + D(p2, z1) / 2` is `K = 2` with `y_pred = stack([p1, p2, z2, z1])`.
    BYOL's loss `2 - 2 cos` equals `2 + 2 L`; it has the same gradient direction.

    Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021;
    Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020.

    Labels are ignored (`y_true` may be `None`). A zero vector has cosine 0 (no NaN).
    The gradient is written by hand and is first-order only: nested gradient tapes
    (gradient penalties, second-order meta-learning) and forward-mode differentiation
    are not supported.

    Example:

    ```python
    loss = tfcontrast.losses.NegativeCosineSimilarity()
    y_pred = keras.ops.stack([p1, p2, z2, z1], axis=1)  # symmetric SimSiam, (B, 4, D)
    value = loss(None, y_pred)
    ```
    """

    labels = "ignored"
    embedding_ranks = (3,)

    def __init__(self, name: str = "negative_cosine_similarity", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        num_views = y_pred.shape[1]
        if num_views is None or num_views % 2:
            raise ValueError(
                f"{type(self).__name__}: `y_pred` must hold an even number of entries on "
                "axis 1, predictions then targets `(B, 2K, D)`; received shape "
                f"{tuple(y_pred.shape)}."
            )
        return _negative_cosine(y_pred)
