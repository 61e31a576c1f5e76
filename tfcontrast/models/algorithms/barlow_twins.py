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
    # lambda scales the off-diagonal term with the projection width: 5e-3 is the paper's
    # for 8192 dimensions; the recipes' 64-d projections take 0.02 (chosen on the digits by
    # benchmarks/bench_ssl_digits.py, before the recipes: see commit 258a2ea).
    recipe_defaults = {"options": {"lambda_": 0.02}}

    def __init__(self, lambda_: float = 5e-3):
        super().__init__(lambda_=lambda_)
        from tfcontrast.losses import BarlowTwinsLoss

        self.loss = BarlowTwinsLoss(lambda_=lambda_)

    def default_projector(self):
        return ProjectionHead(hidden_dims=(8192, 8192), output_dim=8192)

    def compute_loss(self, model, outputs, labels, training=True):
        return self.loss(None, outputs["projection"])
