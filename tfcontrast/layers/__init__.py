"""Keras layers: projection / prediction heads, augmentation layers, memory queues."""

from tfcontrast.layers.heads import PredictionHead, ProjectionHead
from tfcontrast.layers.queue import MemoryQueue
from tfcontrast.layers.scale import LogitScale

__all__: list[str] = ["LogitScale", "MemoryQueue", "PredictionHead", "ProjectionHead"]
