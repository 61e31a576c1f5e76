"""SimCLR (Chen et al., ICML 2020): NT-Xent between the projections of two views."""

from __future__ import annotations

from tfcontrast.layers.heads import ProjectionHead
from tfcontrast.models.algorithms.base import Algorithm, register


@register
class SimCLR(Algorithm):
    """SimCLR: in-batch negatives, a 2-layer projector (2048 -> 128).

    Args:
        temperature: NT-Xent temperature (0.5, the paper's CIFAR-10 setting).
    """

    name = "simclr"
    multi_crop = True

    def __init__(self, temperature: float = 0.5):
        super().__init__(temperature=temperature)
        from tfcontrast.losses import NTXentLoss

        self.loss = NTXentLoss(temperature=temperature)

    def default_projector(self):
        return ProjectionHead(hidden_dims=(2048,), output_dim=128)

    def compute_loss(self, model, outputs, labels, training=True):
        return self.loss(None, outputs["projection"])
