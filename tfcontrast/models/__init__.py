"""ContrastiveModel, its algorithms, heads and backbones."""

from tfcontrast.models import algorithms, backbones
from tfcontrast.models.algorithms import Algorithm
from tfcontrast.models.contrastive_model import ContrastiveModel
from tfcontrast.models.lora import (
    count_lora_parameters,
    enable_lora,
    lora_variables,
    without_lora,
)

__all__ = ["Algorithm", "ContrastiveModel", "algorithms", "backbones"]
__all__ += ["count_lora_parameters", "enable_lora", "lora_variables", "without_lora"]
