"""Self-distillation losses: the SimSiam / BYOL negative cosine similarity."""

from __future__ import annotations

import keras
from keras import ops

from tfcontrast.losses.base import ContrastiveLossBase


def _inverse_norm(x, epsilon=1e-12):
    """`1 / ||x||` over the last axis; max(||x||^2, eps) keeps the value and the
    gradient finite at the zero vector."""
    return ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1), epsilon))


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
        # One split (its gradient is one concat) rather than two strided slices, and
        # the norms applied to the (B, K) dot products rather than to (B, K, D) tensors.
        predictions, targets = ops.split(y_pred, 2, axis=1)
        targets = ops.stop_gradient(targets)
        cosine = (
            ops.sum(predictions * targets, axis=-1)
            * _inverse_norm(predictions)
            * _inverse_norm(targets)
        )
        return -ops.mean(cosine, axis=-1)
