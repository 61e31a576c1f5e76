"""Embedding index and search."""

from tfcontrast.retrieval.index import Index, SearchResult, exact_search

__all__: list[str] = ["Index", "SearchResult", "exact_search"]
