"""VICReg (Bardes, Ponce & LeCun, ICLR 2022)."""

from __future__ import annotations

from tfcontrast.layers.heads import ProjectionHead
from tfcontrast.models.algorithms.base import Algorithm, register


@register
class VICReg(Algorithm):
    """VICReg: invariance, variance and covariance terms on the projections.

    Args: the three weights (25, 25, 1). Projector: 3 layers of 8192 (the paper's
    expander).
    """

    name = "vicreg"

    def __init__(
        self,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
    ):
        super().__init__(
            invariance_weight=invariance_weight,
            variance_weight=variance_weight,
            covariance_weight=covariance_weight,
        )
        from tfcontrast.losses import VICRegLoss

        self.loss = VICRegLoss(
            invariance_weight=invariance_weight,
            variance_weight=variance_weight,
            covariance_weight=covariance_weight,
        )

    def default_projector(self):
        return ProjectionHead(hidden_dims=(8192, 8192), output_dim=8192)

    def compute_loss(self, model, outputs, labels, training=True):
        return self.loss(None, outputs["projection"])
