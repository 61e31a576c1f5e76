"""ContrastiveModel, its algorithms, heads and backbones."""

__all__: list[str] = []
