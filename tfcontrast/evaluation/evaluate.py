"""One call that computes every embedding-quality metric and returns a flat dict."""

from __future__ import annotations

import numpy as np

from tfcontrast.evaluation._common import as_embeddings, as_labels
from tfcontrast.evaluation.clustering import (
    alignment,
    class_alignment,
    clustering_scores,
    infonce_bound,
    uniformity,
)
from tfcontrast.evaluation.knn import knn_accuracy
from tfcontrast.evaluation.probe import linear_probe as _linear_probe
from tfcontrast.evaluation.retrieval_metrics import retrieval_metrics

ALL_METRICS = ("knn", "linear_probe", "retrieval", "clustering", "geometry")
DEFAULT_METRICS = ("knn", "retrieval", "clustering", "geometry")


def evaluate_embeddings(
    embeddings,
    labels,
    train_embeddings=None,
    train_labels=None,
    views=None,
    metrics=DEFAULT_METRICS,
    knn_k: int = 200,
    knn_metric: str = "cosine",
    knn_weighting: str = "temperature",
    knn_temperature: float = 0.1,
    recall_ks=(1, 5, 10),
    retrieval_metric: str = "cosine",
    probe_kwargs: dict | None = None,
    infonce_temperature: float = 0.1,
    infonce_batch_size: int | None = 256,
    uniformity_max_points: int | None = 10000,
    seed: int = 0,
) -> dict[str, float]:
    """Evaluates embeddings with the kNN / probe / retrieval / clustering / geometry metrics.

    - `"knn"`: `knn_accuracy` of `embeddings` against `train_embeddings`, or
      leave-one-out on `embeddings` when no training set is given (`k` is capped at
      the number of available neighbours).
    - `"linear_probe"`: `linear_probe` accuracy (needs `train_embeddings`; off by
      default because it trains a classifier).
    - `"retrieval"`: `retrieval_metrics` of `embeddings` against themselves,
      leave-one-out (the usual metric-learning protocol, e.g. CUB / Cars / SOP).
    - `"clustering"`: NMI and AMI of k-means with one cluster per class.
    - `"geometry"`: `uniformity` of `embeddings` and `class_alignment` over same-label
      pairs; with `views=(v1, v2)` also the view `alignment` and `infonce_bound`.

    Args:
        embeddings: `(N, D)` evaluation embeddings.
        labels: `(N,)` their labels.
        train_embeddings: `(M, D)` optional reference set for kNN / probe.
        train_labels: `(M,)` its labels.
        views: optional pair `(v1, v2)` of `(P, D)` embeddings of two views of the
            same inputs, for alignment and the InfoNCE bound.
        metrics: subset of `("knn", "linear_probe", "retrieval", "clustering",
            "geometry")`.
        knn_k, knn_metric, knn_weighting, knn_temperature: kNN settings.
        recall_ks, retrieval_metric: retrieval settings.
        probe_kwargs: extra arguments of `linear_probe` (e.g. `shots_per_class`).
        infonce_temperature, infonce_batch_size: `infonce_bound` settings.
        uniformity_max_points: uniformity is `O(N^2)`; above this many points it uses
            a seeded random subset (`None`: all points).
        seed: seed of subsampling, k-means and the probe.

    Returns:
        Flat dict of floats: `knn_accuracy`, `linear_probe_accuracy`,
        `precision_at_1`, `recall_at_{k}`, `r_precision`, `map_at_r`, `map`, `mrr`,
        `nmi`, `ami`, `uniformity`, `class_alignment`, `alignment`, `infonce_bound`
        (those that were requested and apply).

    Example:

    ```python
    results = evaluate_embeddings(test_emb, test_y, train_emb, train_y, knn_k=20)
    print(results["knn_accuracy"], results["map_at_r"])
    ```
    """
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(
            f"evaluate_embeddings: `metrics` entries must be in {list(ALL_METRICS)}; "
            f"received unknown {sorted(unknown)}."
        )
    x = as_embeddings(embeddings, "embeddings")
    y = as_labels(labels, "labels", x.shape[0])
    if (train_embeddings is None) != (train_labels is None):
        raise ValueError("evaluate_embeddings: pass both `train_embeddings` and `train_labels`.")
    if train_embeddings is not None:
        tx = as_embeddings(train_embeddings, "train_embeddings")
        ty = as_labels(train_labels, "train_labels", tx.shape[0])
    else:
        tx = ty = None
    out: dict[str, float] = {}
    if "knn" in metrics:
        available = tx.shape[0] if tx is not None else x.shape[0] - 1
        if available >= 1:
            out["knn_accuracy"] = knn_accuracy(
                tx if tx is not None else x,
                ty if ty is not None else y,
                x if tx is not None else None,
                y if tx is not None else None,
                k=min(knn_k, available),
                metric=knn_metric,
                weighting=knn_weighting,
                temperature=knn_temperature,
            )
    if "linear_probe" in metrics:
        if tx is None:
            raise ValueError(
                "evaluate_embeddings: the 'linear_probe' metric needs `train_embeddings`."
            )
        kwargs = {"seed": seed, **(probe_kwargs or {})}
        out["linear_probe_accuracy"] = _linear_probe(tx, ty, x, y, **kwargs)
    if "retrieval" in metrics and x.shape[0] >= 2:
        ks = tuple(k for k in recall_ks if k <= x.shape[0] - 1)
        r = retrieval_metrics(x, y, ks=ks, metric=retrieval_metric)
        r.pop("queries_without_relevant")
        out.update(r)
    if "clustering" in metrics and np.unique(y).shape[0] <= x.shape[0]:
        out.update(clustering_scores(x, y, seed=seed))
    if "geometry" in metrics:
        sample = x
        if uniformity_max_points is not None and x.shape[0] > uniformity_max_points:
            rng = np.random.default_rng(seed)
            sample = x[rng.choice(x.shape[0], uniformity_max_points, replace=False)]
        if sample.shape[0] >= 2:
            out["uniformity"] = uniformity(sample)
        out["class_alignment"] = class_alignment(x, y)
        if views is not None:
            v1, v2 = views
            out["alignment"] = alignment(v1, v2)
            out["infonce_bound"] = infonce_bound(
                v1, v2, temperature=infonce_temperature, batch_size=infonce_batch_size
            )
    return out
