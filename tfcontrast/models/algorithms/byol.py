"""BYOL (Grill et al., NeurIPS 2020): predict an EMA target network's projection."""

from __future__ import annotations

from keras import ops

from tfcontrast.layers.heads import PredictionHead, ProjectionHead
from tfcontrast.models.algorithms.base import Algorithm, register


def symmetric_negative_cosine(loss, predictions, targets):
    """Mean of `loss([p_i, z_j])` over ordered view pairs `i != j`.

    `predictions` and `targets` are `(B, V, D)`; view `i`'s prediction regresses view
    `j`'s target, for every ordered pair of distinct views.
    """
    views = predictions.shape[1]
    terms = [
        loss(None, ops.stack([predictions[:, i], targets[:, j]], axis=1))
        for i in range(views)
        for j in range(views)
        if i != j
    ]
    return ops.sum(ops.stack(terms)) / len(terms)


@register
class BYOL(Algorithm):
    """BYOL: online predictor regresses the target projection of the other view.

    The target network is an exponential moving average of the online backbone and
    projector; its momentum rises from `momentum` (0.996) to 1 along a cosine over
    training. Heads: projector 4096 -> 256, predictor 4096 -> 256.
    """

    name = "byol"
    # A faster EMA start (0.99) for runs of a few thousand steps rather than BYOL's ~10^5.
    recipe_defaults = {"options": {"momentum": 0.99}}
    uses_predictor = True

    def __init__(self, momentum: float = 0.996, final_momentum: float = 1.0):
        super().__init__(momentum=momentum, final_momentum=final_momentum)
        from tfcontrast.losses import NegativeCosineSimilarity

        self.momentum_base = float(momentum)
        self.momentum_final = float(final_momentum)
        self.loss = NegativeCosineSimilarity()

    def default_projector(self):
        return ProjectionHead(hidden_dims=(4096,), output_dim=256)

    def default_predictor(self):
        return PredictionHead(hidden_dim=4096, output_dim=256)

    def compute_loss(self, model, outputs, labels, training=True):
        targets = model.target_outputs(outputs["views"], training=training)
        loss = symmetric_negative_cosine(self.loss, outputs["prediction"], targets)
        if training:
            model.update_target()
        return loss
