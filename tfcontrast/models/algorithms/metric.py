"""Supervised metric learning: any pair-based loss on the projections of every view."""

from __future__ import annotations

import keras
from keras import ops

from tfcontrast.layers.heads import ProjectionHead
from tfcontrast.models.algorithms.base import Algorithm, OptionError, register


def _supervised_losses() -> dict:
    from tfcontrast import losses

    return {
        "triplet": losses.TripletLoss,
        "multi_similarity": losses.MultiSimilarityLoss,
        "circle": losses.CircleLoss,
        "contrastive": losses.ContrastiveLoss,
        "lifted_structure": losses.LiftedStructureLoss,
        "npair": losses.NPairLoss,
    }


def loss_names() -> list[str]:
    """The loss names `Metric(loss=...)` (and `tfcontrast train --loss=`) accept."""
    return sorted(_supervised_losses())


@register
class Metric(Algorithm):
    """A supervised metric loss (triplet, multi-similarity, circle, ...) on the
    projections of every view, with the image's label repeated for each of its views:
    two views of one image are positives of each other and of their class.

    This is SupCon's setting with another loss: `ContrastiveModel` makes the views,
    runs the backbone and projector, and serves the backbone's features.

    Args:
        loss: a name from `loss_names()` or a `tfcontrast.losses.MetricLoss` object.
        loss_options: the named loss's constructor arguments, e.g.
            `{"miner": "batch_hard", "margin": 0.1}`.

    Example:

    ```python
    model = ContrastiveModel(backbone, algorithm=Metric("triplet", {"miner": "batch_hard"}),
                             augmentation="auto")
    model.fit(images, labels, epochs=50)
    ```
    """

    name = "metric"
    needs_labels = True

    def __init__(self, loss="multi_similarity", loss_options: dict | None = None):
        from tfcontrast.losses import MetricLoss

        loss_options = dict(loss_options or {})
        known = _supervised_losses()
        if isinstance(loss, dict):  # a serialized loss object (from `get_config`)
            loss = keras.saving.deserialize_keras_object(loss)
        if isinstance(loss, str):
            if loss not in known:
                raise OptionError(
                    "loss",
                    f"Metric: unknown `loss` {loss!r}; expected one of {loss_names()} or a "
                    "tfcontrast.losses.MetricLoss.",
                )
            try:
                loss_object = known[loss](**loss_options)
            except (TypeError, ValueError) as error:
                raise OptionError("loss_options", f"Metric: `loss_options`: {error}") from None
        elif isinstance(loss, MetricLoss) and not loss_options:
            loss_object = loss
        else:
            raise OptionError(
                "loss",
                "Metric: `loss` must be a name (options in `loss_options`) or a supervised "
                f"tfcontrast.losses.MetricLoss; received {type(loss).__name__}.",
            )
        config = loss if isinstance(loss, str) else keras.saving.serialize_keras_object(loss)
        super().__init__(loss=config, loss_options=loss_options)
        self.loss = loss_object

    def default_projector(self):
        return ProjectionHead(hidden_dims=(2048,), output_dim=128)

    def compute_loss(self, model, outputs, labels, training=True):
        projection = outputs["projection"]  # (B, V, D)
        views = int(projection.shape[1])
        flat = ops.reshape(projection, (-1, projection.shape[-1]))
        return self.loss(ops.repeat(labels, views, axis=0), flat)
