"""ContrastiveModel, its algorithms, heads and backbones."""

from tfcontrast.models import algorithms, backbones
from tfcontrast.models.algorithms import Algorithm
from tfcontrast.models.contrastive_model import ContrastiveModel

__all__ = ["Algorithm", "ContrastiveModel", "algorithms", "backbones"]
