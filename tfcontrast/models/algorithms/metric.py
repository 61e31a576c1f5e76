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


def _proxy_losses() -> dict:
    from tfcontrast import losses

    return {
        "arcface": losses.ArcFaceLoss,
        "cosface": losses.CosFaceLoss,
        "subcenter_arcface": losses.SubCenterArcFaceLoss,
        "proxy_anchor": losses.ProxyAnchorLoss,
        "proxy_nca": losses.ProxyNCALoss,
        "normalized_softmax": losses.NormalizedSoftmaxLoss,
    }


def loss_names() -> list[str]:
    """The loss names `Metric(loss=...)` (and `tfcontrast train --loss=`) accept."""
    return sorted(_supervised_losses()) + sorted(_proxy_losses())


@register
class Metric(Algorithm):
    """A supervised metric loss (triplet, multi-similarity, circle, ...) or proxy loss
    (ArcFace, CosFace, ProxyAnchor, ...) on the projections of every view, with the
    image's label repeated for each of its views: two views of one image are positives
    of each other and of their class.

    This is SupCon's setting with another loss: `ContrastiveModel` makes the views,
    runs the backbone and projector, and serves the backbone's features.

    Args:
        loss: a name from `loss_names()` or a `tfcontrast.losses.MetricLoss` object.
        loss_options: the named loss's constructor arguments, e.g.
            `{"miner": "batch_hard", "margin": 0.1}`. `tfcontrast.models.recipes` (and
            so the CLI) fills in the loss's `recipe_defaults` these do not set
            (ProxyAnchor: `lr_multiplier` 100, `alpha` 16).
        num_classes: the number of classes, for the proxy losses (their proxies, one
            per class, are a layer of the model: `model.proxies`).

    Example:

    ```python
    model = ContrastiveModel(backbone, algorithm=Metric("triplet", {"miner": "batch_hard"}),
                             augmentation="auto")
    model.fit(images, labels, epochs=50)
    ```
    """

    name = "metric"
    multi_crop = True
    needs_labels = True

    def __init__(
        self,
        loss="multi_similarity",
        loss_options: dict | None = None,
        num_classes: int | None = None,
    ):
        from tfcontrast.losses import MetricLoss

        loss_options = dict(loss_options or {})
        known, proxies = _supervised_losses(), _proxy_losses()
        if isinstance(loss, dict):  # a serialized loss object (from `get_config`)
            loss = keras.saving.deserialize_keras_object(loss)
        self.proxy_loss = proxies.get(loss) if isinstance(loss, str) else None
        if isinstance(loss, str):
            if loss not in known and loss not in proxies:
                raise OptionError(
                    "loss",
                    f"Metric: unknown `loss` {loss!r}; expected one of {loss_names()} or a "
                    "tfcontrast.losses.MetricLoss.",
                )
            try:  # a proxy loss is made in `build`, with the projection's width
                loss_object = (known.get(loss) or self.proxy_loss)(
                    **loss_options, **({"num_classes": 1} if self.proxy_loss else {})
                )
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
        if num_classes is not None and int(num_classes) < 2:
            raise OptionError(
                "num_classes", f"Metric: `num_classes` must be >= 2; received {num_classes}."
            )
        config = loss if isinstance(loss, str) else keras.saving.serialize_keras_object(loss)
        super().__init__(loss=config, loss_options=loss_options, num_classes=num_classes)
        self.loss = None if self.proxy_loss else loss_object
        self.loss_options = loss_options
        self.num_classes = num_classes

    @classmethod
    def recipe_options(cls, options):
        """A named loss trains with its `recipe_defaults` (ProxyAnchor: the authors' 100x
        proxy learning rate and alpha 16) where `loss_options` does not set them."""
        loss = options.get("loss")
        known = {**_supervised_losses(), **_proxy_losses()}
        loss_class = known.get(loss) if isinstance(loss, str) else None
        defaults = getattr(loss_class, "recipe_defaults", {})
        if not defaults:
            return options
        return {**options, "loss_options": {**defaults, **(options.get("loss_options") or {})}}

    def build(self, model, projection_dim):
        from tfcontrast.losses import CrossBatchMemory

        if isinstance(self.loss, CrossBatchMemory):
            # The memory is model state, like MoCo's queue: saved and restored with the
            # model, carried by every backend's `fit`, written in training steps only.
            if self.loss.memory_queue is None:
                self.loss._build(projection_dim)
            model.cross_batch_memory = self.loss.memory_queue
        if self.proxy_loss is None:
            return
        if self.num_classes is None:
            raise OptionError(
                "num_classes",
                f"Metric: loss {self.loss_kwargs['loss']!r} learns one proxy per class; pass "
                "`num_classes` (recipes.build_model counts them from `labels`).",
            )
        self.loss = self.proxy_loss(
            num_classes=self.num_classes, embedding_dim=projection_dim, **self.loss_options
        )
        # The proxies are a layer of the model: trained by `fit`, saved and restored.
        model.proxies = self.loss.proxies

    def default_projector(self):
        return ProjectionHead(hidden_dims=(2048,), output_dim=128)

    def compute_loss(self, model, outputs, labels, training=True):
        projection = outputs["projection"]  # (B, V, D)
        views = int(projection.shape[1])
        flat = ops.reshape(projection, (-1, projection.shape[-1]))
        if hasattr(self.loss, "update_memory"):  # CrossBatchMemory: read-only when evaluating
            self.loss.update_memory = bool(training)
        return self.loss(ops.repeat(labels, views, axis=0), flat)
