"""Embedding index and search."""

__all__: list[str] = []
