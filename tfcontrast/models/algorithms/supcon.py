"""Supervised contrastive learning (Khosla et al., NeurIPS 2020)."""

from __future__ import annotations

from tfcontrast.layers.heads import ProjectionHead
from tfcontrast.models.algorithms.base import Algorithm, register


@register
class SupCon(Algorithm):
    """SupCon: every view of every same-class example is a positive.

    Needs integer labels in `fit(x, y)`. Args: `temperature` (0.1).
    """

    name = "supcon"
    multi_crop = True
    needs_labels = True

    def __init__(self, temperature: float = 0.1):
        super().__init__(temperature=temperature)
        from tfcontrast.losses import SupConLoss

        self.loss = SupConLoss(temperature=temperature)

    def default_projector(self):
        return ProjectionHead(hidden_dims=(2048,), output_dim=128)

    def compute_loss(self, model, outputs, labels, training=True):
        return self.loss(labels, outputs["projection"])
