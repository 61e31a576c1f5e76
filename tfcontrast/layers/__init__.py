"""Keras layers: projection / prediction heads, augmentation layers, memory queues,
fused batch normalization, the class proxies of proxy losses."""

from tfcontrast.layers.augmentation import (
    ColorJitter,
    GaussianBlur,
    RandomAffine,
    RandomGaussianNoise,
    RandomGrayscale,
    RandomResizedCrop,
    Solarize,
    ViewAugmenter,
    byol_augmentation,
    cifar_augmentation,
    digits_augmentation,
    glyph_augmentation,
    multi_crop_augmentation,
    simclr_augmentation,
    weak_strong_augmentation,
)
from tfcontrast.layers.heads import PredictionHead, ProjectionHead
from tfcontrast.layers.normalization import FusedBatchNormalization
from tfcontrast.layers.prototypes import Prototypes
from tfcontrast.layers.proxies import Proxies
from tfcontrast.layers.queue import MemoryQueue
from tfcontrast.layers.scale import LogitScale

__all__: list[str] = [
    "FusedBatchNormalization",
    "LogitScale",
    "MemoryQueue",
    "PredictionHead",
    "Prototypes",
    "Proxies",
    "ProjectionHead",
    "ColorJitter",
    "GaussianBlur",
    "RandomAffine",
    "RandomGaussianNoise",
    "RandomGrayscale",
    "RandomResizedCrop",
    "Solarize",
    "ViewAugmenter",
    "byol_augmentation",
    "cifar_augmentation",
    "digits_augmentation",
    "glyph_augmentation",
    "multi_crop_augmentation",
    "simclr_augmentation",
    "weak_strong_augmentation",
]
