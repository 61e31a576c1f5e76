"""Input pipelines: multi-view and class-balanced datasets from tfds, folders and arrays."""

__all__: list[str] = []
