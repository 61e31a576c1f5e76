"""SimSiam (Chen & He, CVPR 2021): a predictor and a stop-gradient, no target network."""

from __future__ import annotations

from keras import ops

from tfcontrast.layers.heads import PredictionHead, ProjectionHead
from tfcontrast.models.algorithms.base import Algorithm, register
from tfcontrast.models.algorithms.byol import symmetric_negative_cosine


@register
class SimSiam(Algorithm):
    """SimSiam: each view's prediction regresses the other view's projection,
    through a stop-gradient. Heads: 3-layer projector 2048 (BN on the output),
    predictor 2048 -> 512 -> 2048.
    """

    name = "simsiam"
    uses_predictor = True

    def __init__(self):
        super().__init__()
        from tfcontrast.losses import NegativeCosineSimilarity

        self.loss = NegativeCosineSimilarity()

    def default_projector(self):
        return ProjectionHead(hidden_dims=(2048, 2048), output_dim=2048, output_batch_norm=True)

    def default_predictor(self):
        return PredictionHead(hidden_dim=512, output_dim=2048)

    def compute_loss(self, model, outputs, labels, training=True):
        targets = ops.stop_gradient(outputs["projection"])
        return symmetric_negative_cosine(self.loss, outputs["prediction"], targets)
