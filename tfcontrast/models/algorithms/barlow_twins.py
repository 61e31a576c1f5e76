"""Barlow Twins (Zbontar et al., ICML 2021)."""

from __future__ import annotations

from tfcontrast.layers.heads import ProjectionHead
from tfcontrast.models.algorithms.base import Algorithm, register


@register
class BarlowTwins(Algorithm):
    """Barlow Twins: the cross-correlation of the two views' projections is pushed to
    the identity. Args: `lambda_` (5e-3). Projector: 3 layers of 8192.
    """

    name = "barlow_twins"
    # Barlow Twins gains with the projection's width (the paper's figure on projector
    # dimensionality): a 256-d projection with the paper's lambda, 5e-3, gave 0.869 at 10
    # labels per class on USPS's validation split (50 epochs), a 64-d one with lambda 0.02
    # (chosen on the digits before the recipes, commit 258a2ea) 0.842.
    recipe_defaults = {"projection_dim": 256, "options": {"lambda_": 5e-3}}

    def __init__(self, lambda_: float = 5e-3):
        super().__init__(lambda_=lambda_)
        from tfcontrast.losses import BarlowTwinsLoss

        self.loss = BarlowTwinsLoss(lambda_=lambda_)

    def default_projector(self):
        return ProjectionHead(hidden_dims=(8192, 8192), output_dim=8192)

    def compute_loss(self, model, outputs, labels, training=True):
        return self.loss(None, outputs["projection"])
