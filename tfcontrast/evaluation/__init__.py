"""Evaluation: kNN and linear probes, retrieval and clustering metrics, callbacks, plots."""

__all__: list[str] = []
