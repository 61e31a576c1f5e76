"""Evaluation: kNN / linear probes, retrieval, verification, clustering, callbacks, plots.

All metrics take NumPy arrays or tensors and compute in NumPy. Plotting functions import
matplotlib only when called.
"""

from tfcontrast.evaluation.callbacks import EmbeddingEvaluation
from tfcontrast.evaluation.clustering import (
    alignment,
    class_alignment,
    clustering_scores,
    infonce_bound,
    uniformity,
)
from tfcontrast.evaluation.evaluate import evaluate_embeddings
from tfcontrast.evaluation.knn import few_shot_1nn_scores, knn_accuracy, knn_predict
from tfcontrast.evaluation.plots import (
    export_projector,
    neighbour_grid,
    project_2d,
    projection_plot,
    training_curves,
)
from tfcontrast.evaluation.probe import few_shot_indices, linear_probe
from tfcontrast.evaluation.retrieval_metrics import retrieval_metrics
from tfcontrast.evaluation.verification import (
    RocCurve,
    ThresholdCurve,
    roc_curve,
    tar_at_far,
    threshold_curve,
)

__all__: list[str] = [
    "EmbeddingEvaluation",
    "RocCurve",
    "ThresholdCurve",
    "alignment",
    "class_alignment",
    "clustering_scores",
    "evaluate_embeddings",
    "export_projector",
    "few_shot_indices",
    "infonce_bound",
    "few_shot_1nn_scores",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "neighbour_grid",
    "project_2d",
    "projection_plot",
    "retrieval_metrics",
    "roc_curve",
    "tar_at_far",
    "threshold_curve",
    "training_curves",
    "uniformity",
]
