"""Embedding index and search, threshold calibration and matching."""

from tfcontrast.retrieval.backends import exact_search
from tfcontrast.retrieval.calibration import CalibrationResult, MatchResult
from tfcontrast.retrieval.index import Index, SearchResult

__all__: list[str] = ["CalibrationResult", "Index", "MatchResult", "SearchResult", "exact_search"]
