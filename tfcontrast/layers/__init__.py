"""Keras layers: projection / prediction heads, augmentation layers, memory queues."""

__all__: list[str] = []
